from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from restores.models import Job, NumberResult, UpstreamAttempt, WebhookDelivery


class ReadOnlyAdmin(admin.ModelAdmin):
    """Audit records: visible to staff with view permission, never edited."""

    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Job)
class JobAdmin(ReadOnlyAdmin):
    list_display = [
        "uuid",
        "tenant",
        "status",
        "total_numbers",
        "success_count",
        "failure_count",
        "webhook_state",
        "created_at",
        "completed_at",
    ]
    list_filter = ["status", "webhook_state", "is_sync"]
    list_select_related = ["tenant"]
    search_fields = ["=uuid"]
    raw_id_fields = ["tenant", "credential"]
    date_hierarchy = "created_at"


@admin.register(NumberResult)
class NumberResultAdmin(ReadOnlyAdmin):
    list_display = ["number", "job", "status", "status_code", "message", "attempts", "completed_at"]
    list_filter = ["status", "requires_identity_update", "needs_registration"]
    list_select_related = ["job"]
    search_fields = ["=number"]
    raw_id_fields = ["job"]


@admin.register(UpstreamAttempt)
class UpstreamAttemptAdmin(ReadOnlyAdmin):
    list_display = [
        "result",
        "attempt_number",
        "started_at",
        "duration_ms",
        "http_status",
        "envelope_code",
        "outcome",
    ]
    list_filter = ["outcome"]
    list_select_related = ["result"]
    raw_id_fields = ["result", "job"]


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdmin):
    list_display = ["job", "attempt_number", "started_at", "http_status", "duration_ms", "delivered", "error"]
    list_filter = ["delivered"]
    list_select_related = ["job"]
    raw_id_fields = ["job"]
