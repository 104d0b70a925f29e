"""The Multitel client: restore one number, upstream (docs/api.md#upstream).

One pooled ``requests.Session`` per process, mandatory timeouts, the loose
v3 envelope parsed defensively, and retries with exponential backoff and
jitter for exactly the retryable cases. Every attempt is returned as an
``AttemptRecord`` for the caller to store; credentials never appear in one.

This module does no database work, so it can run in worker threads.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import os
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import requests
from django.conf import settings
from django.utils import timezone

from restores.clients import http
from restores.clients.multitel_envelope import (
    Envelope,
    UpstreamBadResponse,
    UpstreamConnectionError,
    UpstreamDeadlineExceeded,
    UpstreamError,
    UpstreamTimeout,
    http_reason,
    parse_response,
    seconds_text,
)
from restores.clients.upstream_health import AccountHealth

# Below this many seconds left before the caller's deadline, no attempt is started.
DEADLINE_MARGIN = 0.05
# An envelope is a few hundred bytes; an answer longer than this (decoded) is not one.
MAX_BODY_BYTES = 64 * 1024


# --- What the caller gets -------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class AttemptRecord(http.CallRecord):
    """One upstream attempt for one number."""

    attempt_number: int
    envelope_code: str
    outcome: str  # "success", "failed" or "retryable"
    body_excerpt: str


@dataclass
class RestoreOutcome:
    success: bool
    status_code: int
    message: str
    requires_identity_update: bool = False
    needs_registration: bool = False
    attempts: list[AttemptRecord] = field(default_factory=list)
    # Not finished: the account's breaker opened before the number got an answer, so it
    # goes back to be claimed again once Multitel answers (the result above is the last
    # error seen, for a synchronous request, which cannot wait).
    deferred: bool = False


# --- The client -----------------------------------------------------------------


class MultitelClient:
    def __init__(
        self,
        *,
        base_url: str | None = None,
        timeout: float | None = None,
        connect_timeout: float | None = None,
        max_attempts: int | None = None,
        backoff_base: float | None = None,
        backoff_max: float | None = None,
        retry_after_max: float | None = None,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base_url = (base_url or settings.MULTITEL_BASE_URL).rstrip("/")
        self.timeout = settings.MULTITEL_TIMEOUT if timeout is None else timeout
        self.connect_timeout = (
            settings.MULTITEL_CONNECT_TIMEOUT if connect_timeout is None else connect_timeout
        )
        self.max_attempts = max(1, settings.MULTITEL_MAX_ATTEMPTS if max_attempts is None else max_attempts)
        self.backoff_base = settings.MULTITEL_BACKOFF_BASE if backoff_base is None else backoff_base
        self.backoff_max = settings.MULTITEL_BACKOFF_MAX if backoff_max is None else backoff_max
        self.retry_after_max = (
            settings.MULTITEL_RETRY_AFTER_MAX if retry_after_max is None else retry_after_max
        )
        self.session = session or shared_session()
        self.sleep = sleep

    def restore(
        self,
        number: str,
        *,
        username: str,
        password: str,
        deadline: float | None = None,
        health: AccountHealth | None = None,
    ) -> RestoreOutcome:
        """Restore one number, retrying what is retryable; never raises for upstream faults.

        ``deadline`` is a ``time.monotonic()`` value after which no attempt is
        started or waited for; the number then fails with 504. ``health`` is told of
        every attempt; once it is open no further attempt is started and the outcome
        comes back ``deferred``.
        """
        attempts: list[AttemptRecord] = []
        last_error: UpstreamError | None = None
        for attempt_number in range(1, self.max_attempts + 1):
            if health is not None and health.is_open:
                return _deferred(attempts, last_error)
            started_at = timezone.now()
            t0 = time.monotonic()
            envelope: Envelope | None = None
            try:
                envelope = self._attempt(number, username=username, password=password, deadline=deadline)
            except UpstreamError as exc:
                last_error = exc
            if health is not None:
                if envelope is not None:
                    health.attempt_done(retryable_failure=False)
                elif last_error is not None and last_error.retryable:
                    health.attempt_done(retryable_failure=True, error=last_error.detail or last_error.reason)
            attempts.append(
                _attempt_record(
                    attempt_number=attempt_number,
                    started_at=started_at,
                    duration_ms=int((time.monotonic() - t0) * 1000),
                    envelope=envelope,
                    error=last_error,
                )
            )
            if envelope is None:
                assert last_error is not None
                if not (last_error.retryable and attempt_number < self.max_attempts):
                    break
                delay = self._delay(attempt_number, last_error.retry_after)
                if deadline is not None and time.monotonic() + delay >= deadline:
                    break
                self.sleep(delay)
                continue
            if envelope.success:
                message = envelope.msg or "Number restored"
            else:
                message = envelope.msg or f"Error: '{http_reason(envelope.code)}'"
            return RestoreOutcome(
                success=envelope.success,
                status_code=envelope.code,
                message=message,
                requires_identity_update=envelope.requires_identity_update,
                needs_registration=envelope.needs_registration,
                attempts=attempts,
            )
        assert last_error is not None
        if health is not None and health.is_open and last_error.retryable:
            return _deferred(attempts, last_error)
        return RestoreOutcome(
            success=False,
            status_code=last_error.status_code,
            message=last_error.msg or f"Error: '{last_error.reason}'",
            attempts=attempts,
        )

    def _delay(self, attempt_number: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.retry_after_max)
        ceiling = min(self.backoff_max, self.backoff_base * (2 ** (attempt_number - 1)))
        return random.uniform(ceiling / 2, ceiling)  # noqa: S311 (jitter, not crypto)

    def _attempt(self, number: str, *, username: str, password: str, deadline: float | None) -> Envelope:
        timeout = self.timeout
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= DEADLINE_MARGIN:
                raise UpstreamDeadlineExceeded(
                    "no answer from upstream before the synchronous deadline", status_code=504
                )
            timeout = min(timeout, remaining)
        connect_timeout = min(self.connect_timeout, timeout)
        try:
            answer = http.send(
                self.session,
                "GET",
                f"{self.base_url}/v3/restore/{number}",
                timeout=timeout,
                connect_timeout=connect_timeout,
                max_body=MAX_BODY_BYTES,
                auth=(username, password),
                headers={"Accept": "application/json"},
            )
        except http.TransportError as exc:
            raise _upstream_error(
                exc, deadline=deadline, timeout=timeout, connect_timeout=connect_timeout
            ) from exc
        return parse_response(answer, secrets=_credential_forms(username, password))


BREAKER_OPEN_MESSAGE = "Error: 'Multitel is unavailable (the upstream circuit breaker is open); not tried'"


def _deferred(attempts: list[AttemptRecord], last_error: UpstreamError | None) -> RestoreOutcome:
    """The outcome of a number whose calls stopped because the account's breaker opened."""
    if last_error is None:
        return RestoreOutcome(
            success=False, status_code=503, message=BREAKER_OPEN_MESSAGE, attempts=attempts, deferred=True
        )
    return RestoreOutcome(
        success=False,
        status_code=last_error.status_code,
        message=last_error.msg or f"Error: '{last_error.reason}'",
        attempts=attempts,
        deferred=True,
    )


def _upstream_error(
    exc: http.TransportError, *, deadline: float | None, timeout: float, connect_timeout: float
) -> UpstreamError:
    """What a failed request means for the number: the kind decides the retry, the reason is
    what the tenant reads, and curl's words go to the attempt's record."""
    if exc.kind in ("timeout", "connect_timeout"):
        if deadline is not None and deadline - time.monotonic() <= DEADLINE_MARGIN:
            return UpstreamDeadlineExceeded(
                "no answer from upstream before the synchronous deadline", status_code=504, detail=exc.message
            )
        waited = connect_timeout if exc.kind == "connect_timeout" else timeout
        return UpstreamTimeout(
            f"upstream timed out after {seconds_text(waited)} seconds", status_code=504, detail=exc.message
        )
    if exc.kind == "too_large":
        return UpstreamBadResponse("response too large", status_code=502, detail=exc.message)
    if exc.kind == "truncated":
        return UpstreamBadResponse("truncated response from upstream", status_code=502, detail=exc.message)
    return UpstreamConnectionError("could not connect to upstream", status_code=502, detail=exc.message)


def _attempt_record(
    *,
    attempt_number: int,
    started_at: datetime,
    duration_ms: int,
    envelope: Envelope | None,
    error: UpstreamError | None,
) -> AttemptRecord:
    """The audit record of one attempt: of its envelope when one came, else of its error."""
    http_status: int | None
    if envelope is not None:
        http_status, code, body_excerpt = envelope.http_status, envelope.raw_code, envelope.body_excerpt
        outcome = "success" if envelope.success else "failed"
        text = "" if envelope.success else (envelope.msg or f"code {envelope.code}")
    else:
        assert error is not None
        http_status, code, body_excerpt = error.http_status, error.envelope_code, error.body_excerpt
        outcome = "retryable" if error.retryable else "failed"
        text = error.detail or (f"{error.reason}: {error.msg}" if error.msg else error.reason)
    return AttemptRecord(
        attempt_number=attempt_number,
        started_at=started_at,
        duration_ms=duration_ms,
        http_status=http_status,
        envelope_code=code,
        outcome=outcome,
        error=text,
        body_excerpt=body_excerpt,
    )


@functools.lru_cache(maxsize=64)  # worked out once per tenant's credentials, not per call
def _credential_forms(username: str, password: str) -> tuple[str, ...]:
    """Every form in which the credentials could come back in a body: never kept."""
    pair = f"{username}:{password}"
    forms = [pair, password, base64.b64encode(pair.encode()).decode()]
    with contextlib.suppress(UnicodeEncodeError):  # requests sends Latin-1 when it can
        forms.append(base64.b64encode(pair.encode("latin-1")).decode())
    # Longest first, so that a form is not left half redacted by a shorter one.
    return tuple(sorted({f for f in forms if f}, key=len, reverse=True))


_session_lock = threading.Lock()
_session: requests.Session | None = None
_session_pid: int | None = None


def shared_session() -> requests.Session:
    """One connection pool per process (workers fork, so the pid is checked)."""
    global _session, _session_pid
    with _session_lock:
        if _session is None or _session_pid != os.getpid():
            _session, _session_pid = http.new_session(pool_maxsize=64), os.getpid()
        return _session
