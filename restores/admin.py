"""Staff admin for jobs and their audit trail: numbers, upstream attempts, webhook deliveries.

Everything here is read-only. Operators (``restores.operate_job``) may run the job
actions, each of which calls a service in ``restores.services`` and is recorded in
the admin log. The tables are big (millions of rows), so every list:

- counts nothing beyond the page (``show_full_result_count = False``);
- joins what it shows in the same query (``get_queryset``/``list_select_related``)
  and never decrypts a tenant's secrets;
- filters with small, query-free filters (or one small query on tenants) instead
  of filters that read distinct values of a big table;
- searches numbers and UUIDs by exact, indexed lookups.
"""

from __future__ import annotations

import csv
import json
import uuid
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.options import IncorrectLookupParameters
from django.db.models import QuerySet
from django.http import HttpRequest, StreamingHttpResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString

from accounts.admin import TenantListFilter
from restores import services
from restores.models import Job, NumberResult, UpstreamAttempt, WebhookDelivery
from restores.selectors import (
    EXPORT_COLUMNS,
    STATUS_PREVIEW_RESULTS,
    job_ids_with_number,
    job_status_payload_preview,
    results_export_rows,
)

TENANT_SECRETS = ("multitel_password", "webhook_secret")
# Job ids per export query (keeps each IN list small on every database).
EXPORT_JOB_CHUNK = 500
# Bytes of CSV gathered before a chunk is sent.
EXPORT_FLUSH_BYTES = 64 * 1024
MESSAGE_PREVIEW_CHARS = 80


def _digits(term: str) -> str | None:
    """A phone number as typed in the search box (digits only, 7 to 15), else None."""
    term = term.strip()
    return term if term.isdigit() and 7 <= len(term) <= 15 else None


def _uuid(term: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(term.strip())
    except ValueError:
        return None


def _admin_url(model: type[Any], view: str, *args: Any) -> str:
    return reverse(f"admin:restores_{model._meta.model_name}_{view}", args=args)


def _changelist_link(model: type[Any], label: str, **params: Any) -> SafeString:
    query = "&".join(f"{key}={value}" for key, value in params.items())
    return format_html('<a href="{}?{}">{}</a>', _admin_url(model, "changelist"), query, label)


def _duration(start: datetime | None, end: datetime | None) -> str:
    if start is None:
        return "-"
    seconds = int(((end or timezone.now()) - start).total_seconds())
    text = str(timedelta(seconds=max(0, seconds)))
    return text if end else f"{text} (running)"


# --- Filters ---------------------------------------------------------------------------


class _ChoicesFilter(admin.SimpleListFilter):
    """A yes/no filter that costs no query."""

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "yes"), ("no", "no")]


class HasFailuresFilter(_ChoicesFilter):
    title = "has failures"
    parameter_name = "has_failures"

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == "yes":
            return queryset.filter(failure_count__gt=0)
        if self.value() == "no":
            return queryset.filter(failure_count=0)
        return queryset


WEBHOOK_FAILING_STATES = (Job.WebhookState.FAILING, Job.WebhookState.FAILED)


class WebhookFailingFilter(_ChoicesFilter):
    title = "webhook failing"
    parameter_name = "webhook_failing"

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == "yes":
            return queryset.filter(webhook_state__in=WEBHOOK_FAILING_STATES)
        if self.value() == "no":
            return queryset.exclude(webhook_state__in=WEBHOOK_FAILING_STATES)
        return queryset


class JobTenantFilter(TenantListFilter):
    parameter_name = "tenant"
    field = "tenant_id"


class ViaJobTenantFilter(TenantListFilter):
    parameter_name = "tenant"
    field = "job__tenant_id"


class SelectedJobFilter(admin.SimpleListFilter):
    """``?job__id__exact=<id>`` (the job page's links): shows which job, and a way back to all.

    It lists only the selected job, never the big table of jobs.
    """

    title = "job"
    parameter_name = "job__id__exact"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[Any, str]]:
        value = self.value()
        if value is None or not str(value).isdigit():
            return []
        job = Job.objects.filter(pk=int(value)).values_list("uuid", flat=True).first()
        return [(value, str(job))] if job else []

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        if value is None:
            return queryset
        if not str(value).isdigit():
            raise IncorrectLookupParameters(f"not a job id: {value!r}")
        return queryset.filter(job_id=int(value))


class SelectedResultFilter(SelectedJobFilter):
    """``?result__id__exact=<id>`` (a number's attempts)."""

    title = "number"
    parameter_name = "result__id__exact"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[Any, str]]:
        value = self.value()
        if value is None or not str(value).isdigit():
            return []
        number = NumberResult.objects.filter(pk=int(value)).values_list("number", flat=True).first()
        return [(value, number)] if number else []

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        if value is None:
            return queryset
        if not str(value).isdigit():
            raise IncorrectLookupParameters(f"not a result id: {value!r}")
        return queryset.filter(result_id=int(value))


class StatusCodeFilter(admin.SimpleListFilter):
    """The codes the portal records; any other code works as ``?status_code=<n>``."""

    title = "status code"
    parameter_name = "status_code"
    CODES: tuple[int, ...] = (200, 401, 404, 429, 500, 502, 503, 504)

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        choices = [(str(code), str(code)) for code in self.CODES]
        value = self.value()
        if value and value.isdigit() and int(value) not in self.CODES:
            choices.append((value, value))
        return [*choices, ("none", "none yet")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        if value is None:
            return queryset
        if value == "none":
            return queryset.filter(status_code__isnull=True)
        if not value.isdigit():
            raise IncorrectLookupParameters(f"not a status code: {value!r}")
        return queryset.filter(status_code=int(value))


class HttpStatusFilter(StatusCodeFilter):
    title = "HTTP status"
    parameter_name = "http_status"
    CODES: tuple[int, ...] = (200, 204, 400, 401, 404, 429, 500, 502, 503, 504)

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        if value is None:
            return queryset
        if value == "none":
            return queryset.filter(http_status__isnull=True)
        if not value.isdigit():
            raise IncorrectLookupParameters(f"not an HTTP status: {value!r}")
        return queryset.filter(http_status=int(value))


# --- Base ------------------------------------------------------------------------------


class ReadOnlyAdmin(admin.ModelAdmin):
    """Audit records: visible to staff with view permission, never added, changed or deleted."""

    show_full_result_count = False
    list_per_page = 50

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class _EchoBuffer:
    """csv.writer writes into this and gets the line back, to be streamed."""

    def write(self, value: str) -> str:
        return value


CSV_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def _csv_safe(value: Any) -> Any:
    """Text cells that a spreadsheet would run as a formula are quoted with a leading '."""
    if isinstance(value, str) and value.startswith(CSV_FORMULA_PREFIXES):
        return "'" + value
    return value


def _csv_stream(job_ids: Sequence[int]) -> Iterator[str]:
    """The CSV of the jobs' results, in chunks of about 64 KB (flat memory, rows streamed)."""
    writer = csv.writer(_EchoBuffer())
    buffer = [writer.writerow(EXPORT_COLUMNS)]
    size = 0
    for start in range(0, len(job_ids), EXPORT_JOB_CHUNK):
        for row in results_export_rows(job_ids=job_ids[start : start + EXPORT_JOB_CHUNK]):
            line = writer.writerow([_csv_safe(value) for value in row])
            buffer.append(line)
            size += len(line)
            if size >= EXPORT_FLUSH_BYTES:
                yield "".join(buffer)
                buffer, size = [], 0
    if buffer:
        yield "".join(buffer)


# --- Jobs ------------------------------------------------------------------------------


@admin.register(Job)
class JobAdmin(ReadOnlyAdmin):
    list_display = [
        "uuid",
        "tenant",
        "status",
        "progress",
        "success_count",
        "failure_count",
        "created_at",
        "duration",
        "webhook",
    ]
    list_filter = [
        "status",
        JobTenantFilter,
        ("created_at", admin.DateFieldListFilter),
        HasFailuresFilter,
        WebhookFailingFilter,
    ]
    list_select_related = ["tenant"]
    search_fields = ["=uuid"]  # the search box; get_search_results does the work
    search_help_text = "A job UUID, or a phone number (digits only, exact): every job that contains it."
    actions = ["retry_failed", "resend_webhook", "cancel", "export_results_csv"]
    fieldsets = [
        (
            "Summary",
            {
                "fields": [
                    "uuid",
                    "tenant",
                    "credential_username",
                    "status",
                    "is_sync",
                    "progress",
                    "total_numbers",
                    "success_count",
                    "failure_count",
                    "created_at",
                    "started_at",
                    "completed_at",
                    "duration",
                    "heartbeat_at",
                ]
            },
        ),
        (
            "Webhook",
            {
                "fields": [
                    "webhook_url",
                    "webhook_state",
                    "webhook_error",
                    "webhook_attempts",
                    "webhook_next_attempt_at",
                    "webhook_id",
                ]
            },
        ),
        ("Records", {"fields": ["records"]}),
        ("Status endpoint", {"fields": ["status_payload"]}),
    ]
    readonly_fields = ["credential_username", "progress", "duration", "records", "status_payload"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Job]:
        return (
            super()
            .get_queryset(request)
            .select_related("tenant", "credential")
            .defer(
                *(f"tenant__{f}" for f in TENANT_SECRETS),
                "credential__secret_salt",
                "credential__secret_hash",
            )
        )

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Job], search_term: str
    ) -> tuple[QuerySet[Job], bool]:
        """A UUID finds its job; a number finds every job that contains it (indexed subquery)."""
        term = search_term.strip()
        if not term:
            return queryset, False
        if number := _digits(term):
            return queryset.filter(pk__in=job_ids_with_number(number=number)), False
        if job_uuid := _uuid(term):
            return queryset.filter(uuid=job_uuid), False
        return queryset.none(), False

    # --- Columns ---

    @admin.display(description="progress")
    def progress(self, obj: Job) -> SafeString:
        done, total = obj.done_count, obj.total_numbers
        percent = 100 * done // total if total else 100
        failed = 100 * obj.failure_count // total if total else 0
        return format_html(
            '<span class="job-progress" title="{} of {} numbers done, {} failed">'
            '<span class="job-progress-bar"><span class="job-progress-done" style="width: {}%"></span>'
            '<span class="job-progress-failed" style="width: {}%"></span></span> {}/{}</span>',
            done,
            total,
            obj.failure_count,
            percent - failed,
            failed,
            done,
            total,
        )

    @admin.display(description="duration")
    def duration(self, obj: Job) -> str:
        return _duration(obj.started_at, obj.completed_at)

    @admin.display(description="webhook", ordering="webhook_state")
    def webhook(self, obj: Job) -> str:
        if obj.webhook_state in WEBHOOK_FAILING_STATES:
            return f"failing ({obj.get_webhook_state_display()})"
        if obj.webhook_state == Job.WebhookState.NONE and obj.webhook_url:
            return "not sent yet"
        return str(obj.get_webhook_state_display())

    # --- Page ---

    @admin.display(description="API credential")
    def credential_username(self, obj: Job) -> str:
        return obj.credential.username if obj.credential else "-"

    @admin.display(description="records")
    def records(self, obj: Job) -> SafeString:
        return format_html(
            "{} &middot; {} &middot; {}",
            _changelist_link(NumberResult, f"{obj.total_numbers} numbers", job__id__exact=obj.pk),
            _changelist_link(UpstreamAttempt, "upstream attempts", job__id__exact=obj.pk),
            _changelist_link(WebhookDelivery, "webhook deliveries", job__id__exact=obj.pk),
        )

    @admin.display(description="GET /v3/bulk_restore_status")
    def status_payload(self, obj: Job) -> SafeString:
        payload, truncated = job_status_payload_preview(job=obj, limit=STATUS_PREVIEW_RESULTS)
        note = ""
        if truncated:
            note = format_html(
                "<p>This job has {} numbers: shown are the summary and the first {} results. "
                "See {} for the rest.</p>",
                obj.total_numbers,
                STATUS_PREVIEW_RESULTS,
                _changelist_link(NumberResult, "all its numbers", job__id__exact=obj.pk),
            )
        return format_html('{}<pre class="job-status-payload">{}</pre>', note, json.dumps(payload, indent=2))

    # --- Actions (operators) ---

    def has_operate_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("restores.operate_job")

    @staticmethod
    def _selected(queryset: QuerySet[Job]) -> QuerySet[Job]:
        return queryset.select_related(None).only("pk", "uuid").order_by("pk")

    @admin.action(description="Retry the failed numbers of selected jobs", permissions=["operate"])
    def retry_failed(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        jobs = numbers = 0
        for job in self._selected(queryset):
            retried = services.job_retry_failed(job_id=job.pk)
            if retried:
                jobs += 1
                numbers += retried
                self.log_change(request, job, f"Retried {retried} failed numbers.")
        if jobs:
            self.message_user(request, f"Put {numbers} failed numbers of {jobs} job(s) back in the queue.")
        else:
            self.message_user(request, "No failed numbers to retry in the selected jobs.", messages.WARNING)

    @admin.action(description="Resend the webhook of selected jobs", permissions=["operate"])
    def resend_webhook(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        resent = skipped = 0
        for job in self._selected(queryset):
            if services.job_webhook_resend(job_id=job.pk):
                resent += 1
                self.log_change(request, job, "Resent the webhook.")
            else:
                skipped += 1
        level = messages.SUCCESS if resent else messages.WARNING
        text = f"Webhook resend queued for {resent} job(s)."
        if skipped:
            text += f" {skipped} skipped: no webhook URL, or not finished."
        self.message_user(request, text, level)

    @admin.action(description="Cancel selected jobs", permissions=["operate"])
    def cancel(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        cancelled = untried = 0
        for job in self._selected(queryset.filter(status__in=Job.ACTIVE_STATUSES)):
            failed = services.job_cancel(job_id=job.pk)
            if Job.objects.filter(pk=job.pk, status=Job.Status.CANCELLED).exists():
                cancelled += 1
                untried += failed
                self.log_change(request, job, f"Cancelled; {failed} numbers not tried.")
        if cancelled:
            self.message_user(request, f"Cancelled {cancelled} job(s); {untried} numbers were not tried.")
        else:
            self.message_user(
                request, "None of the selected jobs was pending or processing.", messages.WARNING
            )

    @admin.action(description="Export selected jobs' results as CSV", permissions=["operate"])
    def export_results_csv(self, request: HttpRequest, queryset: QuerySet[Job]) -> StreamingHttpResponse:
        job_ids = list(self._selected(queryset).values_list("pk", flat=True))
        response = StreamingHttpResponse(_csv_stream(job_ids), content_type="text/csv; charset=utf-8")
        stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
        response["Content-Disposition"] = f'attachment; filename="restore-results-{stamp}.csv"'
        response["Cache-Control"] = "no-store"
        return response


# --- Numbers ---------------------------------------------------------------------------


@admin.register(NumberResult)
class NumberResultAdmin(ReadOnlyAdmin):
    list_display = [
        "number",
        "job_link",
        "tenant",
        "status",
        "status_code",
        "short_message",
        "attempts",
        "flags",
    ]
    list_filter = [
        "status",
        StatusCodeFilter,
        "requires_identity_update",
        "needs_registration",
        ViaJobTenantFilter,
        SelectedJobFilter,
    ]
    list_select_related = ["job__tenant"]
    search_fields = ["=number"]
    search_help_text = "A phone number (digits only, exact)."
    # Newest jobs first, each job's numbers in submission order (index result_job_position).
    ordering = ["-job_id", "position"]
    fields = [
        "number",
        "job_link",
        "tenant",
        "position",
        "status",
        "status_code",
        "message",
        "attempts",
        "requires_identity_update",
        "needs_registration",
        "started_at",
        "completed_at",
        "claimed_by",
        "lease_expires_at",
        "attempts_link",
    ]
    readonly_fields = ["job_link", "tenant", "attempts_link"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[NumberResult]:
        return (
            super()
            .get_queryset(request)
            .select_related("job__tenant")
            .defer(*(f"job__tenant__{f}" for f in TENANT_SECRETS))
        )

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[NumberResult], search_term: str
    ) -> tuple[QuerySet[NumberResult], bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        number = _digits(term)
        return (queryset.filter(number=number) if number else queryset.none()), False

    @admin.display(description="job", ordering="job_id")
    def job_link(self, obj: NumberResult) -> SafeString:
        return format_html('<a href="{}">{}</a>', _admin_url(Job, "change", obj.job_id), obj.job.uuid)

    @admin.display(description="tenant")
    def tenant(self, obj: NumberResult) -> str:
        return obj.job.tenant.name

    @admin.display(description="message")
    def short_message(self, obj: NumberResult) -> str:
        message = obj.message or ""
        if len(message) > MESSAGE_PREVIEW_CHARS:
            return message[: MESSAGE_PREVIEW_CHARS - 1] + "…"
        return message

    @admin.display(description="flags")
    def flags(self, obj: NumberResult) -> str:
        flags = []
        if obj.requires_identity_update:
            flags.append("identity update")
        if obj.needs_registration:
            flags.append("registration")
        return ", ".join(flags) or "-"

    @admin.display(description="upstream attempts")
    def attempts_link(self, obj: NumberResult) -> SafeString:
        return _changelist_link(UpstreamAttempt, "upstream attempts of this number", result__id__exact=obj.pk)


# --- Upstream attempts -----------------------------------------------------------------


@admin.register(UpstreamAttempt)
class UpstreamAttemptAdmin(ReadOnlyAdmin):
    list_display = [
        "number",
        "attempt_number",
        "started_at",
        "duration_ms",
        "http_status",
        "envelope_code",
        "outcome",
        "error",
    ]
    list_filter = [
        "outcome",
        HttpStatusFilter,
        ("started_at", admin.DateFieldListFilter),
        ViaJobTenantFilter,
        SelectedJobFilter,
        SelectedResultFilter,
    ]
    list_select_related = ["result"]
    search_fields = ["=result__number"]
    search_help_text = "A phone number (digits only, exact)."
    fields = [
        "number",
        "job_link",
        "attempt_number",
        "started_at",
        "duration_ms",
        "http_status",
        "envelope_code",
        "outcome",
        "error",
        "body",
    ]
    readonly_fields = ["number", "job_link", "body"]

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[UpstreamAttempt], search_term: str
    ) -> tuple[QuerySet[UpstreamAttempt], bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        number = _digits(term)
        if number is None:
            return queryset.none(), False
        results = NumberResult.objects.filter(number=number).values("pk")
        return queryset.filter(result_id__in=results), False

    @admin.display(description="number", ordering="result__number")
    def number(self, obj: UpstreamAttempt) -> SafeString:
        return format_html(
            '<a href="{}">{}</a>', _admin_url(NumberResult, "change", obj.result_id), obj.result.number
        )

    @admin.display(description="job")
    def job_link(self, obj: UpstreamAttempt) -> SafeString:
        return format_html('<a href="{}">{}</a>', _admin_url(Job, "change", obj.job_id), obj.job.uuid)

    @admin.display(description="body (first 2 KB, credentials redacted)")
    def body(self, obj: UpstreamAttempt) -> SafeString:
        return format_html("<pre>{}</pre>", obj.body_excerpt or "(empty)")


# --- Webhook deliveries ----------------------------------------------------------------


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdmin):
    list_display = [
        "job_link",
        "attempt_number",
        "started_at",
        "http_status",
        "duration_ms",
        "delivered",
        "error",
    ]
    list_filter = [
        "delivered",
        HttpStatusFilter,
        ("started_at", admin.DateFieldListFilter),
        ViaJobTenantFilter,
        SelectedJobFilter,
    ]
    list_select_related = ["job"]
    search_fields = ["=job__uuid"]
    search_help_text = "A job UUID."
    fields = [
        "job_link",
        "attempt_number",
        "webhook_id",
        "url",
        "started_at",
        "duration_ms",
        "http_status",
        "delivered",
        "error",
        "response",
    ]
    readonly_fields = ["job_link", "response"]

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[WebhookDelivery], search_term: str
    ) -> tuple[QuerySet[WebhookDelivery], bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        job_uuid = _uuid(term)
        if job_uuid is None:
            return queryset.none(), False
        return queryset.filter(job_id__in=Job.objects.filter(uuid=job_uuid).values("pk")), False

    @admin.display(description="job", ordering="job_id")
    def job_link(self, obj: WebhookDelivery) -> SafeString:
        return format_html('<a href="{}">{}</a>', _admin_url(Job, "change", obj.job_id), obj.job.uuid)

    @admin.display(description="response (excerpt)")
    def response(self, obj: WebhookDelivery) -> SafeString:
        return format_html("<pre>{}</pre>", obj.response_excerpt or "(empty)")
