"""The OpenAPI description of the v3 API (drf-spectacular).

These serializers describe, field by field and in order, the JSON that the
selectors build; they are not used to render responses (a 10,000-number
status is built as plain dicts). ``tests/api/test_openapi.py`` validates real
responses against the generated document, so the two cannot drift apart.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    PolymorphicProxySerializer,
    extend_schema,
)
from rest_framework import serializers

TIMESTAMP_PATTERN = r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$"
NUMBER_PATTERN = r"^[0-9]{7,15}$"
DIGITS_PATTERN = r"^[0-9]+$"
IDEMPOTENCY_KEY_PATTERN = r"^[ -~]+$"
NUMBER_STATUSES = ["pending", "processing", "success", "failed"]
JOB_STATUSES = ["pending", "processing", "completed", "cancelled"]
QUEUED_STATUSES = ["pending"]


def _timestamp(**kwargs: Any) -> serializers.CharField:
    return serializers.CharField(help_text="UTC, `YYYY-MM-DD HH:MM:SS`.", **{"allow_null": True, **kwargs})


class ResultSerializer(serializers.Serializer):
    number = serializers.RegexField(NUMBER_PATTERN)
    status = serializers.ChoiceField(NUMBER_STATUSES)
    message = serializers.CharField(allow_null=True, help_text="null while the number is pending.")
    status_code = serializers.IntegerField(
        allow_null=True, help_text="Multitel's code (or the HTTP status); null while pending."
    )
    requires_identity_update = serializers.ChoiceField([0, 1])
    needs_registration = serializers.ChoiceField(
        [1], required=False, help_text="Present, as 1, only when Multitel reported it."
    )


class StatusResultSerializer(serializers.Serializer):
    number = serializers.RegexField(NUMBER_PATTERN)
    status = serializers.ChoiceField(NUMBER_STATUSES)
    message = serializers.CharField(allow_null=True)
    status_code = serializers.IntegerField(allow_null=True)
    attempts = serializers.IntegerField(min_value=0)
    started_at = _timestamp()
    completed_at = _timestamp()
    requires_identity_update = serializers.ChoiceField([0, 1])
    needs_registration = serializers.ChoiceField([1], required=False)


class _JobSummarySerializer(serializers.Serializer):
    job_uuid = serializers.UUIDField()
    status = serializers.ChoiceField(JOB_STATUSES)
    total_numbers = serializers.IntegerField(min_value=1)
    success_count = serializers.IntegerField(min_value=0)
    failure_count = serializers.IntegerField(min_value=0)
    webhook_url = serializers.URLField(allow_null=True)
    created_at = _timestamp(allow_null=False)
    started_at = _timestamp()
    completed_at = _timestamp()


class JobResultSerializer(_JobSummarySerializer):
    """The synchronous answer (and the webhook payload, without ``webhook_error``)."""

    results = ResultSerializer(many=True)
    webhook_error = serializers.CharField(
        required=False, help_text="Present only when the webhook could not be delivered."
    )


class JobStatusSerializer(_JobSummarySerializer):
    results = StatusResultSerializer(many=True)
    webhook_error = serializers.CharField(required=False)
    filtered_number = serializers.CharField(required=False, help_text="Present with `number=`.")


class QueuedSerializer(serializers.Serializer):
    job_uuid = serializers.UUIDField()
    status = serializers.ChoiceField(QUEUED_STATUSES)
    total_numbers = serializers.IntegerField(min_value=1)
    webhook_url = serializers.URLField(allow_null=True)
    message = serializers.CharField()


class DryRunSerializer(serializers.Serializer):
    dry_run = serializers.BooleanField(help_text="Always true: nothing was stored or called.")
    total_numbers = serializers.IntegerField(min_value=1, help_text="Numbers the job would have.")
    duplicates_removed = serializers.IntegerField(min_value=0, help_text="Repeats counted once.")
    would_be = serializers.ChoiceField(["synchronous", "queued"])
    webhook_url = serializers.URLField(allow_null=True)


class ErrorSerializer(serializers.Serializer):
    error = serializers.CharField(help_text="A stable, machine-readable code.")
    message = serializers.CharField(help_text="A sentence for a person.")


class SubmissionSerializer(serializers.Serializer):
    numbers = serializers.ListField(
        child=serializers.RegexField(NUMBER_PATTERN),
        required=False,
        help_text="Digit-only phone numbers, 7 to 15 digits (E.164 without +).",
    )
    numbers_text = serializers.CharField(
        required=False, help_text="The same, one per line (\\n or \\r\\n); blank lines ignored."
    )
    webhook_url = serializers.URLField(
        required=False,
        allow_null=True,
        max_length=2048,
        help_text="Absolute http(s) URL on a public address.",
    )


class BasicAuthScheme(OpenApiAuthenticationExtension):
    target_class = "accounts.authentication.ApiCredentialAuthentication"
    name = "basicAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {"type": "http", "scheme": "basic"}


def _errors(*codes: int) -> dict[int, OpenApiResponse]:
    return {code: OpenApiResponse(ErrorSerializer) for code in codes}


bulk_restore_schema = extend_schema(
    operation_id="bulk_restore",
    summary="Restore numbers in bulk",
    description=(
        "Up to `SYNC_MAX_NUMBERS` (10) numbers are restored synchronously and concurrently (200); "
        "more are queued (202), and the result is POSTed to `webhook_url` and can be polled."
    ),
    request={
        "application/json": SubmissionSerializer,
        "application/x-www-form-urlencoded": SubmissionSerializer,
        "multipart/form-data": SubmissionSerializer,
    },
    parameters=[
        OpenApiParameter(
            "dry_run",
            {"type": "string", "enum": ["true", "false", "1", "0"]},
            OpenApiParameter.QUERY,
            required=False,
            description=(
                "true: validate the submission as a real one (the same 400s) and answer what it "
                "would do; no job is made, Multitel is not called, Idempotency-Key is not used."
            ),
        ),
        OpenApiParameter(
            "Idempotency-Key",
            {"type": "string", "minLength": 1, "maxLength": 255, "pattern": IDEMPOTENCY_KEY_PATTERN},
            OpenApiParameter.HEADER,
            required=False,
            description=(
                "1 to 255 printable ASCII characters; the same key and body within 24 hours "
                "get the first answer."
            ),
        ),
    ],
    responses={
        200: PolymorphicProxySerializer(
            component_name="BulkRestoreAnswer",
            serializers=[JobResultSerializer, DryRunSerializer],
            resource_type_field_name=None,
        ),
        202: QueuedSerializer,
        **_errors(400, 401, 403, 409, 413, 415, 422, 429, 503),
    },
    examples=[
        OpenApiExample(
            "Three numbers",
            value={"numbers": ["15551230111", "15551230112", "15551230113"]},
            request_only=True,
        )
    ],
)

bulk_restore_status_schema = extend_schema(
    operation_id="bulk_restore_status",
    summary="The state of a job",
    parameters=[
        OpenApiParameter(
            "job_uuid",
            OpenApiTypes.UUID,
            OpenApiParameter.QUERY,
            required=True,
            description="From the POST. Anything that is not a UUID is answered with 400.",
        ),
        OpenApiParameter(
            "number",
            str,
            OpenApiParameter.QUERY,
            required=False,
            pattern=DIGITS_PATTERN,
            description="Digits only (anything else: 400); narrows `results`. Not part of the job: 404.",
        ),
        OpenApiParameter(
            "format",
            {"type": "string", "enum": ["json", "csv"]},
            OpenApiParameter.QUERY,
            required=False,
            description=(
                "json (the default) or csv: the results as `text/csv`, one row per number in "
                "submission order. Anything else: 400."
            ),
        ),
    ],
    responses={
        (200, "application/json"): JobStatusSerializer,
        (200, "text/csv"): OpenApiResponse(OpenApiTypes.STR, description="The results as CSV (format=csv)."),
        **_errors(400, 401, 403, 404, 429, 503),
    },
)


class JobsPageSerializer(serializers.Serializer):
    jobs = _JobSummarySerializer(many=True, help_text="The tenant's jobs, newest first, without results.")
    next_cursor = serializers.CharField(
        allow_null=True, help_text="Pass as cursor for the next page; null on the last page."
    )


bulk_restore_jobs_schema = extend_schema(
    operation_id="bulk_restore_jobs",
    summary="The tenant's jobs, newest first",
    parameters=[
        OpenApiParameter(
            "status", {"type": "string", "enum": JOB_STATUSES}, OpenApiParameter.QUERY, required=False
        ),
        OpenApiParameter(
            "created_after",
            {"type": "string", "pattern": TIMESTAMP_PATTERN},
            OpenApiParameter.QUERY,
            required=False,
            description="UTC, `YYYY-MM-DD HH:MM:SS`: jobs created at or after it.",
        ),
        OpenApiParameter(
            "created_before",
            {"type": "string", "pattern": TIMESTAMP_PATTERN},
            OpenApiParameter.QUERY,
            required=False,
            description="UTC, `YYYY-MM-DD HH:MM:SS`: jobs created before it.",
        ),
        OpenApiParameter(
            "limit",
            {"type": "integer", "minimum": 1, "maximum": 500},
            OpenApiParameter.QUERY,
            required=False,
            description="Jobs per page: 50 by default, at most 500.",
        ),
        OpenApiParameter(
            "cursor",
            str,
            OpenApiParameter.QUERY,
            required=False,
            description="The next_cursor of the page before.",
        ),
    ],
    responses={200: JobsPageSerializer, **_errors(400, 401, 403, 429, 503)},
)
