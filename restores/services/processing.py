"""Restoring numbers: a sliding window of upstream calls per task, within the cap.

Queued jobs are worked by django-q2 tasks (``job_process``) in slices; small
jobs by the request that made them (``job_run_sync``). Threads do HTTP only;
the task's own thread does every query.
"""

from __future__ import annotations

import logging
import math
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.models import Tenant
from portal.logs import log_context
from restores.clients.multitel import BREAKER_OPEN_MESSAGE, MultitelClient, RestoreOutcome
from restores.clients.upstream_health import AccountHealth, account_health
from restores.models import Job, NumberResult
from restores.services.breaker import breaker_outage_fail, breaker_outcomes_record, unanswered_retryable
from restores.services.claims import Claim, leases_renew, number_batch_claim, tenant_in_flight
from restores.services.completion import job_complete_if_done, job_fail_pending
from restores.services.queue import enqueue
from restores.services.recording import number_results_record
from restores.services.recovery import jobs_orphaned_wake
from restores.services.webhooks import job_webhook_deliver

logger = logging.getLogger(__name__)


def job_run_sync(*, job: Job, started: float) -> None:
    """Restore a small job inside the request, concurrently, within ``SYNC_DEADLINE``.

    Time is kept for one webhook attempt before the deadline. A number whose
    call has not finished by then (or that could not start because the
    tenant's concurrency cap was full) fails with 504.
    """
    deadline = started + settings.SYNC_DEADLINE
    webhook_budget = min(settings.WEBHOOK_SYNC_TIMEOUT, settings.SYNC_DEADLINE / 4) if job.webhook_url else 0
    upstream_deadline = deadline - webhook_budget - 0.25
    end = _restore_window(
        job=job, limit=min(job.total_numbers, job.tenant.max_concurrency), deadline=upstream_deadline
    )
    if end.held_back:
        # Multitel is down for the tenant (its breaker is open): say so now, not at the deadline.
        job_fail_pending(job_id=job.pk, status_code=503, message=BREAKER_OPEN_MESSAGE)
    job_fail_pending(job_id=job.pk, status_code=504, message=_deadline_message())
    if job_complete_if_done(job_id=job.pk, enqueue_webhook=False) and job.webhook_url:
        remaining = deadline - time.monotonic()
        job_webhook_deliver(job_id=job.pk, timeout=max(0.5, min(settings.WEBHOOK_SYNC_TIMEOUT, remaining)))


# How long a worker waits before asking again when its tenant's cap is full; the
# wait grows by this much on each further refusal, up to CAP_POLL_BACKOFF_MAX times it.
CAP_POLL_SECONDS = 0.02
CAP_POLL_BACKOFF_MAX = 10
# How often a task whose tenant's breaker is open looks again (for the probe's turn).
BREAKER_POLL_SECONDS = 0.25


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


@dataclass(frozen=True)
class WindowEnd:
    """How a window ended: ``stopped_early``, at the deadline or the slice's end, with numbers
    possibly left to claim; ``held_back``, the tenant's upstream breaker was open when it
    last asked."""

    stopped_early: bool = False
    held_back: bool = False


def _restore_window(
    *, job: Job, limit: int, deadline: float | None = None, slice_ends: float | None = None
) -> WindowEnd:
    """Keep up to ``limit`` upstream calls of one job in flight until none is left to claim.

    A sliding window: a slow number does not hold up the others, and free
    slots are refilled with fresh claims, within the tenant's cap across all
    processes. Threads do HTTP only; this thread does every query. Stops
    claiming at ``deadline`` or ``slice_ends`` (both ``time.monotonic()``).

    While the tenant's upstream breaker is open nothing is claimed: a queued job
    waits (for the probe's turn, or the end of its slice), a synchronous one stops.
    """
    tenant = job.tenant
    client = MultitelClient()
    health = account_health(tenant.pk)
    in_flight: dict[Future[RestoreOutcome], NumberResult] = {}
    done: dict[Future[RestoreOutcome], NumberResult] = {}
    claiming, stopped_early, asked, held_back = True, False, False, False
    breaker_seen = False  # the last claim found the breaker open or half open (probing)
    capped_polls = 0
    after = -1  # the highest position claimed so far: where the next claim looks first
    renew_every = settings.RESTORE_LEASE_SECONDS / 4
    renew_at = time.monotonic() + renew_every
    with ThreadPoolExecutor(max_workers=limit, thread_name_prefix="restore") as pool:
        while True:
            now = time.monotonic()
            if now >= renew_at:
                # One UPDATE for every call this task has in flight, however long they take.
                leases_renew(tokens={r.lease_token or "" for r in in_flight.values()}, job_id=job.pk)
                if not job.is_sync:
                    jobs_orphaned_wake()  # jobs whose every task died elsewhere
                renew_at = now + renew_every
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
                    done, job=job, health=health, limit=want, after=after, breaker_seen=breaker_seen
                )
                done = {}
                if claim is not None:
                    asked = True
                    held_back = claim.held_back
                    breaker_seen = claim.breaker.is_open
                    after = max([after, *(result.position for result in claim.results)])
                    for result in claim.results:
                        future = pool.submit(
                            client.restore,
                            result.number,
                            username=tenant.multitel_username,
                            password=tenant.multitel_password,
                            deadline=deadline,
                            health=health,
                        )
                        in_flight[future] = result
                    if held_back:
                        if job.is_sync:
                            claiming = False  # a client is waiting: its numbers get 503 at once
                        elif not in_flight:
                            if breaker_outage_fail(tenant_id=tenant.pk) and not _claimable_left(
                                job_id=job.pk
                            ):
                                claiming = False
                                continue
                            time.sleep(max(0.0, min(BREAKER_POLL_SECONDS, _until(slice_ends))))
                            continue
                    elif not claim.results and not claim.capped:
                        if in_flight or job.is_sync or not _held_by_others(job_id=job.pk):
                            claiming = False  # nothing left to claim; finish what is held
                        else:
                            # The rest is leased by other tasks: wait until they finish it,
                            # or until a lease runs out (its holder died) and it can be claimed.
                            time.sleep(max(0.0, min(1.0, _until(slice_ends))))
                            continue
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
            timeout = max(0.0, renew_at - time.monotonic())
            if claiming:
                timeout = min(timeout, 0.5)
            finished, _ = wait(in_flight, return_when=FIRST_COMPLETED, timeout=timeout)
            done = {future: in_flight.pop(future) for future in finished}
    return WindowEnd(stopped_early=stopped_early, held_back=held_back)


def _until(moment: float | None) -> float:
    return float("inf") if moment is None else moment - time.monotonic()


def _held_by_others(*, job_id: int) -> bool:
    """Numbers of the job are leased right now, by some other task."""
    return NumberResult.objects.of_job(job_id).leased(timezone.now()).exists()


def _claimable_left(*, job_id: int) -> bool:
    return NumberResult.objects.of_job(job_id).pending().exists()


def _record_and_claim(
    done: dict[Future[RestoreOutcome], NumberResult],
    *,
    job: Job,
    health: AccountHealth,
    limit: int,
    after: int = -1,
    breaker_seen: bool = False,
) -> Claim | None:
    """Record finished calls (grouped by the claim they belong to), then claim up to ``limit``
    more (see ``number_batch_claim``), in one transaction; returns the claim, or None when
    none was asked for.

    After an upstream 401 nothing more is claimed: every pending number of the job
    fails without a call, since each would be refused too.

    The tenant's breaker is told of the calls when they show trouble (this process saw
    a burst of failures, the breaker was open, or a number ended on a retryable
    failure). While it is open, a queued number that got no answer goes back to
    pending instead of failing: an outage uses up no attempt.
    """
    tenant = job.tenant
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
    troubled = health.is_open or breaker_seen or any(unanswered_retryable(o) for o in outcomes.values())
    if not done and limit and not troubled and _cap_full(tenant=tenant, now=now):
        # Nothing to record and no room: say so without taking the tenant's lock (or
        # SQLite's writer lock), which the tasks holding the slots need for every refill.
        return Claim(token="", results=[], capped=True)
    with transaction.atomic():
        breaker_open = False
        if troubled:
            view = breaker_outcomes_record(
                tenant_id=tenant.pk,
                outcomes=outcomes.values(),
                tripped=health.tripped,
                last_error=health.last_error,
                now=now,
            )
            health.sync(view)
            breaker_open = view.is_open
        for outcome in outcomes.values():
            # A client waiting on a synchronous answer gets the error now; queued work waits.
            outcome.deferred = not job.is_sync and (
                outcome.deferred or (breaker_open and unanswered_retryable(outcome))
            )
        for token, results in by_token.items():
            number_results_record(
                job_id=job.pk,
                token=token,
                results=results,
                outcomes={r.pk: outcomes[r.pk] for r in results},
                now=now,
            )
        if limit and not rejected:
            claim = number_batch_claim(
                job_id=job.pk, tenant=tenant, limit=limit, for_sync=job.is_sync, after=after, now=now
            )
            health.sync(claim.breaker)
            if claim.probe:
                health.probe()
    if rejected:
        job_fail_pending(job_id=job.pk, status_code=401, message=UPSTREAM_AUTH_SKIPPED_MESSAGE)
    return claim


def _cap_full(*, tenant: Tenant, now: datetime) -> bool:
    return tenant_in_flight(tenant_id=tenant.pk, now=now) >= tenant.max_concurrency


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
        end = _restore_window(job=job, limit=_window_size(job.tenant), slice_ends=slice_ends)
        if end.stopped_early and NumberResult.objects.of_job(job_id).unfinished().exists():
            enqueue("restores.tasks.process_job", job_id)
            return
        job_complete_if_done(job_id=job_id)
