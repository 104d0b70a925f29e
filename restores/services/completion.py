"""Finishing a job: exactly one process does it, and it schedules the webhook."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from restores.models import Job, NumberResult
from restores.selectors import job_remaining_count
from restores.services.queue import enqueue_on_commit
from restores.services.webhooks import webhook_message_new

logger = logging.getLogger(__name__)


def job_finish(*, job_id: int, status: Job.Status, enqueue_webhook: bool = True) -> Job | None:
    """Move an active job to ``status`` (completed or cancelled) and schedule its webhook as a
    new message; returns the job for the one caller that did it, None for everyone else.

    The conditional UPDATE (still active) makes exactly one of several racing callers
    the finisher, and only that one hands the webhook on (after commit, unless
    ``enqueue_webhook`` is false: a synchronous request delivers it itself).
    """
    assert status in Job.FINISHED_STATUSES
    now = timezone.now()
    with transaction.atomic(savepoint=False):
        job = (
            Job.objects.select_related("tenant")
            .only("uuid", "webhook_url", "tenant__name")
            .filter(pk=job_id)
            .first()
        )
        if job is None:
            return None
        has_webhook = bool(job.webhook_url)
        updates: dict[str, Any] = {"status": status, "completed_at": now, "heartbeat_at": now}
        updates.update(_webhook_fields(has_webhook=has_webhook, now=now))
        if not Job.objects.filter(pk=job_id).active().update(**updates):
            return None
        if has_webhook and enqueue_webhook:
            enqueue_on_commit("restores.tasks.deliver_webhook", job_id)
    for key, value in updates.items():
        setattr(job, key, value)
    return job


def _webhook_fields(*, has_webhook: bool, now: datetime) -> dict[str, Any]:
    if has_webhook:
        return webhook_message_new(now=now)
    return {
        "webhook_state": Job.WebhookState.NONE,
        "webhook_id": "",
        "webhook_attempts": 0,
        "webhook_error": None,
        "webhook_next_attempt_at": None,
    }


def job_complete_if_done(*, job_id: int, enqueue_webhook: bool = True, counted: bool = False) -> bool:
    """Mark the job completed when every number is final; True for the one caller that did.
    ``counted``: the caller wrote a final outcome for every number itself, so none is left."""
    if not counted and job_remaining_count(job_id=job_id):
        return False
    job = job_finish(job_id=job_id, status=Job.Status.COMPLETED, enqueue_webhook=enqueue_webhook)
    if job is None:
        return False
    logger.info("job completed", extra={"job_uuid": str(job.uuid), "tenant": job.tenant.name})
    return True


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
