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
from typing import Any, ClassVar

from django.contrib import admin, messages
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.admin.options import IncorrectLookupParameters
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode
from django.utils.safestring import SafeString

from accounts.admin import CappedCountPaginator, TenantListFilter
from restores import services
from restores.models import Job, NumberResult, UpstreamAttempt, WebhookDelivery
from restores.selectors import (
    EXPORT_COLUMNS,
    STATUS_PREVIEW_RESULTS,
    OverviewBucket,
    OverviewWindow,
    job_ids_with_number,
    job_status_payload_preview,
    overview,
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

    field = "status_code"
    what = "a status code"

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        if value is None:
            return queryset
        if value == "none":
            return queryset.filter(**{f"{self.field}__isnull": True})
        if not value.isdigit():
            raise IncorrectLookupParameters(f"not {self.what}: {value!r}")
        return queryset.filter(**{self.field: int(value)})


class HttpStatusFilter(StatusCodeFilter):
    title = "HTTP status"
    parameter_name = "http_status"
    CODES: tuple[int, ...] = (200, 204, 400, 401, 404, 429, 500, 502, 503, 504)
    field = "http_status"
    what = "an HTTP status"


# --- Base ------------------------------------------------------------------------------


class ReadOnlyAdmin(admin.ModelAdmin):
    """Audit records: visible to staff with view permission, never added, changed or deleted.

    Lists count at most ``CappedCountPaginator.COUNT_CAP`` rows, and sort only by indexed columns.
    """

    show_full_result_count = False
    paginator = CappedCountPaginator
    list_per_page = 50
    sortable_by: ClassVar[list[str] | tuple[str, ...] | None] = ()
    # The order while the list is filtered by tenant: newest jobs first, through the tenant's jobs
    # (index job_tenant_created), then each job's rows by their own index; empty: the usual order.
    tenant_ordering: ClassVar[list[str]] = []

    def get_ordering(self, request: HttpRequest) -> Any:
        if self.tenant_ordering and request.GET.get(ViaJobTenantFilter.parameter_name):
            return self.tenant_ordering
        return super().get_ordering(request)

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


# --- Overview charts (server-rendered SVG) ----------------------------------------------

CHART_WIDTH = 560
CHART_HEIGHT = 200
STATUS_COLORS = {
    Job.Status.PENDING: "#8c8c8c",
    Job.Status.PROCESSING: "#2f80c4",
    Job.Status.COMPLETED: "#3c9a5f",
    Job.Status.CANCELLED: "#c77c13",
}
GOOD_COLOR = "#3c9a5f"
BAD_COLOR = "#ba2121"


def _nice_ceiling(value: int) -> int:
    """The smallest of 1, 2, 2.5, 5 times a power of ten that is at least ``value``."""
    if value <= 0:
        return 1
    magnitude = 1
    while magnitude * 10 <= value:
        magnitude *= 10
    for step in (1, 2, 2.5, 5, 10):
        if step * magnitude >= value:
            return int(step * magnitude)
    return 10 * magnitude  # not reached: 10 times the magnitude is always enough


def _bucket_label(start: datetime, unit: str) -> str:
    return start.strftime("%H:00") if unit == "hour" else start.strftime("%a %d %b")


def svg_column_chart(
    buckets: Sequence[OverviewBucket], *, unit: str, good: str, bad: str, title: str
) -> SafeString:
    """Stacked columns of ``good`` (green) and ``bad`` (red) per hour or day, with a y-axis and a legend."""
    left, right, top, bottom = 48, 8, 26, 22
    plot_w, plot_h = CHART_WIDTH - left - right, CHART_HEIGHT - top - bottom
    ceiling = _nice_ceiling(max((b.good + b.bad for b in buckets), default=0))
    slot = plot_w / max(1, len(buckets))
    bar = max(2.0, slot * 0.72)
    label_every = 1 if len(buckets) <= 12 else 3

    def y(value: float) -> float:
        return top + plot_h - plot_h * value / ceiling

    parts: list[SafeString] = []
    for fraction in (0, 0.5, 1):
        value = ceiling * fraction
        parts.append(
            format_html(
                '<line class="grid" x1="{}" x2="{}" y1="{}" y2="{}"/>'
                '<text class="axis" x="{}" y="{}" text-anchor="end">{}</text>',
                left,
                CHART_WIDTH - right,
                f"{y(value):.1f}",
                f"{y(value):.1f}",
                left - 6,
                f"{y(value) + 4:.1f}",
                f"{value:,.0f}" if value == int(value) else f"{value:,.1f}",
            )
        )
    for index, bucket in enumerate(buckets):
        x = left + index * slot + (slot - bar) / 2
        label = _bucket_label(bucket.start, unit)
        tip = f"{label}: {bucket.good:,} {good}, {bucket.bad:,} {bad}"
        good_top, bad_top = y(bucket.good), y(bucket.good + bucket.bad)
        parts.append(
            format_html(
                '<g class="column"><title>{}</title>'
                '<rect x="{}" y="{}" width="{}" height="{}" fill="{}"/>'
                '<rect x="{}" y="{}" width="{}" height="{}" fill="{}"/></g>',
                tip,
                f"{x:.1f}",
                f"{good_top:.1f}",
                f"{bar:.1f}",
                f"{top + plot_h - good_top:.1f}",
                GOOD_COLOR,
                f"{x:.1f}",
                f"{bad_top:.1f}",
                f"{bar:.1f}",
                f"{good_top - bad_top:.1f}",
                BAD_COLOR,
            )
        )
        if index % label_every == 0:
            parts.append(
                format_html(
                    '<text class="axis" x="{}" y="{}" text-anchor="middle">{}</text>',
                    f"{x + bar / 2:.1f}",
                    CHART_HEIGHT - 6,
                    label.split(" ")[0] if unit == "day" else label,
                )
            )
    legend = format_html(
        '<rect x="{}" y="6" width="10" height="10" fill="{}"/><text class="legend" x="{}" y="15">{}</text>'
        '<rect x="{}" y="6" width="10" height="10" fill="{}"/><text class="legend" x="{}" y="15">{}</text>',
        left,
        GOOD_COLOR,
        left + 14,
        good,
        left + 110,
        BAD_COLOR,
        left + 124,
        bad,
    )
    return format_html(
        '<svg class="chart" viewBox="0 0 {} {}" role="img" aria-label="{}" xmlns="http://www.w3.org/2000/svg">'
        "<title>{}</title>{}{}</svg>",
        CHART_WIDTH,
        CHART_HEIGHT,
        title,
        title,
        legend,
        format_html_join("", "{}", ((part,) for part in parts)),
    )


def svg_bar_chart(rows: Sequence[tuple[str, int, int, str]], *, title: str, unit: str) -> SafeString:
    """Horizontal bars: (label, value, of which bad, colour); the bad share is drawn in red."""
    left, right, row_h = 150, 90, 26
    height = max(1, len(rows)) * row_h + 8
    plot_w = CHART_WIDTH - left - right
    ceiling = max((value for _, value, _, _ in rows), default=0) or 1
    parts: list[SafeString] = []
    for index, (label, value, bad_value, color) in enumerate(rows):
        y = 4 + index * row_h
        width = plot_w * value / ceiling
        bad_width = plot_w * bad_value / ceiling
        shown = label if len(label) <= 22 else label[:21] + "…"
        tip = f"{label}: {value:,} {unit}" + (f", {bad_value:,} failed" if bad_value else "")
        parts.append(
            format_html(
                '<g class="bar"><title>{}</title>'
                '<text class="axis" x="{}" y="{}" text-anchor="end">{}</text>'
                '<rect x="{}" y="{}" width="{}" height="{}" fill="{}"/>'
                '<rect x="{}" y="{}" width="{}" height="{}" fill="{}"/>'
                '<text class="value" x="{}" y="{}">{}</text></g>',
                tip,
                left - 8,
                y + 16,
                shown,
                left,
                y + 3,
                f"{width:.1f}",
                row_h - 8,
                color,
                f"{left + width - bad_width:.1f}",
                y + 3,
                f"{bad_width:.1f}",
                row_h - 8,
                BAD_COLOR,
                f"{left + width + 6:.1f}",
                y + 16,
                f"{value:,}",
            )
        )
    if not rows:
        parts.append(
            format_html('<text class="axis" x="{}" y="20">{}</text>', left, "nothing in this window")
        )
    return format_html(
        '<svg class="chart" viewBox="0 0 {} {}" role="img" aria-label="{}" xmlns="http://www.w3.org/2000/svg">'
        "<title>{}</title>{}</svg>",
        CHART_WIDTH,
        height,
        title,
        title,
        format_html_join("", "{}", ((part,) for part in parts)),
    )


def _percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "-"


def _jobs_url(**params: Any) -> str:
    return f"{_admin_url(Job, 'changelist')}?{urlencode(params)}"


def overview_context(window: OverviewWindow) -> dict[str, Any]:
    """The charts and figures of one window of the overview page."""
    since = window.since.isoformat(sep=" ")
    until = window.until.isoformat(sep=" ")
    in_window = {"created_at__gte": since, "created_at__lt": until}
    label = window.label.lower()
    statuses = [
        (str(Job.Status(status).label), count, 0, STATUS_COLORS[Job.Status(status)])
        for status, count in window.jobs_by_status.items()
    ]
    tenants = [(t.name, t.numbers, t.failed, GOOD_COLOR) for t in window.busiest_tenants]
    done = window.numbers_restored + window.numbers_failed
    rate = window.upstream_error_rate
    return {
        "window": window,
        "figures": [
            ("jobs", f"{window.jobs_total:,}", _jobs_url(**in_window)),
            ("numbers restored", f"{window.numbers_restored:,}", None),
            (
                "numbers failed",
                f"{window.numbers_failed:,} ({_percent(window.numbers_failed, done)})",
                _jobs_url(has_failures="yes", **in_window),
            ),
            ("upstream calls", f"{window.upstream_calls:,}", None),
            ("upstream error rate", "-" if rate is None else f"{100 * rate:.1f}%", None),
            (
                "upstream p95 latency",
                "-" if window.upstream_p95_ms is None else f"{window.upstream_p95_ms:,} ms",
                None,
            ),
            ("failed webhook deliveries", f"{window.webhook_deliveries_failed:,}", None),
            (
                "jobs with a failing webhook",
                f"{window.webhooks_failing:,}",
                _jobs_url(webhook_failing="yes", **in_window),
            ),
        ],
        "jobs_chart": svg_bar_chart(statuses, title=f"Jobs by status, {label}", unit="jobs"),
        "numbers_chart": svg_column_chart(
            window.numbers, unit=window.unit, good="restored", bad="failed", title=f"Numbers, {label}"
        ),
        "upstream_chart": svg_column_chart(
            window.attempts,
            unit=window.unit,
            good="succeeded",
            bad="errors",
            title=f"Upstream calls, {label}",
        ),
        "webhook_chart": svg_column_chart(
            window.deliveries,
            unit=window.unit,
            good="delivered",
            bad="failed",
            title=f"Webhook deliveries, {label}",
        ),
        "tenants_chart": svg_bar_chart(tenants, title=f"Busiest tenants, {label}", unit="numbers"),
    }


# --- Jobs ------------------------------------------------------------------------------


@admin.register(Job)
class JobAdmin(ReadOnlyAdmin):
    list_display = [
        "uuid",
        "tenant",
        "status",
        "progress",
        "succeeded",
        "failed",
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
    sortable_by = ["created_at"]
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

    @admin.display(description="succeeded")
    def succeeded(self, obj: Job) -> int:
        return obj.success_count

    @admin.display(description="failed")
    def failed(self, obj: Job) -> int:
        return obj.failure_count

    @admin.display(description="duration")
    def duration(self, obj: Job) -> str:
        return _duration(obj.started_at, obj.completed_at)

    @admin.display(description="webhook")
    def webhook(self, obj: Job) -> str:
        """Delivered, failing (or given up), pending, or none."""
        if obj.webhook_state == Job.WebhookState.FAILED:
            return "failing (gave up)"
        if obj.webhook_state == Job.WebhookState.NONE:
            return "not sent yet" if obj.webhook_url else "none"
        return str(obj.webhook_state)

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

    # --- Overview page ---

    def get_urls(self) -> list[URLPattern]:
        overview_url = path(
            "overview/", self.admin_site.admin_view(self.overview_view), name="restores_overview"
        )
        return [overview_url, *super().get_urls()]

    def overview_view(self, request: HttpRequest) -> HttpResponse:
        """The last 24 hours and 7 days at a glance, for everyone who may see jobs."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        context = {
            **self.admin_site.each_context(request),
            "title": "Overview",
            "subtitle": None,
            "opts": self.opts,
            "windows": [overview_context(window) for window in overview(now=timezone.now())],
        }
        return TemplateResponse(request, "admin/restores/overview.html", context)

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
        jobs = list(self._selected(queryset))
        job_ids = [job.pk for job in jobs]
        # Exports take tenants' data out of the portal: recorded like the other actions (one insert).
        user_id = request.user.pk
        assert user_id is not None  # admin views are for logged-in staff only
        LogEntry.objects.log_actions(
            user_id=user_id,
            queryset=jobs,
            action_flag=CHANGE,
            change_message="Exported its results as CSV.",
        )
        # Shown on the next page the operator opens (this response is the file).
        self.message_user(request, f"Exported the results of {len(jobs)} job(s) as CSV.")
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
    tenant_ordering = ["-job__created_at", "position"]
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
    sortable_by = ["started_at"]
    tenant_ordering = ["-job__created_at", "-started_at"]
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
    sortable_by = ["started_at"]
    tenant_ordering = ["-job__created_at", "-started_at"]
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
