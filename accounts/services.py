"""Writes for tenants and their API credentials."""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from accounts.hashing import hash_secret, new_salt
from accounts.models import ApiCredential, Tenant

# last_used_at is written at most this often per credential, not on every request.
LAST_USED_RESOLUTION = timedelta(seconds=60)


def webhook_secret_generate() -> str:
    """A Standard Webhooks signing secret: ``whsec_`` + base64 of 24 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def api_secret_generate() -> str:
    return secrets.token_urlsafe(24)


@dataclass(frozen=True)
class IssuedCredential:
    credential: ApiCredential
    secret: str  # shown once, never stored in clear


def api_credential_create(
    *, tenant: Tenant, username: str | None = None, secret: str | None = None
) -> IssuedCredential:
    """Issue a new API credential; the clear secret is returned once and never stored."""
    username = username or f"{tenant.name.lower().replace(' ', '-')}-{secrets.token_hex(4)}"
    secret = secret or api_secret_generate()
    salt = new_salt()
    credential = ApiCredential.objects.create(
        tenant=tenant,
        username=username,
        secret_salt=salt,
        secret_hash=hash_secret(secret=secret, salt=salt),
        secret_hint=secret[:4],
    )
    return IssuedCredential(credential=credential, secret=secret)


def api_credential_revoke(*, credential: ApiCredential) -> None:
    ApiCredential.objects.filter(pk=credential.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())


def api_credential_touch(*, credential: ApiCredential) -> None:
    """Record use of a credential, writing at most once a minute."""
    now = timezone.now()
    if credential.last_used_at and now - credential.last_used_at < LAST_USED_RESOLUTION:
        return
    ApiCredential.objects.filter(pk=credential.pk).update(last_used_at=now)
    credential.last_used_at = now


@dataclass(frozen=True)
class CreatedTenant:
    tenant: Tenant
    credential: IssuedCredential


@transaction.atomic
def tenant_create(
    *,
    name: str,
    api_username: str,
    api_password: str,
    multitel_username: str,
    multitel_password: str,
    max_concurrency: int = 10,
) -> CreatedTenant:
    tenant = Tenant.objects.create(
        name=name,
        multitel_username=multitel_username,
        multitel_password=multitel_password,
        webhook_secret=webhook_secret_generate(),
        max_concurrency=max_concurrency,
    )
    issued = api_credential_create(tenant=tenant, username=api_username, secret=api_password)
    return CreatedTenant(tenant=tenant, credential=issued)


def tenant_rotate_webhook_secret(*, tenant: Tenant) -> str:
    tenant.webhook_secret = webhook_secret_generate()
    tenant.save(update_fields=["webhook_secret", "updated_at"])
    return tenant.webhook_secret
