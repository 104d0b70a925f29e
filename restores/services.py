"""Writes and workflows of bulk restore jobs.

The database is the record of work still to do; the task queue only carries
wake-up calls. A number is ``pending`` until a worker claims it under a lease
(``lease_token``, ``lease_expires_at``), ``processing`` while it is leased,
and ``success`` or ``failed`` once recorded. Results are written only by the
holder of a live lease, so a worker that lost its lease (it was too slow, or
presumed dead and swept) cannot overwrite or double-count anything.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.db.models.functions import Coalesce
from django.utils import timezone

from accounts.models import ApiCredential, Tenant
from portal.logs import log_context
from restores import webhooks
from restores.models import IdempotencyKey, Job, NumberResult, UpstreamAttempt, WebhookDelivery
from restores.multitel import MultitelClient, RestoreOutcome
from restores.selectors import job_final_payload_pieces, job_remaining_count

logger = logging.getLogger(__name__)


def worker_name() -> str:
    """Who is working: ``WORKER_NAME`` if set, else host and process id."""
    return settings.WORKER_NAME or f"{socket.gethostname()}:{os.getpid()}"


# --- Queue --------------------------------------------------------------------------


def _enqueue(func: str, *args: object) -> None:
    """Hand a task to the broker; a failure is logged, and the sweeper makes up for it."""
    from django_q.tasks import async_task

    try:
        async_task(func, *args)
    except Exception:  # broker down: the job stays in the database
        logger.warning("could not enqueue %s%r; the sweeper will pick it up", func, args, exc_info=True)


def _enqueue_on_commit(func: str, *args: object, times: int = 1) -> None:
    def send() -> None:
        for _ in range(times):
            _enqueue(func, *args)

    transaction.on_commit(send)


# --- Submission -----------------------------------------------------------------


@transaction.atomic
def job_create(
    *,
    tenant: Tenant,
    credential: ApiCredential | None,
    numbers: Sequence[str],
    webhook_url: str | None,
) -> Job:
    """Store a job and its numbers in one transaction.

    A job of at most ``SYNC_MAX_NUMBERS`` is restored by the request that
    created it; a larger one is queued once committed, fanned out over several
    tasks so that it spreads over worker processes and hosts.
    """
    now = timezone.now()
    is_sync = len(numbers) <= settings.SYNC_MAX_NUMBERS
    job = Job.objects.create(
        tenant=tenant,
        credential=credential,
        is_sync=is_sync,
        total_numbers=len(numbers),
        webhook_url=webhook_url,
        status=Job.Status.PROCESSING if is_sync else Job.Status.PENDING,
        started_at=now if is_sync else None,
    )
    _results_insert(job_id=job.pk, numbers=numbers)
    if not is_sync:
        _enqueue_on_commit("restores.tasks.process_job", job.pk, times=_fanout(tenant, len(numbers)))
    return job


def _results_insert(*, job_id: int, numbers: Sequence[str]) -> None:
    """Insert a new job's numbers, ``pending``, in submission order.

    Only the position and the number differ between the rows, so they are sent
    as data and every other column as one value: a single ``INSERT … SELECT FROM
    unnest()`` on PostgreSQL, one ``executemany`` elsewhere. ``bulk_create`` would
    build a model instance and prepare 14 fields per number in Python, more than
    half the time of a 10,000-number POST.
    """
    meta = NumberResult._meta
    varying = ("id", "job", "position", "number")
    fields = {field.name: field for field in meta.concrete_fields}
    fixed = [
        (str(field.column), field.get_db_prep_save(field.get_default(), connection))
        for field in fields.values()
        if field.name not in varying and not (field.null and field.get_default() is None)
    ]
    quote = connection.ops.quote_name
    columns = ", ".join(
        quote(column)
        for column in [*(str(fields[name].column) for name in varying[1:]), *(c for c, _ in fixed)]
    )
    table = quote(meta.db_table)
    values = [value for _, value in fixed]
    # The SQL holds only quoted identifiers from the model's metadata; every value is a parameter.
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            sql = (
                f"INSERT INTO {table} ({columns}) "  # noqa: S608
                f"SELECT %s, t.position - 1, t.number{', %s' * len(fixed)} "
                "FROM unnest(%s::varchar[]) WITH ORDINALITY AS t(number, position)"
            )
            cursor.execute(sql, [job_id, *values, list(numbers)])
        else:
            placeholders = ", ".join(["%s"] * (3 + len(fixed)))
            sql = f"INSERT INTO {table} ({columns}) VALUES ({placeholders})"  # noqa: S608
            cursor.executemany(
                sql, [(job_id, position, number, *values) for position, number in enumerate(numbers)]
            )


def job_submit(
    *,
    tenant: Tenant,
    credential: ApiCredential | None,
    numbers: Sequence[str],
    webhook_url: str | None,
) -> Job:
    """Accept a submission: restore it now (small jobs) or queue it (large ones)."""
    started = time.monotonic()
    job = job_create(tenant=tenant, credential=credential, numbers=numbers, webhook_url=webhook_url)
    with log_context(job_uuid=job.uuid, tenant=tenant.name):
        logger.info("job accepted: %s numbers, %s", len(numbers), "synchronous" if job.is_sync else "queued")
        if job.is_sync:
            job_run_sync(job=job, started=started)
            job.refresh_from_db()
    return job


def job_run_sync(*, job: Job, started: float) -> None:
    """Restore a small job inside the request, concurrently, within ``SYNC_DEADLINE``.

    Time is kept for one webhook attempt before the deadline. A number whose
    call has not finished by then (or that could not start because the
    tenant's concurrency cap was full) fails with 504.
    """
    deadline = started + settings.SYNC_DEADLINE
    webhook_budget = min(settings.WEBHOOK_SYNC_TIMEOUT, settings.SYNC_DEADLINE / 4) if job.webhook_url else 0
    upstream_deadline = deadline - webhook_budget - 0.25
    _restore_window(
        job=job, limit=min(job.total_numbers, job.tenant.max_concurrency), deadline=upstream_deadline
    )
    job_fail_pending(job_id=job.pk, status_code=504, message=_deadline_message())
    if job_complete_if_done(job_id=job.pk, enqueue_webhook=False) and job.webhook_url:
        remaining = deadline - time.monotonic()
        job_webhook_deliver(job_id=job.pk, timeout=max(0.5, min(settings.WEBHOOK_SYNC_TIMEOUT, remaining)))


# --- Restoring numbers ------------------------------------------------------------

# How long a worker waits before asking again when its tenant's cap is full; the
# wait grows by this much on each further refusal, up to CAP_POLL_BACKOFF_MAX times it.
CAP_POLL_SECONDS = 0.02
CAP_POLL_BACKOFF_MAX = 10


def _window_size(tenant: Tenant) -> int:
    return max(1, min(settings.RESTORE_BATCH_SIZE, tenant.max_concurrency))


def _fanout(tenant: Tenant, numbers: int) -> int:
    """How many tasks to start for ``numbers`` pending numbers: ``RESTORE_JOB_FANOUT``, or
    more when that many windows could not fill the tenant's cap; never more than there
    are windows of work."""
    window = _window_size(tenant)
    to_fill_cap = math.ceil(tenant.max_concurrency / window)
    return max(1, min(max(settings.RESTORE_JOB_FANOUT, to_fill_cap), math.ceil(numbers / window)))


def _deadline_message() -> str:
    return (
        f"Error: 'no answer from upstream within the {settings.SYNC_DEADLINE:g} second "
        "deadline of a synchronous request'"
    )


UPSTREAM_AUTH_MESSAGE = (
    "Error: 'Multitel rejected this tenant's Multitel credentials (HTTP 401); "
    "check the Multitel username and password in the portal'"
)
UPSTREAM_AUTH_SKIPPED_MESSAGE = (
    "Error: 'not tried: Multitel rejected this tenant's Multitel credentials (HTTP 401) "
    "for another number of this job'"
)


def _restore_window(
    *, job: Job, limit: int, deadline: float | None = None, slice_ends: float | None = None
) -> bool:
    """Keep up to ``limit`` upstream calls of one job in flight until none is left to claim.

    A sliding window: a slow number does not hold up the others, and free
    slots are refilled with fresh claims, within the tenant's cap across all
    processes. Threads do HTTP only; this thread does every query. Stops
    claiming at ``deadline`` or ``slice_ends`` (both ``time.monotonic()``) and
    returns whether it stopped early with numbers possibly left to claim.
    """
    tenant = job.tenant
    client = MultitelClient()
    in_flight: dict[Future[RestoreOutcome], NumberResult] = {}
    done: dict[Future[RestoreOutcome], NumberResult] = {}
    claiming, stopped_early, asked = True, False, False
    capped_polls = 0
    after = -1  # the highest position claimed so far: where the next claim looks first
    with ThreadPoolExecutor(max_workers=limit, thread_name_prefix="restore") as pool:
        while True:
            now = time.monotonic()
            if claiming and (
                (deadline is not None and now >= deadline)
                or (slice_ends is not None and asked and now >= slice_ends)
            ):
                claiming, stopped_early = False, True
            free = limit - len(in_flight)
            want = free if claiming else 0
            if done or want:
                # Finished calls are recorded and free slots refilled in one transaction:
                # a slot of the tenant's cap passes from one number to the next at one commit.
                claim = _record_and_claim(
                    done, job_id=job.pk, tenant=tenant, limit=want, for_sync=job.is_sync, after=after
                )
                done = {}
                if claim is not None:
                    asked = True
                    after = max([after, *(result.position for result in claim.results)])
                    for result in claim.results:
                        future = pool.submit(
                            client.restore,
                            result.number,
                            username=tenant.multitel_username,
                            password=tenant.multitel_password,
                            deadline=deadline,
                        )
                        in_flight[future] = result
                    if not claim.results and not claim.capped:
                        claiming = False  # nothing left to claim; finish what is held
                    elif not claim.results and not in_flight:
                        # The tenant's cap is full (other tasks hold every slot and keep
                        # them busy): wait for a slot, asking less often the longer it lasts
                        # (a synchronous request keeps asking often: a client is waiting).
                        backoff = 1 if job.is_sync else min(capped_polls + 1, CAP_POLL_BACKOFF_MAX)
                        time.sleep(CAP_POLL_SECONDS * backoff)
                        capped_polls += 1
                        continue
                    capped_polls = 0
            if not in_flight:
                break
            finished, _ = wait(in_flight, return_when=FIRST_COMPLETED, timeout=None if not claiming else 0.5)
            done = {future: in_flight.pop(future) for future in finished}
    return stopped_early


def _record_and_claim(
    done: dict[Future[RestoreOutcome], NumberResult],
    *,
    job_id: int,
    tenant: Tenant,
    limit: int,
    for_sync: bool = False,
    after: int = -1,
) -> Claim | None:
    """Record finished calls (grouped by the claim they belong to), then claim up to ``limit``
    more (looking after position ``after`` first, see ``_claim``), in one transaction;
    returns the claim, or None when none was asked for.

    After an upstream 401 nothing more is claimed: every pending number of the job
    fails without a call, since each would be refused too.
    """
    outcomes = {result.pk: future.result() for future, result in done.items()}
    rejected = False
    for outcome in outcomes.values():
        if outcome.status_code == 401:
            outcome.message = UPSTREAM_AUTH_MESSAGE
            rejected = True
    by_token: dict[str, list[NumberResult]] = {}
    for result in done.values():
        by_token.setdefault(result.lease_token or "", []).append(result)
    claim: Claim | None = None
    now = timezone.now()
    if not done and limit and tenant_in_flight(tenant_id=tenant.pk, now=now) >= tenant.max_concurrency:
        # Nothing to record and no room: say so without taking the tenant's lock (or
        # SQLite's writer lock), which the tasks holding the slots need for every refill.
        return Claim(token="", results=[], capped=True)
    with transaction.atomic():
        for token, results in by_token.items():
            _results_write(
                job_id=job_id,
                token=token,
                results=results,
                outcomes={r.pk: outcomes[r.pk] for r in results},
                now=now,
            )
        if limit and not rejected:
            claim = _claim(job_id=job_id, tenant=tenant, limit=limit, now=now, for_sync=for_sync, after=after)
    if rejected:
        job_fail_pending(job_id=job_id, status_code=401, message=UPSTREAM_AUTH_SKIPPED_MESSAGE)
    if claim is not None and not claim.complete:
        # Another writer changed a candidate between the lock and the update (not
        # expected under the locks taken): read back what was really won.
        won = list(NumberResult.objects.filter(job_id=job_id, lease_token=claim.token).order_by("position"))
        claim = Claim(token=claim.token, results=won)
    return claim


def job_fail_pending(*, job_id: int, status_code: int, message: str) -> int:
    """End every number of the job not yet claimed as failed, without calling upstream."""
    now = timezone.now()
    with transaction.atomic():
        failed = NumberResult.objects.filter(job_id=job_id, status=NumberResult.Status.PENDING).update(
            status=NumberResult.Status.FAILED,
            status_code=status_code,
            message=message,
            completed_at=now,
            lease_token=None,
            lease_expires_at=None,
        )
        if failed:
            Job.objects.filter(pk=job_id).update(failure_count=F("failure_count") + failed, heartbeat_at=now)
    return failed


@dataclass(frozen=True)
class Claim:
    token: str
    results: list[NumberResult]
    capped: bool = False  # the tenant's cap left no room
    complete: bool = True  # ``results`` are the rows as updated (False: read them back)
    # Fewer numbers were found than the cap left room for: the job ran out of candidates.
    short: bool = False


def tenant_in_flight(*, tenant_id: int, now: datetime | None = None) -> int:
    """Numbers of the tenant leased right now: its upstream calls in flight."""
    return NumberResult.objects.filter(
        job__tenant_id=tenant_id,
        status=NumberResult.Status.PROCESSING,
        lease_expires_at__gt=now or timezone.now(),
    ).count()


def tenant_sync_waiting(*, tenant_id: int, now: datetime | None = None) -> int:
    """Numbers of the tenant's synchronous requests not yet started: what queued work must
    leave room for. Only requests within their ``SYNC_DEADLINE`` count, so a request whose
    process died holds nothing back for long."""
    now = now or timezone.now()
    return NumberResult.objects.filter(
        job__tenant_id=tenant_id,
        job__is_sync=True,
        job__created_at__gte=now - timedelta(seconds=settings.SYNC_DEADLINE),
        status=NumberResult.Status.PENDING,
    ).count()


def number_batch_claim(
    *, job_id: int, tenant: Tenant, limit: int, for_sync: bool = False, after: int = -1
) -> Claim:
    """Lease up to ``limit`` pending numbers of a job, in submission order, within the tenant's cap.

    The database is the semaphore: the tenant's live leases are counted and
    the claim made in one transaction, serialised per tenant (a row lock on
    the tenant on PostgreSQL; SQLite's IMMEDIATE transactions serialise all
    writers). Candidate rows are locked with SKIP LOCKED on PostgreSQL so that
    workers never queue behind each other; everywhere, the conditional UPDATE
    (``status = pending``) decides, and its row count says what was won.

    Synchronous requests come first: a claim for queued work (``for_sync`` false)
    leaves room for the numbers of the tenant's synchronous requests still waiting
    for a slot, so a client waiting on its answer is never starved by a big job.

    ``after``: the highest position the caller claimed before (see ``_claim``).
    """
    with transaction.atomic():
        claim = _claim(
            job_id=job_id, tenant=tenant, limit=limit, now=timezone.now(), for_sync=for_sync, after=after
        )
    if not claim.complete:
        results = list(
            NumberResult.objects.filter(job_id=job_id, lease_token=claim.token).order_by("position")
        )
        claim = Claim(token=claim.token, results=results)
    return claim


def _claim(
    *, job_id: int, tenant: Tenant, limit: int, now: datetime, for_sync: bool = False, after: int = -1
) -> Claim:
    """The claim of ``number_batch_claim``, inside the caller's transaction.

    ``after`` is the highest position the caller claimed before. Candidates are
    looked for after it first: the front of a job's queue is a run of index
    entries of numbers already claimed, which a scan from the first position
    would walk on every claim (a cost that grows with the job). When that leaves
    the claim short, the rest is looked for from the start, where numbers
    returned to ``pending`` (by the sweeper or a retry) may be.
    """
    token = uuid.uuid4().hex
    if connection.vendor == "postgresql":
        list(Tenant.objects.select_for_update().filter(pk=tenant.pk).values_list("pk"))

    def candidates(*, limit: int, after: int) -> Claim:
        return _claim_candidates(
            job_id=job_id, tenant=tenant, limit=limit, now=now, for_sync=for_sync, token=token, after=after
        )

    claim = candidates(limit=limit, after=after)
    if after < 0 or not claim.short or not claim.complete:
        return claim  # nothing to look for before ``after``, or no room left for it
    rest = candidates(limit=limit - len(claim.results), after=-1)
    return Claim(
        token=token,
        results=claim.results + rest.results,
        capped=rest.capped and not claim.results,
        complete=rest.complete,
        short=rest.short,
    )


def _claim_candidates(
    *, job_id: int, tenant: Tenant, limit: int, now: datetime, for_sync: bool, token: str, after: int
) -> Claim:
    """Lease up to ``limit`` pending numbers of the job after position ``after``, within the
    room the tenant's cap leaves, with the tenant's lock held (or SQLite's writer lock).

    The candidates are read with the lock that the UPDATE needs anyway, so when
    every one is won they are returned as updated, without reading them again.
    """
    if connection.vendor == "postgresql":
        return _claim_postgresql(
            job_id=job_id, tenant=tenant, limit=limit, now=now, for_sync=for_sync, token=token, after=after
        )
    room = tenant.max_concurrency - tenant_in_flight(tenant_id=tenant.pk, now=now)
    if room > 0 and not for_sync:
        room -= tenant_sync_waiting(tenant_id=tenant.pk, now=now)
    if room <= 0:
        return Claim(token=token, results=[], capped=True)
    candidates = NumberResult.objects.filter(
        job_id=job_id,
        status=NumberResult.Status.PENDING,
        position__gt=after,
        job__status__in=Job.ACTIVE_STATUSES,
    ).order_by("position")
    wanted = min(limit, room)
    rows = list(candidates[:wanted])
    if not rows:
        return Claim(token=token, results=[], short=True)
    lease_expires_at = now + timedelta(seconds=settings.RESTORE_LEASE_SECONDS)
    claimed_by = worker_name()
    won = NumberResult.objects.filter(
        pk__in=[row.pk for row in rows], status=NumberResult.Status.PENDING
    ).update(
        status=NumberResult.Status.PROCESSING,
        lease_token=token,
        lease_expires_at=lease_expires_at,
        started_at=Coalesce(F("started_at"), now),
        claimed_by=claimed_by,
    )
    if won != len(rows):
        return Claim(token=token, results=[], complete=not won)
    for row in rows:
        row.status = NumberResult.Status.PROCESSING
        row.lease_token = token
        row.lease_expires_at = lease_expires_at
        row.started_at = row.started_at or now
        row.claimed_by = claimed_by
    return Claim(token=token, results=rows, short=len(rows) < wanted)


_PG_CLAIM_SQL = """
WITH leased AS MATERIALIZED (
    SELECT job_id FROM {result} WHERE status = %(processing)s AND lease_expires_at > %(now)s
),
room AS (
    SELECT %(cap)s
        - (SELECT count(*) FROM leased l JOIN {job} j ON j.id = l.job_id WHERE j.tenant_id = %(tenant)s)
        - (CASE WHEN %(for_sync)s THEN 0 ELSE
            (SELECT count(*) FROM {result} r JOIN {job} j ON j.id = r.job_id
             WHERE j.tenant_id = %(tenant)s AND j.is_sync AND j.created_at >= %(sync_since)s
               AND r.status = %(pending)s)
           END) AS n
),
picked AS (
    SELECT r.id FROM {result} r JOIN {job} j ON j.id = r.job_id
    WHERE r.job_id = %(job)s AND r.status = %(pending)s AND r.position > %(after)s
        AND j.status = ANY(%(active)s)
    ORDER BY r.position
    LIMIT (SELECT greatest(least(%(limit)s, n), 0) FROM room)
    FOR UPDATE OF r SKIP LOCKED
),
won AS (
    UPDATE {result} SET status = %(processing)s, lease_token = %(token)s, lease_expires_at = %(expires)s,
        started_at = coalesce(started_at, %(now)s), claimed_by = %(claimed_by)s
    WHERE id IN (SELECT id FROM picked) AND status = %(pending)s
    RETURNING {columns}
)
SELECT (SELECT n FROM room), won.* FROM (SELECT 1) AS one LEFT JOIN won ON true ORDER BY won.position
"""


def _claim_postgresql(
    *, job_id: int, tenant: Tenant, limit: int, now: datetime, for_sync: bool, token: str, after: int
) -> Claim:
    """``_claim_candidates`` on PostgreSQL, with the tenant's row already locked: the room
    left in the cap, the candidates (``SKIP LOCKED``) and the conditional UPDATE in one
    statement, so that the tenant's lock, which every refill of its slots needs, is held
    for two round trips and a commit. The statement's snapshot is taken after the lock
    was granted, so the count of calls in flight sees every claim committed before. That
    count starts from the leases in force (a few per tenant), not from the tenant's jobs
    (a year of them). The counts follow the rules of ``tenant_in_flight`` and
    ``tenant_sync_waiting``, which the other databases use."""
    meta = NumberResult._meta
    fields = meta.concrete_fields
    sql = _PG_CLAIM_SQL.format(
        result=meta.db_table,
        job=Job._meta.db_table,
        columns=", ".join(connection.ops.quote_name(str(field.column)) for field in fields),
    )
    with connection.cursor() as cursor:
        cursor.execute(
            sql,
            {
                "cap": tenant.max_concurrency,
                "tenant": tenant.pk,
                "now": now,
                "for_sync": for_sync,
                "sync_since": now - timedelta(seconds=settings.SYNC_DEADLINE),
                "job": job_id,
                "limit": limit,
                "after": after,
                "pending": NumberResult.Status.PENDING.value,
                "processing": NumberResult.Status.PROCESSING.value,
                "active": [status.value for status in Job.ACTIVE_STATUSES],
                "token": token,
                "expires": now + timedelta(seconds=settings.RESTORE_LEASE_SECONDS),
                "claimed_by": worker_name(),
            },
        )
        rows = cursor.fetchall()
    room = rows[0][0]
    if room <= 0:
        return Claim(token=token, results=[], capped=True)
    results = [
        NumberResult.from_db(connection.alias, [field.attname for field in fields], row[1:])
        for row in rows
        if row[1] is not None
    ]
    return Claim(token=token, results=results, short=len(results) < min(limit, room))


def number_results_record(
    *,
    job_id: int,
    token: str,
    results: Sequence[NumberResult],
    outcomes: dict[int, RestoreOutcome],
) -> int:
    """Write outcomes of numbers still leased with ``token``, their attempts and live counts.

    Returns how many results were written. Attempts are stored whatever
    happened to the lease: they were real calls.
    """
    with transaction.atomic():
        return _results_write(
            job_id=job_id, token=token, results=results, outcomes=outcomes, now=timezone.now()
        )


def _results_write(
    *,
    job_id: int,
    token: str,
    results: Sequence[NumberResult],
    outcomes: dict[int, RestoreOutcome],
    now: datetime,
) -> int:
    """The writes of ``number_results_record``, inside the caller's transaction.

    Numbers with the same outcome (usually all of a batch) are written by one
    conditional UPDATE (still leased with ``token``, still processing), whose
    row count says how many were this holder's to write.
    """
    by_pk = {r.pk: r for r in results}
    attempts: list[UpstreamAttempt] = []
    groups: dict[tuple[bool, int, str, bool, bool, int], list[int]] = {}
    for pk, outcome in outcomes.items():
        attempts.extend(
            UpstreamAttempt(
                result_id=pk,
                job_id=job_id,
                attempt_number=by_pk[pk].attempts + a.attempt_number,
                started_at=a.started_at,
                duration_ms=a.duration_ms,
                http_status=a.http_status,
                envelope_code=a.envelope_code[:32],
                outcome=a.outcome,
                error=a.error,
                body_excerpt=a.body_excerpt,
            )
            for a in outcome.attempts
        )
        key = (
            outcome.success,
            outcome.status_code,
            outcome.message,
            outcome.requires_identity_update,
            outcome.needs_registration,
            len(outcome.attempts),
        )
        groups.setdefault(key, []).append(pk)
    successes = failures = 0
    for (success, status_code, message, identity, registration, tries), pks in groups.items():
        written = NumberResult.objects.filter(
            pk__in=pks, lease_token=token, status=NumberResult.Status.PROCESSING
        ).update(
            status=NumberResult.Status.SUCCESS if success else NumberResult.Status.FAILED,
            status_code=status_code,
            message=message,
            requires_identity_update=identity,
            needs_registration=registration,
            attempts=F("attempts") + tries,
            completed_at=now,
            lease_token=None,
            lease_expires_at=None,
        )
        if success:
            successes += written
        else:
            failures += written
    if attempts:
        UpstreamAttempt.objects.bulk_create(attempts)
    Job.objects.filter(pk=job_id).update(
        success_count=F("success_count") + successes,
        failure_count=F("failure_count") + failures,
        heartbeat_at=now,
    )
    return successes + failures


def job_process(*, job_id: int) -> None:
    """Work on a queued job until none of its numbers is left to claim.

    After ``RESTORE_TASK_SLICE_SECONDS`` the task stops claiming, finishes what
    it holds and hands over to a fresh task at the back of the queue, so that
    no task runs into the queue's timeout and other jobs get their turn. The
    last worker to finish completes the job.
    """
    job = Job.objects.select_related("tenant").filter(pk=job_id).first()
    if job is None or job.status not in Job.ACTIVE_STATUSES:
        return
    with log_context(job_uuid=job.uuid, tenant=job.tenant.name):
        now = timezone.now()
        if Job.objects.filter(pk=job_id, status=Job.Status.PENDING).update(
            status=Job.Status.PROCESSING, started_at=now, heartbeat_at=now
        ):
            logger.info("job started: %s numbers", job.total_numbers)
        slice_ends = time.monotonic() + settings.RESTORE_TASK_SLICE_SECONDS
        stopped_early = _restore_window(job=job, limit=_window_size(job.tenant), slice_ends=slice_ends)
        pending = NumberResult.objects.filter(job_id=job_id, status=NumberResult.Status.PENDING)
        if stopped_early and pending.exists():
            _enqueue("restores.tasks.process_job", job_id)
            return
        job_complete_if_done(job_id=job_id)


def job_complete_if_done(*, job_id: int, enqueue_webhook: bool = True) -> bool:
    """Mark the job completed when every number is final; True for the one caller that did.

    The conditional UPDATE makes exactly one of several racing workers the
    completer, and only that one hands the webhook on.
    """
    if job_remaining_count(job_id=job_id):
        return False
    now = timezone.now()
    with transaction.atomic():
        job = (
            Job.objects.select_related("tenant")
            .only("uuid", "webhook_url", "tenant__name")
            .filter(pk=job_id)
            .first()
        )
        if job is None:
            return False
        has_webhook = bool(job.webhook_url)
        won = Job.objects.filter(pk=job_id, status__in=Job.ACTIVE_STATUSES).update(
            status=Job.Status.COMPLETED,
            completed_at=now,
            heartbeat_at=now,
            webhook_state=Job.WebhookState.PENDING if has_webhook else Job.WebhookState.NONE,
            webhook_id=f"msg_{uuid.uuid4().hex}" if has_webhook else "",
            webhook_attempts=0,
            webhook_error=None,
            webhook_next_attempt_at=now if has_webhook else None,
        )
        if won and has_webhook and enqueue_webhook:
            _enqueue_on_commit("restores.tasks.deliver_webhook", job_id)
    if won:
        logger.info("job completed", extra={"job_uuid": str(job.uuid), "tenant": job.tenant.name})
    return bool(won)


# --- Webhooks -----------------------------------------------------------------------


def webhook_retry_delays(schedule: str | None = None) -> list[timedelta]:
    """Parse ``WEBHOOK_RETRY_SCHEDULE`` (``30s,2m,10m,1h,6h``) into delays."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    delays = []
    for part in (schedule if schedule is not None else settings.WEBHOOK_RETRY_SCHEDULE).split(","):
        part = part.strip().lower()
        if not part:
            continue
        if part[-1] in units:
            delays.append(timedelta(seconds=float(part[:-1]) * units[part[-1]]))
        else:
            delays.append(timedelta(seconds=float(part)))
    return delays


def job_webhook_deliver(*, job_id: int, timeout: float | None = None) -> WebhookDelivery | None:
    """Make one delivery attempt of a completed job's webhook, if one is due.

    The attempt is claimed by moving ``webhook_next_attempt_at`` forward with a
    conditional UPDATE, so two workers never send the same attempt.
    """
    timeout = settings.WEBHOOK_TIMEOUT if timeout is None else timeout
    now = timezone.now()
    claimed = Job.objects.filter(
        pk=job_id,
        webhook_state__in=[Job.WebhookState.PENDING, Job.WebhookState.FAILING],
        webhook_next_attempt_at__lte=now,
    ).update(webhook_next_attempt_at=now + timedelta(seconds=timeout + 60))
    if not claimed:
        return None
    job = Job.objects.select_related("tenant").get(pk=job_id)
    assert job.webhook_url
    with log_context(job_uuid=job.uuid, tenant=job.tenant.name):
        return _webhook_deliver(job=job, now=now, timeout=timeout)


def _webhook_deliver(*, job: Job, now: datetime, timeout: float) -> WebhookDelivery | None:
    assert job.webhook_url
    job_id = job.pk
    if NumberResult.objects.filter(job_id=job_id, status=NumberResult.Status.PROCESSING).exists():
        # A cancelled job still has calls in flight: deliver once they are recorded.
        Job.objects.filter(pk=job_id).update(webhook_next_attempt_at=now + timedelta(seconds=5))
        return None
    body = webhooks.spool(job_final_payload_pieces(job=job))
    try:
        result = webhooks.deliver(
            url=job.webhook_url,
            body=body,
            webhook_id=job.webhook_id,
            secret=job.tenant.webhook_secret,
            timeout=timeout,
        )
    finally:
        if not isinstance(body, bytes):
            body.close()
    return webhook_delivery_record(job=job, result=result)


@transaction.atomic
def webhook_delivery_record(*, job: Job, result: webhooks.DeliveryResult) -> WebhookDelivery:
    attempt_number = job.webhook_attempts + 1
    delivery = WebhookDelivery.objects.create(
        job=job,
        attempt_number=attempt_number,
        webhook_id=job.webhook_id,
        url=job.webhook_url or "",
        started_at=result.started_at,
        duration_ms=result.duration_ms,
        http_status=result.http_status,
        delivered=result.delivered,
        error=result.error,
        response_excerpt=result.response_excerpt,
    )
    updates: dict[str, object] = {"webhook_attempts": attempt_number}
    if result.delivered:
        updates.update(
            webhook_state=Job.WebhookState.DELIVERED, webhook_error=None, webhook_next_attempt_at=None
        )
    else:
        delays = webhook_retry_delays()
        if attempt_number <= len(delays):
            updates.update(
                webhook_state=Job.WebhookState.FAILING,
                webhook_error=result.error,
                webhook_next_attempt_at=timezone.now() + delays[attempt_number - 1],
            )
        else:
            updates.update(
                webhook_state=Job.WebhookState.FAILED,
                webhook_error=result.error,
                webhook_next_attempt_at=None,
            )
    Job.objects.filter(pk=job.pk).update(**updates)
    for key, value in updates.items():
        setattr(job, key, value)
    level = logging.INFO if result.delivered else logging.WARNING
    logger.log(
        level, "webhook of job %s attempt %s: %s", job.uuid, attempt_number, result.error or "delivered"
    )
    return delivery


# --- Recovery -------------------------------------------------------------------------


@dataclass(frozen=True)
class SweepReport:
    leases_reclaimed: int
    jobs_requeued: int
    jobs_completed: int
    webhooks_due: int


def jobs_sweep(*, now: datetime | None = None, stale_after: float | None = None) -> SweepReport:
    """Make sure no accepted work is forgotten, whatever died.

    - leases that expired (a worker or web process died mid-batch) go back to pending;
    - active jobs with pending numbers that nobody touched for ``stale_after``
      seconds (their queue message was lost) are enqueued again;
    - active jobs whose numbers are all final (the completer died) are completed;
    - webhooks whose next attempt is due are enqueued.
    Duplicate wake-ups are harmless: claims and completion are conditional.
    """
    now = now or timezone.now()
    stale_after = settings.RESTORE_STALE_SECONDS if stale_after is None else stale_after
    reclaimed = NumberResult.objects.filter(
        status=NumberResult.Status.PROCESSING, lease_expires_at__lt=now
    ).update(status=NumberResult.Status.PENDING, lease_token=None, lease_expires_at=None)
    requeued = completed = 0
    stale_jobs = Job.objects.filter(
        status__in=Job.ACTIVE_STATUSES, heartbeat_at__lte=now - timedelta(seconds=stale_after)
    ).values_list("pk", "uuid", "tenant__name")
    for job_id, job_uuid, tenant_name in list(stale_jobs):
        with log_context(job_uuid=job_uuid, tenant=tenant_name):
            if NumberResult.objects.filter(job_id=job_id, status=NumberResult.Status.PENDING).exists():
                Job.objects.filter(pk=job_id).update(heartbeat_at=now)
                _enqueue("restores.tasks.process_job", job_id)
                logger.info("job idle for %ss with numbers pending: enqueued again", stale_after)
                requeued += 1
            elif job_complete_if_done(job_id=job_id):
                completed += 1
    due = list(
        Job.objects.filter(
            webhook_state__in=[Job.WebhookState.PENDING, Job.WebhookState.FAILING],
            webhook_next_attempt_at__lte=now,
        ).values_list("pk", flat=True)[:1000]
    )
    for job_id in due:
        _enqueue("restores.tasks.deliver_webhook", job_id)
    idempotency_keys_purge(now=now)
    report = SweepReport(
        leases_reclaimed=reclaimed, jobs_requeued=requeued, jobs_completed=completed, webhooks_due=len(due)
    )
    if reclaimed or requeued or completed or due:
        logger.info("sweep: %s", report)
    return report


# --- Idempotency ---------------------------------------------------------------------


@dataclass(frozen=True)
class IdempotencyDecision:
    """What to do with a request that carries an Idempotency-Key."""

    record: IdempotencyKey | None = None  # go ahead, then call idempotency_key_finish
    replay_status: int | None = None  # or answer again with what was answered then
    replay_body: object = None
    conflict: str | None = None  # or refuse: "in_progress" (409) or "mismatch" (422)


def idempotency_key_begin(*, tenant: Tenant, key: str, request_hash: str) -> IdempotencyDecision:
    """Reserve ``key`` for this request, or say why not (CONTRACT section 5).

    The unique constraint on (tenant, key) decides between two identical
    requests racing each other: exactly one gets the record, the other sees it
    in progress (409). A key older than ``IDEMPOTENCY_KEY_HOURS``, or one left
    in progress by a request that died, is taken over.
    """
    for _ in range(3):
        now = timezone.now()
        lock = now + timedelta(seconds=settings.SYNC_DEADLINE + 60)
        try:
            with transaction.atomic():
                record = IdempotencyKey.objects.create(
                    tenant=tenant, key=key, request_hash=request_hash, created_at=now, locked_until=lock
                )
            return IdempotencyDecision(record=record)
        except IntegrityError:
            pass
        existing = IdempotencyKey.objects.filter(tenant=tenant, key=key).first()
        if existing is None:
            continue  # purged meanwhile: try again
        expired = existing.created_at < now - timedelta(hours=settings.IDEMPOTENCY_KEY_HOURS)
        abandoned = existing.state == IdempotencyKey.State.IN_PROGRESS and existing.locked_until < now
        if expired or abandoned:
            taken = IdempotencyKey.objects.filter(
                pk=existing.pk, created_at=existing.created_at, locked_until=existing.locked_until
            ).update(
                request_hash=request_hash,
                state=IdempotencyKey.State.IN_PROGRESS,
                response_status=None,
                response_body=None,
                job=None,
                created_at=now,
                locked_until=lock,
            )
            if taken:
                existing.refresh_from_db()
                return IdempotencyDecision(record=existing)
            continue
        if existing.request_hash != request_hash:
            return IdempotencyDecision(conflict="mismatch")
        if existing.state == IdempotencyKey.State.IN_PROGRESS:
            return IdempotencyDecision(conflict="in_progress")
        return IdempotencyDecision(replay_status=existing.response_status, replay_body=existing.response_body)
    return IdempotencyDecision(conflict="in_progress")


def idempotency_key_finish(*, record: IdempotencyKey, status: int, body: object, job: Job | None) -> None:
    """Remember a successful answer for replay; forget the key after an error so it can be reused."""
    if 200 <= status < 300:
        IdempotencyKey.objects.filter(pk=record.pk).update(
            state=IdempotencyKey.State.COMPLETED, response_status=status, response_body=body, job=job
        )
    else:
        IdempotencyKey.objects.filter(pk=record.pk, state=IdempotencyKey.State.IN_PROGRESS).delete()


def idempotency_keys_purge(*, now: datetime | None = None) -> int:
    cutoff = (now or timezone.now()) - timedelta(hours=settings.IDEMPOTENCY_KEY_HOURS)
    deleted, _ = IdempotencyKey.objects.filter(created_at__lt=cutoff).delete()
    return deleted


# --- Staff actions ----------------------------------------------------------------------

CANCELLED_MESSAGE = "Error: 'not tried: the job was cancelled by staff'"


def job_retry_failed(*, job_id: int) -> int:
    """Put the failed numbers of a completed or processing job back in the queue.

    The job becomes ``processing`` again and, once every number is final, is
    completed and its webhook delivered again (with a new ``webhook-id``).
    Returns how many numbers were put back.
    """
    with transaction.atomic():
        job = Job.objects.select_for_update().select_related("tenant").filter(pk=job_id).first()
        if job is None or job.status == Job.Status.CANCELLED:
            return 0
        retried = NumberResult.objects.filter(job_id=job_id, status=NumberResult.Status.FAILED).update(
            status=NumberResult.Status.PENDING,
            status_code=None,
            message=None,
            completed_at=None,
            requires_identity_update=False,
            needs_registration=False,
            lease_token=None,
            lease_expires_at=None,
        )
        if not retried:
            return 0
        now = timezone.now()
        Job.objects.filter(pk=job_id).update(
            status=Job.Status.PROCESSING,
            failure_count=F("failure_count") - retried,
            completed_at=None,
            heartbeat_at=now,
            webhook_state=Job.WebhookState.NONE,
            webhook_next_attempt_at=None,
        )
        _enqueue_on_commit("restores.tasks.process_job", job_id, times=_fanout(job.tenant, retried))
    with log_context(job_uuid=job.uuid, tenant=job.tenant.name):
        logger.info("%s failed numbers put back in the queue by staff", retried)
    return retried


def job_cancel(*, job_id: int) -> int:
    """Stop a pending or processing job: numbers not yet tried end failed, then the webhook fires.

    Numbers already in flight finish and are recorded; the webhook waits for
    them. Returns how many numbers were failed without being tried.
    """
    now = timezone.now()
    with transaction.atomic():
        job = (
            Job.objects.select_related("tenant")
            .only("uuid", "webhook_url", "tenant__name")
            .filter(pk=job_id)
            .first()
        )
        if job is None:
            return 0
        has_webhook = bool(job.webhook_url)
        won = Job.objects.filter(pk=job_id, status__in=Job.ACTIVE_STATUSES).update(
            status=Job.Status.CANCELLED,
            completed_at=now,
            heartbeat_at=now,
            webhook_state=Job.WebhookState.PENDING if has_webhook else Job.WebhookState.NONE,
            webhook_id=f"msg_{uuid.uuid4().hex}" if has_webhook else "",
            webhook_attempts=0,
            webhook_error=None,
            webhook_next_attempt_at=now if has_webhook else None,
        )
        if not won:
            return 0
        failed = NumberResult.objects.filter(job_id=job_id, status=NumberResult.Status.PENDING).update(
            status=NumberResult.Status.FAILED, message=CANCELLED_MESSAGE, completed_at=now
        )
        if failed:
            Job.objects.filter(pk=job_id).update(failure_count=F("failure_count") + failed)
        if has_webhook:
            _enqueue_on_commit("restores.tasks.deliver_webhook", job_id)
    with log_context(job_uuid=job.uuid, tenant=job.tenant.name):
        logger.info("job cancelled by staff; %s numbers not tried", failed)
    return failed


def job_webhook_resend(*, job_id: int) -> bool:
    """Deliver a finished job's webhook again, as a new message (new ``webhook-id``)."""
    now = timezone.now()
    with transaction.atomic():
        resent = (
            Job.objects.filter(pk=job_id, status__in=[Job.Status.COMPLETED, Job.Status.CANCELLED])
            .exclude(webhook_url__isnull=True)
            .exclude(webhook_url="")
            .update(
                webhook_state=Job.WebhookState.PENDING,
                webhook_id=f"msg_{uuid.uuid4().hex}",
                webhook_attempts=0,
                webhook_next_attempt_at=now,
            )
        )
        if resent:
            _enqueue_on_commit("restores.tasks.deliver_webhook", job_id)
    return bool(resent)
