"""API credentials: salted hashes, HTTP Basic, last use, rotation; secrets encrypted at rest."""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from cryptography.fernet import Fernet
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from accounts import crypto
from accounts.models import ApiCredential, Tenant
from accounts.selectors import api_credential_authenticate
from accounts.services import (
    api_credential_create,
    api_credential_revoke,
    tenant_create,
    tenant_rotate_webhook_secret,
)

STATUS_URL = "/v3/bulk_restore_status"


def client_for(username: str, secret: str) -> APIClient:
    client = APIClient()
    token = base64.b64encode(f"{username}:{secret}".encode()).decode()
    client.credentials(HTTP_AUTHORIZATION=f"Basic {token}")
    return client


def authenticated(client: APIClient) -> bool:
    """True when the API took the credentials (an unknown job is then a 404, not a 401)."""
    status = client.get(STATUS_URL, {"job_uuid": str(uuid.uuid4())}).status_code
    assert status in (401, 404)
    return status == 404


def raw_row(table: str, pk: int) -> tuple[Any, ...]:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)} WHERE id = %s", [pk])  # noqa: S608
        row = cursor.fetchone()
    assert row is not None
    return tuple(row)


def raw_column(table: str, column: str, pk: int) -> str:
    with connection.cursor() as cursor:
        quote = connection.ops.quote_name
        cursor.execute(f"SELECT {quote(column)} FROM {quote(table)} WHERE id = %s", [pk])  # noqa: S608
        row = cursor.fetchone()
    assert row is not None
    return str(row[0])


# --- Hashing ----------------------------------------------------------------------------


def test_it_never_stores_the_api_secret_in_clear(owner):
    credential = owner.tenant.api_credentials.get()

    row = raw_row(ApiCredential._meta.db_table, credential.pk)

    assert not any(owner.secret in str(value) for value in row)
    assert credential.secret_hash != owner.secret
    assert len(credential.secret_hash) == 64
    assert credential.secret_hint == owner.secret[:4]


def test_it_hashes_the_secret_with_a_per_credential_salt(owner):
    credential = owner.tenant.api_credentials.get()
    twin = api_credential_create(tenant=owner.tenant, username="twin", secret=owner.secret).credential

    expected = hmac.new(
        bytes.fromhex(credential.secret_salt), owner.secret.encode(), hashlib.sha256
    ).hexdigest()
    assert credential.secret_hash == expected
    assert len(bytes.fromhex(credential.secret_salt)) == 16
    # The same secret under another credential gets another salt and so another hash.
    assert twin.secret_salt != credential.secret_salt
    assert twin.secret_hash != credential.secret_hash
    assert hashlib.sha256(owner.secret.encode()).hexdigest() not in (credential.secret_hash, twin.secret_hash)


def test_it_authenticates_only_the_right_secret(owner):
    credential = owner.tenant.api_credentials.get()

    assert api_credential_authenticate(username=owner.username, secret=owner.secret) == credential
    assert api_credential_authenticate(username=owner.username, secret=owner.secret + "x") is None
    assert api_credential_authenticate(username=owner.username, secret=owner.secret.upper()) is None
    assert api_credential_authenticate(username=owner.username, secret="") is None
    assert api_credential_authenticate(username="nobody", secret=owner.secret) is None
    assert authenticated(owner.client)
    assert not authenticated(client_for(owner.username, "wrong"))


def test_it_generates_a_strong_secret_when_none_is_given(owner):
    issued = api_credential_create(tenant=owner.tenant)

    assert len(issued.secret) >= 32
    assert issued.credential.username.startswith("owner-")
    assert issued.secret not in raw_row(ApiCredential._meta.db_table, issued.credential.pk)
    assert authenticated(client_for(issued.credential.username, issued.secret))


# --- last_used_at -------------------------------------------------------------------------


def credential_updates(ctx: CaptureQueriesContext) -> list[str]:
    table = ApiCredential._meta.db_table
    return [q["sql"] for q in ctx.captured_queries if q["sql"].startswith("UPDATE") and table in q["sql"]]


def test_it_records_last_use_at_most_once_a_minute(owner):
    credential = owner.tenant.api_credentials.get()
    assert credential.last_used_at is None

    before = timezone.now()
    assert authenticated(owner.client)
    credential.refresh_from_db()
    first_use = credential.last_used_at
    assert first_use is not None and before <= first_use <= timezone.now()

    with CaptureQueriesContext(connection) as ctx:
        assert authenticated(owner.client)
        assert authenticated(owner.client)
    credential.refresh_from_db()
    assert credential.last_used_at == first_use
    assert credential_updates(ctx) == []


def test_it_records_last_use_again_after_a_minute(owner):
    credential = owner.tenant.api_credentials.get()
    recent = timezone.now() - timedelta(seconds=50)
    ApiCredential.objects.filter(pk=credential.pk).update(last_used_at=recent)

    assert authenticated(owner.client)
    credential.refresh_from_db()
    assert credential.last_used_at == recent

    stale = timezone.now() - timedelta(seconds=61)
    ApiCredential.objects.filter(pk=credential.pk).update(last_used_at=stale)
    assert authenticated(owner.client)
    credential.refresh_from_db()
    assert credential.last_used_at is not None
    assert credential.last_used_at > timezone.now() - timedelta(seconds=5)


def test_it_does_not_record_use_of_a_wrong_secret(owner):
    credential = owner.tenant.api_credentials.get()

    assert not authenticated(client_for(owner.username, "wrong"))

    credential.refresh_from_db()
    assert credential.last_used_at is None


# --- Rotation -----------------------------------------------------------------------------


def test_it_accepts_two_credentials_of_a_tenant_and_revokes_one(owner):
    old = owner.tenant.api_credentials.get()
    issued = api_credential_create(tenant=owner.tenant, username="owner-api-2")
    new_client = client_for("owner-api-2", issued.secret)

    assert authenticated(owner.client)
    assert authenticated(new_client)

    api_credential_revoke(credential=old)

    old.refresh_from_db()
    assert old.is_revoked
    assert not authenticated(owner.client)
    assert authenticated(new_client)
    assert api_credential_authenticate(username=owner.username, secret=owner.secret) is None


def test_it_keeps_the_first_revocation_time(owner):
    credential = owner.tenant.api_credentials.get()
    api_credential_revoke(credential=credential)
    credential.refresh_from_db()
    first = credential.revoked_at

    api_credential_revoke(credential=credential)

    credential.refresh_from_db()
    assert first is not None and credential.revoked_at == first


def test_it_does_not_let_one_tenants_secret_open_another_tenants_username(owner, second):
    assert not authenticated(client_for(owner.username, second.secret))
    assert not authenticated(client_for(second.username, owner.secret))


# --- Encryption at rest ---------------------------------------------------------------------


def test_it_stores_the_multitel_password_encrypted(owner):
    tenant = Tenant.objects.get(pk=owner.tenant.pk)

    raw = raw_column(Tenant._meta.db_table, "multitel_password", tenant.pk)

    assert "mt-owner-password" not in raw
    assert raw.startswith("fernet:")
    assert tenant.multitel_password == "mt-owner-password"
    assert not any("mt-owner-password" in str(value) for value in raw_row(Tenant._meta.db_table, tenant.pk))


def test_it_stores_the_webhook_secret_encrypted(owner):
    tenant = Tenant.objects.get(pk=owner.tenant.pk)
    secret = tenant.webhook_secret
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 24

    raw = raw_column(Tenant._meta.db_table, "webhook_secret", tenant.pk)

    assert "whsec_" not in raw
    assert secret.removeprefix("whsec_") not in raw
    assert raw.startswith("fernet:")


def test_it_encrypts_each_value_with_fresh_randomness(db):
    a = tenant_create(
        name="a",
        api_username="a-api",
        api_password=None,
        multitel_username="u",
        multitel_password="same",
    ).tenant
    b = tenant_create(
        name="b",
        api_username="b-api",
        api_password=None,
        multitel_username="u",
        multitel_password="same",
    ).tenant

    table = Tenant._meta.db_table
    assert raw_column(table, "multitel_password", a.pk) != raw_column(table, "multitel_password", b.pk)


def test_it_reencrypts_a_rotated_webhook_secret(owner):
    old = owner.tenant.webhook_secret

    new = tenant_rotate_webhook_secret(tenant=owner.tenant)

    assert new != old and new.startswith("whsec_")
    assert Tenant.objects.get(pk=owner.tenant.pk).webhook_secret == new
    assert new not in raw_column(Tenant._meta.db_table, "webhook_secret", owner.tenant.pk)


@pytest.fixture
def fresh_keys(settings: Any) -> Iterator[Any]:
    crypto._fernet.cache_clear()
    yield settings
    crypto._fernet.cache_clear()


def test_it_reads_secrets_after_an_encryption_key_rotation(db, fresh_keys):
    first, second = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    fresh_keys.FIELD_ENCRYPTION_KEYS = [first]
    tenant = tenant_create(
        name="rot",
        api_username="rot-api",
        api_password=None,
        multitel_username="u",
        multitel_password="pw",
    ).tenant

    fresh_keys.FIELD_ENCRYPTION_KEYS = [second, first]
    crypto._fernet.cache_clear()
    assert Tenant.objects.get(pk=tenant.pk).multitel_password == "pw"

    fresh_keys.FIELD_ENCRYPTION_KEYS = [second]
    crypto._fernet.cache_clear()
    with pytest.raises(ValueError, match="cannot decrypt"):
        Tenant.objects.get(pk=tenant.pk)


@pytest.mark.django_db
def test_it_refuses_a_username_with_a_nul_character_with_401(owner: Any) -> None:
    client = APIClient()
    token = base64.b64encode(b"owner-api\x00:secret").decode()

    response = client.get("/v3/bulk_restore_status?job_uuid=x", HTTP_AUTHORIZATION=f"Basic {token}")

    assert response.status_code == 401
    assert response.json()["error"] == "authentication_failed"
