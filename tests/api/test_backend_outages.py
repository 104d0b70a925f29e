"""Backends out of reach (docs/api.md#errors): the database gone is a 503 ``service_unavailable``
with ``Retry-After``, never a 500; the rate limits' cache gone is no error at all (the limits
fail open). A programming error is still a 500."""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from django.core.handlers.exception import response_for_exception
from django.db import OperationalError, connection
from django.test import RequestFactory

from accounts import authentication, throttling
from restores.models import IdempotencyKey, Job
from tests.support.contract import UNAVAILABLE
from tests.support.jobs import make_job, stored
from tests.support.numbers import number, plain_numbers
from tests.support.outages import database_unreachable, unreachable_redis_cache
from tests.support.parties import Party, api_client

STATUS = "/v3/bulk_restore_status"
SUBMIT = "/v3/bulk_restore"


@pytest.fixture
def logged(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Every record at WARNING or above, ``django.request``'s included (it does not propagate)."""
    request_logger = logging.getLogger("django.request")
    request_logger.addHandler(caplog.handler)
    caplog.set_level(logging.WARNING)
    try:
        yield caplog
    finally:
        request_logger.removeHandler(caplog.handler)


def assert_unavailable(response: Any, *, leaks: tuple[str, ...] = ()) -> None:
    assert response.status_code == 503, response.content
    assert response["Content-Type"] == "application/json"
    assert json.loads(response.content) == UNAVAILABLE
    assert 1 <= int(response["Retry-After"]) <= 60
    text = response.content.decode()
    for leak in ("OperationalError", "127.0.0.1", "unable to open", "Traceback", *leaks):
        assert leak not in text


def assert_logged_once_at_warning(caplog: pytest.LogCaptureFixture) -> None:
    """One WARNING naming the exception's class, no ERROR (no traceback, no "Internal Server Error")."""
    warnings = [r for r in caplog.records if r.name == "portal.api_errors"]
    assert [r.levelno for r in warnings] == [logging.WARNING]
    assert "OperationalError" in warnings[0].getMessage()
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert [r for r in caplog.records if r.name == "django.request"] == []


# --- The database out of reach ----------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_it_answers_503_with_retry_after_to_a_status_request_while_the_database_is_unreachable(
    owner: Party, tmp_path: Path, logged: pytest.LogCaptureFixture
) -> None:
    job = make_job(owner.tenant)

    with database_unreachable(tmp_path):
        response = owner.client.get(STATUS, {"job_uuid": str(job.uuid)})

    assert_unavailable(response, leaks=(str(tmp_path), str(job.uuid)))
    assert_logged_once_at_warning(logged)
    assert owner.client.get(STATUS, {"job_uuid": str(job.uuid)}).status_code == 200  # back again


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("numbers", "headers"),
    [
        ([number(111), number(112)], {}),  # answered synchronously
        (plain_numbers(12), {}),  # queued
        (plain_numbers(12), {"HTTP_IDEMPOTENCY_KEY": "order-4711"}),
    ],
    ids=["sync", "queued", "idempotency-key"],
)
def test_it_answers_503_to_a_submission_while_the_database_is_unreachable_and_stores_nothing(
    owner: Party, tmp_path: Path, enqueued: list[Any], numbers: list[str], headers: dict[str, str]
) -> None:
    before = stored()

    with database_unreachable(tmp_path):
        response = owner.client.post(SUBMIT, {"numbers": numbers}, format="json", **headers)

    assert_unavailable(response)
    assert stored() == before
    assert IdempotencyKey.objects.count() == 0
    assert enqueued == []


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("headers", [{}, {"HTTP_IDEMPOTENCY_KEY": "order-4712"}], ids=["plain", "key"])
def test_it_answers_503_when_the_database_goes_away_in_the_middle_of_a_request(
    owner: Party,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    enqueued: list[Any],
    logged: pytest.LogCaptureFixture,
    headers: dict[str, str],
) -> None:
    """Authenticated against the database, which then goes away before the job is stored."""
    job = make_job(owner.tenant)
    before = stored()
    touch = authentication.api_credential_touch
    outage = ExitStack()
    authenticated: list[bool] = []

    def touch_then_lose_the_database(**kwargs: Any) -> None:
        touch(**kwargs)
        authenticated.append(True)
        outage.enter_context(database_unreachable(tmp_path))

    monkeypatch.setattr(authentication, "api_credential_touch", touch_then_lose_the_database)
    with outage:
        submitted = owner.client.post(SUBMIT, {"numbers": plain_numbers(12)}, format="json", **headers)
    with outage:
        polled = owner.client.get(STATUS, {"job_uuid": str(job.uuid)})

    assert authenticated == [True, True]  # the database went away after the credential was checked
    assert_unavailable(submitted)
    assert_unavailable(polled)
    assert stored() == before
    assert IdempotencyKey.objects.count() == 0
    assert enqueued == []
    warnings = [r for r in logged.records if r.name == "portal.api_errors"]
    assert [r.levelno for r in warnings] == [logging.WARNING, logging.WARNING]  # one per request
    assert [r for r in logged.records if r.levelno >= logging.ERROR] == []


@pytest.mark.django_db(transaction=True)
def test_it_answers_503_to_a_database_failure_outside_the_api_views_under_v3(
    rf: RequestFactory, tmp_path: Path, logged: pytest.LogCaptureFixture
) -> None:
    """What fails in a middleware reaches Django's handler500 (``json_500``), not DRF's handler."""
    request = rf.get(STATUS, {"job_uuid": str(uuid.uuid4())})

    with database_unreachable(tmp_path):
        try:
            connection.ensure_connection()
        except OperationalError as exc:  # as Django's handler catches it
            response = response_for_exception(request, exc)
        else:
            pytest.fail("the database answered")

    assert_unavailable(response, leaks=(str(tmp_path),))
    assert_logged_once_at_warning(logged)


@pytest.mark.parametrize(
    "sql", ["SELEC 1", "SELECT * FROM no_such_table_for_tests"], ids=["syntax-error", "unknown-table"]
)
def test_it_still_answers_500_internal_error_to_a_programming_error(
    owner: Party, monkeypatch: pytest.MonkeyPatch, sql: str
) -> None:
    """A bad query is a bug, not an outage: 500, not 503 (SQLite reports it as OperationalError)."""

    def bad_query(**kwargs: Any) -> None:
        with connection.cursor() as cursor:
            cursor.execute(sql)

    monkeypatch.setattr("restores.selectors.job_get_for_tenant", bad_query)

    response = owner.client.get(STATUS, {"job_uuid": str(uuid.uuid4())})

    assert response.status_code == 500, response.content
    assert response.json() == {
        "error": "internal_error",
        "message": "Something went wrong on our side; it has been logged.",
    }
    assert "Retry-After" not in response


# --- The rate limits' cache out of reach --------------------------------------------------------


@pytest.fixture
def cache_down(settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The cache is a Redis that is down; every rate limit is on, and low."""
    settings.CACHES = unreachable_redis_cache()
    settings.API_THROTTLE_RATE = "3/min"
    settings.AUTH_FAILURE_RATE = "2/min"
    settings.AUTH_FAILURE_USERNAME_RATE = "2/min"
    monkeypatch.setattr(throttling, "_cache_warning_at", None, raising=False)  # no warning yet
    monkeypatch.setattr(throttling, "_cache_failures_unlogged", 0, raising=False)


def timed(call: Any) -> tuple[Any, float]:
    started = time.monotonic()
    response = call()
    return response, time.monotonic() - started


def test_it_serves_status_requests_over_the_tenant_rate_while_the_cache_is_unreachable(
    owner: Party, cache_down: None
) -> None:
    job = make_job(owner.tenant)

    answers = [timed(lambda: owner.client.get(STATUS, {"job_uuid": str(job.uuid)})) for _ in range(5)]

    assert [response.status_code for response, _ in answers] == [200] * 5  # 5 > 3/min: not counted
    assert max(seconds for _, seconds in answers) < 1.0
    assert answers[0][0].json()["job_uuid"] == str(job.uuid)


def test_it_answers_wrong_secrets_with_401_while_the_cache_is_unreachable(
    owner: Party, cache_down: None
) -> None:
    wrong = api_client(owner.username, "wrong-secret")
    job = make_job(owner.tenant)

    answers = [timed(lambda: wrong.get(STATUS, {"job_uuid": str(job.uuid)})) for _ in range(4)]
    right = owner.client.get(STATUS, {"job_uuid": str(job.uuid)})

    for response, seconds in answers:  # 4 > 2/min per address and per username: not counted
        assert response.status_code == 401, response.content
        assert response.json()["error"] == "authentication_failed"
        assert response["WWW-Authenticate"].startswith("Basic")
        assert seconds < 1.0
    assert right.status_code == 200


def test_it_accepts_a_submission_while_the_cache_is_unreachable(
    owner: Party, cache_down: None, enqueued: list[Any]
) -> None:
    body = {"numbers": plain_numbers(12)}
    response, seconds = timed(lambda: owner.client.post(SUBMIT, body, format="json"))

    assert response.status_code == 202, response.content
    assert Job.objects.filter(uuid=response.json()["job_uuid"]).exists()
    assert seconds < 1.0


def test_it_warns_of_the_cache_outage_at_most_once_per_interval(
    owner: Party, cache_down: None, caplog: pytest.LogCaptureFixture, settings: Any
) -> None:
    caplog.set_level(logging.WARNING)
    params = {"job_uuid": str(uuid.uuid4())}
    wrong = api_client(owner.username, "wrong-secret")

    answers = [owner.client.get(STATUS, params).status_code, wrong.get(STATUS, params).status_code]
    first = [r for r in caplog.records if r.name == "accounts.throttling"]
    caplog.clear()
    throttling._cache_warning_at = time.monotonic() - throttling.CACHE_WARNING_INTERVAL - 1  # time passes
    answers.append(owner.client.get(STATUS, params).status_code)
    later = [r for r in caplog.records if r.name == "accounts.throttling"]

    assert answers == [404, 401, 404]
    assert [r.levelno for r in first] == [logging.WARNING]
    assert "ConnectionError" in first[0].getMessage()
    assert "not enforced" in first[0].getMessage()
    assert [r.levelno for r in later] == [logging.WARNING]
    assert "more failures since the last warning" in later[0].getMessage()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    port = settings.CACHES["default"]["LOCATION"].rsplit(":", 1)[1].split("/")[0]
    assert all(port not in r.getMessage() for r in first + later)  # never the cache's address
