"""The upstream breakers: every change of state, read-only, and how the tenant pages show them."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from accounts.models import Tenant
from portal.admin_utils import admin_url, link
from restores.admin.base import AuditAdmin
from restores.models import BreakerEvent, UpstreamBreaker


def breaker_summary(breaker: UpstreamBreaker | None) -> str:
    """One line on a tenant's breaker, for the tenant list, its page and the overview."""
    if breaker is None or breaker.state == UpstreamBreaker.State.CLOSED:
        return "closed"
    since = f"{breaker.outage_started_at:%Y-%m-%d %H:%M:%S} UTC" if breaker.outage_started_at else "?"
    text = f"{UpstreamBreaker.State(breaker.state).label}: outage since {since}"
    if breaker.state == UpstreamBreaker.State.OPEN and breaker.retry_at:
        text += f", next probe at {breaker.retry_at:%H:%M:%S}"
    if breaker.last_error:
        text += f" (last error: {breaker.last_error})"
    return text


@admin.register(BreakerEvent)
class BreakerEventAdmin(AuditAdmin):
    list_display = ["at", "tenant_link", "state", "reason", "worker"]
    list_filter = ["state"]
    list_select_related = ["tenant"]
    fields = ["at", "tenant", "state", "reason", "worker"]
    ordering = ["-at", "-id"]

    @admin.display(description="tenant", ordering="tenant_id")
    def tenant_link(self, obj: BreakerEvent) -> Any:
        return link(admin_url(Tenant, "change", obj.tenant_id), obj.tenant.name)


def breaker_history(tenant_id: int, *, limit: int = 20) -> SafeString:
    """The latest changes of the tenant's breaker as a small table, for the tenant's page."""
    events = BreakerEvent.objects.filter(tenant_id=tenant_id).order_by("-at", "-id")[:limit]
    rows = format_html_join(
        "",
        "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
        ((f"{e.at:%Y-%m-%d %H:%M:%S}", e.state, e.reason, e.worker) for e in events),
    )
    if not rows:
        return format_html("{}", "never opened")
    return format_html(
        "<table><thead><tr><th>at (UTC)</th><th>state</th><th>reason</th><th>worker</th></tr></thead>"
        "<tbody>{}</tbody></table>",
        rows,
    )
