"""The staff overview page: what happened in a recent window, bucket by bucket."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Count, Q, QuerySet, Sum

from restores.models import Job, UpstreamAttempt, UpstreamBreaker, WebhookDelivery

OVERVIEW_BUSIEST_TENANTS = 8


@dataclass(frozen=True)
class OverviewBucket:
    """One hour or day of the overview: ``good`` and ``bad`` counts of whatever a chart shows."""

    start: datetime
    good: int = 0
    bad: int = 0


@dataclass(frozen=True)
class TenantActivity:
    tenant_id: int
    name: str
    jobs: int
    numbers: int
    failed: int


@dataclass(frozen=True)
class OverviewWindow:
    """The overview of ``since`` to ``until``, in ``len(buckets)`` hours or days."""

    label: str
    since: datetime
    until: datetime
    unit: str  # "hour" or "day"
    jobs_by_status: dict[str, int]
    numbers: list[OverviewBucket]  # restored (good) and failed (bad), by job creation
    attempts: list[OverviewBucket]  # upstream calls: success (good) and errors (bad)
    upstream_p95_ms: int | None
    deliveries: list[OverviewBucket]  # webhook POSTs: delivered (good) and failed (bad)
    webhooks_failing: int  # jobs of the window whose webhook is failing or given up now
    busiest_tenants: list[TenantActivity]

    @property
    def jobs_total(self) -> int:
        return sum(self.jobs_by_status.values())

    @property
    def numbers_restored(self) -> int:
        return sum(b.good for b in self.numbers)

    @property
    def numbers_failed(self) -> int:
        return sum(b.bad for b in self.numbers)

    @property
    def upstream_calls(self) -> int:
        return sum(b.good + b.bad for b in self.attempts)

    @property
    def upstream_errors(self) -> int:
        return sum(b.bad for b in self.attempts)

    @property
    def upstream_error_rate(self) -> float | None:
        return self.upstream_errors / self.upstream_calls if self.upstream_calls else None

    @property
    def webhook_deliveries_failed(self) -> int:
        return sum(b.bad for b in self.deliveries)


def _window_start(*, now: datetime, unit: str, buckets: int) -> datetime:
    """The start of the first of ``buckets`` whole hours or days (UTC) that end with ``now``'s."""
    if unit == "hour":
        current = now.replace(minute=0, second=0, microsecond=0)
        return current - timedelta(hours=buckets - 1)
    current = now.replace(hour=0, minute=0, second=0, microsecond=0)
    return current - timedelta(days=buckets - 1)


def _bucketed(
    queryset: QuerySet[Any],
    *,
    field: str,
    starts: list[datetime],
    step: timedelta,
    good: Callable[[Q], Any],
    bad: Callable[[Q], Any],
) -> list[OverviewBucket]:
    """``good``/``bad`` aggregates of ``queryset`` for each hour or day of ``field``, every bucket even
    if empty. One query: each bucket is a pair of filtered aggregates over the window's rows (plain
    comparisons, so the same on every database and no date function per row)."""
    aggregates: dict[str, Any] = {}
    for index, start in enumerate(starts):
        in_bucket = Q(**{f"{field}__gte": start, f"{field}__lt": start + step})
        aggregates[f"good_{index}"] = good(in_bucket)
        aggregates[f"bad_{index}"] = bad(in_bucket)
    values = queryset.order_by().aggregate(**aggregates)
    return [
        OverviewBucket(start=start, good=int(values[f"good_{i}"] or 0), bad=int(values[f"bad_{i}"] or 0))
        for i, start in enumerate(starts)
    ]


def upstream_latency_percentile(
    *, since: datetime, until: datetime, percentile: float, count: int
) -> int | None:
    """The ``percentile`` (0-100) of upstream call durations started in [since, until), in ms.

    Nearest-rank, portable to every database: the durations are ordered and the one at rank
    ``ceil(p/100 * count)`` is read with OFFSET. ``count`` is the number of calls in the window,
    which the caller has counted already.
    """
    if count <= 0:
        return None
    rank = max(1, math.ceil(percentile / 100 * count))
    value = (
        UpstreamAttempt.objects.filter(started_at__gte=since, started_at__lt=until)
        .order_by("duration_ms")
        .values_list("duration_ms", flat=True)[rank - 1 : rank]
    )
    found = list(value)
    return int(found[0]) if found else None


def overview_window(*, label: str, now: datetime, unit: str, buckets: int) -> OverviewWindow:
    """Everything the overview shows for one window; a fixed number of queries, whatever the size."""
    since = _window_start(now=now, unit=unit, buckets=buckets)
    step = timedelta(hours=1) if unit == "hour" else timedelta(days=1)
    starts = [since + step * n for n in range(buckets)]
    until = since + step * buckets
    jobs = Job.objects.filter(created_at__gte=since, created_at__lt=until)
    by_status = dict(jobs.order_by().values("status").annotate(n=Count("pk")).values_list("status", "n"))
    jobs_by_status = {str(status): int(by_status.get(status, 0)) for status in Job.Status}
    numbers = _bucketed(
        jobs,
        field="created_at",
        starts=starts,
        step=step,
        good=lambda q: Sum("success_count", filter=q),
        bad=lambda q: Sum("failure_count", filter=q),
    )
    attempts_qs = UpstreamAttempt.objects.filter(started_at__gte=since, started_at__lt=until)
    ok = Q(outcome=UpstreamAttempt.Outcome.SUCCESS)
    attempts = _bucketed(
        attempts_qs,
        field="started_at",
        starts=starts,
        step=step,
        good=lambda q: Count("pk", filter=q & ok),
        bad=lambda q: Count("pk", filter=q & ~ok),
    )
    p95 = upstream_latency_percentile(
        since=since, until=until, percentile=95, count=sum(b.good + b.bad for b in attempts)
    )
    deliveries = _bucketed(
        WebhookDelivery.objects.filter(started_at__gte=since, started_at__lt=until),
        field="started_at",
        starts=starts,
        step=step,
        good=lambda q: Count("pk", filter=q & Q(delivered=True)),
        bad=lambda q: Count("pk", filter=q & Q(delivered=False)),
    )
    failing = jobs.webhook_failing().count()
    busiest = (
        jobs.order_by()
        .values("tenant_id", "tenant__name")
        .annotate(jobs=Count("pk"), numbers=Sum("total_numbers"), failed=Sum("failure_count"))
        .order_by("-numbers", "tenant__name")[:OVERVIEW_BUSIEST_TENANTS]
    )
    return OverviewWindow(
        label=label,
        since=since,
        until=until,
        unit=unit,
        jobs_by_status=jobs_by_status,
        numbers=numbers,
        attempts=attempts,
        upstream_p95_ms=p95,
        deliveries=deliveries,
        webhooks_failing=failing,
        busiest_tenants=[
            TenantActivity(
                tenant_id=row["tenant_id"],
                name=row["tenant__name"],
                jobs=int(row["jobs"]),
                numbers=int(row["numbers"] or 0),
                failed=int(row["failed"] or 0),
            )
            for row in busiest
        ],
    )


def overview(*, now: datetime) -> list[OverviewWindow]:
    """The last 24 hours (by hour) and the last 7 days (by day)."""
    return [
        overview_window(label="Last 24 hours", now=now, unit="hour", buckets=24),
        overview_window(label="Last 7 days", now=now, unit="day", buckets=7),
    ]


def breakers_not_closed() -> list[UpstreamBreaker]:
    """The tenants' upstream breakers that are open or probing, longest outage first."""
    return list(
        UpstreamBreaker.objects.not_closed()
        .select_related("tenant")
        .only("tenant__name", "state", "outage_started_at", "retry_at", "last_error", "changed_at")
        .order_by("outage_started_at")
    )
