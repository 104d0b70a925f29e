"""What this process has seen of a Multitel account, attempt by attempt: the breaker's local half.

The shared breaker (``restores.services.breaker``) lives in the database and is
updated when finished calls are recorded, which is too late to save the numbers
still retrying inside the client. So every attempt is also counted here, in
memory, by the thread that made it: ``UPSTREAM_BREAKER_FAILURES`` retryable
failures in a row (no answer between them, whichever thread saw them) trip it,
and from then on the client starts no further attempt for that account: its
numbers come back ``deferred`` and are claimed again once Multitel answers.

This module does no database work, so it can run in worker threads.
"""

from __future__ import annotations

import os
import threading
from datetime import datetime
from typing import Protocol

from django.conf import settings
from django.utils import timezone


class SharedState(Protocol):
    """The shared breaker as a claim or a recording saw it."""

    @property
    def is_open(self) -> bool: ...

    @property
    def changed_at(self) -> datetime | None: ...


class AccountHealth:
    """One account in this process: retryable failures in a row, and whether calls may go on.

    Open when this process saw a burst (``tripped``, until an answer comes or the shared
    breaker closes after it) or when the shared breaker says so.
    """

    def __init__(self, *, threshold: int) -> None:
        self.threshold = max(1, threshold)
        self._lock = threading.Lock()
        self._failures_in_row = 0
        self._tripped_at: datetime | None = None
        self._shared_open = False
        self.last_error = ""

    @property
    def is_open(self) -> bool:
        return self._shared_open or self._tripped_at is not None

    @property
    def tripped(self) -> bool:
        """This process saw a burst of failures that no answer has ended yet."""
        return self._tripped_at is not None

    @property
    def tripped_at(self) -> datetime | None:
        """When this process saw the burst that no answer has ended yet (None: it has not)."""
        return self._tripped_at

    def attempt_done(self, *, retryable_failure: bool, error: str = "") -> None:
        """Count one attempt: a retryable failure, or an answer (any envelope, even an error one)."""
        with self._lock:
            if not retryable_failure:
                self._failures_in_row = 0
                self._tripped_at = None
                return
            self._failures_in_row += 1
            self.last_error = error[:300]
            if self._failures_in_row >= self.threshold and self._tripped_at is None:
                self._tripped_at = timezone.now()

    def sync(self, shared: SharedState) -> None:
        """Take the shared breaker's state. Closed ends a local trip only if it closed after the
        trip (a trip not yet recorded would otherwise be forgotten)."""
        with self._lock:
            self._shared_open = shared.is_open
            closed_since_trip = (
                shared.changed_at is not None
                and self._tripped_at is not None
                and shared.changed_at >= self._tripped_at
            )
            if not shared.is_open and closed_since_trip:
                self._tripped_at = None
                self._failures_in_row = 0

    def probe(self) -> None:
        """This process holds the probe: let its one number's calls go through."""
        with self._lock:
            self._shared_open = False
            self._tripped_at = None
            self._failures_in_row = 0


_registry: dict[int, AccountHealth] = {}
_registry_lock = threading.Lock()
_registry_pid: int | None = None


def account_health(account: int) -> AccountHealth:
    """The health of ``account`` (a tenant's id: each tenant has its own Multitel account) in
    this process; workers fork, so the pid is checked."""
    global _registry_pid
    with _registry_lock:
        if _registry_pid != os.getpid():
            _registry.clear()
            _registry_pid = os.getpid()
        health = _registry.get(account)
        if health is None:
            health = _registry[account] = AccountHealth(threshold=settings.UPSTREAM_BREAKER_FAILURES)
        return health


def account_health_forget() -> None:
    """Forget every account's health in this process (tests start each from nothing)."""
    with _registry_lock:
        _registry.clear()
