"""Leases and the tenant's concurrency cap: who may call upstream for which number.

A number is ``pending`` until a worker claims it under a lease
(``lease_token``, ``lease_expires_at``), ``processing`` while it is leased. The
database is the semaphore: a tenant's live leases never exceed its
``max_concurrency``, across every process and host.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

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
    order. No results and ``capped``: the tenant's cap had no room, ask again later. No
    results and not ``capped``: the job has nothing left to claim, unless ``held_back``."""

    token: str
    results: list[NumberResult]
    capped: bool = False
    # The tenant's upstream breaker as the claim found it; when open (and this claim is
    # not its probe) nothing was claimed: Multitel is down for the tenant.
    breaker: BreakerView = BreakerView.CLOSED
    probe: bool = False

    @property
    def held_back(self) -> bool:
        return self.breaker.is_open and not self.probe


@dataclass(frozen=True)
class _Found:
    """One search for candidates: what was won, whether the cap left no room, whether the
    job ran out of candidates before the room did, and whether ``results`` are the rows as
    updated (False: another writer interfered and they must be read back)."""

    results: list[NumberResult]
    capped: bool = False
    short: bool = False
    complete: bool = True


def tenant_in_flight(*, tenant_id: int, now: datetime | None = None) -> int:
    """Numbers of the tenant leased right now: its upstream calls in flight."""
    return NumberResult.objects.leased(now or timezone.now()).of_tenant(tenant_id).count()


def tenant_sync_waiting(*, tenant_id: int, now: datetime | None = None) -> int:
    """Numbers of the tenant's synchronous requests not yet started: what queued work must
    leave room for. Only requests within their ``SYNC_DEADLINE`` count, so a request whose
    process died holds nothing back for long."""
    return NumberResult.objects.sync_waiting(
        tenant_id=tenant_id, since=_sync_since(now or timezone.now())
    ).count()


def _sync_since(now: datetime) -> datetime:
    return now - timedelta(seconds=settings.SYNC_DEADLINE)


def number_batch_claim(
    *,
    job_id: int,
    tenant: Tenant,
    limit: int,
    for_sync: bool = False,
    after: int = -1,
    now: datetime | None = None,
) -> Claim:
    """Lease up to ``limit`` pending numbers of a job, in submission order, within the tenant's cap.

    Runs in the caller's transaction when there is one (so that a worker records its
    finished calls and refills their slots at one commit), else in its own.

    The database is the semaphore: the tenant's live leases are counted and
    the claim made in one transaction, serialised per tenant (a row lock on
    the tenant on PostgreSQL; SQLite's IMMEDIATE transactions serialise all
    writers). Candidate rows are locked with SKIP LOCKED on PostgreSQL so that
    workers never queue behind each other; everywhere, the conditional UPDATE
    (``status = pending``) decides, and its row count says what was won.

    The tenant's upstream breaker (``breaker``) decides first: while it is open nothing
    is claimed; the one claim that probes it takes one number.

    Synchronous requests come first: a claim for queued work (``for_sync`` false)
    leaves room for the numbers of the tenant's synchronous requests still waiting
    for a slot, so a client waiting on its answer is never starved by a big job.

    ``after`` is the highest position the caller claimed before. Candidates are
    looked for after it first: the front of a job's queue is a run of index
    entries of numbers already claimed, which a scan from the first position
    would walk on every claim (a cost that grows with the job). When that leaves
    the claim short, the rest is looked for from the start, where numbers
    returned to ``pending`` (by the sweeper or a retry) may be.
    """
    token = uuid.uuid4().hex
    now = now or timezone.now()
    with transaction.atomic(savepoint=False):
        if connection.vendor == "postgresql":
            list(Tenant.objects.select_for_update().filter(pk=tenant.pk).values_list("pk"))
        admission, breaker = breaker_admission(tenant_id=tenant.pk, token=token, for_sync=for_sync, now=now)
        if admission is Admission.NONE:
            return Claim(token=token, results=[], breaker=breaker)
        if admission is Admission.PROBE:
            limit = 1

        def search(*, limit: int, after: int) -> _Found:
            return _candidates_lease(
                job_id=job_id,
                tenant=tenant,
                limit=limit,
                now=now,
                for_sync=for_sync,
                token=token,
                after=after,
            )

        found = search(limit=limit, after=after)
        if after >= 0 and found.short and found.complete:
            found = _merged(found, search(limit=limit - len(found.results), after=-1))
        if found.short and found.complete and _expired_leases_release(job_id=job_id, now=now):
            # Numbers whose holder stopped renewing its lease (it died) are pending again.
            found = _merged(found, search(limit=limit - len(found.results), after=-1))
        if not found.complete:
            # Another writer changed a candidate between the lock and the update (not
            # expected under the locks taken): read back what was really won.
            return Claim(
                token=token,
                results=list(NumberResult.objects.held_by(token).order_by("position")),
                breaker=breaker,
                probe=admission is Admission.PROBE,
            )
    return Claim(
        token=token,
        results=found.results,
        capped=found.capped,
        breaker=breaker,
        probe=admission is Admission.PROBE,
    )


def _merged(found: _Found, rest: _Found) -> _Found:
    return _Found(
        results=found.results + rest.results,
        capped=rest.capped and not found.results,
        short=rest.short,
        complete=rest.complete,
    )


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
    *, job_id: int, tenant: Tenant, limit: int, now: datetime, for_sync: bool, token: str, after: int
) -> _Found:
    """Lease up to ``limit`` pending numbers of the job after position ``after``, within the
    room the tenant's cap leaves, with the tenant's lock held (or SQLite's writer lock).

    The candidates are read with the lock that the UPDATE needs anyway, so when
    every one is won they are returned as updated, without reading them again.
    """
    if connection.vendor == "postgresql":
        return _candidates_lease_postgresql(
            job_id=job_id, tenant=tenant, limit=limit, now=now, for_sync=for_sync, token=token, after=after
        )
    room = tenant.max_concurrency - tenant_in_flight(tenant_id=tenant.pk, now=now)
    if room > 0 and not for_sync:
        room -= tenant_sync_waiting(tenant_id=tenant.pk, now=now)
    if room <= 0:
        return _Found(results=[], capped=True)
    wanted = min(limit, room)
    rows = list(NumberResult.objects.claimable().of_job(job_id).filter(position__gt=after)[:wanted])
    if not rows:
        return _Found(results=[], short=True)
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
        return _Found(results=[], complete=not won)
    for row in rows:
        row.status = NumberResult.Status.PROCESSING
        row.lease_token = token
        row.lease_expires_at = lease_expires_at
        row.started_at = row.started_at or now
        row.claimed_by = claimed_by
    return _Found(results=rows, short=len(rows) < wanted)


# ``leased`` and ``sync_waiting`` are compiled from the querysets of the same names, so
# that "leased right now" is one rule everywhere; ``picked`` is ``claimable()`` of the job
# after ``after``, written out for its LIMIT taken from ``room`` and its SKIP LOCKED.
_PG_CLAIM_SQL = """
WITH leased AS MATERIALIZED ({leased}),
room AS (
    SELECT %s
        - (SELECT count(*) FROM leased l JOIN {job} j ON j.id = l.job_id WHERE j.tenant_id = %s)
        - (CASE WHEN %s THEN 0 ELSE (SELECT count(*) FROM ({sync_waiting}) AS w) END) AS n
),
picked AS (
    SELECT r.id FROM {result} r JOIN {job} j ON j.id = r.job_id
    WHERE r.job_id = %s AND r.status = %s AND r.position > %s AND j.status = ANY(%s)
    ORDER BY r.position
    LIMIT (SELECT greatest(least(%s, n), 0) FROM room)
    FOR UPDATE OF r SKIP LOCKED
),
won AS (
    UPDATE {result} SET status = %s, lease_token = %s, lease_expires_at = %s,
        started_at = coalesce(started_at, %s), claimed_by = %s
    WHERE id IN (SELECT id FROM picked) AND status = %s
    RETURNING {columns}
)
SELECT (SELECT n FROM room), won.* FROM (SELECT 1) AS one LEFT JOIN won ON true ORDER BY won.position
"""


def _candidates_lease_postgresql(
    *, job_id: int, tenant: Tenant, limit: int, now: datetime, for_sync: bool, token: str, after: int
) -> _Found:
    """``_candidates_lease`` on PostgreSQL, with the tenant's row already locked: the room
    left in the cap, the candidates (``SKIP LOCKED``) and the conditional UPDATE in one
    statement, so that the tenant's lock, which every refill of its slots needs, is held
    for two round trips and a commit. The statement's snapshot is taken after the lock
    was granted, so the count of calls in flight sees every claim committed before. That
    count starts from the leases in force (a few per tenant), not from the tenant's jobs
    (a year of them)."""
    meta = NumberResult._meta
    fields = meta.concrete_fields
    leased_sql, leased_params = (
        NumberResult.objects.leased(now).order_by().values("job_id").query.sql_with_params()
    )
    waiting_sql, waiting_params = (
        NumberResult.objects.sync_waiting(tenant_id=tenant.pk, since=_sync_since(now))
        .order_by()
        .values("id")
        .query.sql_with_params()
    )
    sql = _PG_CLAIM_SQL.format(
        leased=leased_sql,
        sync_waiting=waiting_sql,
        result=connection.ops.quote_name(meta.db_table),
        job=connection.ops.quote_name(Job._meta.db_table),
        columns=", ".join(connection.ops.quote_name(str(field.column)) for field in fields),
    )
    pending = NumberResult.Status.PENDING.value
    processing = NumberResult.Status.PROCESSING.value
    params = [
        *leased_params,
        tenant.max_concurrency,
        tenant.pk,
        for_sync,
        *waiting_params,
        job_id,
        pending,
        after,
        [status.value for status in Job.ACTIVE_STATUSES],
        limit,
        processing,
        token,
        now + timedelta(seconds=settings.RESTORE_LEASE_SECONDS),
        now,
        worker_name(),
        pending,
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    room = rows[0][0]
    if room <= 0:
        return _Found(results=[], capped=True)
    results = [
        NumberResult.from_db(connection.alias, [field.attname for field in fields], row[1:])
        for row in rows
        if row[1] is not None
    ]
    return _Found(results=results, short=len(results) < min(limit, room))
