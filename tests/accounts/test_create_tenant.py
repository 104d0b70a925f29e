"""``manage.py create_tenant`` (README, Tenants)."""

from __future__ import annotations

import base64
import re
import uuid
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from rest_framework.test import APIClient

from accounts.models import ApiCredential, Tenant

ARGS = [
    "Acme Telecom",
    "--api-username",
    "acme-api",
    "--api-password",
    "acme-api-secret-1234-5678",
    "--upstream-username",
    "acme-mt",
    "--upstream-password",
    "acme-mt-password-5678",
]
WHSEC_RE = re.compile(r"whsec_[A-Za-z0-9+/]+={0,2}")


def run(*args: str) -> str:
    out = StringIO()
    call_command("create_tenant", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def raw_tenant_row(pk: int) -> tuple[object, ...]:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {Tenant._meta.db_table} WHERE id = %s", [pk])  # noqa: S608
        row = cursor.fetchone()
    assert row is not None
    return tuple(row)


def test_it_creates_a_tenant_with_its_credentials_and_prints_the_webhook_secret(db):
    output = run(*ARGS)

    tenant = Tenant.objects.get(name="Acme Telecom")
    assert tenant.is_active
    assert tenant.multitel_username == "acme-mt"
    assert tenant.multitel_password == "acme-mt-password-5678"
    assert tenant.max_concurrency == 10
    printed = WHSEC_RE.findall(output)
    assert printed == [tenant.webhook_secret]
    assert len(base64.b64decode(printed[0].removeprefix("whsec_"))) == 24
    credential = ApiCredential.objects.get(tenant=tenant)
    assert credential.username == "acme-api"
    assert not credential.is_revoked
    assert "acme-api" in output


def test_it_never_prints_or_stores_the_given_passwords_in_clear(db):
    output = run(*ARGS)

    assert "acme-api-secret-1234-5678" not in output
    assert "acme-mt-password-5678" not in output
    tenant = Tenant.objects.get(name="Acme Telecom")
    assert not any("acme-mt-password-5678" in str(v) for v in raw_tenant_row(tenant.pk))
    assert not any(tenant.webhook_secret.removeprefix("whsec_") in str(v) for v in raw_tenant_row(tenant.pk))
    credential = ApiCredential.objects.get(tenant=tenant)
    assert "acme-api-secret-1234-5678" not in (
        credential.secret_hash,
        credential.secret_salt,
        credential.secret_hint,
    )


def test_it_creates_a_credential_that_authenticates_against_the_api(db):
    run(*ARGS)
    client = APIClient()
    client.credentials(
        HTTP_AUTHORIZATION="Basic " + base64.b64encode(b"acme-api:acme-api-secret-1234-5678").decode()
    )

    response = client.get("/v3/bulk_restore_status", {"job_uuid": str(uuid.uuid4())})

    assert response.status_code == 404  # authenticated: the job simply does not exist
    client.credentials(HTTP_AUTHORIZATION="Basic " + base64.b64encode(b"acme-api:wrong").decode())
    assert client.get("/v3/bulk_restore_status", {"job_uuid": str(uuid.uuid4())}).status_code == 401


def test_it_takes_max_concurrency(db):
    run(*ARGS, "--max-concurrency", "3")

    assert Tenant.objects.get(name="Acme Telecom").max_concurrency == 3


def test_it_gives_every_tenant_its_own_webhook_secret(db):
    first = WHSEC_RE.findall(run(*ARGS))
    second = WHSEC_RE.findall(
        run("Other", "--api-username", "other-api", "--upstream-username", "mu", "--upstream-password", "mp")
    )

    assert len(first) == len(second) == 1
    assert first != second


def test_it_refuses_a_duplicate_tenant_name(db):
    run(*ARGS)

    with pytest.raises(CommandError, match="Acme Telecom"):
        run(*ARGS[:1], "--api-username", "acme-api-2", *ARGS[3:])

    assert Tenant.objects.count() == 1
    assert ApiCredential.objects.count() == 1


def test_it_refuses_a_duplicate_api_username(db):
    run(*ARGS)

    with pytest.raises(CommandError, match="acme-api"):
        run("Someone Else", *ARGS[1:])

    assert list(Tenant.objects.values_list("name", flat=True)) == ["Acme Telecom"]
    assert ApiCredential.objects.count() == 1


@pytest.mark.parametrize("missing", ["--api-username", "--upstream-username", "--upstream-password"])
def test_it_requires_every_credential_option_but_the_api_password(db, missing):
    index = ARGS.index(missing)
    args = ARGS[:index] + ARGS[index + 2 :]

    with pytest.raises(CommandError, match=missing):
        run(*args)

    assert Tenant.objects.count() == 0


def test_it_requires_a_name(db):
    with pytest.raises(CommandError):
        run(*ARGS[1:])
    with pytest.raises(CommandError, match="NAME"):
        run("   ", *ARGS[1:])

    assert Tenant.objects.count() == 0


@pytest.mark.parametrize("value", ["0", "-1", "many"])
def test_it_refuses_a_bad_max_concurrency(db, value):
    with pytest.raises(CommandError):
        run(*ARGS, "--max-concurrency", value)

    assert Tenant.objects.count() == 0


# --- The API secret: chosen (24 characters or more) or generated ----------------------------


def args_with_api_password(password: str | None) -> list[str]:
    index = ARGS.index("--api-password")
    without = ARGS[:index] + ARGS[index + 2 :]
    return without if password is None else [*without, "--api-password", password]


def authenticates(username: str, secret: str) -> bool:
    client = APIClient()
    token = base64.b64encode(f"{username}:{secret}".encode()).decode()
    client.credentials(HTTP_AUTHORIZATION=f"Basic {token}")
    status = client.get("/v3/bulk_restore_status", {"job_uuid": str(uuid.uuid4())}).status_code
    assert status in (401, 404)
    return status == 404


def test_it_refuses_an_api_password_shorter_than_24_characters_and_stores_nothing(db):
    with pytest.raises(CommandError, match="must be at least 24 characters; leave it empty to have one"):
        run(*args_with_api_password("x" * 23))

    assert Tenant.objects.count() == 0
    assert ApiCredential.objects.count() == 0


def test_it_takes_an_api_password_of_24_characters(db):
    output = run(*args_with_api_password("y" * 24))

    assert "y" * 24 not in output
    assert "API secret" not in output  # the operator's own is never printed
    assert authenticates("acme-api", "y" * 24)


@pytest.mark.parametrize("password", [None, ""])
def test_it_generates_the_api_secret_when_none_is_given_and_prints_it_once(db, password):
    output = run(*args_with_api_password(password))

    printed = re.findall(r"^API secret \(shown once\): (\S+)$", output, re.MULTILINE)
    assert len(printed) == 1
    secret = printed[0]
    assert len(secret) >= 32
    assert authenticates("acme-api", secret)
    credential = ApiCredential.objects.get(username="acme-api")
    assert secret not in (credential.secret_hash, credential.secret_salt)
