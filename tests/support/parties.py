"""Who calls the portal: tenants' systems with an API credential, an outsider, and staff users."""

from __future__ import annotations

import base64
from dataclasses import dataclass

from django.contrib.auth.models import AbstractBaseUser
from django.test import Client
from rest_framework.test import APIClient

from accounts.models import Tenant
from accounts.services import staff_user_create, tenant_create

STAFF_PASSWORD = "a long staff passphrase 42"


@dataclass
class Party:
    """Someone calling the API: a tenant's system, or an outsider with no account."""

    tenant: Tenant | None
    username: str
    secret: str
    client: APIClient


def api_client(username: str, secret: str) -> APIClient:
    """An API client that sends these credentials with every request (HTTP Basic)."""
    client = APIClient()
    token = base64.b64encode(f"{username}:{secret}".encode()).decode()
    client.credentials(HTTP_AUTHORIZATION=f"Basic {token}")
    return client


def party_secret(name: str) -> str:
    """The API secret ``make_party`` gives tenant ``name`` (24 characters or more, as required)."""
    return f"{name}-secret-value-for-tests"


def make_party(name: str, *, max_concurrency: int = 10) -> Party:
    """A tenant ``name`` with the API credential ``<name>-api`` and Multitel user ``mt-<name>``."""
    created = tenant_create(
        name=name,
        api_username=f"{name}-api",
        api_password=party_secret(name),
        multitel_username=f"mt-{name}",
        multitel_password=f"mt-{name}-password",
        max_concurrency=max_concurrency,
    )
    return Party(
        tenant=created.tenant,
        username=f"{name}-api",
        secret=party_secret(name),
        client=api_client(f"{name}-api", party_secret(name)),
    )


def make_outsider() -> Party:
    """Credentials that belong to no tenant."""
    return Party(tenant=None, username="outsider", secret="guess", client=api_client("outsider", "guess"))


def multitel_credentials(*names: str) -> dict[str, str]:
    """The Multitel users and passwords that ``make_party`` gives the tenants ``names``."""
    return {f"mt-{name}": f"mt-{name}-password" for name in names}


def make_staff(username: str, role: str) -> AbstractBaseUser:
    """A staff user of ``role`` whose password is ``STAFF_PASSWORD``."""
    return staff_user_create(username=username, password=STAFF_PASSWORD, role=role)


def logged_in(user: AbstractBaseUser) -> Client:
    """A browser-like client with ``user`` logged in."""
    client = Client()
    client.force_login(user)
    return client
