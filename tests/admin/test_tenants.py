"""Tenants and credentials: one form for a tenant and its first credential, secrets shown once."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.admin.models import CHANGE, LogEntry
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.hashing import hash_secret
from accounts.models import ApiCredential, Tenant
from tests.support.jobs import make_job
from tests.support.parties import Party

pytestmark = pytest.mark.django_db

NEW_TENANT = {
    "name": "acme",
    "is_active": "on",
    "multitel_username": "mt-acme",
    "multitel_password": "mt-acme-password-1",
    "max_concurrency": "5",
    "api_username": "acme-api",
}


def _secret(page: str, element_id: str) -> str:
    found = re.search(rf'<code id="{element_id}">([^<]+)</code>', page)
    assert found, element_id
    return found.group(1)


def _log(tenant: Tenant) -> list[str]:
    return [
        entry.get_change_message()
        for entry in LogEntry.objects.filter(object_id=str(tenant.pk), action_flag=CHANGE).order_by("pk")
    ]


def test_it_creates_a_tenant_and_its_first_credential_and_shows_both_secrets_once(
    operator_client: Client,
) -> None:
    response = operator_client.post(reverse("admin:accounts_tenant_add"), NEW_TENANT)

    tenant = Tenant.objects.get(name="acme")
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:accounts_tenant_secrets", args=[tenant.pk])
    page = operator_client.get(response["Location"]).content.decode()
    api_secret, webhook_secret = _secret(page, "api-secret"), _secret(page, "webhook-secret")
    credential = ApiCredential.objects.get(tenant=tenant)
    assert credential.username == "acme-api"
    assert hash_secret(secret=api_secret, salt=credential.secret_salt) == credential.secret_hash
    assert webhook_secret == tenant.webhook_secret and webhook_secret.startswith("whsec_")
    assert tenant.multitel_password == "mt-acme-password-1" and tenant.max_concurrency == 5

    again = operator_client.get(reverse("admin:accounts_tenant_secrets", args=[tenant.pk]), follow=True)
    later = again.content.decode()
    assert "cannot be shown again" in later
    for secret in (api_secret, webhook_secret, "mt-acme-password-1"):
        assert secret not in later
    assert LogEntry.objects.filter(object_id=str(tenant.pk), action_flag=1).exists()


def test_it_refuses_a_taken_api_username(operator_client: Client, owner: Party) -> None:
    response = operator_client.post(
        reverse("admin:accounts_tenant_add"), {**NEW_TENANT, "api_username": "owner-api"}
    )

    assert response.status_code == 200
    assert "This API username is taken." in response.content.decode()
    assert not Tenant.objects.filter(name="acme").exists()


def test_it_refuses_a_typed_api_secret_shorter_than_24_characters(operator_client: Client) -> None:
    response = operator_client.post(
        reverse("admin:accounts_tenant_add"), {**NEW_TENANT, "api_secret": "s" * 23}
    )

    assert response.status_code == 200
    page = response.content.decode()
    assert "must be at least 24 characters; leave it empty to have one generated" in page
    assert "s" * 23 not in page  # a password field is never filled in again
    assert not Tenant.objects.filter(name="acme").exists()
    assert not ApiCredential.objects.filter(username="acme-api").exists()


def test_it_takes_a_typed_api_secret_of_24_characters_and_shows_it_once(operator_client: Client) -> None:
    chosen = "an-operator-chosen-secret"  # 25 characters
    response = operator_client.post(
        reverse("admin:accounts_tenant_add"), {**NEW_TENANT, "api_secret": chosen}
    )

    tenant = Tenant.objects.get(name="acme")
    credential = ApiCredential.objects.get(tenant=tenant)
    assert response.status_code == 302
    assert hash_secret(secret=chosen, salt=credential.secret_salt) == credential.secret_hash
    page = operator_client.get(response["Location"]).content.decode()
    assert _secret(page, "api-secret") == chosen


def test_it_never_shows_the_multitel_password_and_keeps_it_when_left_blank(
    operator_client: Client, owner: Party
) -> None:
    assert owner.tenant is not None
    url = reverse("admin:accounts_tenant_change", args=[owner.tenant.pk])
    page = operator_client.get(url).content.decode()
    assert "mt-owner-password" not in page and owner.tenant.webhook_secret not in page
    assert 'name="multitel_password"' in page and 'type="password"' in page

    form = {"name": "owner", "is_active": "on", "multitel_username": "mt-owner", "max_concurrency": "7"}
    assert operator_client.post(url, {**form, "multitel_password": ""}).status_code == 302
    owner.tenant.refresh_from_db()
    assert owner.tenant.multitel_password == "mt-owner-password" and owner.tenant.max_concurrency == 7

    assert operator_client.post(url, {**form, "multitel_password": "brand-new-pw"}).status_code == 302
    owner.tenant.refresh_from_db()
    assert owner.tenant.multitel_password == "brand-new-pw"


def test_it_rotates_a_credential_keeping_the_old_one_until_revoked(
    operator_client: Client, owner: Party
) -> None:
    assert owner.tenant is not None
    tenant = owner.tenant
    old = ApiCredential.objects.get(tenant=tenant)

    response = operator_client.post(reverse("admin:accounts_tenant_rotate_credential", args=[tenant.pk]))

    new = ApiCredential.objects.filter(tenant=tenant).exclude(pk=old.pk).get()
    page = operator_client.get(response["Location"]).content.decode()
    assert hash_secret(secret=_secret(page, "api-secret"), salt=new.secret_salt) == new.secret_hash
    assert "webhook-secret" not in page
    old.refresh_from_db()
    assert old.revoked_at is None and new.revoked_at is None
    assert owner.client.post("/v3/bulk_restore", {"numbers": []}, format="json").status_code != 401

    response = operator_client.post(
        reverse("admin:accounts_tenant_revoke_credential", args=[tenant.pk, old.pk]), follow=True
    )
    old.refresh_from_db()
    assert old.revoked_at is not None
    assert f"Revoked API credential {old.username}." in response.content.decode()
    assert owner.client.post("/v3/bulk_restore", {"numbers": []}, format="json").status_code == 401
    assert _log(tenant) == [
        f"Issued API credential {new.username} (rotation).",
        f"Revoked API credential {old.username}.",
    ]


def test_it_rotates_the_webhook_secret_and_shows_the_new_one_once(
    operator_client: Client, owner: Party
) -> None:
    assert owner.tenant is not None
    before = owner.tenant.webhook_secret

    response = operator_client.post(
        reverse("admin:accounts_tenant_rotate_webhook_secret", args=[owner.tenant.pk])
    )

    owner.tenant.refresh_from_db()
    assert owner.tenant.webhook_secret != before
    page = operator_client.get(response["Location"]).content.decode()
    assert _secret(page, "webhook-secret") == owner.tenant.webhook_secret
    assert "api-secret" not in page
    assert _log(owner.tenant) == ["Rotated the webhook signing secret."]


def test_it_accepts_only_post_for_the_secret_buttons(operator_client: Client, owner: Party) -> None:
    assert owner.tenant is not None
    url = reverse("admin:accounts_tenant_rotate_webhook_secret", args=[owner.tenant.pk])
    assert operator_client.get(url).status_code == 405


def test_it_revokes_credentials_from_their_list_with_a_log_entry(
    operator_client: Client, owner: Party
) -> None:
    credential = ApiCredential.objects.get(tenant=owner.tenant)

    response = operator_client.post(
        reverse("admin:accounts_apicredential_changelist"),
        {"action": "revoke", "_selected_action": [credential.pk]},
        follow=True,
    )

    credential.refresh_from_db()
    assert credential.revoked_at is not None
    assert "Revoked 1 API credential(s)." in response.content.decode()
    assert LogEntry.objects.filter(object_id=str(credential.pk), change_message="Revoked.").exists()


def test_it_lists_tenants_with_their_recent_jobs_failure_rate_and_last_api_use(
    auditor_client: Client, owner: Party, second: Party
) -> None:
    assert owner.tenant is not None and second.tenant is not None
    make_job(owner.tenant, numbers=10, failed=2)
    make_job(owner.tenant, numbers=10, failed=0, first_number=15550200000)
    make_job(
        owner.tenant,
        numbers=5,
        failed=5,
        created_at=timezone.now() - timedelta(days=8),
        first_number=1555030000,
    )
    used = timezone.now() - timedelta(hours=3)
    ApiCredential.objects.filter(tenant=owner.tenant).update(last_used_at=used)

    page = auditor_client.get(reverse("admin:accounts_tenant_changelist")).content.decode()

    row = page[page.index(">owner<") :][:2000]
    assert '<td class="field-jobs_last_7_days">2</td>' in row
    assert "10.0% of 20 numbers" in row
    assert "field-last_api_use" in row and "-</td>" not in row.split("field-last_api_use")[1][:60]
    second_row = page[page.index(">second<") :][:2000]
    assert '<td class="field-jobs_last_7_days">0</td>' in second_row
