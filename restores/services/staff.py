"""What staff do to jobs from the admin: retry failed numbers, cancel, resend the webhook."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from portal.logs import log_context
from restores.models import Job, NumberResult
from restores.services.completion import job_fail_pending, job_finish
from restores.services.processing import _fanout
from restores.services.queue import enqueue_on_commit
from restores.services.webhooks import webhook_message_new

logger = logging.getLogger(__name__)

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
        retried = (
            NumberResult.objects.of_job(job_id)
            .failed()
            .release(
                status=NumberResult.Status.PENDING,
                status_code=None,
                message=None,
                completed_at=None,
                requires_identity_update=False,
                needs_registration=False,
            )
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
        enqueue_on_commit("restores.tasks.process_job", job_id, times=_fanout(job.tenant, retried))
    with log_context(job_uuid=job.uuid, tenant=job.tenant.name):
        logger.info("%s failed numbers put back in the queue by staff", retried)
    return retried


@dataclass(frozen=True)
class CancelResult:
    """``cancelled``: this call stopped the job (False: it was not pending or processing).
    ``not_tried``: numbers that it failed without an upstream call."""

    cancelled: bool
    not_tried: int = 0


def job_cancel(*, job_id: int) -> CancelResult:
    """Stop a pending or processing job: numbers not yet tried end failed, then the webhook fires.

    Numbers already in flight finish and are recorded; the webhook waits for them.
    """
    with transaction.atomic():
        job = job_finish(job_id=job_id, status=Job.Status.CANCELLED)
        if job is None:
            return CancelResult(cancelled=False)
        not_tried = job_fail_pending(job_id=job_id, status_code=None, message=CANCELLED_MESSAGE)
    with log_context(job_uuid=job.uuid, tenant=job.tenant.name):
        logger.info("job cancelled by staff; %s numbers not tried", not_tried)
    return CancelResult(cancelled=True, not_tried=not_tried)


def job_webhook_resend(*, job_id: int) -> bool:
    """Deliver a finished job's webhook again, as a new message (new ``webhook-id``)."""
    with transaction.atomic():
        resent = (
            Job.objects.filter(pk=job_id)
            .finished()
            .exclude(webhook_url__isnull=True)
            .exclude(webhook_url="")
            .update(**webhook_message_new(now=timezone.now()))
        )
        if resent:
            enqueue_on_commit("restores.tasks.deliver_webhook", job_id)
    return bool(resent)
