"""Prometheus metrics at ``/metrics``, computed from the database at scrape time.

Web and worker processes run on many hosts; the database holds the truth for
all of them, so the numbers are read from it when Prometheus scrapes (a few
aggregate queries over indexed recent rows) instead of being kept in each
process. Access is limited to ``METRICS_ALLOWED_IPS`` or a bearer token.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db.models import Count, Q, Sum
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from restores.models import Job, NumberResult, UpstreamAttempt, WebhookDelivery

LATENCY_BUCKETS_MS = (50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000)
RECENT = timedelta(hours=24)
LATENCY_WINDOW = timedelta(minutes=15)


class PortalCollector(Collector):
    def collect(self) -> Iterator[Metric]:
        now = timezone.now()
        since = now - RECENT

        jobs = GaugeMetricFamily(
            "portal_jobs", "Jobs created in the last 24 hours, by status.", labels=["status"]
        )
        by_status = dict(
            Job.objects.filter(created_at__gte=since).values_list("status").annotate(n=Count("id")).order_by()
        )
        for status in Job.Status.values:
            jobs.add_metric([status], by_status.get(status, 0))
        yield jobs

        active = GaugeMetricFamily(
            "portal_jobs_active", "Jobs pending or processing, by tenant.", labels=["tenant"]
        )
        for tenant, n in (
            Job.objects.filter(status__in=Job.ACTIVE_STATUSES)
            .values_list("tenant__name")
            .annotate(n=Count("id"))
            .order_by()
        ):
            active.add_metric([tenant], n)
        yield active

        numbers = GaugeMetricFamily(
            "portal_numbers",
            "Numbers restored or failed in jobs created in the last 24 hours, by tenant.",
            labels=["tenant", "outcome"],
        )
        for tenant, ok, failed in (
            Job.objects.filter(created_at__gte=since)
            .values_list("tenant__name")
            .annotate(ok=Sum("success_count"), failed=Sum("failure_count"))
            .order_by()
        ):
            numbers.add_metric([tenant, "restored"], ok or 0)
            numbers.add_metric([tenant, "failed"], failed or 0)
        yield numbers

        queue = GaugeMetricFamily("portal_numbers_pending", "Numbers waiting to be claimed by a worker.")
        queue.add_metric([], NumberResult.objects.filter(status=NumberResult.Status.PENDING).count())
        yield queue
        in_flight = GaugeMetricFamily("portal_numbers_in_flight", "Numbers leased by a worker right now.")
        in_flight.add_metric(
            [],
            NumberResult.objects.filter(
                status=NumberResult.Status.PROCESSING, lease_expires_at__gt=now
            ).count(),
        )
        yield in_flight

        tasks = GaugeMetricFamily("portal_queue_tasks", "Tasks waiting in the django-q2 broker.")
        tasks.add_metric([], _broker_queue_size())
        yield tasks

        yield from self._upstream(now - LATENCY_WINDOW)
        yield from self._webhooks(since)

    def _upstream(self, since: Any) -> Iterator[Metric]:
        recent = UpstreamAttempt.objects.filter(started_at__gte=since)
        aggregates = {f"le_{b}": Count("id", filter=Q(duration_ms__lte=b)) for b in LATENCY_BUCKETS_MS}
        row = recent.aggregate(total=Count("id"), sum_ms=Sum("duration_ms"), **aggregates)
        histogram = HistogramMetricFamily(
            "portal_upstream_latency_seconds", "Duration of Multitel calls in the last 15 minutes."
        )
        buckets = [(str(b / 1000), row[f"le_{b}"]) for b in LATENCY_BUCKETS_MS]
        buckets.append(("+Inf", row["total"]))
        histogram.add_metric([], buckets, sum_value=(row["sum_ms"] or 0) / 1000)
        yield histogram

        outcomes = GaugeMetricFamily(
            "portal_upstream_attempts",
            "Multitel calls in the last 15 minutes, by tenant and outcome.",
            labels=["tenant", "outcome"],
        )
        for tenant, outcome, n in (
            recent.values_list("job__tenant__name", "outcome").annotate(n=Count("id")).order_by()
        ):
            outcomes.add_metric([tenant, outcome], n)
        yield outcomes

    def _webhooks(self, since: Any) -> Iterator[Metric]:
        deliveries = GaugeMetricFamily(
            "portal_webhook_deliveries", "Webhook delivery attempts in the last 24 hours.", labels=["result"]
        )
        row = WebhookDelivery.objects.filter(started_at__gte=since).aggregate(
            delivered=Count("id", filter=Q(delivered=True)), failed=Count("id", filter=Q(delivered=False))
        )
        deliveries.add_metric(["delivered"], row["delivered"])
        deliveries.add_metric(["failed"], row["failed"])
        yield deliveries
        failing = GaugeMetricFamily(
            "portal_webhooks_failing", "Jobs whose webhook is failing or failed for good.", labels=["state"]
        )
        states = dict(
            Job.objects.filter(webhook_state__in=[Job.WebhookState.FAILING, Job.WebhookState.FAILED])
            .values_list("webhook_state")
            .annotate(n=Count("id"))
            .order_by()
        )
        for state in (Job.WebhookState.FAILING, Job.WebhookState.FAILED):
            failing.add_metric([state], states.get(state, 0))
        yield failing


def _broker_queue_size() -> int:
    from django_q.brokers import get_broker

    try:
        return int(get_broker().queue_size() or 0)
    except Exception:  # the broker is down: readiness says so; metrics stay up
        return -1


def _allowed(request: HttpRequest) -> bool:
    token = settings.METRICS_TOKEN
    if token:
        given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if given and hmac.compare_digest(given, token):
            return True
    try:
        address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    return any(address in ipaddress.ip_network(net, strict=False) for net in settings.METRICS_ALLOWED_IPS)


def metrics(request: HttpRequest) -> HttpResponse:
    if not _allowed(request):
        return JsonResponse(
            {"error": "forbidden", "message": "Metrics are not available to this client."}, status=403
        )
    registry = CollectorRegistry(auto_describe=False)
    registry.register(PortalCollector())
    return HttpResponse(generate_latest(registry), content_type="text/plain; version=0.0.4; charset=utf-8")
