"""The sweeper: no accepted work is forgotten, whatever died."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from portal.logs import log_context
from restores.models import Job, NumberResult, SlotLease
from restores.services.breaker import breaker_outage_fail
from restores.services.completion import job_complete_if_done
from restores.services.idempotency import idempotency_keys_purge
from restores.services.queue import enqueue

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SweepReport:
    leases_reclaimed: int
    outage_failed: int
    jobs_requeued: int
    jobs_completed: int
    webhooks_due: int


def jobs_sweep(*, now: datetime | None = None, stale_after: float | None = None) -> SweepReport:
    """Make sure no accepted work is forgotten, whatever died.

    - leases that expired (a worker or web process died mid-batch) go back to pending;
    - active jobs with pending numbers that nobody touched for ``stale_after``
      seconds (their queue message was lost) are enqueued again;
    - active jobs whose numbers are all final (the completer died) are completed;
    - webhooks whose next attempt is due are enqueued;
    - numbers an upstream outage has held back longer than ``UPSTREAM_OUTAGE_MAX`` fail.
    Duplicate wake-ups are harmless: claims and completion are conditional.
    """
    now = now or timezone.now()
    stale_after = settings.RESTORE_STALE_SECONDS if stale_after is None else stale_after
    reclaimed = NumberResult.objects.lease_expired(now).release(status=NumberResult.Status.PENDING)
    SlotLease.objects.expired(now).delete()  # their holders died
    outage_failed = breaker_outage_fail(now=now)
    requeued, completed = _idle_jobs_wake(now=now, idle_after=stale_after)
    due = list(Job.objects.webhook_due(now).values_list("pk", flat=True)[:1000])
    for job_id in due:
        enqueue("restores.tasks.deliver_webhook", job_id)
    idempotency_keys_purge(now=now)
    report = SweepReport(
        leases_reclaimed=reclaimed,
        outage_failed=outage_failed,
        jobs_requeued=requeued,
        jobs_completed=completed,
        webhooks_due=len(due),
    )
    if reclaimed or outage_failed or requeued or completed or due:
        logger.info("sweep: %s", report)
    return report


def jobs_orphaned_wake(*, now: datetime | None = None) -> int:
    """Wake the active jobs no live task works on: nobody renewed a lease of theirs or touched
    them for half of ``RESTORE_LEASE_SECONDS`` (live tasks do every quarter of it, so that is
    two renewals missed). Called by live tasks as they renew their own leases, so a job whose
    every task died with its host is taken up again by the hosts that live, without waiting
    for the sweeper; the woken task may wait for a worker, and for the dead leases to run
    out. A false alarm only costs a duplicate task: claims are conditional. Returns how many
    jobs were woken."""
    idle_after = settings.RESTORE_LEASE_SECONDS / 2
    requeued, _ = _idle_jobs_wake(now=now or timezone.now(), idle_after=idle_after)
    return requeued


def _idle_jobs_wake(*, now: datetime, idle_after: float) -> tuple[int, int]:
    """Enqueue the active jobs untouched for ``idle_after`` seconds that have numbers left;
    complete those that have none. Each wake-up is claimed by one conditional UPDATE of the
    heartbeat, so of several processes looking at once only one enqueues it."""
    requeued = completed = 0
    idle = Job.objects.idle_since(now - timedelta(seconds=idle_after)).values_list(
        "pk", "uuid", "tenant__name", "heartbeat_at"
    )
    for job_id, job_uuid, tenant_name, heartbeat_at in list(idle):
        with log_context(job_uuid=job_uuid, tenant=tenant_name):
            if NumberResult.objects.of_job(job_id).unfinished().exists():
                if not Job.objects.filter(pk=job_id, heartbeat_at=heartbeat_at).update(heartbeat_at=now):
                    continue  # another process woke it first
                enqueue("restores.tasks.process_job", job_id)
                logger.info("job idle for %ss with numbers unfinished: enqueued again", idle_after)
                requeued += 1
            elif job_complete_if_done(job_id=job_id):
                completed += 1
    return requeued, completed
