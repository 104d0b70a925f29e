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

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from accounts.models import Tenant
from portal.logs import log_context
from restores.clients.multitel import MultitelClient, RestoreOutcome
from restores.models import Job, NumberResult
from restores.services.claims import Claim, leases_renew, number_batch_claim, tenant_in_flight
from restores.services.completion import job_complete_if_done
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
    _restore_window(
        job=job, limit=min(job.total_numbers, job.tenant.max_concurrency), deadline=upstream_deadline
    )
    job_fail_pending(job_id=job.pk, status_code=504, message=_deadline_message())
    if job_complete_if_done(job_id=job.pk, enqueue_webhook=False) and job.webhook_url:
        remaining = deadline - time.monotonic()
        job_webhook_deliver(job_id=job.pk, timeout=max(0.5, min(settings.WEBHOOK_SYNC_TIMEOUT, remaining)))


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
    return stopped_early


def _until(moment: float | None) -> float:
    return float("inf") if moment is None else moment - time.monotonic()


def _held_by_others(*, job_id: int) -> bool:
    """Numbers of the job are leased right now, by some other task."""
    return NumberResult.objects.of_job(job_id).leased(timezone.now()).exists()


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
    more (see ``number_batch_claim``), in one transaction; returns the claim, or None when
    none was asked for.

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
            number_results_record(
                job_id=job_id,
                token=token,
                results=results,
                outcomes={r.pk: outcomes[r.pk] for r in results},
                now=now,
            )
        if limit and not rejected:
            claim = number_batch_claim(
                job_id=job_id, tenant=tenant, limit=limit, for_sync=for_sync, after=after, now=now
            )
    if rejected:
        job_fail_pending(job_id=job_id, status_code=401, message=UPSTREAM_AUTH_SKIPPED_MESSAGE)
    return claim


def job_fail_pending(*, job_id: int, status_code: int | None, message: str) -> int:
    """End every number of the job not yet claimed as failed, without calling upstream;
    returns how many. In the caller's transaction when there is one."""
    now = timezone.now()
    with transaction.atomic(savepoint=False):
        failed = (
            NumberResult.objects.of_job(job_id)
            .pending()
            .release(
                status=NumberResult.Status.FAILED, status_code=status_code, message=message, completed_at=now
            )
        )
        if failed:
            Job.objects.filter(pk=job_id).update(failure_count=F("failure_count") + failed, heartbeat_at=now)
    return failed


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
        if stopped_early and NumberResult.objects.of_job(job_id).unfinished().exists():
            enqueue("restores.tasks.process_job", job_id)
            return
        job_complete_if_done(job_id=job_id)
