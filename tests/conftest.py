"""Shared fixtures: an owner tenant, a second tenant and an outsider, each with an API client; the
simulated Multitel in a thread; the end-to-end stack as processes. Helpers live in ``tests.support``."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from restores.clients.upstream_health import account_health_forget
from restores.fake_multitel import FakeMultitelServer, FakeMultitelState, start_in_thread
from tests.support.harness import Stack, WebhookReceiver, start_stack
from tests.support.parties import Party, make_outsider, make_party, multitel_credentials

pytest_plugins = ["tests.support.queue"]  # the ``enqueued`` fixture


@pytest.fixture(autouse=True)
def _rate_limits_off(settings: Any) -> None:
    """Rate limits are off unless a test turns them on; each test has its own counters."""
    settings.API_THROTTLE_RATE = "off"
    settings.AUTH_FAILURE_RATE = "off"
    settings.AUTH_FAILURE_USERNAME_RATE = "off"
    # A key namespace of each test's own: counters never carry over between tests or runs.
    cache = dict(settings.CACHES["default"])
    cache["KEY_PREFIX"] = f"test-{uuid.uuid4().hex}"
    settings.CACHES = {"default": cache}


@pytest.fixture(autouse=True)
def _upstream_health_fresh() -> Iterator[None]:
    """What this process saw of Multitel accounts does not carry over (tenant ids are reused)."""
    account_health_forget()
    yield
    account_health_forget()


@pytest.fixture
def owner(db: None) -> Party:
    return make_party("owner")


@pytest.fixture
def second(db: None) -> Party:
    return make_party("second")


@pytest.fixture
def outsider(db: None) -> Party:
    """Credentials that belong to no tenant."""
    return make_outsider()


@pytest.fixture
def fake_multitel(settings: pytest.FixtureRequest) -> Iterator[FakeMultitelServer]:
    """The simulated Multitel on a loopback port, accepting the fixture tenants' credentials."""
    credentials = multitel_credentials("owner", "second")
    state = FakeMultitelState(credentials=lambda: credentials, hang_seconds=3)
    server = start_in_thread(state)
    settings.MULTITEL_BASE_URL = server.base_url  # type: ignore[attr-defined]
    settings.MULTITEL_BACKOFF_BASE = 0.01  # type: ignore[attr-defined]
    settings.MULTITEL_BACKOFF_MAX = 0.05  # type: ignore[attr-defined]
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


# --- The stack as processes (tests/e2e, tests/schema) -------------------------------------------


@pytest.fixture(scope="module")
def make_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Stack]]:
    """Build a stack: ``make_stack(latency_ms=..., workers=[...], **env)`` (see ``start_stack``);
    each is stopped, and its database dropped, at the end of the module."""
    built: list[Stack] = []

    def build(**options: Any) -> Stack:
        stack = start_stack(tmp_path_factory.mktemp("stack"), **options)
        built.append(stack)
        return stack

    try:
        yield build
    finally:
        for stack in built:
            stack.close()


@pytest.fixture(scope="module")
def receiver() -> Iterator[WebhookReceiver]:
    r = WebhookReceiver()
    try:
        yield r
    finally:
        r.close()
