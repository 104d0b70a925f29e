"""Jobs: their list and page, the overview page's URL, and the operators' actions (each calls a service)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from django.contrib import admin, messages
from django.contrib.admin.models import CHANGE, LogEntry
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.urls import URLPattern, path
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString

from restores import services
from restores.admin.base import TENANT_SECRETS, AuditAdmin, changelist_link, search_number, search_uuid
from restores.admin.export import results_csv_response
from restores.admin.filters import HasFailuresFilter, JobTenantFilter, WebhookFailingFilter
from restores.admin.overview import overview_page
from restores.models import Job, NumberResult, UpstreamAttempt, WebhookDelivery
from restores.querysets import JobQuerySet
from restores.selectors import STATUS_PREVIEW_RESULTS, job_ids_with_number, job_status_payload_preview


def _duration(start: datetime | None, end: datetime | None) -> str:
    if start is None:
        return "-"
    seconds = int(((end or timezone.now()) - start).total_seconds())
    text = str(timedelta(seconds=max(0, seconds)))
    return text if end else f"{text} (running)"


@admin.register(Job)
class JobAdmin(AuditAdmin):
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

    def search_condition(self, term: str) -> Q | None:
        """A UUID finds its job; a number finds every job that contains it (indexed subquery)."""
        if number := search_number(term):
            return Q(pk__in=job_ids_with_number(number=number))
        if job_uuid := search_uuid(term):
            return Q(uuid=job_uuid)
        return None

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
            changelist_link(NumberResult, f"{obj.total_numbers} numbers", job__id__exact=obj.pk),
            changelist_link(UpstreamAttempt, "upstream attempts", job__id__exact=obj.pk),
            changelist_link(WebhookDelivery, "webhook deliveries", job__id__exact=obj.pk),
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
                changelist_link(NumberResult, "all its numbers", job__id__exact=obj.pk),
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
        return overview_page(request, model_admin=self)

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
    def cancel(self, request: HttpRequest, queryset: JobQuerySet) -> None:
        cancelled = untried = 0
        for job in self._selected(queryset.active()):
            result = services.job_cancel(job_id=job.pk)
            if result.cancelled:
                cancelled += 1
                untried += result.not_tried
                self.log_change(request, job, f"Cancelled; {result.not_tried} numbers not tried.")
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
        return results_csv_response(job_ids)
