"""Delivering a completed job's webhook, and the record of every attempt."""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from portal.logs import log_context
from restores.clients import webhook_sender
from restores.models import Job, NumberResult, WebhookDelivery
from restores.selectors import job_final_payload_pieces

logger = logging.getLogger(__name__)


def webhook_message_new(*, now: datetime) -> dict[str, Any]:
    """The fields of a job whose webhook is to be sent as a new message, due at ``now``:
    a fresh ``webhook-id`` (receivers deduplicate on it), no attempts yet."""
    return {
        "webhook_state": Job.WebhookState.PENDING,
        "webhook_id": f"msg_{uuid.uuid4().hex}",
        "webhook_attempts": 0,
        "webhook_error": None,
        "webhook_next_attempt_at": now,
    }


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
    claimed = (
        Job.objects.filter(pk=job_id)
        .webhook_due(now)
        .update(webhook_next_attempt_at=now + timedelta(seconds=timeout + 60))
    )
    if not claimed:
        return None
    job = Job.objects.select_related("tenant").get(pk=job_id)
    assert job.webhook_url
    with log_context(job_uuid=job.uuid, tenant=job.tenant.name):
        return _webhook_deliver(job=job, now=now, timeout=timeout)


def _webhook_deliver(*, job: Job, now: datetime, timeout: float) -> WebhookDelivery | None:
    assert job.webhook_url
    job_id = job.pk
    if NumberResult.objects.of_job(job_id).processing().exists():
        # A cancelled job still has calls in flight: deliver once they are recorded.
        Job.objects.filter(pk=job_id).update(webhook_next_attempt_at=now + timedelta(seconds=5))
        return None
    body = webhook_sender.spool(job_final_payload_pieces(job=job))
    try:
        result = webhook_sender.deliver(
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


def _retry_delay(
    delays: list[timedelta], attempt_number: int, result: webhook_sender.DeliveryResult
) -> timedelta:
    """The schedule's wait before the next attempt, or longer when the receiver asked for more
    (``Retry-After`` with a 429 or 503), up to the schedule's last step."""
    delay = delays[attempt_number - 1]
    if result.retry_after is None:
        return delay
    asked = timedelta(seconds=result.retry_after)
    return max(delay, min(asked, delays[-1]))


@transaction.atomic
def webhook_delivery_record(*, job: Job, result: webhook_sender.DeliveryResult) -> WebhookDelivery:
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
    elif result.http_status == 410:
        # 410 Gone: the receiver asks not to be sent this webhook again.
        updates.update(
            webhook_state=Job.WebhookState.FAILED,
            webhook_error=f"{result.error} (Gone): the receiver asked to stop; not retried",
            webhook_next_attempt_at=None,
        )
    else:
        delays = webhook_retry_delays()
        if attempt_number <= len(delays):
            updates.update(
                webhook_state=Job.WebhookState.FAILING,
                webhook_error=result.error,
                webhook_next_attempt_at=timezone.now() + _retry_delay(delays, attempt_number, result),
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
