"""Staff actions on jobs: retry failed numbers, cancel, resend the webhook (services)."""

from __future__ import annotations

from typing import Any

import pytest
from django.utils import timezone

from restores import services
from restores.clients.multitel import RestoreOutcome
from restores.models import Job, NumberResult
from tests.support.parties import Party

HOOK = "https://hooks.example.com/restore"


def _job(party: Party, count: int = 12, webhook_url: str | None = HOOK) -> Job:
    assert party.tenant is not None
    numbers = [str(15551260001 + i * 100) for i in range(count)]
    return services.job_create(tenant=party.tenant, credential=None, numbers=numbers, webhook_url=webhook_url)


def _finish(job: Job, *, failed: set[int]) -> None:
    """Record every number: the positions in ``failed`` fail, the others succeed."""
    claim = services.number_batch_claim(job_id=job.pk, tenant=job.tenant, limit=job.total_numbers)
    outcomes = {
        r.pk: RestoreOutcome(success=False, status_code=500, message="Error: 'boom'")
        if r.position in failed
        else RestoreOutcome(success=True, status_code=200, message="Number restored")
        for r in claim.results
    }
    services.number_results_record(job_id=job.pk, token=claim.token, results=claim.results, outcomes=outcomes)
    services.job_complete_if_done(job_id=job.pk, enqueue_webhook=False)


@pytest.fixture(autouse=True)
def roomy(owner: Party) -> None:
    assert owner.tenant is not None
    owner.tenant.max_concurrency = 100
    owner.tenant.save()


def test_it_puts_the_failed_numbers_of_a_completed_job_back_in_the_queue(
    owner: Party, enqueued: list[Any], django_capture_on_commit_callbacks: Any
) -> None:
    job = _job(owner)
    _finish(job, failed={1, 5})
    enqueued.clear()

    with django_capture_on_commit_callbacks(execute=True):
        retried = services.job_retry_failed(job_id=job.pk)

    job.refresh_from_db()
    assert retried == 2
    assert job.status == Job.Status.PROCESSING and job.completed_at is None
    assert (job.success_count, job.failure_count) == (10, 0)
    assert set(NumberResult.objects.filter(job=job, status="pending").values_list("position", flat=True)) == {
        1,
        5,
    }
    assert enqueued and all(call == ("restores.tasks.process_job", (job.pk,)) for call in enqueued)


def test_it_delivers_the_webhook_again_with_a_new_id_once_the_retried_job_completes(
    owner: Party, enqueued: list[Any], django_capture_on_commit_callbacks: Any
) -> None:
    job = _job(owner)
    _finish(job, failed={0})
    first_id = Job.objects.get(pk=job.pk).webhook_id
    services.job_retry_failed(job_id=job.pk)

    _finish(job, failed=set())
    job.refresh_from_db()

    assert job.status == Job.Status.COMPLETED
    assert (job.success_count, job.failure_count) == (12, 0)
    assert job.webhook_state == Job.WebhookState.PENDING and job.webhook_attempts == 0
    assert job.webhook_id != first_id


def test_it_does_nothing_when_there_is_nothing_to_retry(owner: Party, enqueued: list[Any]) -> None:
    job = _job(owner)
    _finish(job, failed=set())
    enqueued.clear()

    assert services.job_retry_failed(job_id=job.pk) == 0
    assert Job.objects.get(pk=job.pk).status == Job.Status.COMPLETED
    assert enqueued == []


def test_it_cancels_a_job_failing_the_numbers_not_yet_tried_and_fires_the_webhook(
    owner: Party, enqueued: list[Any], django_capture_on_commit_callbacks: Any
) -> None:
    job = _job(owner)
    in_flight = services.number_batch_claim(job_id=job.pk, tenant=job.tenant, limit=2)
    enqueued.clear()

    with django_capture_on_commit_callbacks(execute=True):
        result = services.job_cancel(job_id=job.pk)

    job.refresh_from_db()
    assert result == services.CancelResult(cancelled=True, not_tried=10)
    assert job.status == Job.Status.CANCELLED and job.completed_at is not None
    assert job.failure_count == 10
    untried = NumberResult.objects.filter(job=job, status="failed")
    assert all(r.message == services.CANCELLED_MESSAGE for r in untried)
    assert enqueued == [("restores.tasks.deliver_webhook", (job.pk,))]
    # No worker claims anything of a cancelled job any more.
    assert services.number_batch_claim(job_id=job.pk, tenant=job.tenant, limit=5).results == []
    # The webhook waits until the two calls in flight are recorded...
    assert services.job_webhook_deliver(job_id=job.pk, timeout=1) is None
    services.number_results_record(
        job_id=job.pk,
        token=in_flight.token,
        results=in_flight.results,
        outcomes={
            r.pk: RestoreOutcome(success=True, status_code=200, message="ok") for r in in_flight.results
        },
    )
    job.refresh_from_db()
    assert (job.success_count, job.failure_count) == (2, 10)
    assert job.status == Job.Status.CANCELLED  # recording never un-cancels it


def test_it_cancels_only_active_jobs(owner: Party, enqueued: list[Any]) -> None:
    job = _job(owner)
    _finish(job, failed=set())

    assert services.job_cancel(job_id=job.pk) == services.CancelResult(cancelled=False, not_tried=0)
    assert Job.objects.get(pk=job.pk).status == Job.Status.COMPLETED


def test_it_resends_the_webhook_of_a_finished_job_as_a_new_message(
    owner: Party, enqueued: list[Any], django_capture_on_commit_callbacks: Any
) -> None:
    job = _job(owner)
    _finish(job, failed=set())
    Job.objects.filter(pk=job.pk).update(
        webhook_state=Job.WebhookState.FAILED, webhook_attempts=6, webhook_next_attempt_at=None
    )
    old_id = Job.objects.get(pk=job.pk).webhook_id
    enqueued.clear()

    with django_capture_on_commit_callbacks(execute=True):
        assert services.job_webhook_resend(job_id=job.pk) is True

    job.refresh_from_db()
    assert job.webhook_state == Job.WebhookState.PENDING and job.webhook_attempts == 0
    assert job.webhook_id != old_id
    assert job.webhook_next_attempt_at is not None and job.webhook_next_attempt_at <= timezone.now()
    assert enqueued == [("restores.tasks.deliver_webhook", (job.pk,))]


def test_it_does_not_resend_for_a_job_without_webhook_or_still_running(
    owner: Party, enqueued: list[Any]
) -> None:
    no_hook = _job(owner, webhook_url=None)
    _finish(no_hook, failed=set())
    running = _job(owner)

    assert services.job_webhook_resend(job_id=no_hook.pk) is False
    assert services.job_webhook_resend(job_id=running.pk) is False
