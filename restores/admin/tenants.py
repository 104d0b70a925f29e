"""The tenant list with each tenant's recent activity: jobs, failure rate, last API use.

``accounts`` knows nothing of restores, so its tenant admin lists tenants alone; this one
extends it with the activity columns (one annotated query) and is registered in its place.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.safestring import SafeString

from accounts.admin import TenantAdmin
from accounts.models import Tenant
from restores.admin.breakers import breaker_history, breaker_summary
from restores.models import UpstreamBreaker
from restores.selectors import tenants_with_activity

# Jobs, failure rate and so on in the tenant list look back this far.
ACTIVITY_WINDOW = timedelta(days=7)


class TenantActivityAdmin(TenantAdmin):
    list_display = [
        "name",
        "is_active",
        "jobs_last_7_days",
        "failure_rate_last_7_days",
        "last_api_use",
        "breaker_state",
        "max_concurrency",
        "created_at",
    ]
    readonly_fields = [*TenantAdmin.readonly_fields, "breaker_state", "breaker_changes"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Tenant]:
        qs = super().get_queryset(request).select_related("upstream_breaker")
        return tenants_with_activity(queryset=qs, since=timezone.now() - ACTIVITY_WINDOW)

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        fieldsets = list(super().get_fieldsets(request, obj))
        if obj is not None:
            fieldsets.insert(1, ("Upstream", {"fields": ["breaker_state", "breaker_changes"]}))
        return fieldsets

    @admin.display(description="upstream breaker")
    def breaker_state(self, obj: Tenant) -> str:
        try:
            breaker = obj.upstream_breaker
        except UpstreamBreaker.DoesNotExist:
            breaker = None
        return breaker_summary(breaker)

    @admin.display(description="upstream breaker history (latest 20)")
    def breaker_changes(self, obj: Tenant) -> SafeString:
        return breaker_history(obj.pk)

    @admin.display(description="jobs (7 days)", ordering="jobs_recent")
    def jobs_last_7_days(self, obj: Any) -> int:
        return int(obj.jobs_recent)

    @admin.display(description="failure rate (7 days)")
    def failure_rate_last_7_days(self, obj: Any) -> str:
        done = obj.numbers_succeeded_recent + obj.numbers_failed_recent
        if not done:
            return "-"
        return f"{100 * obj.numbers_failed_recent / done:.1f}% of {done:,} numbers"

    @admin.display(description="last API use", ordering="last_api_use")
    def last_api_use(self, obj: Any) -> Any:
        return obj.last_api_use or "-"


# Importing accounts.admin above registered its TenantAdmin: this one takes its place.
admin.site.unregister(Tenant)
admin.site.register(Tenant, TenantActivityAdmin)
