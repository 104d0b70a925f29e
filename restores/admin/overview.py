"""The overview page (``admin:restores_overview``): the last 24 hours and 7 days at a glance."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.http import urlencode

from accounts.models import Tenant
from portal.admin_utils import admin_url
from restores.admin.breakers import breaker_summary
from restores.admin.charts import GOOD_COLOR, STATUS_COLORS, svg_bar_chart, svg_column_chart
from restores.models import Job
from restores.selectors import OverviewWindow, breakers_not_closed, overview


def overview_page(request: HttpRequest, *, model_admin: admin.ModelAdmin[Job]) -> HttpResponse:
    """The page, for everyone who may see jobs (its URL is one of the jobs' admin URLs)."""
    if not model_admin.has_view_permission(request):
        raise PermissionDenied
    context = {
        **model_admin.admin_site.each_context(request),
        "title": "Overview",
        "subtitle": None,
        "opts": model_admin.opts,
        "windows": [overview_context(window) for window in overview(now=timezone.now())],
        "breakers": [
            (breaker.tenant.name, admin_url(Tenant, "change", breaker.tenant_id), breaker_summary(breaker))
            for breaker in breakers_not_closed()
        ],
    }
    return TemplateResponse(request, "admin/restores/overview.html", context)


def _percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "-"


def _jobs_url(**params: Any) -> str:
    return f"{admin_url(Job, 'changelist')}?{urlencode(params)}"


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
        **{
            f"{key}_chart": svg_column_chart(
                buckets, unit=window.unit, good=good, bad=bad, title=f"{title}, {label}"
            )
            for key, buckets, good, bad, title in (
                ("numbers", window.numbers, "restored", "failed", "Numbers"),
                ("upstream", window.attempts, "succeeded", "errors", "Upstream calls"),
                ("webhook", window.deliveries, "delivered", "failed", "Webhook deliveries"),
            )
        },
        "tenants_chart": svg_bar_chart(tenants, title=f"Busiest tenants, {label}", unit="numbers"),
    }
