"""Claims, leases, recording, completion, the sweeper and webhook retries (services)."""

from __future__ import annotations

import socket
import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.utils import timezone

from restores import services
from restores.models import Job, NumberResult, SlotLease, UpstreamAttempt, WebhookDelivery
from restores.selectors import job_status_payload
from restores.services import submission
from restores.services.claims import leases_renew
from restores.services.slots import slots_acquire, slots_renew, tenant_slots_in_use
from restores.services.window import _Window
from tests.support.harness import wait_until
from tests.support.jobs import recorded_outcome
from tests.support.numbers import plain_numbers
from tests.support.parties import Party
from tests.support.webhooks import Receiver


@pytest.fixture(autouse=True)
def roomy_owner(owner: Party) -> None:
    """Claims in these tests are not limited by the owner's concurrency cap unless they say so."""
    assert owner.tenant is not None
    owner.tenant.max_concurrency = 100
    owner.tenant.save()


def _async_job(party: Party, count: int, **kwargs: Any) -> Job:
    assert party.tenant is not None
    return services.job_create(
        tenant=party.tenant, credential=None, numbers=plain_numbers(count), webhook_url=None, **kwargs
    )


def test_it_queues_a_large_job_once_committed_and_fans_it_out(
    owner: Party, enqueued: list[Any], settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    assert owner.tenant is not None
    owner.tenant.max_concurrency = 10  # one window fills the cap: RESTORE_JOB_FANOUT decides
    owner.tenant.save()
    settings.RESTORE_JOB_FANOUT = 3
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        job = _async_job(owner, 50)
    assert enqueued == []  # nothing is enqueued before the commit
    for callback in callbacks:
        callback()
    assert enqueued == [("restores.tasks.process_job", (job.pk,))] * 3
    assert job.status == Job.Status.PENDING
    assert NumberResult.objects.filter(job=job, status="pending").count() == 50


@pytest.mark.parametrize(
    ("cap", "numbers", "tasks"),
    [(10, 50, 3), (50, 1000, 5), (100, 1000, 10), (100, 25, 3), (4, 200, 3)],
)
def test_it_starts_enough_tasks_to_fill_the_tenants_cap(
    owner: Party,
    enqueued: list[Any],
    settings: Any,
    django_capture_on_commit_callbacks: Any,
    cap: int,
    numbers: int,
    tasks: int,
) -> None:
    """RESTORE_JOB_FANOUT tasks, or as many windows as the cap holds, but never more than
    there are windows of work."""
    assert owner.tenant is not None
    settings.RESTORE_JOB_FANOUT = 3
    settings.RESTORE_BATCH_SIZE = 10
    owner.tenant.max_concurrency = cap
    owner.tenant.save()

    with django_capture_on_commit_callbacks(execute=True):
        job = _async_job(owner, numbers)

    assert enqueued == [("restores.tasks.process_job", (job.pk,))] * tasks


def test_it_claims_pending_numbers_in_submission_order_under_a_lease(owner: Party, enqueued: Any) -> None:
    job = _async_job(owner, 12)

    first = services.number_batch_claim(job_id=job.pk, tenant=job.tenant, limit=5)
    second = services.number_batch_claim(job_id=job.pk, tenant=job.tenant, limit=5)

    assert [r.position for r in first.results] == [0, 1, 2, 3, 4]
    assert [r.position for r in second.results] == [5, 6, 7, 8, 9]
    assert first.token != second.token
    leased = NumberResult.objects.filter(job=job, status="processing")
    assert leased.count() == 10
    assert all(r.lease_expires_at and r.lease_expires_at > timezone.now() for r in leased)
    assert all(r.claimed_by for r in leased)


def test_it_claims_after_its_last_position_first_then_numbers_returned_before_it(
    owner: Party, enqueued: Any
) -> None:
    job = _async_job(owner, 30)
    first = services.number_batch_claim(job_id=job.pk, tenant=job.tenant, limit=10)
    NumberResult.objects.filter(job=job, position=3).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert services.jobs_sweep().leases_reclaimed == 1  # position 3 is pending again

    ahead = services.number_batch_claim(job_id=job.pk, tenant=job.tenant, limit=5, after=9)
    rest = services.number_batch_claim(job_id=job.pk, tenant=job.tenant, limit=20, after=14)

    assert [r.position for r in first.results] == list(range(10))
    assert [r.position for r in ahead.results] == [10, 11, 12, 13, 14]
    assert sorted(r.position for r in rest.results) == [3, *range(15, 30)]
    assert len({r.lease_token for r in rest.results}) == 1
    assert not NumberResult.objects.filter(job=job, status="pending").exists()


def _hold(party: Party, job: Job, want: int, *, token: str = "", for_sync: bool = False) -> int:
    assert party.tenant is not None
    return services.slots_acquire(
        tenant=party.tenant, token=token or uuid.uuid4().hex, job_id=job.pk, want=want, for_sync=for_sync
    )


def test_it_never_holds_more_slots_than_the_tenants_cap_across_its_jobs(
    owner: Party, second: Party, enqueued: Any
) -> None:
    assert owner.tenant is not None and second.tenant is not None
    owner.tenant.max_concurrency = 4
    owner.tenant.save()
    first_job, second_job = _async_job(owner, 12), _async_job(owner, 12)
    others_job = _async_job(second, 12)

    held = [_hold(owner, first_job, 3), _hold(owner, second_job, 3), _hold(owner, second_job, 3)]
    other = _hold(second, others_job, 3)

    assert held == [3, 1, 0]
    assert other == 3  # another tenant's cap is its own
    assert services.tenant_slots_in_use(tenant_id=owner.tenant.pk) == 4


def test_it_grows_and_gives_back_the_slots_of_one_holder(owner: Party, enqueued: Any) -> None:
    assert owner.tenant is not None
    owner.tenant.max_concurrency = 5
    owner.tenant.save()
    job = _async_job(owner, 12)

    assert _hold(owner, job, 2, token="a") == 2
    assert _hold(owner, job, 4, token="a") == 4  # the ones held count
    assert _hold(owner, job, 4, token="b") == 1
    assert services.slots_set(token="a", slots=1) == 1
    assert _hold(owner, job, 4, token="b") == 4
    services.slots_set(token="b", slots=0)
    assert services.tenant_slots_in_use(tenant_id=owner.tenant.pk) == 1


def test_it_frees_the_slots_of_a_holder_that_stopped_renewing_them(owner: Party, enqueued: Any) -> None:
    assert owner.tenant is not None
    owner.tenant.max_concurrency = 3
    owner.tenant.save()
    job = _async_job(owner, 12)
    assert _hold(owner, job, 3, token="dead") == 3
    assert _hold(owner, job, 3) == 0

    later = timezone.now() + timedelta(seconds=settings.RESTORE_LEASE_SECONDS + 1)
    assert services.slots_acquire(tenant=owner.tenant, token="alive", job_id=job.pk, want=3, now=later) == 3


def test_it_leaves_room_in_the_cap_for_waiting_synchronous_requests(owner: Party, enqueued: Any) -> None:
    assert owner.tenant is not None
    owner.tenant.max_concurrency = 4
    owner.tenant.save()
    queued = _async_job(owner, 12)
    waiting = _async_job(owner, 3)  # a synchronous request whose numbers wait for a slot
    assert waiting.is_sync
    assert services.tenant_sync_waiting(tenant_id=owner.tenant.pk) == 3

    for_queued = _hold(owner, queued, 4)
    for_sync = _hold(owner, waiting, 3, for_sync=True)

    assert services.tenant_sync_waiting(tenant_id=owner.tenant.pk) == 0
    assert (for_queued, for_sync) == (1, 3)
    assert _hold(owner, queued, 4) == 0


def test_it_stops_leaving_room_for_a_synchronous_request_past_its_deadline(
    owner: Party, enqueued: Any, settings: Any
) -> None:
    assert owner.tenant is not None
    owner.tenant.max_concurrency = 4
    owner.tenant.save()
    queued = _async_job(owner, 12)
    waiting = _async_job(owner, 3)
    Job.objects.filter(pk=waiting.pk).update(
        created_at=timezone.now() - timedelta(seconds=settings.SYNC_DEADLINE + 1)
    )

    assert _hold(owner, queued, 4) == 4


def test_it_claims_numbers_ahead_of_the_calls_whatever_the_slots(owner: Party, enqueued: Any) -> None:
    """Number leases are the worker's line of work; the cap is kept by the slots."""
    assert owner.tenant is not None
    owner.tenant.max_concurrency = 2
    owner.tenant.save()
    job = _async_job(owner, 12)

    claim = services.number_batch_claim(job_id=job.pk, tenant=owner.tenant, limit=4)

    assert [r.position for r in claim.results] == [0, 1, 2, 3]
    assert services.tenant_in_flight(tenant_id=owner.tenant.pk) == 4


def test_it_never_claims_numbers_of_a_cancelled_job(owner: Party, enqueued: Any) -> None:
    job = _async_job(owner, 12)
    Job.objects.filter(pk=job.pk).update(status=Job.Status.CANCELLED)

    assert services.number_batch_claim(job_id=job.pk, tenant=job.tenant, limit=5).results == []


def test_it_records_results_only_for_the_holder_of_the_lease(owner: Party, enqueued: Any) -> None:
    job = _async_job(owner, 12)
    claim = services.number_batch_claim(job_id=job.pk, tenant=job.tenant, limit=2)
    outcomes = {r.pk: recorded_outcome(success=True) for r in claim.results}

    lost = services.number_results_record(
        job_id=job.pk, token="someone-else", results=claim.results, outcomes=outcomes
    )
    won = services.number_results_record(
        job_id=job.pk, token=claim.token, results=claim.results, outcomes=outcomes
    )
    again = services.number_results_record(
        job_id=job.pk, token=claim.token, results=claim.results, outcomes=outcomes
    )

    assert (lost, won, again) == (0, 2, 0)
    job.refresh_from_db()
    assert (job.success_count, job.failure_count) == (2, 0)  # counted once
    # Every call really happened, so every attempt is on record.
    assert UpstreamAttempt.objects.filter(job=job).count() == 6


def test_it_completes_a_job_exactly_once_and_hands_the_webhook_on_once(
    owner: Party, enqueued: list[Any], django_capture_on_commit_callbacks: Any
) -> None:
    assert owner.tenant is not None
    job = services.job_create(
        tenant=owner.tenant,
        credential=None,
        numbers=plain_numbers(11),
        webhook_url="https://hooks.example.com/x",
    )
    enqueued.clear()
    claim = services.number_batch_claim(job_id=job.pk, tenant=job.tenant, limit=11)
    services.number_results_record(
        job_id=job.pk,
        token=claim.token,
        results=claim.results,
        outcomes={r.pk: recorded_outcome() for r in claim.results},
    )

    with django_capture_on_commit_callbacks(execute=True):
        results = [services.job_complete_if_done(job_id=job.pk) for _ in range(3)]

    assert results == [True, False, False]
    assert enqueued == [("restores.tasks.deliver_webhook", (job.pk,))]
    job.refresh_from_db()
    assert job.status == Job.Status.COMPLETED and job.completed_at is not None
    assert job.webhook_state == Job.WebhookState.PENDING and job.webhook_id.startswith("msg_")


def test_it_does_not_complete_a_job_with_numbers_in_flight(owner: Party, enqueued: Any) -> None:
    job = _async_job(owner, 11)
    services.number_batch_claim(job_id=job.pk, tenant=job.tenant, limit=11)

    assert services.job_complete_if_done(job_id=job.pk) is False
    job.refresh_from_db()
    assert job.status == Job.Status.PENDING


def test_it_processes_a_queued_job_through_the_simulated_multitel(
    owner: Party, fake_multitel: Any, enqueued: Any, settings: Any
) -> None:
    settings.RESTORE_BATCH_SIZE = 4
    assert owner.tenant is not None
    numbers = [*plain_numbers(20), "15551230112", "15551230113", "15551230191"]
    job = services.job_create(tenant=owner.tenant, credential=None, numbers=numbers, webhook_url=None)

    services.job_process(job_id=job.pk)

    job.refresh_from_db()
    assert job.status == Job.Status.COMPLETED
    payload = job_status_payload(job=job)
    assert payload is not None
    assert [r["number"] for r in payload["results"]] == numbers
    assert (payload["success_count"], payload["failure_count"]) == (22, 1)
    by_number = {r["number"]: r for r in payload["results"]}
    assert by_number["15551230112"]["status_code"] == 500
    assert by_number["15551230113"]["needs_registration"] == 1
    assert by_number["15551230191"]["attempts"] == 2  # a 503, then success
    assert fake_multitel.state.max_in_flight["mt-owner"] <= 4
    assert sum(fake_multitel.state.calls_by_number.values()) == 24


def test_it_hands_over_to_a_fresh_task_when_its_time_slice_ends(
    owner: Party, fake_multitel: Any, enqueued: list[Any], settings: Any
) -> None:
    settings.RESTORE_BATCH_SIZE = 2
    settings.RESTORE_TASK_SLICE_SECONDS = 0
    job = _async_job(owner, 12)

    services.job_process(job_id=job.pk)

    job.refresh_from_db()
    assert job.status == Job.Status.PROCESSING
    # One claim: a number for each of the two slots and one in line behind each.
    assert job.done_count == 4
    assert enqueued == [("restores.tasks.process_job", (job.pk,))]


def test_it_answers_a_sync_job_within_the_deadline(owner: Party, fake_multitel: Any, settings: Any) -> None:
    settings.SYNC_DEADLINE = 1.5
    assert owner.tenant is not None

    job = services.job_submit(
        tenant=owner.tenant, credential=None, numbers=["15551230111", "15551230195"], webhook_url=None
    )

    assert job.status == Job.Status.COMPLETED
    slow = NumberResult.objects.get(job=job, number="15551230195")
    assert slow.status == "failed" and slow.status_code == 504
    assert "deadline" in (slow.message or "")
    assert NumberResult.objects.get(job=job, number="15551230111").status == "success"


# --- The sweeper -------------------------------------------------------------------


def test_it_sweeps_expired_leases_back_to_pending_and_requeues_the_job(
    owner: Party, enqueued: list[Any]
) -> None:
    job = _async_job(owner, 12)
    enqueued.clear()
    claim = services.number_batch_claim(job_id=job.pk, tenant=job.tenant, limit=3)
    later = timezone.now() + timedelta(hours=1)

    report = services.jobs_sweep(now=later, stale_after=60)

    assert report.leases_reclaimed == 3 and report.jobs_requeued == 1
    assert enqueued == [("restores.tasks.process_job", (job.pk,))]
    reclaimed = NumberResult.objects.filter(pk__in=[r.pk for r in claim.results])
    assert set(reclaimed.values_list("status", flat=True)) == {"pending"}
    # The worker that lost its lease can no longer record anything.
    assert (
        services.number_results_record(
            job_id=job.pk,
            token=claim.token,
            results=claim.results,
            outcomes={r.pk: recorded_outcome() for r in claim.results},
        )
        == 0
    )


def test_it_leaves_live_leases_and_busy_jobs_alone(owner: Party, enqueued: list[Any]) -> None:
    job = _async_job(owner, 12)
    enqueued.clear()
    services.number_batch_claim(job_id=job.pk, tenant=job.tenant, limit=3)

    report = services.jobs_sweep(stale_after=60)

    assert report == services.SweepReport(0, 0, 0, 0, 0)
    assert enqueued == []


def test_it_completes_a_job_whose_completer_died(owner: Party, enqueued: list[Any]) -> None:
    job = _async_job(owner, 11)
    claim = services.number_batch_claim(job_id=job.pk, tenant=job.tenant, limit=11)
    services.number_results_record(
        job_id=job.pk,
        token=claim.token,
        results=claim.results,
        outcomes={r.pk: recorded_outcome() for r in claim.results},
    )

    report = services.jobs_sweep(now=timezone.now() + timedelta(minutes=5), stale_after=60)

    assert report.jobs_completed == 1
    job.refresh_from_db()
    assert job.status == Job.Status.COMPLETED


# --- Webhook retries ---------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _completed_job_with_webhook(party: Party, url: str) -> Job:
    assert party.tenant is not None
    job = services.job_create(
        tenant=party.tenant, credential=None, numbers=plain_numbers(11), webhook_url=url
    )
    claim = services.number_batch_claim(job_id=job.pk, tenant=job.tenant, limit=11)
    services.number_results_record(
        job_id=job.pk,
        token=claim.token,
        results=claim.results,
        outcomes={r.pk: recorded_outcome() for r in claim.results},
    )
    assert services.job_complete_if_done(job_id=job.pk, enqueue_webhook=False)
    return job


def test_it_parses_the_webhook_retry_schedule() -> None:
    assert services.webhook_retry_delays("30s,2m,10m,1h,6h") == [
        timedelta(seconds=30),
        timedelta(minutes=2),
        timedelta(minutes=10),
        timedelta(hours=1),
        timedelta(hours=6),
    ]


def test_it_retries_a_failing_webhook_on_schedule_then_gives_up(
    owner: Party, enqueued: Any, settings: Any
) -> None:
    settings.WEBHOOK_RETRY_SCHEDULE = "30s,2m"
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = True
    port = _closed_port()
    job = _completed_job_with_webhook(owner, f"http://127.0.0.1:{port}/hook")

    first = services.job_webhook_deliver(job_id=job.pk, timeout=1)
    not_due = services.job_webhook_deliver(job_id=job.pk, timeout=1)
    job.refresh_from_db()

    assert first is not None and not first.delivered
    assert not_due is None  # the next attempt is 30 s away
    assert job.webhook_state == Job.WebhookState.FAILING
    assert job.webhook_error == f"Failed to connect to 127.0.0.1 port {port}: Connection refused"
    assert job.webhook_next_attempt_at is not None
    assert timedelta(seconds=25) < job.webhook_next_attempt_at - first.started_at < timedelta(seconds=35)

    for _ in range(2):
        Job.objects.filter(pk=job.pk).update(webhook_next_attempt_at=timezone.now())
        services.job_webhook_deliver(job_id=job.pk, timeout=1)
    job.refresh_from_db()

    assert job.webhook_state == Job.WebhookState.FAILED
    assert job.webhook_next_attempt_at is None
    deliveries = WebhookDelivery.objects.filter(job=job).order_by("attempt_number")
    assert [d.attempt_number for d in deliveries] == [1, 2, 3]
    assert len({d.webhook_id for d in deliveries}) == 1  # the same webhook-id on every retry
    assert job.status == Job.Status.COMPLETED  # a failing webhook never fails the job


def test_it_refuses_a_webhook_name_that_resolves_to_loopback(
    owner: Party, enqueued: Any, settings: Any
) -> None:
    """``localhost`` really resolves to 127.0.0.1 here: the guard looks at the address, not the name."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    hits: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            hits.append(self.path)
            self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    import threading

    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = False
        job = _completed_job_with_webhook(owner, f"http://localhost:{server.server_address[1]}/hook")
        delivery = services.job_webhook_deliver(job_id=job.pk, timeout=1)
    finally:
        server.shutdown()
        server.server_close()

    assert delivery is not None and not delivery.delivered
    assert "is not a public address" in delivery.error
    assert hits == []


def test_it_stops_calling_multitel_once_it_rejects_the_tenants_credentials(
    owner: Party, fake_multitel: Any, enqueued: Any, settings: Any
) -> None:
    assert owner.tenant is not None
    owner.tenant.multitel_password = "wrong-password"
    owner.tenant.max_concurrency = 4
    owner.tenant.save()
    job = _async_job(owner, 300)

    services.job_process(job_id=job.pk)

    job.refresh_from_db()
    assert job.status == Job.Status.COMPLETED
    assert job.failure_count == 300 and job.success_count == 0
    assert fake_multitel.state.rejected_auth <= 4  # one window of calls, not 300
    called = NumberResult.objects.filter(job=job, attempts__gt=0)
    assert called.count() == fake_multitel.state.rejected_auth
    assert all("Multitel rejected this tenant's Multitel credentials" in (r.message or "") for r in called)
    skipped = NumberResult.objects.filter(job=job, attempts=0)
    assert set(skipped.values_list("status_code", flat=True)) == {401}
    assert all("not tried" in (r.message or "") for r in skipped)


def test_it_renews_the_leases_of_a_live_task_so_that_a_long_call_is_never_taken_over(
    owner: Party, enqueued: Any, settings: Any
) -> None:
    job = _async_job(owner, 3)
    claim = services.number_batch_claim(job_id=job.pk, tenant=job.tenant, limit=3)
    lease = timedelta(seconds=settings.RESTORE_LEASE_SECONDS)
    # The holder renews just before its lease would run out, again and again: long past
    # the first lease, the calls are still its own.
    now = timezone.now()
    for _ in range(4):
        now += lease * 0.75
        assert leases_renew(tokens=[claim.token], job_id=job.pk, now=now) == 3
    later = services.number_batch_claim(job_id=job.pk, tenant=job.tenant, limit=3, now=now + lease / 2)
    assert later.results == [] and not later.held_back
    assert NumberResult.objects.filter(job=job, lease_token=claim.token).count() == 3
    job.refresh_from_db()
    assert job.heartbeat_at == now


def test_it_claims_again_numbers_whose_holder_stopped_renewing_and_refuses_its_late_results(
    owner: Party, enqueued: Any, settings: Any
) -> None:
    job = _async_job(owner, 3)
    dead = services.number_batch_claim(job_id=job.pk, tenant=job.tenant, limit=3)
    expired = timezone.now() + timedelta(seconds=settings.RESTORE_LEASE_SECONDS + 1)

    # Another task's claim takes them back once the lease ran out, with no sweep.
    live = services.number_batch_claim(job_id=job.pk, tenant=job.tenant, limit=3, now=expired)
    assert [r.number for r in live.results] == [r.number for r in dead.results]
    assert live.token != dead.token
    # The dead holder can neither renew nor record what it no longer holds.
    assert leases_renew(tokens=[dead.token], job_id=job.pk, now=expired) == 0
    outcomes = {r.pk: recorded_outcome(success=True) for r in dead.results}
    assert (
        services.number_results_record(
            job_id=job.pk, token=dead.token, results=dead.results, outcomes=outcomes
        )
        == 0
    )
    outcomes = {r.pk: recorded_outcome(success=True) for r in live.results}
    assert (
        services.number_results_record(
            job_id=job.pk, token=live.token, results=live.results, outcomes=outcomes
        )
        == 3
    )


def test_it_wakes_a_job_no_live_task_works_on_once_whoever_looks(
    owner: Party, enqueued: Any, settings: Any
) -> None:
    orphan = _async_job(owner, 3)
    busy = _async_job(owner, 3)
    enqueued.clear()
    later = timezone.now() + timedelta(seconds=settings.RESTORE_LEASE_SECONDS + 1)
    leases_renew(tokens=[], job_id=busy.pk, now=later)  # a live task keeps touching its job

    assert services.jobs_orphaned_wake(now=later) == 1
    assert services.jobs_orphaned_wake(now=later) == 0  # already woken: not twice
    assert enqueued == [("restores.tasks.process_job", (orphan.pk,))]


# --- Fair turns ----------------------------------------------------------------------


def test_it_sends_a_started_jobs_task_to_the_back_while_another_tenants_job_waits(
    owner: Party, second: Party, enqueued: list[Any]
) -> None:
    started = _async_job(owner, 30)
    Job.objects.filter(pk=started.pk).update(status=Job.Status.PROCESSING)
    waiting = _async_job(second, 30)
    Job.objects.filter(pk=waiting.pk).update(created_at=timezone.now() - timedelta(seconds=1))
    enqueued.clear()

    services.job_process(job_id=started.pk)

    assert enqueued == [("restores.tasks.process_job", (started.pk,))]
    assert not NumberResult.objects.filter(job=started).exclude(status="pending").exists()


def test_it_yields_only_to_jobs_that_wait_for_a_worker_and_could_use_one(
    owner: Party, second: Party, enqueued: list[Any]
) -> None:
    assert owner.tenant is not None and second.tenant is not None
    waiting = _async_job(second, 30)
    now = timezone.now()

    # Just created: a free worker may still pick it up.
    assert not services.others_waiting_for_a_worker(tenant_id=owner.tenant.pk, now=now)
    later = now + timedelta(seconds=1)
    assert services.others_waiting_for_a_worker(tenant_id=owner.tenant.pk, now=later)
    # Not for the tenant's own jobs: they share its cap anyway.
    assert not services.others_waiting_for_a_worker(tenant_id=second.tenant.pk, now=later)
    # Not when the waiting tenant's cap is full: a worker could do nothing for it.
    _hold(second, waiting, second.tenant.max_concurrency)
    assert not services.others_waiting_for_a_worker(tenant_id=owner.tenant.pk, now=later)
    # Nor after so long that its wake-up is more likely lost than queued (the sweeper's).
    much_later = now + timedelta(minutes=5)
    assert not services.others_waiting_for_a_worker(tenant_id=owner.tenant.pk, now=much_later)


def test_it_hands_an_idle_worker_to_a_job_under_way_whose_tenants_cap_has_room(
    owner: Party, second: Party, enqueued: list[Any]
) -> None:
    """A task that can do nothing (its tenant's cap is full) yields to a started job whose
    tenant's cap has room; a task that holds slots yields only to jobs not started yet."""
    assert owner.tenant is not None and second.tenant is not None
    under_way = _async_job(second, 30)
    now = timezone.now()
    Job.objects.filter(pk=under_way.pk).update(status=Job.Status.PROCESSING, started_at=now, heartbeat_at=now)

    assert services.others_waiting_for_a_worker(tenant_id=owner.tenant.pk, idle=True, now=now)
    assert not services.others_waiting_for_a_worker(tenant_id=owner.tenant.pk, now=now)
    # Not its own tenant's job, nor one whose tenant's cap is full.
    assert not services.others_waiting_for_a_worker(tenant_id=second.tenant.pk, idle=True, now=now)
    _hold(second, under_way, second.tenant.max_concurrency)
    assert not services.others_waiting_for_a_worker(tenant_id=owner.tenant.pk, idle=True, now=now)


def test_it_sends_a_task_whose_tenants_cap_is_full_to_the_back_of_the_queue_for_another_with_room(
    owner: Party, second: Party, enqueued: list[Any]
) -> None:
    assert owner.tenant is not None and second.tenant is not None
    now = timezone.now()
    full = _async_job(owner, 30)
    room = _async_job(second, 30)
    Job.objects.filter(pk__in=[full.pk, room.pk]).update(
        status=Job.Status.PROCESSING, started_at=now, heartbeat_at=now
    )
    _hold(owner, full, owner.tenant.max_concurrency)
    enqueued.clear()

    services.job_process(job_id=full.pk)

    assert enqueued == [("restores.tasks.process_job", (full.pk,))]
    assert not NumberResult.objects.filter(job=full).exclude(status="pending").exists()


def test_it_never_renews_call_slots_that_ran_out_so_that_the_cap_holds(
    owner: Party, enqueued: Any, settings: Any
) -> None:
    assert owner.tenant is not None
    job = _async_job(owner, 20)
    cap = owner.tenant.max_concurrency
    assert slots_acquire(tenant=owner.tenant, token="cut-off", job_id=job.pk, want=cap) == cap
    # The holder is cut off from the database for longer than a lease; another task counts
    # the cap without it and takes every slot.
    later = timezone.now() + timedelta(seconds=settings.RESTORE_LEASE_SECONDS + 1)
    assert slots_acquire(tenant=owner.tenant, token="live", job_id=job.pk, want=cap, now=later) == cap

    assert slots_renew(token="cut-off", now=later) is False
    assert slots_renew(token="live", now=later) is True
    assert tenant_slots_in_use(tenant_id=owner.tenant.pk, now=later) == cap


def test_it_starts_no_call_on_slots_that_ran_out_until_it_holds_slots_again(
    owner: Party, enqueued: Any, fake_multitel: Any, settings: Any
) -> None:
    assert owner.tenant is not None
    job = _async_job(owner, 20)
    cap = owner.tenant.max_concurrency
    window = _Window(job=job, limit=2, deadline=None, slice_ends=None)
    try:
        window._slots_want(2)
        assert window.alive == 2
        # Its lease ran out while it could not renew it; another task holds the whole cap now.
        SlotLease.objects.filter(token=window.slot_token).update(
            expires_at=timezone.now() - timedelta(seconds=1)
        )
        assert slots_acquire(tenant=owner.tenant, token="live", job_id=job.pk, want=cap) == cap

        window._renew()

        assert not SlotLease.objects.filter(token=window.slot_token).exists()
        claim = services.number_batch_claim(job_id=job.pk, tenant=owner.tenant, limit=1)
        window.outstanding[claim.results[0].pk] = claim.results[0]
        window.feed.put(claim.results[0])  # a number in line: no thread may call for it
        wait_until(lambda: (window._collect(), window.alive == 0)[1], timeout=5, what="the threads to end")
        assert fake_multitel.state.calls_total == 0
        assert tenant_slots_in_use(tenant_id=owner.tenant.pk) == cap
    finally:
        window._unfeed()
        window._close()


def test_it_stops_retrying_a_webhook_whose_receiver_answers_410_gone(
    owner: Party, enqueued: Any, settings: Any
) -> None:
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = True
    with Receiver(status=410) as receiver:
        job = _completed_job_with_webhook(owner, f"http://127.0.0.1:{receiver.port}/hook")
        first = services.job_webhook_deliver(job_id=job.pk, timeout=2)
        job.refresh_from_db()
        Job.objects.filter(pk=job.pk).update(webhook_next_attempt_at=timezone.now())  # even if due
        again = services.job_webhook_deliver(job_id=job.pk, timeout=2)

    assert first is not None and first.http_status == 410 and again is None
    assert len(receiver.requests) == 1
    assert job.webhook_state == Job.WebhookState.FAILED
    assert job.webhook_next_attempt_at is None
    assert (
        job.webhook_error
        == "The requested URL returned error: 410 (Gone): the receiver asked to stop; not retried"
    )


@pytest.mark.parametrize(
    ("status", "retry_after", "expected"),
    [
        (503, "600", timedelta(minutes=10)),  # later than the schedule's 30 s: as asked
        (429, "7200", timedelta(minutes=10)),  # more than the schedule's last step: that step
        (503, "5", timedelta(seconds=30)),  # sooner than the schedule: the schedule
        (500, "600", timedelta(seconds=30)),  # not a 429 or 503: the schedule
    ],
)
def test_it_waits_as_long_as_the_receiver_asks_up_to_the_schedules_last_step(
    owner: Party, enqueued: Any, settings: Any, status: int, retry_after: str, expected: timedelta
) -> None:
    settings.WEBHOOK_RETRY_SCHEDULE = "30s,2m,10m"
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = True
    with Receiver(status=status, headers={"Retry-After": retry_after}) as receiver:
        job = _completed_job_with_webhook(owner, f"http://127.0.0.1:{receiver.port}/hook")
        delivery = services.job_webhook_deliver(job_id=job.pk, timeout=2)

    job.refresh_from_db()
    assert delivery is not None and delivery.http_status == status
    assert job.webhook_state == Job.WebhookState.FAILING
    assert job.webhook_next_attempt_at is not None
    waited = job.webhook_next_attempt_at - delivery.started_at
    assert expected - timedelta(seconds=5) < waited < expected + timedelta(seconds=5)


def test_it_stores_a_job_and_its_numbers_in_one_transaction(
    owner: Party, enqueued: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A job seen without its numbers would look finished: the recovery sweep completed one.
    assert owner.tenant is not None

    def fails(**kwargs: Any) -> None:
        raise RuntimeError("the numbers' insert failed")

    monkeypatch.setattr(submission, "_results_insert", fails)
    with pytest.raises(RuntimeError):
        services.job_create(tenant=owner.tenant, credential=None, numbers=plain_numbers(20), webhook_url=None)

    assert not Job.objects.exists()
    assert enqueued == []
