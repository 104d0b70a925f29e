"""Prometheus metrics at ``/metrics``, computed from the database at scrape time.

Why from the database: web and worker processes run on many hosts and are
restarted at will; counters kept in each process would be lost with it and
would have to be summed across hosts. The database already holds the truth
for all of them (every job, number, upstream attempt and webhook delivery is
stored), so a scrape reads it.

Why windows: the audit tables only grow, so no scrape counts them whole.
Every family is one aggregate query (a scrape makes a fixed number of
queries, however many rows there are), each bounded by an index:

- activity families (``portal_jobs``, ``portal_numbers``,
  ``portal_webhook_deliveries``, ``portal_webhooks_failed``) cover the last
  24 hours (``RECENT``), a range scan of the ``created_at`` / ``started_at``
  indexes;
- upstream families cover the last 15 minutes (``UPSTREAM_WINDOW``), a range
  scan of the ``started_at`` index of the attempts;
- state families (active jobs, remaining and in-flight numbers, outstanding
  webhooks) read only live work, through the partial indexes on active jobs,
  leased numbers and due webhooks, which stay small however old the database.

So these are gauges over a sliding window, not ever-growing counters: graph
them as they are (``portal_numbers{outcome="failed"}`` is "numbers failed in
the last 24 hours") rather than through ``rate()``. The latency histogram is
the histogram of the last 15 minutes: take quantiles of its buckets directly,
``histogram_quantile(0.95, portal_upstream_latency_seconds_bucket)``.

Access: a client address in ``METRICS_ALLOWED_IPS`` (only for requests that
came straight to the portal, without a proxy's forwarding header: behind a
reverse proxy every client would seem to come from the proxy's address), or
``Authorization: Bearer <METRICS_TOKEN>``. Anyone else gets 403 in the API's
error shape.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import time
from collections import defaultdict
from collections.abc import Iterator
from datetime import datetime, timedelta
from functools import lru_cache

from django.conf import settings
from django.db.models import Count, F, Q, Sum
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.registry import Collector

from portal.api_errors import error_body
from restores.models import Job, NumberResult, UpstreamAttempt, WebhookDelivery

logger = logging.getLogger(__name__)

LATENCY_BUCKETS_MS = (50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000)
RECENT = timedelta(hours=24)
UPSTREAM_WINDOW = timedelta(minutes=15)
# Headers a reverse proxy adds: a request with one did not come straight from its client.
FORWARDING_HEADERS = ("HTTP_X_FORWARDED_FOR", "HTTP_FORWARDED", "HTTP_X_REAL_IP")


def _gauge(name: str, documentation: str, labels: list[str] | None = None) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, labels=labels or [])


class PortalCollector(Collector):
    """Every family of ``/metrics``; a fixed number of bounded queries per scrape."""

    def __init__(self, now: datetime | None = None) -> None:
        self.now = now

    def collect(self) -> Iterator[Metric]:
        started = time.monotonic()
        now = self.now or timezone.now()
        yield from self._recent_jobs(now - RECENT)
        yield from self._live_work(now)
        yield from self._upstream(now - UPSTREAM_WINDOW)
        yield from self._webhooks(now - RECENT)
        duration = _gauge("portal_metrics_scrape_duration_seconds", "Time this scrape took to compute.")
        duration.add_metric([], time.monotonic() - started)
        yield duration

    def _recent_jobs(self, since: datetime) -> Iterator[Metric]:
        jobs = _gauge(
            "portal_jobs", "Jobs created in the last 24 hours, by tenant and status.", ["tenant", "status"]
        )
        numbers = _gauge(
            "portal_numbers",
            "Numbers restored or failed, in jobs created in the last 24 hours, by tenant.",
            ["tenant", "outcome"],
        )
        failed_hooks = _gauge(
            "portal_webhooks_failed",
            "Jobs created in the last 24 hours whose webhook failed for good (retries exhausted).",
            ["tenant"],
        )
        rows = (
            Job.objects.filter(created_at__gte=since)
            .values_list("tenant__name", "status")
            .annotate(
                n=Count("id"),
                ok=Sum("success_count"),
                failed=Sum("failure_count"),
                hooks_failed=Count("id", filter=Q(webhook_state=Job.WebhookState.FAILED)),
            )
            .order_by()
        )
        by_tenant: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for tenant, status, n, ok, failed, hooks_failed in rows:
            totals = by_tenant[tenant]
            totals[status] += n
            totals["restored"] += ok or 0
            totals["failed_numbers"] += failed or 0
            totals["hooks_failed"] += hooks_failed
        for tenant, totals in sorted(by_tenant.items()):
            for status in Job.Status.values:
                jobs.add_metric([tenant, status], totals[status])
            numbers.add_metric([tenant, "restored"], totals["restored"])
            numbers.add_metric([tenant, "failed"], totals["failed_numbers"])
            failed_hooks.add_metric([tenant], totals["hooks_failed"])
        yield jobs
        yield numbers
        yield failed_hooks

    def _live_work(self, now: datetime) -> Iterator[Metric]:
        active = _gauge(
            "portal_jobs_active",
            "Jobs pending or processing now, by tenant and status.",
            ["tenant", "status"],
        )
        remaining = _gauge(
            "portal_numbers_remaining",
            "Numbers of active jobs without a final result yet (the restore backlog), by tenant.",
            ["tenant"],
        )
        # Served by the partial index on active jobs.
        rows = (
            Job.objects.filter(status__in=Job.ACTIVE_STATUSES)
            .values_list("tenant__name", "status")
            .annotate(n=Count("id"), left=Sum(F("total_numbers") - F("success_count") - F("failure_count")))
            .order_by()
        )
        left_by_tenant: dict[str, int] = defaultdict(int)
        for tenant, status, n, left in sorted(rows):
            active.add_metric([tenant, status], n)
            left_by_tenant[tenant] += left or 0
        for tenant, left in sorted(left_by_tenant.items()):
            remaining.add_metric([tenant], left)
        yield active
        yield remaining

        in_flight = _gauge(
            "portal_numbers_in_flight",
            "Numbers leased by a worker now (upstream calls in flight), by tenant.",
            ["tenant"],
        )
        # Served by the partial index on leased numbers.
        for tenant, n in sorted(
            NumberResult.objects.filter(status=NumberResult.Status.PROCESSING, lease_expires_at__gt=now)
            .values_list("job__tenant__name")
            .annotate(n=Count("id"))
            .order_by()
        ):
            in_flight.add_metric([tenant], n)
        yield in_flight

        tasks = _gauge(
            "portal_queue_tasks", "Tasks waiting in the django-q2 broker (-1: the broker could not be read)."
        )
        tasks.add_metric([], _broker_queue_size())
        yield tasks

        outstanding = _gauge(
            "portal_webhooks_outstanding",
            "Completed jobs whose webhook waits for its first attempt or a retry, by tenant and state.",
            ["tenant", "state"],
        )
        # Served by the partial index on due webhooks (same condition).
        for tenant, state, n in sorted(
            Job.objects.filter(webhook_state__in=[Job.WebhookState.PENDING, Job.WebhookState.FAILING])
            .values_list("tenant__name", "webhook_state")
            .annotate(n=Count("id"))
            .order_by()
        ):
            outstanding.add_metric([tenant, state], n)
        yield outstanding

    def _upstream(self, since: datetime) -> Iterator[Metric]:
        recent = UpstreamAttempt.objects.filter(started_at__gte=since)
        buckets_q = {f"le_{b}": Count("id", filter=Q(duration_ms__lte=b)) for b in LATENCY_BUCKETS_MS}
        row = recent.aggregate(total=Count("id"), sum_ms=Sum("duration_ms"), **buckets_q)
        histogram = HistogramMetricFamily(
            "portal_upstream_latency_seconds",
            "Duration of Multitel calls started in the last 15 minutes (a sliding window).",
        )
        buckets: list[tuple[str, float]] = [(str(b / 1000), row[f"le_{b}"]) for b in LATENCY_BUCKETS_MS]
        buckets.append(("+Inf", row["total"]))
        histogram.add_metric([], buckets, sum_value=(row["sum_ms"] or 0) / 1000)
        yield histogram

        attempts = _gauge(
            "portal_upstream_attempts",
            "Multitel calls started in the last 15 minutes, by tenant and outcome "
            "(success, failed: final, retryable: tried again).",
            ["tenant", "outcome"],
        )
        errors = _gauge(
            "portal_upstream_errors",
            "Multitel calls in the last 15 minutes that did not succeed, by tenant and HTTP status "
            '("none": no answer, a timeout or a connection failure).',
            ["tenant", "http_status"],
        )
        per_outcome: dict[tuple[str, str], int] = defaultdict(int)
        per_status: dict[tuple[str, str], int] = defaultdict(int)
        groups = (
            recent.values_list("job__tenant__name", "outcome", "http_status")
            .annotate(n=Count("id"))
            .order_by()
        )
        for tenant, outcome, http_status, n in groups:
            per_outcome[(tenant, outcome)] += n
            if outcome != UpstreamAttempt.Outcome.SUCCESS:
                per_status[(tenant, "none" if http_status is None else str(http_status))] += n
        for (tenant, outcome), n in sorted(per_outcome.items()):
            attempts.add_metric([tenant, outcome], n)
        for (tenant, status), n in sorted(per_status.items()):
            errors.add_metric([tenant, status], n)
        yield attempts
        yield errors

    def _webhooks(self, since: datetime) -> Iterator[Metric]:
        deliveries = _gauge(
            "portal_webhook_deliveries",
            "Webhook delivery attempts in the last 24 hours, by tenant and result (delivered, failed).",
            ["tenant", "result"],
        )
        for tenant, delivered, failed in sorted(
            WebhookDelivery.objects.filter(started_at__gte=since)
            .values_list("job__tenant__name")
            .annotate(ok=Count("id", filter=Q(delivered=True)), failed=Count("id", filter=Q(delivered=False)))
            .order_by()
        ):
            deliveries.add_metric([tenant, "delivered"], delivered)
            deliveries.add_metric([tenant, "failed"], failed)
        yield deliveries


def _broker_queue_size() -> int:
    from django_q.brokers import get_broker

    try:
        return int(get_broker().queue_size() or 0)
    except Exception:  # the broker is down: readiness says so; metrics stay up
        return -1


@lru_cache(maxsize=8)
def _networks(allowed: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    networks = []
    for entry in filter(None, (a.strip() for a in allowed)):
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            logger.warning("METRICS_ALLOWED_IPS: %r is not an address or network; ignored", entry)
    return tuple(networks)


def _token_ok(request: HttpRequest) -> bool:
    token = settings.METRICS_TOKEN
    if not token:
        return False
    scheme, _, given = request.headers.get("Authorization", "").strip().partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        return False
    return hmac.compare_digest(given.strip().encode("utf-8", "replace"), token.encode("utf-8"))


def _address_ok(request: HttpRequest) -> bool:
    if any(request.META.get(h) for h in FORWARDING_HEADERS):
        return False
    try:
        address = ipaddress.ip_address(str(request.META.get("REMOTE_ADDR", "")).strip())
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return any(
        address.version == net.version and address in net
        for net in _networks(tuple(settings.METRICS_ALLOWED_IPS))
    )


def metrics_allowed(request: HttpRequest) -> bool:
    return _token_ok(request) or _address_ok(request)


@never_cache
@require_safe
def metrics(request: HttpRequest) -> HttpResponse:
    if not metrics_allowed(request):
        return JsonResponse(
            error_body(
                "permission_denied",
                "Metrics are served only to allowed addresses or with the metrics bearer token.",
            ),
            status=403,
        )
    registry = CollectorRegistry(auto_describe=False)
    registry.register(PortalCollector())
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_PLAIN_0_0_4)
