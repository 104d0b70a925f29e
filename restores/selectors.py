"""Reads for jobs and their results, and the payloads of CONTRACT sections 1 and 2."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from django.db.models import Count, OuterRef, Q, QuerySet, Subquery, Sum
from django.db.models.functions import Coalesce

from accounts.models import ApiCredential, Tenant
from restores.models import Job, NumberResult, UpstreamAttempt, WebhookDelivery

TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S"

RESULT_FIELDS = (
    "number",
    "status",
    "message",
    "status_code",
    "attempts",
    "started_at",
    "completed_at",
    "requires_identity_update",
    "needs_registration",
)


def timestamp(value: datetime | None) -> str | None:
    """UTC, ``YYYY-MM-DD HH:MM:SS`` (USE_TZ keeps every stored datetime in UTC)."""
    return value.strftime(TIMESTAMP_FORMAT) if value else None


def job_get_for_tenant(*, tenant: Tenant, job_uuid: UUID) -> Job | None:
    """The tenant's job, or None: another tenant's job is indistinguishable from none."""
    return Job.objects.filter(tenant=tenant, uuid=job_uuid).first()


# A job of more results than this is read through a server-side cursor, a chunk at a time.
STREAMED_RESULTS_MIN = 2000


def job_result_rows(*, job: Job, number: str | None = None) -> Iterable[dict[str, Any]]:
    """The job's results in submission order as plain dicts, in one query: streamed for a big
    job, fetched at once for a small one or one number (a server-side cursor would cost
    several round trips for a handful of rows)."""
    qs = NumberResult.objects.filter(job=job)
    if number is not None:
        qs = qs.filter(number=number)
    rows = qs.order_by("position").values(*RESULT_FIELDS)
    if number is not None or job.total_numbers <= STREAMED_RESULTS_MIN:
        return list(rows)
    return rows.iterator(chunk_size=STREAMED_RESULTS_MIN)


def result_entry(row: dict[str, Any], *, detailed: bool) -> dict[str, Any]:
    """One entry of ``results``: the final shape of 1a, or with attempts and times (2)."""
    entry: dict[str, Any] = {
        "number": row["number"],
        "status": row["status"],
        "message": row["message"],
        "status_code": row["status_code"],
    }
    if detailed:
        entry["attempts"] = row["attempts"]
        entry["started_at"] = timestamp(row["started_at"])
        entry["completed_at"] = timestamp(row["completed_at"])
    entry["requires_identity_update"] = 1 if row["requires_identity_update"] else 0
    if row["needs_registration"]:
        entry["needs_registration"] = 1
    return entry


def job_summary(job: Job) -> dict[str, Any]:
    return {
        "job_uuid": str(job.uuid),
        "status": job.status,
        "total_numbers": job.total_numbers,
        "success_count": job.success_count,
        "failure_count": job.failure_count,
        "webhook_url": job.webhook_url,
        "created_at": timestamp(job.created_at),
        "started_at": timestamp(job.started_at),
        "completed_at": timestamp(job.completed_at),
    }


def job_final_payload(*, job: Job, with_webhook_error: bool) -> dict[str, Any]:
    """The body of CONTRACT 1a: the synchronous answer, and (without the error) the webhook."""
    payload = job_summary(job)
    payload["results"] = [result_entry(row, detailed=False) for row in job_result_rows(job=job)]
    if with_webhook_error and job.webhook_error:
        payload["webhook_error"] = job.webhook_error
    return payload


# Results per piece of a streamed body.
BODY_PIECE_RESULTS = 1000


def job_final_payload_pieces(*, job: Job) -> Iterator[bytes]:
    """``job_final_payload(with_webhook_error=False)`` as JSON bytes, the same as
    ``json.dumps`` of it, a piece at a time: the webhook body of a big job is never
    held in memory whole (100,000 results are about 13 MB of JSON)."""
    head = json.dumps(job_summary(job))
    yield (head[:-1] + ', "results": [').encode()
    entries: list[str] = []
    separator = ""
    for row in job_result_rows(job=job):
        entries.append(json.dumps(result_entry(row, detailed=False)))
        if len(entries) == BODY_PIECE_RESULTS:
            yield (separator + ", ".join(entries)).encode()
            entries, separator = [], ", "
    if entries:
        yield (separator + ", ".join(entries)).encode()
    yield b"]}"


def job_status_payload(*, job: Job, number: str | None = None) -> dict[str, Any] | None:
    """The body of CONTRACT 2, or None when ``number`` is not part of the job."""
    payload = job_summary(job)
    payload["results"] = [result_entry(row, detailed=True) for row in job_result_rows(job=job, number=number)]
    if number is not None and not payload["results"]:
        return None
    if job.webhook_error:
        payload["webhook_error"] = job.webhook_error
    if number is not None:
        payload["filtered_number"] = number
    return payload


def job_queued_payload(*, job: Job) -> dict[str, Any]:
    """The body of CONTRACT 1b."""
    if job.webhook_url:
        message = f"Restore job queued. Results will be POSTed to {job.webhook_url}"
    else:
        message = f"Restore job queued. Poll /v3/bulk_restore_status?job_uuid={job.uuid} for results"
    return {
        "job_uuid": str(job.uuid),
        "status": job.status,
        "total_numbers": job.total_numbers,
        "webhook_url": job.webhook_url,
        "message": message,
    }


def job_remaining_count(*, job_id: int) -> int:
    """Numbers of the job without a final result."""
    return NumberResult.objects.filter(
        job_id=job_id, status__in=[NumberResult.Status.PENDING, NumberResult.Status.PROCESSING]
    ).count()


EXPORT_COLUMNS = (
    "job_uuid",
    "tenant",
    "position",
    "number",
    "status",
    "status_code",
    "message",
    "attempts",
    "requires_identity_update",
    "needs_registration",
    "started_at",
    "completed_at",
)


def results_export_rows(*, job_ids: Iterable[int]) -> Iterable[list[Any]]:
    """Rows of the selected jobs' results for CSV export, streamed in chunks (flat memory)."""
    qs = (
        NumberResult.objects.filter(job_id__in=list(job_ids))
        .order_by("job_id", "position")
        .values_list(
            "job__uuid",
            "job__tenant__name",
            "position",
            "number",
            "status",
            "status_code",
            "message",
            "attempts",
            "requires_identity_update",
            "needs_registration",
            "started_at",
            "completed_at",
        )
    )
    for row in qs.iterator(chunk_size=5000):
        (job_uuid, tenant, position, number, status, code, message, attempts, riu, nr, started, completed) = (
            row
        )
        yield [
            str(job_uuid),
            tenant,
            position,
            number,
            status,
            "" if code is None else code,
            message or "",
            attempts,
            int(riu),
            int(nr),
            timestamp(started) or "",
            timestamp(completed) or "",
        ]


# --- Staff portal (admin) ---------------------------------------------------------------

# The job page shows the status payload in full only up to this many numbers.
STATUS_PREVIEW_RESULTS = 200


def job_status_payload_preview(
    *, job: Job, limit: int = STATUS_PREVIEW_RESULTS
) -> tuple[dict[str, Any], bool]:
    """The body of CONTRACT 2 with at most ``limit`` results (in submission order), and
    whether it was cut short. One query, however large the job."""
    payload = job_summary(job)
    rows = NumberResult.objects.filter(job=job).order_by("position").values(*RESULT_FIELDS)[: limit + 1]
    entries = [result_entry(row, detailed=True) for row in rows]
    truncated = len(entries) > limit
    payload["results"] = entries[:limit]
    if job.webhook_error:
        payload["webhook_error"] = job.webhook_error
    return payload, truncated


def job_ids_with_number(*, number: str) -> QuerySet[NumberResult, Any]:
    """A subquery of the ids of every job that contains ``number`` (exact; uses its index)."""
    return NumberResult.objects.filter(number=number).values("job_id")


def tenants_with_activity(*, queryset: QuerySet[Tenant], since: datetime) -> QuerySet[Tenant]:
    """Tenants annotated with their jobs since ``since`` and what became of their numbers, and
    the last use of any of their API credentials: one query with correlated subqueries, each
    served by an index (``job_tenant_created``), never a row-by-row lookup.

    ``jobs_recent``, ``numbers_succeeded_recent``, ``numbers_failed_recent`` and ``last_api_use``.
    """
    recent = Job.objects.filter(tenant=OuterRef("pk"), created_at__gte=since).order_by().values("tenant")

    def _agg(aggregate: Any) -> Subquery:
        return Subquery(recent.annotate(value=aggregate).values("value")[:1])

    last_use = (
        ApiCredential.objects.filter(tenant=OuterRef("pk"), last_used_at__isnull=False)
        .order_by("-last_used_at")
        .values("last_used_at")[:1]
    )
    return queryset.annotate(
        jobs_recent=Coalesce(_agg(Count("pk")), 0),
        numbers_succeeded_recent=Coalesce(_agg(Sum("success_count")), 0),
        numbers_failed_recent=Coalesce(_agg(Sum("failure_count")), 0),
        last_api_use=Subquery(last_use),
    )


# The overview page: what happened in a recent window, bucket by bucket.

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
    failing = jobs.filter(webhook_state__in=[Job.WebhookState.FAILING, Job.WebhookState.FAILED]).count()
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
