"""Jobs with their records, built straight in the database, and what is recorded for a number."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.utils import timezone

from accounts.models import Tenant
from restores.clients.multitel import AttemptRecord, RestoreOutcome
from restores.models import Job, NumberResult, UpstreamAttempt, WebhookDelivery

FIRST_NUMBER = 15550100000
HOOK = "https://hooks.example.com/restore"


def make_job(
    tenant: Tenant,
    *,
    numbers: int = 3,
    failed: int = 0,
    pending: int = 0,
    status: str = Job.Status.COMPLETED,
    webhook_url: str | None = None,
    webhook_state: str = Job.WebhookState.NONE,
    webhook_error: str | None = None,
    created_at: datetime | None = None,
    first_number: int = FIRST_NUMBER,
    attempts: bool = True,
    deliveries: int = 0,
) -> Job:
    """A job whose first ``failed`` numbers failed, next ``pending`` wait, and the rest succeeded.

    Each tried number has one upstream attempt; ``deliveries`` webhook POSTs are recorded, the
    last of them delivered when the webhook state says so.
    """
    now = timezone.now()
    created_at = created_at or now
    done = numbers - pending
    job = Job.objects.create(
        tenant=tenant,
        status=status,
        total_numbers=numbers,
        success_count=done - failed,
        failure_count=failed,
        webhook_url=webhook_url,
        webhook_state=webhook_state,
        webhook_error=webhook_error,
        started_at=created_at,
        completed_at=created_at + timedelta(seconds=5) if status == Job.Status.COMPLETED else None,
    )
    Job.objects.filter(pk=job.pk).update(created_at=created_at, heartbeat_at=created_at)
    job.created_at = created_at
    results = []
    for position in range(numbers):
        is_failed, is_pending = position < failed, failed <= position < failed + pending
        results.append(
            NumberResult(
                job=job,
                position=position,
                number=str(first_number + position),
                status="failed" if is_failed else "pending" if is_pending else "success",
                status_code=None if is_pending else 404 if is_failed else 200,
                message=None
                if is_pending
                else "Error: 'number not found'"
                if is_failed
                else "Number restored",
                attempts=0 if is_pending else 1,
                started_at=None if is_pending else created_at,
                completed_at=None if is_pending else created_at + timedelta(seconds=1),
            )
        )
    NumberResult.objects.bulk_create(results)
    if attempts:
        UpstreamAttempt.objects.bulk_create(
            UpstreamAttempt(
                job=job,
                result=result,
                attempt_number=1,
                started_at=created_at + timedelta(milliseconds=result.position),
                duration_ms=100 + result.position,
                http_status=404 if result.status == "failed" else 200,
                envelope_code="404" if result.status == "failed" else "200",
                outcome="failed" if result.status == "failed" else "success",
                error="number not found" if result.status == "failed" else "",
                body_excerpt='{"status": {"code": 200, "msg": ""}}',
            )
            for result in NumberResult.objects.filter(job=job).exclude(status="pending")
        )
    if deliveries:
        WebhookDelivery.objects.bulk_create(
            WebhookDelivery(
                job=job,
                attempt_number=n,
                webhook_id="msg_test",
                url=webhook_url or HOOK,
                started_at=created_at + timedelta(seconds=n),
                duration_ms=50,
                http_status=200 if n == deliveries and webhook_state == "delivered" else 500,
                delivered=n == deliveries and webhook_state == "delivered",
                error=""
                if n == deliveries and webhook_state == "delivered"
                else "HTTP 500 from the webhook URL",
            )
            for n in range(1, deliveries + 1)
        )
    return job


def recorded_outcome(success: bool = True) -> RestoreOutcome:
    """What the Multitel client returns for one number after one attempt."""
    attempt = AttemptRecord(
        attempt_number=1,
        started_at=timezone.now(),
        duration_ms=5,
        http_status=200,
        envelope_code="200" if success else "500",
        outcome="success" if success else "failed",
        error="" if success else "boom",
        body_excerpt="{}",
    )
    return RestoreOutcome(
        success=success,
        status_code=200 if success else 500,
        message="Number restored" if success else "Error: 'boom'",
        attempts=[attempt],
    )


@dataclass(frozen=True)
class Stored:
    jobs: int
    results: int
    attempts: int
    deliveries: int


def stored() -> Stored:
    """How many rows of each kind the portal holds."""
    return Stored(
        jobs=Job.objects.count(),
        results=NumberResult.objects.count(),
        attempts=UpstreamAttempt.objects.count(),
        deliveries=WebhookDelivery.objects.count(),
    )
