"""The v3 API: ``POST /v3/bulk_restore``, ``GET /v3/bulk_restore_status`` and
``GET /v3/bulk_restore_jobs``."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import uuid
from datetime import UTC, datetime
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
from restores.schema import bulk_restore_jobs_schema, bulk_restore_schema, bulk_restore_status_schema
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


# The jobs list (docs/api.md#bulk-restore-jobs).
JOBS_LIMIT_DEFAULT = 50
JOBS_LIMIT_MAX = 500
JOB_STATUSES = tuple(Job.Status.values)
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
TIME_SHOWN = "YYYY-MM-DD HH:MM:SS"


class BulkRestoreJobsView(APIView):
    class InputSerializer(serializers.Serializer):
        status = serializers.CharField(required=False, allow_blank=True, trim_whitespace=False)
        created_after = serializers.CharField(required=False, allow_blank=True, trim_whitespace=False)
        created_before = serializers.CharField(required=False, allow_blank=True, trim_whitespace=False)
        limit = serializers.CharField(required=False, allow_blank=True, trim_whitespace=False)
        cursor = serializers.CharField(required=False, allow_blank=True, trim_whitespace=False)

        def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
            status_filter = attrs.get("status")
            if status_filter is not None and status_filter not in JOB_STATUSES:
                raise ApiError(f"status must be one of {', '.join(JOB_STATUSES)}.", code="invalid_status")
            limit = attrs.get("limit")
            if limit is None:
                count = JOBS_LIMIT_DEFAULT
            elif limit.isascii() and limit.isdigit() and 1 <= int(limit) <= JOBS_LIMIT_MAX:
                count = int(limit)
            else:
                raise ApiError(
                    f"limit must be a whole number from 1 to {JOBS_LIMIT_MAX}.", code="invalid_limit"
                )
            try:
                created_after = _utc_time(attrs.get("created_after"))
            except ValueError:
                raise ApiError(
                    f"created_after must be a UTC time as {TIME_SHOWN}.", code="invalid_created_after"
                ) from None
            try:
                created_before = _utc_time(attrs.get("created_before"))
            except ValueError:
                raise ApiError(
                    f"created_before must be a UTC time as {TIME_SHOWN}.", code="invalid_created_before"
                ) from None
            cursor = attrs.get("cursor")
            return {
                "status": status_filter,
                "created_after": created_after,
                "created_before": created_before,
                "limit": count,
                "older_than": None if cursor is None else cursor_decode(cursor),
            }

    @bulk_restore_jobs_schema
    def get(self, request: Request) -> Response:
        serializer = self.InputSerializer(data=request.query_params)
        serializer.is_valid(raise_exception=True)
        jobs, more = selectors.jobs_page_for_tenant(tenant=request.user, **serializer.validated_data)  # type: ignore[arg-type]
        return Response(
            {
                "jobs": [selectors.job_summary(job) for job in jobs],
                "next_cursor": cursor_encode(jobs[-1]) if more else None,
            }
        )


def _utc_time(value: str | None) -> datetime | None:
    """A UTC time written ``YYYY-MM-DD HH:MM:SS``; ValueError for another form."""
    return None if value is None else datetime.strptime(value, TIME_FORMAT).replace(tzinfo=UTC)


def cursor_encode(job: Job) -> str:
    """Where the next page starts: after this job (its creation time and id), opaque to clients."""
    raw = f"{job.created_at.astimezone(UTC).isoformat()}|{job.pk}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def cursor_decode(cursor: str) -> tuple[datetime, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        created_at, job_id = raw.split("|")
        when = datetime.fromisoformat(created_at)
        if when.tzinfo is None:
            raise ValueError(created_at)
        return when, int(job_id)
    except (ValueError, UnicodeDecodeError, binascii.Error):
        raise ApiError("cursor is not one this API gave.", code="invalid_cursor") from None
