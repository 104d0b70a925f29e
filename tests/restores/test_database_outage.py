"""A queued task waits out a database outage and starts again once the database is back
(``portal.outages.database_outages_waited_out``, on every task of ``restores.tasks``),
rather than failing and leaving its job to the sweeper."""

from __future__ import annotations

import logging
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from django.db import IntegrityError, OperationalError, connection

from portal import outages
from restores import services, tasks
from restores.models import Job, NumberResult
from tests.support.jobs import make_job
from tests.support.numbers import plain_numbers
from tests.support.outages import database_unreachable
from tests.support.parties import Party


@pytest.fixture(autouse=True)
def _quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(outages, "DATABASE_RETRY_INTERVAL", 0.02)


def waited_out(seconds: float) -> Any:
    return outages.database_outages_waited_out(wait_at_most=lambda: seconds)


@pytest.mark.django_db(transaction=True)
def test_it_starts_a_task_again_once_the_database_answers_again(
    owner: Party, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    make_job(owner.tenant)
    calls: list[int] = []

    @waited_out(30)
    def count_jobs() -> int:
        calls.append(1)
        if len(calls) == 1:
            with database_unreachable(tmp_path):  # the database goes away under the task
                return Job.objects.count()
        return Job.objects.count()

    with caplog.at_level(logging.INFO, logger="portal.outages"):
        assert count_jobs() == 1

    assert len(calls) == 2
    messages = [r.getMessage() for r in caplog.records if r.name == "portal.outages"]
    assert messages == [
        "database unavailable: OperationalError in test_it_starts_a_task_again_once_the_database_answers"
        "_again.<locals>.count_jobs; waiting for it to come back",
        "database back: test_it_starts_a_task_again_once_the_database_answers_again.<locals>.count_jobs"
        " starts again",
    ]
    assert str(tmp_path) not in caplog.text  # the exception's class only, never its message


@pytest.mark.django_db(transaction=True)
def test_it_waits_as_long_as_the_database_is_away(
    owner: Party, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reconnecting fails for a while (the server is still down, then starting up)."""
    make_job(owner.tenant)
    calls: list[int] = []
    tries: list[int] = []
    ensure = connection.ensure_connection

    @waited_out(30)
    def count_jobs() -> int:
        calls.append(1)
        return Job.objects.count()

    with ExitStack() as outage:
        outage.enter_context(database_unreachable(tmp_path))

        def reconnect() -> None:
            tries.append(1)
            if len(tries) == 5:  # the database is back for the fifth try
                outage.close()
            ensure()

        monkeypatch.setattr(connection, "ensure_connection", reconnect)
        assert count_jobs() == 1

    assert len(calls) == 2
    assert len(tries) >= 5


@pytest.mark.django_db(transaction=True)
def test_it_gives_up_and_raises_when_the_database_stays_away(owner: Party, tmp_path: Path) -> None:
    calls: list[int] = []

    @waited_out(0.2)
    def count_jobs() -> int:
        calls.append(1)
        return Job.objects.count()

    started = time.monotonic()
    with database_unreachable(tmp_path), pytest.raises(OperationalError):
        count_jobs()

    assert calls == [1]
    assert 0.15 <= time.monotonic() - started < 2


@pytest.mark.django_db(transaction=True)
def test_it_raises_a_programming_error_at_once() -> None:
    calls: list[int] = []

    @waited_out(30)
    def broken() -> None:
        calls.append(1)
        raise IntegrityError("duplicate key value violates unique constraint")

    with pytest.raises(IntegrityError):
        broken()

    assert calls == [1]


@pytest.mark.django_db
def test_it_raises_at_once_inside_a_transaction() -> None:
    """A transaction the outage broke cannot go on: inside one (here the test's), no wait."""
    calls: list[int] = []

    @waited_out(30)
    def in_a_transaction() -> None:
        calls.append(1)
        raise OperationalError("server closed the connection unexpectedly")

    started = time.monotonic()
    with pytest.raises(OperationalError):
        in_a_transaction()

    assert connection.in_atomic_block
    assert calls == [1]
    assert time.monotonic() - started < 0.5


@pytest.mark.django_db(transaction=True)
def test_it_finishes_a_job_whose_task_lost_the_database_in_the_middle(
    owner: Party, monkeypatch: pytest.MonkeyPatch, fake_multitel: Any, enqueued: Any, settings: Any
) -> None:
    """``restores.tasks.process_job``: the connection drops as the task records its first
    successes; the task waits, starts again and restores the rest; the numbers of its lost
    window are taken up once their lease runs out, and every number is counted once."""
    settings.RESTORE_LEASE_SECONDS = 1
    settings.RESTORE_BATCH_SIZE = 4
    assert owner.tenant is not None
    job = services.job_create(
        tenant=owner.tenant, credential=None, numbers=plain_numbers(12), webhook_url=None
    )
    dropped: list[str] = []

    def drop_the_connection_once(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        recording = (
            sql.startswith("UPDATE") and "restores_numberresult" in sql and "success" in (params or ())
        )
        if recording and not dropped:
            dropped.append(sql)
            raise OperationalError("server closed the connection unexpectedly")
        return execute(sql, params, many, context)

    with connection.execute_wrapper(drop_the_connection_once):
        tasks.process_job(job.pk)  # does not raise
    restored_by_then = NumberResult.objects.filter(job=job, status=NumberResult.Status.SUCCESS).count()
    time.sleep(1.1)  # the lost window's leases run out
    tasks.process_job(job.pk)  # the job's next task (its fan-out's, or the sweeper's)

    job.refresh_from_db()
    assert len(dropped) == 1
    assert restored_by_then >= 12 - settings.RESTORE_BATCH_SIZE  # all but the lost window
    assert job.status == Job.Status.COMPLETED
    assert (job.success_count, job.failure_count, job.total_numbers) == (12, 0, 12)
    results = NumberResult.objects.filter(job=job)
    assert results.final().count() == 12
    assert sorted(results.values_list("attempts", flat=True)) == [1] * 12  # each recorded once


def test_it_waits_for_the_database_at_most_half_the_task_timeout(settings: Any) -> None:
    settings.Q_TASK_TIMEOUT = 600

    assert tasks._database_wait_at_most() == 300
