"""Roles: Operators manage tenants and credentials and run actions; Auditors see all, change nothing."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, Group
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse

from accounts.models import ApiCredential
from restores.models import Job, NumberResult, UpstreamAttempt, WebhookDelivery
from tests.support.jobs import HOOK, make_job
from tests.support.parties import STAFF_PASSWORD, Party

pytestmark = pytest.mark.django_db

AUDITOR = {
    "accounts.view_tenant",
    "accounts.view_apicredential",
    "restores.view_job",
    "restores.view_numberresult",
    "restores.view_upstreamattempt",
    "restores.view_webhookdelivery",
    "restores.view_breakerevent",
    "admin.view_logentry",
    "axes.view_accessattempt",
    "axes.view_accesslog",
    "axes.view_accessfailurelog",
    "otp_totp.view_totpdevice",
}
OPERATOR = AUDITOR | {
    "accounts.add_tenant",
    "accounts.change_tenant",
    "accounts.change_apicredential",
    "restores.operate_job",
    "axes.delete_accessattempt",
    "otp_totp.add_totpdevice",
    "otp_totp.change_totpdevice",
    "otp_totp.delete_totpdevice",
}
MODELS = (
    "accounts/tenant",
    "accounts/apicredential",
    "restores/job",
    "restores/numberresult",
    "restores/upstreamattempt",
    "restores/webhookdelivery",
    "restores/breakerevent",
    "admin/logentry",
)


def _perms(group: Group) -> set[str]:
    return {
        f"{p.content_type.app_label}.{p.codename}" for p in group.permissions.select_related("content_type")
    }


def test_it_creates_the_two_groups_with_their_permissions_in_a_data_migration() -> None:
    assert _perms(Group.objects.get(name="Auditors")) == AUDITOR
    assert _perms(Group.objects.get(name="Operators")) == OPERATOR


def test_it_keeps_the_staff_login_permissions_when_a_staff_user_is_created(
    operator: AbstractBaseUser,
) -> None:
    # create_staff_user puts the roles' permissions back (staff_roles_sync): those of the
    # staff-login migration too.
    assert _perms(Group.objects.get(name="Auditors")) == AUDITOR
    assert _perms(Group.objects.get(name="Operators")) == OPERATOR


def test_it_makes_a_staff_user_of_a_role_with_the_password_given(capsys: Any) -> None:
    call_command("create_staff_user", "ada", "--role", "auditor", "--password", STAFF_PASSWORD)

    user = get_user_model().objects.get(username="ada")
    assert user.is_staff and not user.is_superuser and user.check_password(STAFF_PASSWORD)
    assert list(user.groups.values_list("name", flat=True)) == ["Auditors"]
    assert "role auditor" in capsys.readouterr().out


def test_it_asks_for_the_password_twice_when_none_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    answers = iter(["first try 1234567", "does not match", STAFF_PASSWORD, STAFF_PASSWORD])
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(answers))

    call_command("create_staff_user", "otto", "--role", "operator")

    user = get_user_model().objects.get(username="otto")
    assert user.check_password(STAFF_PASSWORD)
    assert list(user.groups.values_list("name", flat=True)) == ["Operators"]


def test_it_refuses_a_taken_username_and_a_weak_password(operator: AbstractBaseUser) -> None:
    with pytest.raises(CommandError, match="already exists"):
        call_command("create_staff_user", "olga", "--role", "auditor", "--password", STAFF_PASSWORD)
    with pytest.raises(CommandError, match="Password refused"):
        call_command("create_staff_user", "newbie", "--role", "auditor", "--password", "123")
    with pytest.raises(CommandError):
        call_command("create_staff_user", "newbie", "--role", "admin", "--password", STAFF_PASSWORD)


@pytest.fixture
def everything(owner: Party) -> Job:
    assert owner.tenant is not None
    return make_job(
        owner.tenant, numbers=4, failed=1, webhook_url=HOOK, webhook_state="delivered", deliveries=1
    )


def _urls(job: Job) -> list[str]:
    result = NumberResult.objects.filter(job=job).first()
    attempt = UpstreamAttempt.objects.filter(job=job).first()
    delivery = WebhookDelivery.objects.filter(job=job).first()
    assert result and attempt and delivery
    credential = ApiCredential.objects.get(tenant=job.tenant)
    return [
        *(reverse(f"admin:{model.replace('/', '_')}_changelist") for model in MODELS),
        reverse("admin:accounts_tenant_change", args=[job.tenant_id]),
        reverse("admin:accounts_apicredential_change", args=[credential.pk]),
        reverse("admin:restores_job_change", args=[job.pk]),
        reverse("admin:restores_numberresult_change", args=[result.pk]),
        reverse("admin:restores_upstreamattempt_change", args=[attempt.pk]),
        reverse("admin:restores_webhookdelivery_change", args=[delivery.pk]),
        reverse("admin:restores_overview"),
        reverse("admin:index"),
    ]


@pytest.mark.parametrize("role", ["auditor", "operator"])
def test_it_shows_every_list_and_page_to_both_roles(
    role: str, request: pytest.FixtureRequest, everything: Job
) -> None:
    client: Client = request.getfixturevalue(f"{role}_client")
    for url in _urls(everything):
        assert client.get(url).status_code == 200, url


def test_it_refuses_an_auditor_every_add_change_and_delete(auditor_client: Client, everything: Job) -> None:
    tenant_id = everything.tenant_id
    refused = [
        reverse("admin:accounts_tenant_add"),
        reverse("admin:accounts_tenant_delete", args=[tenant_id]),
        reverse("admin:restores_job_delete", args=[everything.pk]),
    ]
    for url in refused:
        assert auditor_client.get(url).status_code == 403, url
    response = auditor_client.post(
        reverse("admin:accounts_tenant_change", args=[tenant_id]),
        {"name": "renamed", "multitel_username": "x", "max_concurrency": 3},
    )
    assert response.status_code == 403
    everything.tenant.refresh_from_db()
    assert everything.tenant.name == "owner"


def test_it_refuses_an_auditor_the_credential_and_secret_buttons(
    auditor_client: Client, everything: Job
) -> None:
    tenant_id = everything.tenant_id
    credential = ApiCredential.objects.get(tenant_id=tenant_id)
    for url in (
        reverse("admin:accounts_tenant_rotate_credential", args=[tenant_id]),
        reverse("admin:accounts_tenant_rotate_webhook_secret", args=[tenant_id]),
        reverse("admin:accounts_tenant_revoke_credential", args=[tenant_id, credential.pk]),
        reverse("admin:accounts_tenant_secrets", args=[tenant_id]),
    ):
        assert auditor_client.post(url).status_code == 403, url
    page = auditor_client.get(reverse("admin:accounts_tenant_change", args=[tenant_id])).content.decode()
    assert (
        "rotate_credential" not in page
        and 'name="revoke"' not in page
        and "rotate_webhook_secret" not in page
    )
    assert ApiCredential.objects.get(pk=credential.pk).revoked_at is None
    assert ApiCredential.objects.filter(tenant_id=tenant_id).count() == 1


def test_it_gives_an_auditor_no_actions_and_no_checkboxes(auditor_client: Client, everything: Job) -> None:
    for model in MODELS:
        page = auditor_client.get(reverse(f"admin:{model.replace('/', '_')}_changelist")).content.decode()
        assert 'name="action"' not in page, model
        assert "action-checkbox" not in page, model
        assert "addlink" not in page, model


@pytest.mark.parametrize("action", ["retry_failed", "resend_webhook", "cancel", "export_results_csv"])
def test_it_ignores_an_action_an_auditor_posts_anyway(
    auditor_client: Client, everything: Job, action: str, enqueued: list[Any]
) -> None:
    Job.objects.filter(pk=everything.pk).update(status="processing")
    response = auditor_client.post(
        reverse("admin:restores_job_changelist"), {"action": action, "_selected_action": [everything.pk]}
    )

    assert response.status_code in (200, 302)
    assert response["Content-Type"].startswith("text/html")
    everything.refresh_from_db()
    assert everything.status == "processing"
    assert NumberResult.objects.filter(job=everything, status="failed").count() == 1
    assert enqueued == []


def test_it_shows_an_auditor_no_secret_of_a_tenant(
    auditor_client: Client, owner: Party, everything: Job
) -> None:
    assert owner.tenant is not None
    tenant = owner.tenant
    pages = [
        reverse("admin:accounts_tenant_change", args=[tenant.pk]),
        reverse("admin:accounts_tenant_changelist"),
        reverse("admin:accounts_apicredential_changelist"),
        reverse("admin:accounts_apicredential_change", args=[ApiCredential.objects.get(tenant=tenant).pk]),
        reverse("admin:restores_job_change", args=[everything.pk]),
    ]
    credential = ApiCredential.objects.get(tenant=tenant)
    for url in pages:
        page = auditor_client.get(url).content.decode()
        for secret in (tenant.multitel_password, tenant.webhook_secret, owner.secret, credential.secret_hash):
            assert secret not in page, url
    page = auditor_client.get(reverse("admin:accounts_tenant_change", args=[tenant.pk])).content.decode()
    assert 'type="password"' not in page
    assert "set (write-only, never shown)" in page


def test_it_lets_an_operator_add_tenants_and_run_actions_but_not_delete(operator_client: Client) -> None:
    assert operator_client.get(reverse("admin:accounts_tenant_add")).status_code == 200
    page = operator_client.get(reverse("admin:restores_job_changelist")).content.decode()
    for action in ("retry_failed", "resend_webhook", "cancel", "export_results_csv"):
        assert f'value="{action}"' in page
    assert 'value="delete_selected"' not in page


def test_it_keeps_the_admin_log_read_only_for_everyone(
    superuser_client: Client, operator_client: Client
) -> None:
    for client in (superuser_client, operator_client):
        assert client.get(reverse("admin:admin_logentry_add")).status_code == 403


def test_it_sends_a_user_without_a_role_away(client: Client, django_user_model: Any) -> None:
    user = django_user_model.objects.create_user(username="nobody", password=STAFF_PASSWORD, is_staff=True)
    client.force_login(user)
    assert client.get(reverse("admin:restores_job_changelist")).status_code == 403
    assert client.get(reverse("admin:restores_overview")).status_code == 403
