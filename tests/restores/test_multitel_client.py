"""The Multitel client: one number restored upstream (docs/api.md#upstream)."""

from __future__ import annotations

import base64
import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict
from datetime import timedelta
from email.utils import format_datetime
from typing import Any

import pytest
import requests
import responses
from django.utils import timezone

from restores.clients import multitel
from restores.clients.http import parse_retry_after, user_agent
from restores.clients.multitel import AttemptRecord, MultitelClient, RestoreOutcome, shared_session
from restores.clients.multitel_envelope import BODY_EXCERPT_BYTES

BASE = "http://multitel.test"
NUMBER = "15551230111"
URL = f"{BASE}/v3/restore/{NUMBER}"
USERNAME = "mt-tenant"
PASSWORD = "Sup3r-secret-multitel-pass"
TOKEN = base64.b64encode(f"{USERNAME}:{PASSWORD}".encode()).decode()
SUPPORT_MSG = "Error: 'restore failed, please contact support'"


def envelope(code: Any = 200, msg: str = "", response: Any = None, *, omit_response: bool = False) -> str:
    out: dict[str, Any] = {"status": {"code": code, "msg": msg}}
    if not omit_response:
        out["response"] = {"number": NUMBER, "requires_identity_update": 0} if response is None else response
    return json.dumps(out)


@pytest.fixture
def upstream() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=True) as rsps:
        yield rsps


@pytest.fixture
def sleeps() -> list[float]:
    return []


def make_client(sleeps: list[float], **overrides: Any) -> MultitelClient:
    options: dict[str, Any] = {
        "base_url": BASE,
        "timeout": 7.0,
        "connect_timeout": 2.0,
        "max_attempts": 3,
        "backoff_base": 0.5,
        "backoff_max": 4.0,
        "retry_after_max": 60.0,
        "session": requests.Session(),
        "sleep": sleeps.append,
    }
    options.update(overrides)
    return MultitelClient(**options)


def restore(sleeps: list[float], number: str = NUMBER, **overrides: Any) -> RestoreOutcome:
    deadline = overrides.pop("deadline", None)
    return make_client(sleeps, **overrides).restore(
        number, username=USERNAME, password=PASSWORD, deadline=deadline
    )


def add(upstream: responses.RequestsMock, body: Any = "", status: int = 200, **kwargs: Any) -> None:
    kwargs.setdefault("content_type", "application/json")
    upstream.add(responses.GET, URL, body=body, status=status, **kwargs)


def assert_no_credentials(outcome: RestoreOutcome) -> None:
    assert outcome.attempts
    for record in outcome.attempts:
        text = repr(asdict(record))
        for secret in (PASSWORD, TOKEN, f"{USERNAME}:{PASSWORD}"):
            assert secret not in text
    assert PASSWORD not in outcome.message
    assert TOKEN not in outcome.message


# --- The request ------------------------------------------------------------------------


def test_it_gets_the_restore_url_with_accept_json_and_basic_auth(
    upstream: responses.RequestsMock, sleeps: list[float]
) -> None:
    add(upstream, envelope())
    restore(sleeps)
    [call] = upstream.calls
    assert call.request.method == "GET"
    assert call.request.url == URL
    assert call.request.headers["Accept"] == "application/json"
    assert call.request.headers["Authorization"] == f"Basic {TOKEN}"


def test_it_strips_a_trailing_slash_from_the_base_url(
    upstream: responses.RequestsMock, sleeps: list[float]
) -> None:
    add(upstream, envelope())
    assert restore(sleeps, base_url=BASE + "/").success
    assert upstream.calls[0].request.url == URL


def test_it_passes_the_connect_and_read_timeouts(
    upstream: responses.RequestsMock, sleeps: list[float]
) -> None:
    add(upstream, envelope())
    restore(sleeps, timeout=7.0, connect_timeout=2.0)
    kwargs = upstream.calls[0].request.req_kwargs  # type: ignore[attr-defined]
    assert kwargs["timeout"] == (2.0, 7.0)


def test_it_does_not_follow_a_redirect(upstream: responses.RequestsMock, sleeps: list[float]) -> None:
    add(upstream, "", status=302, headers={"Location": "http://elsewhere.test/"})
    outcome = restore(sleeps)
    assert len(upstream.calls) == 1
    assert (outcome.success, outcome.status_code) == (False, 302)
    assert outcome.message == "Error: 'HTTP 302 Found'"


def test_it_shares_one_pooled_session_naming_the_portal() -> None:
    session = shared_session()
    assert shared_session() is session
    assert session.headers["User-Agent"] == user_agent()
    assert user_agent().startswith("bulk-restore-portal/")
    assert MultitelClient(base_url=BASE).session is session


# --- Envelopes ------------------------------------------------------------------------------


def test_it_maps_a_success_envelope_to_a_restored_number(
    upstream: responses.RequestsMock, sleeps: list[float]
) -> None:
    body = envelope(200, "", {"number": NUMBER, "requires_identity_update": 0})
    add(upstream, body)
    outcome = restore(sleeps)
    assert outcome.success is True
    assert outcome.status_code == 200
    assert outcome.message == "Number restored"
    assert outcome.requires_identity_update is False
    assert outcome.needs_registration is False
    [record] = outcome.attempts
    assert record.attempt_number == 1
    assert record.http_status == 200
    assert record.envelope_code == "200"
    assert record.outcome == "success"
    assert record.error == ""
    assert record.body_excerpt == body
    assert record.started_at.tzinfo is not None
    assert abs(record.started_at - timezone.now()) < timedelta(seconds=5)
    assert record.duration_ms >= 0
    assert sleeps == []


def test_it_maps_a_string_code_failure_with_an_empty_response(
    upstream: responses.RequestsMock, sleeps: list[float]
) -> None:
    add(upstream, envelope("500", SUPPORT_MSG, ""))
    outcome = restore(sleeps)
    assert outcome.success is False
    assert outcome.status_code == 500
    assert outcome.message == SUPPORT_MSG
    assert outcome.requires_identity_update is False
    [record] = outcome.attempts
    assert (record.http_status, record.envelope_code, record.outcome) == (200, "500", "failed")
    assert record.error == SUPPORT_MSG


def test_it_maps_an_envelope_without_a_response_key(
    upstream: responses.RequestsMock, sleeps: list[float]
) -> None:
    add(upstream, envelope(404, "Error: 'number not found'", omit_response=True), status=404)
    outcome = restore(sleeps)
    assert (outcome.success, outcome.status_code) == (False, 404)
    assert outcome.message == "Error: 'number not found'"
    assert (outcome.requires_identity_update, outcome.needs_registration) == (False, False)
    assert len(upstream.calls) == 1


@pytest.mark.parametrize("code", [200, "200", " 200 ", 200.0, 201, "204"])
def test_it_takes_any_2xx_code_in_any_form_as_success(
    code: Any, upstream: responses.RequestsMock, sleeps: list[float]
) -> None:
    add(upstream, envelope(code))
    outcome = restore(sleeps)
    assert outcome.success is True
    assert outcome.status_code == int(float(str(code).strip()))
    assert outcome.attempts[0].envelope_code == str(code)


def test_it_gives_the_envelope_message_on_success_when_there_is_one(
    upstream: responses.RequestsMock, sleeps: list[float]
) -> None:
    add(upstream, envelope(200, "Number restored (already active)"))
    assert restore(sleeps).message == "Number restored (already active)"


@pytest.mark.parametrize(
    ("code", "message"),
    [
        (403, "Error: 'HTTP 403 Forbidden'"),
        ("500", "Error: 'HTTP 500 Internal Server Error'"),
        (599, "Error: 'HTTP 599'"),
    ],
)
def test_it_words_a_failure_without_a_message(
    code: Any, message: str, upstream: responses.RequestsMock, sleeps: list[float]
) -> None:
    add(upstream, envelope(code, "   "))
    outcome = restore(sleeps)
    assert (outcome.success, outcome.message) == (False, message)


@pytest.mark.parametrize(
    ("http_status", "code", "success", "status_code"),
    [
        (200, "500", False, 500),
        (200, 404, False, 404),
        (500, 200, True, 200),
        (404, "403", False, 403),
        (401, 200, True, 200),
        (503, 200, True, 200),
    ],
)
def test_it_takes_the_envelope_code_over_the_http_status(
    http_status: int,
    code: Any,
    success: bool,
    status_code: int,
    upstream: responses.RequestsMock,
    sleeps: list[float],
) -> None:
    add(upstream, envelope(code, "" if success else "Error: 'nope'"), status=http_status)
    outcome = restore(sleeps)
    assert (outcome.success, outcome.status_code) == (success, status_code)
    [record] = outcome.attempts
    assert record.http_status == http_status
    assert record.envelope_code == str(code)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1, True),
        ("1", True),
        (True, True),
        (0, False),
        ("0", False),
        (False, False),
        (None, False),
        ("", False),
    ],
)
def test_it_reads_requires_identity_update_flags_loosely(
    value: Any, expected: bool, upstream: responses.RequestsMock, sleeps: list[float]
) -> None:
    add(upstream, envelope(200, "", {"number": NUMBER, "requires_identity_update": value}))
    assert restore(sleeps).requires_identity_update is expected


@pytest.mark.parametrize(
    ("value", "expected"), [(1, True), ("1", True), (True, True), (0, False), (False, False)]
)
def test_it_reads_needs_registration_loosely(
    value: Any, expected: bool, upstream: responses.RequestsMock, sleeps: list[float]
) -> None:
    add(upstream, envelope(200, "", {"requires_identity_update": 1, "needs_registration": value}))
    outcome = restore(sleeps)
    assert outcome.needs_registration is expected
    assert outcome.requires_identity_update is True


def test_it_reads_needs_registration_as_false_when_absent(
    upstream: responses.RequestsMock, sleeps: list[float]
) -> None:
    add(upstream, envelope(200, "", {"number": NUMBER, "requires_identity_update": 1}))
    outcome = restore(sleeps)
    assert (outcome.requires_identity_update, outcome.needs_registration) == (True, False)


@pytest.mark.parametrize("response", ["", None, [], "unexpected"])
def test_it_reads_flags_from_the_top_level(
    response: Any, upstream: responses.RequestsMock, sleeps: list[float]
) -> None:
    body: dict[str, Any] = {
        "status": {"code": "200", "msg": ""},
        "requires_identity_update": "1",
        "needs_registration": True,
    }
    if response is not None:
        body["response"] = response
    add(upstream, json.dumps(body))
    outcome = restore(sleeps)
    assert outcome.success is True
    assert (outcome.requires_identity_update, outcome.needs_registration) == (True, True)


def test_it_accepts_a_utf8_byte_order_mark(upstream: responses.RequestsMock, sleeps: list[float]) -> None:
    add(upstream, b"\xef\xbb\xbf" + envelope().encode())
    assert restore(sleeps).success is True


# --- Answers that are not an envelope -------------------------------------------------------

HTML = "<!DOCTYPE html><html><body><h1>Service error</h1></body></html>"


@pytest.mark.parametrize(
    ("http_status", "body", "content_type", "status_code", "message"),
    [
        (200, HTML, "text/html", 502, "Error: 'HTML instead of JSON from upstream'"),
        (
            200,
            "<html><body>hi</body></html>",
            "application/json",
            502,
            "Error: 'HTML instead of JSON from upstream'",
        ),
        (200, "", "application/json", 502, "Error: 'empty response from upstream'"),
        (200, "  \n ", "application/json", 502, "Error: 'empty response from upstream'"),
        (200, "not json {", "application/json", 502, "Error: 'invalid JSON from upstream'"),
        (200, b"\xff\xfe\x00garbage", "application/octet-stream", 502, "Error: 'invalid JSON from upstream'"),
        (
            200,
            '{"status": {"code": 200, "msg": "", "response": ',
            "application/json",
            502,
            "Error: 'invalid JSON from upstream'",
        ),
        (
            200,
            '{"ok": true}',
            "application/json",
            502,
            "Error: 'unexpected JSON from upstream (no status code in the envelope)'",
        ),
        (
            200,
            "[]",
            "application/json",
            502,
            "Error: 'unexpected JSON from upstream (no status code in the envelope)'",
        ),
        (
            200,
            "null",
            "application/json",
            502,
            "Error: 'unexpected JSON from upstream (no status code in the envelope)'",
        ),
        (
            200,
            "42",
            "application/json",
            502,
            "Error: 'unexpected JSON from upstream (no status code in the envelope)'",
        ),
        (
            200,
            '{"status": "ok"}',
            "application/json",
            502,
            "Error: 'unexpected JSON from upstream (no status code in the envelope)'",
        ),
        (
            200,
            '{"status": {"msg": "x"}}',
            "application/json",
            502,
            "Error: 'unexpected JSON from upstream (no status code in the envelope)'",
        ),
        (
            200,
            '{"status": {"code": "abc"}}',
            "application/json",
            502,
            "Error: 'unexpected JSON from upstream (no status code in the envelope)'",
        ),
        (
            200,
            '{"status": {"code": true}}',
            "application/json",
            502,
            "Error: 'unexpected JSON from upstream (no status code in the envelope)'",
        ),
        (
            200,
            '{"status": {"code": -1}}',
            "application/json",
            502,
            "Error: 'unexpected JSON from upstream (no status code in the envelope)'",
        ),
        (
            200,
            '{"status": {"code": 70000}}',
            "application/json",
            502,
            "Error: 'unexpected JSON from upstream (no status code in the envelope)'",
        ),
        (500, HTML, "text/html", 500, "Error: 'HTTP 500 Internal Server Error'"),
        (404, "", "text/plain", 404, "Error: 'HTTP 404 Not Found'"),
        (401, '{"error": "unauthorized"}', "application/json", 401, "Error: 'HTTP 401 Unauthorized'"),
    ],
)
def test_it_fails_a_body_that_is_not_an_envelope_saying_what_came_back(
    http_status: int,
    body: Any,
    content_type: str,
    status_code: int,
    message: str,
    upstream: responses.RequestsMock,
    sleeps: list[float],
) -> None:
    add(upstream, body, status=http_status, content_type=content_type)
    outcome = restore(sleeps)
    assert outcome.success is False
    assert outcome.status_code == status_code
    assert outcome.message == message
    assert len(upstream.calls) == 1
    assert sleeps == []
    [record] = outcome.attempts
    assert record.http_status == http_status
    assert record.outcome == "failed"
    assert record.envelope_code == ""
    assert record.error == message.removeprefix("Error: '").removesuffix("'")


def test_it_fails_a_truncated_body_without_retrying(
    upstream: responses.RequestsMock, sleeps: list[float]
) -> None:
    add(
        upstream, requests.exceptions.ChunkedEncodingError("Connection broken: IncompleteRead(10 bytes read)")
    )
    outcome = restore(sleeps)
    assert (outcome.success, outcome.status_code) == (False, 502)
    assert outcome.message == "Error: 'truncated response from upstream'"
    assert len(upstream.calls) == 1
    [record] = outcome.attempts
    assert (record.http_status, record.outcome) == (None, "failed")


def test_it_fails_a_body_cut_short_by_a_real_server(sleeps: list[float]) -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n"
    with OneShotServer(head + b'{"status": {"code": 200, "msg": ""}, "respon') as port:
        outcome = restore(sleeps, base_url=f"http://127.0.0.1:{port}", max_attempts=1)
    assert (outcome.success, outcome.status_code) == (False, 502)
    assert outcome.message == "Error: 'truncated response from upstream'"


def test_it_keeps_the_first_2048_bytes_of_the_body(
    upstream: responses.RequestsMock, sleeps: list[float]
) -> None:
    body = "<html>" + "x" * 5000 + "</html>"
    add(upstream, body, status=500, content_type="text/html")
    [record] = restore(sleeps).attempts
    assert record.body_excerpt == body[:BODY_EXCERPT_BYTES]
    assert BODY_EXCERPT_BYTES == 2048


@pytest.mark.parametrize("filler", ["é", "€", "😀", "a\u00e9"])
def test_it_keeps_the_excerpt_within_2048_bytes_of_utf8(
    filler: str, upstream: responses.RequestsMock, sleeps: list[float]
) -> None:
    body = ("x" + filler * 3000).encode()
    add(upstream, body, status=500, content_type="text/html")
    [record] = restore(sleeps).attempts
    encoded = record.body_excerpt.encode("utf-8")
    assert len(encoded) <= 2048
    assert len(encoded) >= 2048 - 4
    assert body.startswith(encoded)


def test_it_keeps_no_nul_character_in_texts(upstream: responses.RequestsMock, sleeps: list[float]) -> None:
    add(
        upstream,
        json.dumps({"status": {"code": 500, "msg": "Error: 'bad\u0000thing'"}}).encode() + b"\x00\x00",
    )
    outcome = restore(sleeps)
    assert "\x00" not in outcome.message
    assert "\x00" not in outcome.attempts[0].body_excerpt
    assert "\x00" not in outcome.attempts[0].error


# --- No answer at all ------------------------------------------------------------------------


def test_it_fails_a_read_timeout_with_504_after_every_attempt(
    upstream: responses.RequestsMock, sleeps: list[float]
) -> None:
    add(upstream, requests.exceptions.ReadTimeout("read timed out"))
    outcome = restore(sleeps)
    assert (outcome.success, outcome.status_code) == (False, 504)
    assert outcome.message == "Error: 'upstream timed out after 7 seconds'"
    assert len(upstream.calls) == 3
    assert [r.outcome for r in outcome.attempts] == ["retryable"] * 3
    assert [r.http_status for r in outcome.attempts] == [None] * 3
    # The attempt is recorded in curl's words (how long it took, what had come).
    assert all(
        re.fullmatch(r"Operation timed out after \d+ milliseconds with 0 bytes received", r.error)
        for r in outcome.attempts
    ), [r.error for r in outcome.attempts]
    assert len(sleeps) == 2


def test_it_names_the_connect_timeout_when_connecting_timed_out(
    upstream: responses.RequestsMock, sleeps: list[float]
) -> None:
    add(upstream, requests.exceptions.ConnectTimeout("connect timed out"))
    outcome = restore(sleeps, max_attempts=1)
    assert (outcome.status_code, outcome.message) == (504, "Error: 'upstream timed out after 2 seconds'")


def test_it_times_out_on_a_real_server_that_never_answers(sleeps: list[float]) -> None:
    with SilentServer() as port:
        started = time.monotonic()
        outcome = restore(sleeps, base_url=f"http://127.0.0.1:{port}", timeout=0.2, max_attempts=1)
        elapsed = time.monotonic() - started
    assert (outcome.success, outcome.status_code) == (False, 504)
    assert outcome.message == "Error: 'upstream timed out after 0.2 seconds'"
    assert elapsed < 2


def test_it_fails_a_connection_error_with_502_after_every_attempt(
    upstream: responses.RequestsMock, sleeps: list[float]
) -> None:
    add(upstream, requests.exceptions.ConnectionError("Connection refused"))
    outcome = restore(sleeps)
    assert (outcome.success, outcome.status_code) == (False, 502)
    assert outcome.message == "Error: 'could not connect to upstream'"
    assert len(upstream.calls) == 3
    assert [r.outcome for r in outcome.attempts] == ["retryable"] * 3


def test_it_fails_a_refused_connection_on_a_real_port(sleeps: list[float]) -> None:
    port = closed_port()
    outcome = restore(sleeps, base_url=f"http://127.0.0.1:{port}")
    assert (outcome.success, outcome.status_code) == (False, 502)
    assert outcome.message == "Error: 'could not connect to upstream'"
    assert len(outcome.attempts) == 3
    assert len(sleeps) == 2


# --- Retries -----------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [429, 502, 503, 504])
def test_it_retries_a_retryable_status_then_succeeds(
    status: int, upstream: responses.RequestsMock, sleeps: list[float]
) -> None:
    add(upstream, "<html>busy</html>", status=status, content_type="text/html")
    add(upstream, envelope(200, "", {"requires_identity_update": 1}))
    outcome = restore(sleeps)
    assert outcome.success is True
    assert outcome.status_code == 200
    assert outcome.requires_identity_update is True
    assert [(r.attempt_number, r.http_status, r.outcome) for r in outcome.attempts] == [
        (1, status, "retryable"),
        (2, 200, "success"),
    ]
    assert outcome.attempts[0].body_excerpt == "<html>busy</html>"
    assert len(sleeps) == 1


@pytest.mark.parametrize(
    "exception",
    [requests.exceptions.ConnectionError("refused"), requests.exceptions.ReadTimeout("slow")],
)
def test_it_retries_a_connection_failure_or_timeout_then_succeeds(
    exception: Exception, upstream: responses.RequestsMock, sleeps: list[float]
) -> None:
    add(upstream, exception)
    add(upstream, envelope())
    outcome = restore(sleeps)
    assert outcome.success is True
    assert [r.outcome for r in outcome.attempts] == ["retryable", "success"]


def test_it_gives_up_after_max_attempts_with_the_last_status(
    upstream: responses.RequestsMock, sleeps: list[float]
) -> None:
    add(upstream, "<html>503 Service Unavailable</html>", status=503, content_type="text/html")
    outcome = restore(sleeps, max_attempts=4)
    assert (outcome.success, outcome.status_code) == (False, 503)
    assert outcome.message == "Error: 'HTTP 503 Service Unavailable'"
    assert len(upstream.calls) == 4
    assert [r.attempt_number for r in outcome.attempts] == [1, 2, 3, 4]
    assert {r.error for r in outcome.attempts} == {"HTTP 503 Service Unavailable"}
    assert len(sleeps) == 3


def test_it_makes_one_attempt_when_max_attempts_is_one(
    upstream: responses.RequestsMock, sleeps: list[float]
) -> None:
    add(upstream, "", status=503)
    outcome = restore(sleeps, max_attempts=1)
    assert len(upstream.calls) == 1
    assert outcome.status_code == 503
    assert sleeps == []


def test_it_uses_max_attempts_from_settings_by_default(
    settings: Any, upstream: responses.RequestsMock, sleeps: list[float]
) -> None:
    settings.MULTITEL_MAX_ATTEMPTS = 2
    add(upstream, "", status=502)
    outcome = restore(sleeps, max_attempts=None)
    assert len(upstream.calls) == 2
    assert len(outcome.attempts) == 2


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (500, HTML),
        (404, envelope(404, "Error: 'number not found'", omit_response=True)),
        (401, '{"error": "bad credentials"}'),
        (403, ""),
        (400, envelope(400, "Error: 'bad number'")),
        (200, envelope("500", SUPPORT_MSG, "")),
        (200, envelope("503", "Error: 'busy'")),
        (200, envelope(429, "Error: 'slow down'")),
        (200, HTML),
    ],
)
def test_it_does_not_retry_other_answers(
    status: int, body: str, upstream: responses.RequestsMock, sleeps: list[float]
) -> None:
    add(upstream, body, status=status)
    outcome = restore(sleeps)
    assert outcome.success is False
    assert len(upstream.calls) == 1
    assert [r.outcome for r in outcome.attempts] == ["failed"]
    assert sleeps == []


def test_it_keeps_the_envelope_of_a_retryable_status(
    upstream: responses.RequestsMock, sleeps: list[float]
) -> None:
    add(upstream, envelope(429, "Too many requests", omit_response=True), status=429)
    outcome = restore(sleeps, max_attempts=2)
    assert (outcome.success, outcome.status_code) == (False, 429)
    assert outcome.message == "Too many requests"
    assert [(r.http_status, r.envelope_code) for r in outcome.attempts] == [(429, "429"), (429, "429")]
    assert outcome.attempts[0].error == "HTTP 429 Too Many Requests: Too many requests"


def test_it_backs_off_exponentially_with_jitter(
    monkeypatch: pytest.MonkeyPatch, upstream: responses.RequestsMock, sleeps: list[float]
) -> None:
    ranges: list[tuple[float, float]] = []

    def uniform(low: float, high: float) -> float:
        ranges.append((low, high))
        return high

    monkeypatch.setattr(multitel.random, "uniform", uniform)
    add(upstream, "", status=503)
    restore(sleeps, max_attempts=5, backoff_base=1.0, backoff_max=5.0)
    assert ranges == [(0.5, 1.0), (1.0, 2.0), (2.0, 4.0), (2.5, 5.0)]
    assert sleeps == [1.0, 2.0, 4.0, 5.0]


def test_it_draws_random_delays_within_the_backoff_range(
    upstream: responses.RequestsMock, sleeps: list[float]
) -> None:
    add(upstream, "", status=502)
    for _ in range(5):
        restore(sleeps, max_attempts=3, backoff_base=1.0, backoff_max=10.0)
    first, second = sleeps[0::2], sleeps[1::2]
    assert all(0.5 <= d <= 1.0 for d in first)
    assert all(1.0 <= d <= 2.0 for d in second)
    assert len(set(sleeps)) > 2


def test_it_honours_retry_after_in_seconds(upstream: responses.RequestsMock, sleeps: list[float]) -> None:
    add(upstream, "", status=429, headers={"Retry-After": "7"})
    add(upstream, envelope())
    outcome = restore(sleeps)
    assert outcome.success is True
    assert sleeps == [7.0]


def test_it_honours_retry_after_as_an_http_date(
    upstream: responses.RequestsMock, sleeps: list[float]
) -> None:
    when = timezone.now() + timedelta(seconds=30)
    add(upstream, "", status=503, headers={"Retry-After": format_datetime(when, usegmt=True)})
    add(upstream, envelope())
    assert restore(sleeps).success is True
    [delay] = sleeps
    assert 27 <= delay <= 30


def test_it_caps_retry_after_at_retry_after_max(
    upstream: responses.RequestsMock, sleeps: list[float]
) -> None:
    add(upstream, "", status=429, headers={"Retry-After": "3600"})
    add(upstream, "", status=429, headers={"Retry-After": "3600"})
    add(upstream, envelope())
    assert restore(sleeps, retry_after_max=5.0).success is True
    assert sleeps == [5.0, 5.0]


def test_it_caps_retry_after_at_sixty_seconds_by_default(
    upstream: responses.RequestsMock, sleeps: list[float]
) -> None:
    add(upstream, "", status=429, headers={"Retry-After": "86400"})
    add(upstream, envelope())
    restore(sleeps, retry_after_max=None)
    assert sleeps == [60.0]


def test_it_falls_back_to_backoff_for_a_bad_retry_after(
    upstream: responses.RequestsMock, sleeps: list[float]
) -> None:
    add(upstream, "", status=429, headers={"Retry-After": "soon"})
    add(upstream, envelope())
    restore(sleeps, backoff_base=1.0)
    [delay] = sleeps
    assert 0.5 <= delay <= 1.0


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        ("0", 0.0),
        ("120", 120.0),
        (" 5 ", 5.0),
        ("-1", None),
        ("1.5", None),
        ("soon", None),
        ("\u0663", None),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),
        ("Wed, 21 Oct 2015 07:28:00 -0000", 0.0),
    ],
)
def test_it_parses_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value) == expected


@pytest.mark.parametrize("zone", ["GMT", "+0000", "-0000"])
def test_it_parses_a_future_retry_after_date_as_seconds_from_now(zone: str) -> None:
    when = timezone.now() + timedelta(seconds=90)
    value = when.strftime("%a, %d %b %Y %H:%M:%S ") + zone
    seconds = parse_retry_after(value)
    assert seconds is not None
    assert 88 <= seconds <= 90


# --- The caller's deadline ---------------------------------------------------------------------


def test_it_stops_retrying_when_the_wait_would_pass_the_deadline(
    upstream: responses.RequestsMock, sleeps: list[float]
) -> None:
    add(upstream, "", status=429, headers={"Retry-After": "5"})
    outcome = restore(sleeps, deadline=time.monotonic() + 2)
    assert len(upstream.calls) == 1
    assert sleeps == []
    assert (outcome.success, outcome.status_code) == (False, 429)


def test_it_retries_while_the_deadline_allows(upstream: responses.RequestsMock, sleeps: list[float]) -> None:
    add(upstream, "", status=503, headers={"Retry-After": "1"})
    add(upstream, envelope())
    outcome = restore(sleeps, deadline=time.monotonic() + 20)
    assert outcome.success is True
    assert sleeps == [1.0]


def test_it_makes_no_call_once_the_deadline_has_passed(
    upstream: responses.RequestsMock, sleeps: list[float]
) -> None:
    outcome = restore(sleeps, deadline=time.monotonic() - 1)
    assert len(upstream.calls) == 0
    assert (outcome.success, outcome.status_code) == (False, 504)
    assert "deadline" in outcome.message
    assert all(r.http_status is None for r in outcome.attempts)


def test_it_shortens_the_read_timeout_to_the_deadline(
    upstream: responses.RequestsMock, sleeps: list[float]
) -> None:
    add(upstream, envelope())
    restore(sleeps, timeout=7.0, connect_timeout=5.0, deadline=time.monotonic() + 3)
    connect, read = upstream.calls[0].request.req_kwargs["timeout"]  # type: ignore[attr-defined]
    assert 2 < read <= 3
    assert connect == read


def test_it_fails_with_504_when_the_deadline_cuts_the_answer_short(sleeps: list[float]) -> None:
    with SilentServer() as port:
        started = time.monotonic()
        outcome = restore(
            sleeps, base_url=f"http://127.0.0.1:{port}", timeout=30.0, deadline=time.monotonic() + 0.3
        )
        elapsed = time.monotonic() - started
    assert (outcome.success, outcome.status_code) == (False, 504)
    assert outcome.message == "Error: 'no answer from upstream before the synchronous deadline'"
    assert len(outcome.attempts) == 1
    assert sleeps == []
    assert elapsed < 2


def test_it_retries_a_connect_timeout_that_came_well_before_the_deadline(
    upstream: responses.RequestsMock, sleeps: list[float]
) -> None:
    add(upstream, requests.exceptions.ConnectTimeout("connect timed out"))
    add(upstream, envelope())
    outcome = restore(sleeps, timeout=30.0, deadline=time.monotonic() + 20)
    assert outcome.success is True
    assert outcome.attempts[0].error == "Connection timed out after 2000 milliseconds"
    assert outcome.attempts[0].outcome == "retryable"


# --- Credentials -----------------------------------------------------------------------------------


ECHOES = [
    pytest.param(401, f"<html>Authorization: Basic {TOKEN}</html>", id="token-in-html"),
    pytest.param(200, envelope(500, f"Error: 'bad password {PASSWORD}'"), id="password-in-msg"),
    pytest.param(503, f"upstream saw {USERNAME}:{PASSWORD}", id="pair-in-retryable-body"),
    pytest.param(200, envelope(200, "", {"echo": f"Basic {TOKEN}", "pw": PASSWORD}), id="success-echo"),
    pytest.param(500, "x" * (BODY_EXCERPT_BYTES - 10) + PASSWORD, id="password-across-the-cut"),
]


@pytest.mark.parametrize(("status", "body"), ECHOES)
def test_it_never_records_the_credentials_even_when_upstream_echoes_them(
    status: int, body: str, upstream: responses.RequestsMock, sleeps: list[float]
) -> None:
    add(upstream, body, status=status)
    outcome = restore(sleeps, max_attempts=2)
    assert_no_credentials(outcome)
    assert "[redacted]" in outcome.attempts[0].body_excerpt


@pytest.mark.parametrize(
    "exception",
    [
        requests.exceptions.ConnectionError(f"could not reach http://{USERNAME}:{PASSWORD}@multitel.test"),
        requests.exceptions.ReadTimeout(f"Authorization: Basic {TOKEN}"),
        requests.exceptions.ChunkedEncodingError(PASSWORD),
        requests.exceptions.ContentDecodingError(PASSWORD),
    ],
)
def test_it_never_records_the_credentials_of_a_failed_call(
    exception: Exception, upstream: responses.RequestsMock, sleeps: list[float]
) -> None:
    add(upstream, exception)
    outcome = restore(sleeps, max_attempts=2)
    assert outcome.success is False
    assert_no_credentials(outcome)


def test_it_records_every_attempt_with_the_fields_for_audit(
    upstream: responses.RequestsMock, sleeps: list[float]
) -> None:
    add(upstream, requests.exceptions.ConnectionError("refused"))
    add(upstream, "<html>bad gateway</html>", status=502, content_type="text/html")
    add(upstream, envelope("500", SUPPORT_MSG, ""))
    outcome = restore(sleeps)
    assert all(isinstance(r, AttemptRecord) for r in outcome.attempts)
    assert [
        (r.attempt_number, r.http_status, r.envelope_code, r.outcome, r.error, r.body_excerpt)
        for r in outcome.attempts
    ] == [
        (1, None, "", "retryable", "Failed to connect to multitel.test port 80: ConnectionError", ""),
        (2, 502, "", "retryable", "HTTP 502 Bad Gateway", "<html>bad gateway</html>"),
        (3, 200, "500", "failed", SUPPORT_MSG, envelope("500", SUPPORT_MSG, "")),
    ]
    assert outcome.attempts[0].started_at <= outcome.attempts[1].started_at <= outcome.attempts[2].started_at
    assert (outcome.status_code, outcome.message) == (500, SUPPORT_MSG)


# --- Loopback servers ---------------------------------------------------------------------------


def closed_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    sock.close()
    return port


class SilentServer:
    """A loopback port that accepts connections and never answers."""

    def __enter__(self) -> int:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        return int(self.sock.getsockname()[1])

    def __exit__(self, *exc: object) -> None:
        self.sock.close()


class OneShotServer:
    """A loopback server that answers one request with raw bytes, then closes the connection."""

    def __init__(self, reply: bytes) -> None:
        self.reply = reply

    def __enter__(self) -> int:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1)
        self.sock.settimeout(5)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()
        return int(self.sock.getsockname()[1])

    def _serve(self) -> None:
        try:
            conn, _ = self.sock.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(5)
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                data += chunk
            conn.sendall(self.reply)

    def __exit__(self, *exc: object) -> None:
        self.thread.join(timeout=5)
        self.sock.close()
