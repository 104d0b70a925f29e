"""Restoring numbers: queued jobs in time slices, small jobs inside their request.

Queued jobs are worked by django-q2 tasks (``job_process``) in slices; small
jobs by the request that made them (``job_run_sync``); both through one
pipeline of upstream calls within the tenant's call slots (``window``).
"""

from __future__ import annotations

import logging
import math
import time

from django.conf import settings
from django.utils import timezone

from accounts.models import Tenant
from portal.logs import log_context
from restores.clients.multitel import BREAKER_OPEN_MESSAGE
from restores.models import Job, NumberResult
from restores.services.completion import job_complete_if_done, job_fail_pending
from restores.services.queue import enqueue
from restores.services.slots import others_waiting_for_a_worker, tenant_cap_full
from restores.services.webhooks import job_webhook_deliver
from restores.services.window import restore_window

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
    end = restore_window(
        job=job, limit=min(job.total_numbers, job.tenant.max_concurrency), deadline=upstream_deadline
    )
    if not end.all_final:
        if end.held_back:
            # Multitel is down for the tenant (its breaker is open): say so now, not at the deadline.
            job_fail_pending(job_id=job.pk, status_code=503, message=BREAKER_OPEN_MESSAGE)
        job_fail_pending(job_id=job.pk, status_code=504, message=_deadline_message())
    if job_complete_if_done(job_id=job.pk, enqueue_webhook=False, counted=end.all_final) and job.webhook_url:
        remaining = deadline - time.monotonic()
        job_webhook_deliver(job_id=job.pk, timeout=max(0.5, min(settings.WEBHOOK_SYNC_TIMEOUT, remaining)))


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


def job_process(*, job_id: int) -> None:
    """Work on a queued job until none of its numbers is left to claim.

    After ``RESTORE_TASK_SLICE_SECONDS`` the task stops claiming, finishes what
    it holds and hands over to a fresh task at the back of the queue, so that
    no task runs into the queue's timeout and other jobs get their turn. It hands
    over at once when another tenant's job waits for a worker (every worker is
    busy), and a task of a job that has started goes straight to the back of the
    queue while one does. The last worker to finish completes the job.
    """
    job = Job.objects.select_related("tenant").filter(pk=job_id).first()
    if job is None or job.status not in Job.ACTIVE_STATUSES:
        return
    with log_context(job_uuid=job.uuid, tenant=job.tenant.name):
        if job.status == Job.Status.PROCESSING and others_waiting_for_a_worker(
            tenant_id=job.tenant_id, idle=tenant_cap_full(tenant=job.tenant)
        ):
            # This job has had its turn, or its tenant's cap is full anyway; another tenant's
            # job waits for a worker: go to the back of the queue.
            enqueue("restores.tasks.process_job", job_id)
            return
        now = timezone.now()
        if Job.objects.filter(pk=job_id, status=Job.Status.PENDING).update(
            status=Job.Status.PROCESSING, started_at=now, heartbeat_at=now
        ):
            logger.info("job started: %s numbers", job.total_numbers)
        slice_ends = time.monotonic() + settings.RESTORE_TASK_SLICE_SECONDS
        end = restore_window(job=job, limit=_window_size(job.tenant), slice_ends=slice_ends)
        if end.stopped_early and NumberResult.objects.of_job(job_id).unfinished().exists():
            enqueue("restores.tasks.process_job", job_id)
            return
        job_complete_if_done(job_id=job_id)
