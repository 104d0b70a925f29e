"""The audit trail of jobs, read-only: numbers, upstream attempts, webhook deliveries."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.utils.safestring import SafeString

from portal.admin_utils import admin_url, link
from restores.admin.base import (
    TENANT_SECRETS,
    JobRowAdmin,
    changelist_link,
    preformatted,
    search_number,
    search_uuid,
)
from restores.admin.filters import (
    HttpStatusFilter,
    SelectedJobFilter,
    SelectedResultFilter,
    StatusCodeFilter,
    ViaJobTenantFilter,
)
from restores.models import Job, NumberResult, UpstreamAttempt, WebhookDelivery

MESSAGE_PREVIEW_CHARS = 80


# --- Numbers ---------------------------------------------------------------------------


@admin.register(NumberResult)
class NumberResultAdmin(JobRowAdmin):
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

    def search_condition(self, term: str) -> Q | None:
        number = search_number(term)
        return Q(number=number) if number else None

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
        return changelist_link(UpstreamAttempt, "upstream attempts of this number", result__id__exact=obj.pk)


# What the lists of outbound calls (upstream attempts, webhook deliveries) filter and sort by.
CALL_FILTERS: list[Any] = [
    HttpStatusFilter,
    ("started_at", admin.DateFieldListFilter),
    ViaJobTenantFilter,
    SelectedJobFilter,
]
CALL_ORDERING = ["-job__created_at", "-started_at"]
# What the attempt list and page show of each attempt, besides its number and job.
ATTEMPT_FIELDS = [
    "attempt_number",
    "started_at",
    "duration_ms",
    "http_status",
    "envelope_code",
    "outcome",
    "error",
]


# --- Upstream attempts -----------------------------------------------------------------


@admin.register(UpstreamAttempt)
class UpstreamAttemptAdmin(JobRowAdmin):
    list_display = ["number", *ATTEMPT_FIELDS]
    list_filter = ["outcome", *CALL_FILTERS, SelectedResultFilter]
    list_select_related = ["result"]
    sortable_by = ["started_at"]
    tenant_ordering = CALL_ORDERING
    search_fields = ["=result__number"]
    search_help_text = "A phone number (digits only, exact)."
    fields = ["number", "job_link", *ATTEMPT_FIELDS, "body"]
    readonly_fields = ["number", "job_link", "body"]

    def search_condition(self, term: str) -> Q | None:
        number = search_number(term)
        return Q(result_id__in=NumberResult.objects.filter(number=number).values("pk")) if number else None

    @admin.display(description="number", ordering="result__number")
    def number(self, obj: UpstreamAttempt) -> SafeString:
        return link(admin_url(NumberResult, "change", obj.result_id), obj.result.number)

    @admin.display(description="body (first 2 KB, credentials redacted)")
    def body(self, obj: UpstreamAttempt) -> SafeString:
        return preformatted(obj.body_excerpt)


# --- Webhook deliveries ----------------------------------------------------------------


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(JobRowAdmin):
    list_display = [
        "job_link",
        "attempt_number",
        "started_at",
        "http_status",
        "duration_ms",
        "delivered",
        "error",
    ]
    list_filter = ["delivered", *CALL_FILTERS]
    list_select_related = ["job"]
    sortable_by = ["started_at"]
    tenant_ordering = CALL_ORDERING
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

    def search_condition(self, term: str) -> Q | None:
        job_uuid = search_uuid(term)
        return Q(job_id__in=Job.objects.filter(uuid=job_uuid).values("pk")) if job_uuid else None

    @admin.display(description="response (excerpt)")
    def response(self, obj: WebhookDelivery) -> SafeString:
        return preformatted(obj.response_excerpt)
