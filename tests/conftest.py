"""Shared fixtures: an owner tenant, a second tenant and an outsider, each with an API client."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from rest_framework.test import APIClient

from accounts.models import Tenant
from accounts.services import tenant_create
from restores.fake_multitel import FakeMultitelServer, FakeMultitelState, start_in_thread


@dataclass
class Party:
    """Someone calling the API: a tenant's system, or an outsider with no account."""

    tenant: Tenant | None
    username: str
    secret: str
    client: APIClient


def _client(username: str, secret: str) -> APIClient:
    client = APIClient()
    token = base64.b64encode(f"{username}:{secret}".encode()).decode()
    client.credentials(HTTP_AUTHORIZATION=f"Basic {token}")
    return client


def make_party(name: str, *, max_concurrency: int = 10) -> Party:
    created = tenant_create(
        name=name,
        api_username=f"{name}-api",
        api_password=f"{name}-secret-value",
        multitel_username=f"mt-{name}",
        multitel_password=f"mt-{name}-password",
        max_concurrency=max_concurrency,
    )
    return Party(
        tenant=created.tenant,
        username=f"{name}-api",
        secret=f"{name}-secret-value",
        client=_client(f"{name}-api", f"{name}-secret-value"),
    )


@pytest.fixture(autouse=True)
def _rate_limits_off(settings: Any) -> None:
    """Rate limits are off unless a test turns them on; each test has its own counters."""
    settings.API_THROTTLE_RATE = "off"
    settings.AUTH_FAILURE_RATE = "off"
    # A key namespace of each test's own: counters never carry over between tests or runs.
    cache = dict(settings.CACHES["default"])
    cache["KEY_PREFIX"] = f"test-{uuid.uuid4().hex}"
    settings.CACHES = {"default": cache}


@pytest.fixture
def owner(db: None) -> Party:
    return make_party("owner")


@pytest.fixture
def second(db: None) -> Party:
    return make_party("second")


@pytest.fixture
def outsider(db: None) -> Party:
    """Credentials that belong to no tenant."""
    return Party(tenant=None, username="outsider", secret="guess", client=_client("outsider", "guess"))


@pytest.fixture
def fake_multitel(settings: pytest.FixtureRequest) -> Iterator[FakeMultitelServer]:
    """The simulated Multitel on a loopback port, accepting the fixture tenants' credentials."""
    credentials = {f"mt-{n}": f"mt-{n}-password" for n in ("owner", "second")}
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
