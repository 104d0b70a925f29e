"""Leases: which worker may call upstream for which number.

A number is ``pending`` until a worker claims it under a lease
(``lease_token``, ``lease_expires_at``), ``processing`` while it is leased. A
worker claims a few numbers more than it has calls in flight, so that a call
that ends is followed by the next at once; how many calls it may have in
flight is a matter of the tenant's call slots (``slots``), not of its leases.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.db.models.functions import Coalesce
from django.utils import timezone

from accounts.models import Tenant
from restores.models import Job, NumberResult
from restores.services.breaker import Admission, BreakerView, breaker_admission
from restores.services.workers import worker_name


@dataclass(frozen=True)
class Claim:
    """What a claim won: ``results``, the numbers now leased with ``token``, in submission
    order. No results: the job has nothing left to claim, unless ``held_back``."""

    token: str
    results: list[NumberResult]
    # The tenant's upstream breaker as the claim found it; when open (and this claim is
    # not its probe) nothing was claimed: Multitel is down for the tenant.
    breaker: BreakerView = BreakerView.CLOSED
    probe: bool = False

    @property
    def held_back(self) -> bool:
        return self.breaker.is_open and not self.probe


def tenant_in_flight(*, tenant_id: int, now: datetime | None = None) -> int:
    """Numbers of the tenant leased right now: in flight upstream, or next in a worker's line."""
    return NumberResult.objects.leased(now or timezone.now()).of_tenant(tenant_id).count()


def number_batch_claim(
    *,
    job_id: int,
    tenant: Tenant,
    limit: int,
    for_sync: bool = False,
    after: int = -1,
    now: datetime | None = None,
    breaker_checked: bool = False,
) -> Claim:
    """Lease up to ``limit`` pending numbers of a job, in submission order.

    Runs in the caller's transaction when there is one (so that a worker records its
    finished calls and claims more at one commit), else in its own. Candidate rows are
    locked with SKIP LOCKED on PostgreSQL so that workers never queue behind each other;
    everywhere, the conditional UPDATE (``status = pending``) decides, and its row count
    says what was won.

    The tenant's upstream breaker (``breaker``) decides first: while it is open nothing
    is claimed; the one claim that probes it takes one number (never a synchronous
    request's: a client is waiting). ``breaker_checked``: the caller found it closed a
    moment ago and has seen no failure since, so it is not read again.

    ``after`` is the highest position the caller claimed before. Candidates are
    looked for after it first: the front of a job's queue is a run of index
    entries of numbers already claimed, which a scan from the first position
    would walk on every claim (a cost that grows with the job). When that leaves
    the claim short, the rest is looked for from the start, where numbers
    returned to ``pending`` (by the sweeper, the breaker or a retry) may be, and
    then among numbers whose holder stopped renewing their lease.
    """
    token = uuid.uuid4().hex
    now = now or timezone.now()
    with transaction.atomic(savepoint=False):
        admission, breaker = Admission.ALL, BreakerView.CLOSED
        if not breaker_checked:
            admission, breaker = breaker_admission(
                tenant_id=tenant.pk, token=token, for_sync=for_sync, now=now
            )
        if admission is Admission.NONE:
            return Claim(token=token, results=[], breaker=breaker)
        if admission is Admission.PROBE:
            limit = 1
        results = _candidates_lease(job_id=job_id, limit=limit, now=now, token=token, after=after)
        if results is not None and after >= 0 and len(results) < limit:
            results = _more(results, job_id=job_id, limit=limit, now=now, token=token)
        if results is not None and len(results) < limit and _expired_leases_release(job_id=job_id, now=now):
            # Numbers whose holder stopped renewing their lease (it died) are pending again.
            results = _more(results, job_id=job_id, limit=limit, now=now, token=token)
        if results is None:
            # Another writer changed a candidate between the read and the update (not
            # expected under the locks taken): read back what was really won.
            results = list(NumberResult.objects.held_by(token).order_by("position"))
    return Claim(
        token=token,
        results=sorted(results, key=lambda r: r.position),
        breaker=breaker,
        probe=admission is Admission.PROBE,
    )


def _more(
    results: list[NumberResult], *, job_id: int, limit: int, now: datetime, token: str
) -> list[NumberResult] | None:
    """``results`` and the rest of ``limit`` looked for from the start of the job."""
    rest = _candidates_lease(job_id=job_id, limit=limit - len(results), now=now, token=token, after=-1)
    return None if rest is None else results + rest


def _expired_leases_release(*, job_id: int, now: datetime) -> int:
    """Put the job's numbers whose lease ran out back to pending (their holder died or hung:
    a live one renews its leases); returns how many. Its late results are refused."""
    return NumberResult.objects.of_job(job_id).lease_expired(now).release(status=NumberResult.Status.PENDING)


def leases_renew(*, tokens: Iterable[str], job_id: int, now: datetime | None = None) -> int:
    """Extend the leases still held with ``tokens`` by ``RESTORE_LEASE_SECONDS`` from now, and
    the job's heartbeat: a live task's calls are never taken over, however long they take.
    A lease already taken over (it ran out) is not renewed. Returns how many were."""
    tokens = list(tokens)
    now = now or timezone.now()
    renewed = 0
    if tokens:
        renewed = (
            NumberResult.objects.filter(lease_token__in=tokens)
            .processing()
            .update(lease_expires_at=now + timedelta(seconds=settings.RESTORE_LEASE_SECONDS))
        )
    Job.objects.filter(pk=job_id).update(heartbeat_at=now)
    return renewed


def _candidates_lease(
    *, job_id: int, limit: int, now: datetime, token: str, after: int
) -> list[NumberResult] | None:
    """Lease up to ``limit`` pending numbers of the job after position ``after``; None when
    another writer interfered and what was won must be read back.

    The candidates are read with the lock that the UPDATE needs anyway, so when
    every one is won they are returned as updated, without reading them again.
    """
    if connection.vendor == "postgresql":
        return _candidates_lease_postgresql(job_id=job_id, limit=limit, now=now, token=token, after=after)
    rows = list(NumberResult.objects.claimable().of_job(job_id).filter(position__gt=after)[:limit])
    if not rows:
        return []
    lease_expires_at = now + timedelta(seconds=settings.RESTORE_LEASE_SECONDS)
    claimed_by = worker_name()
    won = (
        NumberResult.objects.filter(pk__in=[row.pk for row in rows])
        .pending()
        .update(
            status=NumberResult.Status.PROCESSING,
            lease_token=token,
            lease_expires_at=lease_expires_at,
            started_at=Coalesce(F("started_at"), now),
            claimed_by=claimed_by,
        )
    )
    if won != len(rows):
        return None if won else []
    for row in rows:
        row.status = NumberResult.Status.PROCESSING
        row.lease_token = token
        row.lease_expires_at = lease_expires_at
        row.started_at = row.started_at or now
        row.claimed_by = claimed_by
    return rows


# ``picked`` is ``claimable()`` of the job after ``after``, written out for its SKIP LOCKED.
_PG_CLAIM_SQL = """
WITH picked AS (
    SELECT r.id FROM {result} r JOIN {job} j ON j.id = r.job_id
    WHERE r.job_id = %s AND r.status = %s AND r.position > %s AND j.status = ANY(%s)
    ORDER BY r.position
    LIMIT %s
    FOR UPDATE OF r SKIP LOCKED
)
UPDATE {result} SET status = %s, lease_token = %s, lease_expires_at = %s,
    started_at = coalesce(started_at, %s), claimed_by = %s
WHERE id IN (SELECT id FROM picked) AND status = %s
RETURNING {columns}
"""


def _candidates_lease_postgresql(
    *, job_id: int, limit: int, now: datetime, token: str, after: int
) -> list[NumberResult]:
    """``_candidates_lease`` on PostgreSQL: the candidates (``SKIP LOCKED``) and the
    conditional UPDATE in one statement, one round trip."""
    meta = NumberResult._meta
    fields = meta.concrete_fields
    sql = _PG_CLAIM_SQL.format(
        result=connection.ops.quote_name(meta.db_table),
        job=connection.ops.quote_name(Job._meta.db_table),
        columns=", ".join(connection.ops.quote_name(str(field.column)) for field in fields),
    )
    pending = NumberResult.Status.PENDING.value
    params: list[Any] = [
        job_id,
        pending,
        after,
        [status.value for status in Job.ACTIVE_STATUSES],
        limit,
        NumberResult.Status.PROCESSING.value,
        token,
        now + timedelta(seconds=settings.RESTORE_LEASE_SECONDS),
        now,
        worker_name(),
        pending,
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    results = [
        NumberResult.from_db(connection.alias, [field.attname for field in fields], row) for row in rows
    ]
    return sorted(results, key=lambda r: r.position)
