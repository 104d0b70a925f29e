"""The restore engine's Prometheus families, served by ``/metrics`` (``portal.metrics``).

Every job, number, upstream attempt and webhook delivery is stored, so a scrape
reads the truth of every process on every host from the database.

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
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from datetime import datetime, timedelta

from django.db.models import Count, F, Q, Sum
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from restores.models import Job, NumberResult, UpstreamAttempt, UpstreamBreaker, WebhookDelivery

LATENCY_BUCKETS_MS = (50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000)
RECENT = timedelta(hours=24)
UPSTREAM_WINDOW = timedelta(minutes=15)


def _gauge(name: str, documentation: str, labels: list[str] | None = None) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, labels=labels or [])


class RestoresCollector(Collector):
    """Every family of jobs, numbers, upstream calls and webhooks; a fixed number of bounded
    queries per scrape."""

    def __init__(self, now: datetime | None = None) -> None:
        self.now = now

    def collect(self) -> Iterator[Metric]:
        now = self.now or timezone.now()
        yield from self._recent_jobs(now - RECENT)
        yield from self._live_work(now)
        yield from self._upstream(now - UPSTREAM_WINDOW)
        yield from self._breakers(now)
        yield from self._webhooks(now - RECENT)

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
            Job.objects.active()
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
            "Numbers leased by a worker now (in flight upstream, or next in its line), by tenant.",
            ["tenant"],
        )
        # Served by the partial index on leased numbers.
        for tenant, n in sorted(
            NumberResult.objects.leased(now)
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
            Job.objects.webhook_outstanding()
            .values_list("tenant__name", "webhook_state")
            .annotate(n=Count("id"))
            .order_by()
        ):
            outstanding.add_metric([tenant, state], n)
        yield outstanding

    def _breakers(self, now: datetime) -> Iterator[Metric]:
        state = _gauge(
            "portal_upstream_breaker_open",
            "1 while a tenant's upstream breaker is open or probing (Multitel is down for it), by "
            "tenant and state; tenants whose breaker is closed are not listed.",
            ["tenant", "state"],
        )
        outage = _gauge(
            "portal_upstream_outage_seconds",
            "How long the outage that opened a tenant's upstream breaker has lasted, by tenant.",
            ["tenant"],
        )
        # A few rows at most: one per tenant whose breaker ever opened, read by the state index.
        for name, breaker_state, since in sorted(
            UpstreamBreaker.objects.not_closed().values_list("tenant__name", "state", "outage_started_at")
        ):
            state.add_metric([name, breaker_state], 1)
            if since is not None:
                outage.add_metric([name], (now - since).total_seconds())
        yield state
        yield outage

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
