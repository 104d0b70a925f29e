"""The upstream circuit breaker: opened by a burst, probed one number at a time, closed by an answer.

Against the simulated Multitel in a thread (its outage switch answers every restore with
503), with the default breaker settings; only the retry backoff and the task's slice are
shortened where a test waits for neither.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from restores import services
from restores.clients.multitel import BREAKER_OPEN_MESSAGE, RestoreOutcome
from restores.fake_multitel import FakeMultitelServer
from restores.models import BreakerEvent, Job, NumberResult, UpstreamBreaker
from restores.services.breaker import outage_message
from tests.support.jobs import recorded_outcome
from tests.support.numbers import plain_numbers
from tests.support.parties import Party


def _queued(party: Party, count: int, *, offset: int = 0) -> Job:
    assert party.tenant is not None
    numbers = plain_numbers(count + offset)[offset:]
    return services.job_create(tenant=party.tenant, credential=None, numbers=numbers, webhook_url=None)


def _states(party: Party) -> list[str]:
    return list(
        BreakerEvent.objects.filter(tenant=party.tenant).order_by("at", "id").values_list("state", flat=True)
    )


def _open_breaker(party: Party, **fields: Any) -> UpstreamBreaker:
    """The owner's breaker opened by a burst of failures, as a worker would record it."""
    assert party.tenant is not None
    view = services.breaker_outcomes_record(
        tenant_id=party.tenant.pk,
        outcomes=[],
        tripped_at=timezone.now(),
        last_error="HTTP 503 Service Unavailable",
    )
    assert view.is_open
    UpstreamBreaker.objects.filter(tenant=party.tenant).update(**fields)
    return UpstreamBreaker.objects.get(tenant=party.tenant)


@pytest.fixture
def outage(fake_multitel: FakeMultitelServer) -> FakeMultitelServer:
    fake_multitel.state.outage_start(3600)
    return fake_multitel


def test_it_opens_on_a_burst_of_failures_and_puts_the_numbers_back_unfailed(
    owner: Party, outage: FakeMultitelServer, enqueued: list[Any], settings: Any
) -> None:
    settings.RESTORE_TASK_SLICE_SECONDS = 1.0
    job = _queued(owner, 30)

    services.job_process(job_id=job.pk)

    job.refresh_from_db()
    assert (job.status, job.failure_count, job.success_count) == (Job.Status.PROCESSING, 0, 0)
    assert NumberResult.objects.filter(job=job).pending().count() == 30
    breaker = UpstreamBreaker.objects.get(tenant=owner.tenant)
    assert breaker.state in (UpstreamBreaker.State.OPEN, UpstreamBreaker.State.HALF_OPEN)
    assert "503" in breaker.last_error
    assert _states(owner)[0] == "open"
    # The burst is the calls in flight when the tenant's cap was full, not 3 attempts per number.
    calls = outage.state.stats()["outage_calls"]
    assert settings.UPSTREAM_BREAKER_FAILURES <= calls <= 2 * owner.tenant.max_concurrency + 5, calls
    assert enqueued == [("restores.tasks.process_job", (job.pk,))]  # its slice ended: a fresh task


def test_it_closes_when_the_probe_is_answered_and_finishes_the_job(
    owner: Party, outage: FakeMultitelServer, enqueued: list[Any], settings: Any
) -> None:
    settings.RESTORE_TASK_SLICE_SECONDS = 1.0
    job = _queued(owner, 30)
    services.job_process(job_id=job.pk)
    outage.state.outage_start(0)  # Multitel is back
    settings.RESTORE_TASK_SLICE_SECONDS = 30.0

    started = time.monotonic()
    services.job_process(job_id=job.pk)

    job.refresh_from_db()
    assert (job.status, job.success_count, job.failure_count) == (Job.Status.COMPLETED, 30, 0)
    assert time.monotonic() - started < settings.UPSTREAM_BREAKER_COOLDOWN_MAX + 5
    states = _states(owner)
    assert states[0] == "open" and states[-2:] == ["half_open", "closed"], states
    assert UpstreamBreaker.objects.get(tenant=owner.tenant).state == UpstreamBreaker.State.CLOSED
    # Calls made during the outage are in the audit trail, numbered on from there.
    assert NumberResult.objects.filter(job=job, attempts__gt=1).exists()


def test_it_answers_a_synchronous_request_at_once_while_open(
    owner: Party, fake_multitel: FakeMultitelServer
) -> None:
    assert owner.tenant is not None
    _open_breaker(owner)

    started = time.monotonic()
    job = services.job_submit(
        tenant=owner.tenant, credential=None, numbers=plain_numbers(5), webhook_url=None
    )

    assert time.monotonic() - started < 1.0
    assert job.status == Job.Status.COMPLETED
    results = list(NumberResult.objects.filter(job=job))
    assert {(r.status, r.status_code, r.message) for r in results} == {("failed", 503, BREAKER_OPEN_MESSAGE)}
    assert fake_multitel.state.stats()["calls_total"] == 0


def test_it_fails_an_isolated_retryable_number_as_before_without_opening(
    owner: Party, fake_multitel: FakeMultitelServer
) -> None:
    assert owner.tenant is not None
    numbers = [*plain_numbers(8), "15551230190"]  # ..90: 503 on every call

    job = services.job_submit(tenant=owner.tenant, credential=None, numbers=numbers, webhook_url=None)

    failed = NumberResult.objects.get(job=job, number="15551230190")
    assert (failed.status, failed.status_code, failed.attempts) == ("failed", 503, 3)
    assert job.success_count == 8
    assert not UpstreamBreaker.objects.filter(tenant=owner.tenant).not_closed().exists()


def test_it_lets_one_claim_probe_at_a_time_and_holds_back_only_that_tenant(
    owner: Party, second: Party, enqueued: list[Any]
) -> None:
    assert owner.tenant is not None and second.tenant is not None
    job = _queued(owner, 20)
    other = _queued(second, 20)
    _open_breaker(owner, retry_at=timezone.now() + timedelta(seconds=60))

    held = services.number_batch_claim(job_id=job.pk, tenant=owner.tenant, limit=5)
    assert (held.results, held.held_back) == ([], True)
    assert len(services.number_batch_claim(job_id=other.pk, tenant=second.tenant, limit=5).results) == 5

    UpstreamBreaker.objects.filter(tenant=owner.tenant).update(retry_at=timezone.now() - timedelta(seconds=1))
    probe = services.number_batch_claim(job_id=job.pk, tenant=owner.tenant, limit=5)
    assert (len(probe.results), probe.probe, probe.held_back) == (1, True, False)
    again = services.number_batch_claim(job_id=job.pk, tenant=owner.tenant, limit=5)
    assert (again.results, again.held_back) == ([], True)  # the probe is under way
    assert UpstreamBreaker.objects.get(tenant=owner.tenant).state == UpstreamBreaker.State.HALF_OPEN

    # A probe that got no answer opens it again, for twice the cooldown.
    failed = RestoreOutcome(
        success=False, status_code=503, message="Error: 'Service Unavailable'", deferred=True
    )
    services.breaker_outcomes_record(tenant_id=owner.tenant.pk, outcomes=[failed], tripped_at=None)
    breaker = UpstreamBreaker.objects.get(tenant=owner.tenant)
    assert (breaker.state, breaker.cooldown_seconds) == (UpstreamBreaker.State.OPEN, 2.0)
    assert _states(owner) == ["open", "half_open", "open"]


def test_it_fails_held_back_numbers_only_after_the_longest_outage(
    owner: Party, enqueued: list[Any], settings: Any
) -> None:
    now = timezone.now()
    longest = timedelta(seconds=settings.UPSTREAM_OUTAGE_MAX)
    since = now - longest - timedelta(seconds=5)
    old = _queued(owner, 12)
    recent = _queued(owner, 12, offset=100)
    Job.objects.filter(pk=old.pk).update(created_at=since)
    Job.objects.filter(pk=recent.pk).update(created_at=now - timedelta(minutes=1))
    _open_breaker(owner, outage_started_at=since)

    report = services.jobs_sweep(now=now)

    assert report.outage_failed == 12
    old.refresh_from_db()
    assert (old.status, old.failure_count) == (Job.Status.COMPLETED, 12)
    messages = set(NumberResult.objects.filter(job=old).values_list("status_code", "message"))
    assert messages == {(503, outage_message(since=since))}
    assert "15 minutes" in outage_message(since=since)
    # A job that came later has not been held back that long yet.
    assert NumberResult.objects.filter(job=recent).pending().count() == 12


def test_it_logs_every_change_of_state(owner: Party, caplog: pytest.LogCaptureFixture) -> None:
    assert owner.tenant is not None
    with caplog.at_level("WARNING", logger="restores.services.breaker"):
        _open_breaker(owner)
        services.breaker_outcomes_record(
            tenant_id=owner.tenant.pk, outcomes=[recorded_outcome(success=True)], tripped_at=None
        )
    assert [r.getMessage().split(":")[0] for r in caplog.records] == [
        "upstream breaker open",
        "upstream breaker closed",
    ]
    assert all(getattr(r, "tenant", None) == "owner" for r in caplog.records)


def test_it_is_not_opened_again_by_a_trip_older_than_its_closing(owner: Party) -> None:
    """A process that tripped during the outage and has not heard that the breaker closed
    records its calls cut short: that trip belongs to the outage that ended, not a new one."""
    assert owner.tenant is not None
    tripped_during_the_outage = timezone.now()
    _open_breaker(owner)
    services.breaker_outcomes_record(
        tenant_id=owner.tenant.pk, outcomes=[recorded_outcome(success=True)], tripped_at=None
    )

    stale = services.breaker_outcomes_record(
        tenant_id=owner.tenant.pk, outcomes=[], tripped_at=tripped_during_the_outage
    )
    assert not stale.is_open
    assert _states(owner) == ["open", "closed"]

    fresh = services.breaker_outcomes_record(
        tenant_id=owner.tenant.pk, outcomes=[], tripped_at=timezone.now()
    )
    assert fresh.is_open
    assert _states(owner) == ["open", "closed", "open"]


def test_it_gives_a_queued_number_never_answered_a_second_round_before_failing_it(
    owner: Party, fake_multitel: FakeMultitelServer, enqueued: list[Any], settings: Any
) -> None:
    # Its first round may have met the first seconds of an outage that no process had yet
    # seen enough of to open the breaker: only a second round unanswered fails it.
    assert owner.tenant is not None
    settings.MULTITEL_BACKOFF_BASE = 0.01
    numbers = [*plain_numbers(20), "15551230190"]  # ..90: 503 on every call
    job = services.job_submit(tenant=owner.tenant, credential=None, numbers=numbers, webhook_url=None)

    services.job_process(job_id=job.pk)

    failed = NumberResult.objects.get(job=job, number="15551230190")
    assert (failed.status, failed.status_code) == ("failed", 503)
    assert failed.attempts == 2 * settings.MULTITEL_MAX_ATTEMPTS
    assert fake_multitel.state.stats()["calls_by_number"]["15551230190"] == 2 * settings.MULTITEL_MAX_ATTEMPTS
    job.refresh_from_db()
    assert (job.status, job.success_count, job.failure_count) == ("completed", 20, 1)
    assert not UpstreamBreaker.objects.filter(tenant=owner.tenant).not_closed().exists()
