"""The breaker's local half: attempts counted as they happen, calls stopped once it trips."""

from __future__ import annotations

from datetime import timedelta

import requests
import responses
from django.utils import timezone

from restores.clients.multitel import BREAKER_OPEN_MESSAGE, MultitelClient
from restores.clients.upstream_health import AccountHealth
from restores.services.breaker import BreakerView

BASE = "http://multitel.test"


def _client() -> MultitelClient:
    return MultitelClient(
        base_url=BASE, max_attempts=3, session=requests.Session(), sleep=lambda seconds: None
    )


@responses.activate
def test_it_stops_a_numbers_retries_once_the_burst_trips_it() -> None:
    responses.get(f"{BASE}/v3/restore/15551230111", status=503, body="Service Unavailable")
    health = AccountHealth(threshold=2)

    outcome = _client().restore("15551230111", username="u", password="p", health=health)

    # Two failures tripped it: the third attempt was never started.
    assert len(responses.calls) == 2
    assert (outcome.deferred, outcome.success, outcome.status_code) == (True, False, 503)
    assert health.is_open and health.tripped
    assert "503" in health.last_error


@responses.activate
def test_it_starts_no_call_while_open() -> None:
    health = AccountHealth(threshold=1)
    health.attempt_done(retryable_failure=True, error="connection refused")

    outcome = _client().restore("15551230111", username="u", password="p", health=health)

    assert len(responses.calls) == 0
    assert (outcome.deferred, outcome.status_code, outcome.message) == (True, 503, BREAKER_OPEN_MESSAGE)
    assert outcome.attempts == []


def test_it_is_reset_by_any_answer_and_ignores_isolated_failures() -> None:
    health = AccountHealth(threshold=3)
    for _ in range(2):
        health.attempt_done(retryable_failure=True)
    health.attempt_done(retryable_failure=False)  # an answer, even an error envelope
    for _ in range(2):
        health.attempt_done(retryable_failure=True)
    assert not health.is_open
    health.attempt_done(retryable_failure=True)
    assert health.is_open


def test_it_keeps_a_trip_the_shared_breaker_has_not_recorded_yet() -> None:
    health = AccountHealth(threshold=1)
    health.attempt_done(retryable_failure=True)
    long_ago = timezone.now() - timedelta(hours=1)

    health.sync(BreakerView(state="closed", changed_at=long_ago))  # closed before the trip
    assert health.is_open
    health.sync(BreakerView(state="closed", changed_at=timezone.now()))  # closed after it
    assert not health.is_open
    health.sync(BreakerView(state="open", changed_at=timezone.now()))  # another process saw it
    assert health.is_open and not health.tripped
