"""The v3 API: ``POST /v3/bulk_restore`` and ``GET /v3/bulk_restore_status``."""

from __future__ import annotations

import re
import uuid
from typing import Any

from django.conf import settings
from django.http import QueryDict
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import ApiCredential
from portal.api_errors import ApiError
from restores import selectors, services
from restores.validation import SubmissionError, numbers_parse, webhook_url_validate

# Any digit string is a well-formed ``number`` filter (one of more than 15 digits is simply
# not part of the job: 404); anything else is a 400 (CONTRACT section 2).
DIGITS_RE = re.compile(r"[0-9]+")


def _submission_fields(data: Any) -> dict[str, Any]:
    """The contract's fields from a JSON, form-encoded or multipart body."""
    if isinstance(data, QueryDict):
        numbers = data.getlist("numbers") + data.getlist("numbers[]")
        return {
            "numbers": numbers or None,
            "numbers_text": data.get("numbers_text"),
            "webhook_url": data.get("webhook_url"),
        }
    if not isinstance(data, dict):
        raise ApiError("The request body must be a JSON object.", code="invalid_body")
    return {key: data.get(key) for key in ("numbers", "numbers_text", "webhook_url")}


class BulkRestoreView(APIView):
    class InputSerializer(serializers.Serializer):
        numbers = serializers.JSONField(required=False, allow_null=True)
        numbers_text = serializers.JSONField(required=False, allow_null=True)
        webhook_url = serializers.JSONField(required=False, allow_null=True)

        def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
            try:
                numbers = numbers_parse(
                    numbers=attrs.get("numbers"),
                    numbers_text=attrs.get("numbers_text"),
                    max_numbers=settings.MAX_NUMBERS_PER_JOB,
                )
                webhook_url = webhook_url_validate(attrs.get("webhook_url"))
            except SubmissionError as exc:
                raise ApiError(exc.message, code=exc.code, extra=exc.extra) from None
            return {"numbers": numbers, "webhook_url": webhook_url}

    def post(self, request: Request) -> Response:
        serializer = self.InputSerializer(data=_submission_fields(request.data))
        serializer.is_valid(raise_exception=True)
        job = services.job_submit(
            tenant=request.user,  # type: ignore[arg-type]
            credential=request.auth if isinstance(request.auth, ApiCredential) else None,
            **serializer.validated_data,
        )
        if job.is_sync:
            return Response(selectors.job_final_payload(job=job, with_webhook_error=True))
        return Response(selectors.job_queued_payload(job=job), status=status.HTTP_202_ACCEPTED)


class BulkRestoreStatusView(APIView):
    class InputSerializer(serializers.Serializer):
        job_uuid = serializers.CharField(required=False, allow_blank=True, trim_whitespace=False)
        number = serializers.CharField(required=False, allow_blank=True, trim_whitespace=False)

        def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
            raw_uuid = attrs.get("job_uuid")
            if not raw_uuid:
                raise ApiError("The job_uuid query parameter is required.", code="invalid_job_uuid")
            try:
                job_uuid = uuid.UUID(raw_uuid)
            except ValueError:
                raise ApiError("job_uuid is not a valid UUID.", code="invalid_job_uuid") from None
            number = attrs.get("number")
            if number is not None and not DIGITS_RE.fullmatch(number):
                raise ApiError("number must be digits only.", code="invalid_number")
            return {"job_uuid": job_uuid, "number": number}

    def get(self, request: Request) -> Response:
        serializer = self.InputSerializer(data=request.query_params)
        serializer.is_valid(raise_exception=True)
        params = serializer.validated_data
        job = selectors.job_get_for_tenant(tenant=request.user, job_uuid=params["job_uuid"])  # type: ignore[arg-type]
        if job is None:
            raise ApiError("No job with this job_uuid.", code="not_found", status_code=404)
        payload = selectors.job_status_payload(job=job, number=params["number"])
        if payload is None:
            raise ApiError(
                f"Number {params['number']} is not part of this job.", code="not_found", status_code=404
            )
        return Response(payload)
