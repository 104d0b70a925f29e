"""The v3 API: ``POST /v3/bulk_restore`` and ``GET /v3/bulk_restore_status``."""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from typing import Any

from django.conf import settings
from django.http import QueryDict, StreamingHttpResponse
from rest_framework import serializers, status
from rest_framework.renderers import BaseRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import ApiCredential, Tenant
from portal.api_errors import ApiError
from restores import selectors, services
from restores.models import Job
from restores.schema import bulk_restore_schema, bulk_restore_status_schema
from restores.validation import SubmissionError, numbers_given, numbers_parse, webhook_url_validate

# Any digit string is a well-formed ``number`` filter (one of more than 15 digits is simply
# not part of the job: 404); anything else is a 400 (docs/api.md#bulk-restore-status).
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

    @bulk_restore_schema
    def post(self, request: Request) -> Response:
        fields = _submission_fields(request.data)
        if _dry_run_asked(request):
            return self._dry_run(fields)  # stores nothing: no Idempotency-Key either
        key = idempotency_key_from(request)
        if key is None:
            return self._submit(request, fields)
        tenant: Tenant = request.user  # type: ignore[assignment]
        decision = services.idempotency_key_begin(tenant=tenant, key=key, request_hash=_fingerprint(fields))
        if decision.conflict == "mismatch":
            raise ApiError(
                "This Idempotency-Key was used with a different request body.",
                code="idempotency_key_reused",
                status_code=422,
            )
        if decision.conflict == "in_progress":
            raise ApiError(
                "A request with this Idempotency-Key is still being answered; retry later.",
                code="idempotency_key_in_use",
                status_code=409,
            )
        if decision.record is None:
            return Response(
                decision.replay_body, status=decision.replay_status, headers={"Idempotent-Replayed": "true"}
            )
        try:
            response = self._submit(request, fields)
        except BaseException:
            services.idempotency_key_finish(record=decision.record, status=500, body=None, job=None)
            raise
        services.idempotency_key_finish(
            record=decision.record,
            status=response.status_code,
            body=response.data,
            job=getattr(response, "job", None),
        )
        return response

    def _submit(self, request: Request, fields: dict[str, Any]) -> Response:
        serializer = self.InputSerializer(data=fields)
        serializer.is_valid(raise_exception=True)
        job = services.job_submit(
            tenant=request.user,  # type: ignore[arg-type]
            credential=request.auth if isinstance(request.auth, ApiCredential) else None,
            **serializer.validated_data,
        )
        if job.is_sync:
            response = Response(selectors.job_final_payload(job=job, with_webhook_error=True))
        else:
            response = Response(selectors.job_queued_payload(job=job), status=status.HTTP_202_ACCEPTED)
        response.job = job  # type: ignore[attr-defined]
        return response

    def _dry_run(self, fields: dict[str, Any]) -> Response:
        serializer = self.InputSerializer(data=fields)
        serializer.is_valid(raise_exception=True)
        numbers = serializer.validated_data["numbers"]
        return Response(
            selectors.dry_run_payload(
                total_numbers=len(numbers),
                duplicates_removed=numbers_given(
                    numbers=fields["numbers"], numbers_text=fields["numbers_text"]
                )
                - len(numbers),
                synchronous=services.job_is_sync(total_numbers=len(numbers)),
                webhook_url=serializer.validated_data["webhook_url"],
            )
        )


def _dry_run_asked(request: Request) -> bool:
    """``?dry_run=true``: validate the submission and say what it would do, doing nothing."""
    value = request.query_params.get("dry_run")
    if value is None or value.lower() in ("false", "0"):
        return False
    if value.lower() in ("true", "1"):
        return True
    raise ApiError("dry_run must be true or false.", code="invalid_dry_run")


def _fingerprint(fields: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()


def idempotency_key_from(request: Request) -> str | None:
    """The Idempotency-Key header: a token, or a quoted structured-field string."""
    raw = request.headers.get("Idempotency-Key")
    if raw is None:
        return None
    value = raw.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = re.sub(r'\\(["\\])', r"\1", value[1:-1])
    if not value or len(value) > 255 or not all(" " <= c <= "~" for c in value):
        raise ApiError(
            "Idempotency-Key must be 1 to 255 printable ASCII characters.", code="invalid_idempotency_key"
        )
    return value


class BulkRestoreStatusView(APIView):
    class InputSerializer(serializers.Serializer):
        job_uuid = serializers.CharField(required=False, allow_blank=True, trim_whitespace=False)
        number = serializers.CharField(required=False, allow_blank=True, trim_whitespace=False)
        format = serializers.CharField(required=False, allow_blank=True, trim_whitespace=False)

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
            answer_format = attrs.get("format") or "json"
            if answer_format not in ("json", "csv"):
                raise ApiError("format must be json or csv.", code="invalid_format")
            return {"job_uuid": job_uuid, "number": number, "format": answer_format}

    def perform_content_negotiation(self, request: Request, force: bool = False) -> tuple[BaseRenderer, str]:
        """``format`` is this endpoint's own parameter (``json`` or ``csv``), not DRF's renderer
        override: a CSV answer is the view's own, and everything else, errors included, JSON."""
        if "format" in request.query_params:
            renderer = self.get_renderers()[0]
            return renderer, str(renderer.media_type)
        return super().perform_content_negotiation(request, force)

    @bulk_restore_status_schema
    def get(self, request: Request) -> Response | StreamingHttpResponse:
        serializer = self.InputSerializer(data=request.query_params)
        serializer.is_valid(raise_exception=True)
        params = serializer.validated_data
        job = selectors.job_get_for_tenant(tenant=request.user, job_uuid=params["job_uuid"])  # type: ignore[arg-type]
        if job is None:
            raise ApiError("No job with this job_uuid.", code="not_found", status_code=404)
        if params["format"] == "csv":
            return self._csv(job=job, number=params["number"])
        payload = selectors.job_status_payload(job=job, number=params["number"])
        if payload is None:
            raise ApiError(
                f"Number {params['number']} is not part of this job.", code="not_found", status_code=404
            )
        return Response(payload)

    def _csv(self, *, job: Job, number: str | None) -> StreamingHttpResponse:
        if number is not None and not selectors.job_has_number(job=job, number=number):
            raise ApiError(f"Number {number} is not part of this job.", code="not_found", status_code=404)
        rows = selectors.job_results_csv_rows(job=job, number=number)
        response = StreamingHttpResponse(
            selectors.csv_chunks(header=selectors.STATUS_CSV_COLUMNS, rows=rows),
            content_type="text/csv; charset=utf-8",
        )
        response["Content-Disposition"] = f'attachment; filename="bulk-restore-{job.uuid}.csv"'
        response["Cache-Control"] = "no-store"
        return response
