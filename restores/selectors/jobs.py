"""Reads of jobs and their numbers."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any
from uuid import UUID

from django.db.models import Count, OuterRef, QuerySet, Subquery, Sum
from django.db.models.functions import Coalesce

from accounts.models import ApiCredential, Tenant
from restores.models import Job, NumberResult

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


def jobs_page_for_tenant(
    *,
    tenant: Tenant,
    limit: int,
    status: str | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    older_than: tuple[datetime, int] | None = None,
) -> tuple[list[Job], bool]:
    """The tenant's jobs newest first, at most ``limit``, after the position ``older_than``
    (the last job of the page before); and whether more follow. One query, walking the
    index on (tenant, created_at) however long the tenant's history."""
    qs = Job.objects.of_tenant(tenant.pk)
    if status is not None:
        qs = qs.filter(status=status)
    if created_after is not None:
        qs = qs.filter(created_at__gte=created_after)
    if created_before is not None:
        qs = qs.filter(created_at__lt=created_before)
    if older_than is not None:
        qs = qs.older_than(*older_than)
    jobs = list(qs.newest_first()[: limit + 1])
    return jobs[:limit], len(jobs) > limit


def job_has_number(*, job: Job, number: str) -> bool:
    return NumberResult.objects.filter(job=job, number=number).exists()


def job_remaining_count(*, job_id: int) -> int:
    """Numbers of the job without a final result."""
    return NumberResult.objects.of_job(job_id).unfinished().count()


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
