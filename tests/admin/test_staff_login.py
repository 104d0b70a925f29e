"""Staff logins: password guessing is locked out (django-axes), and TOTP two-factor (django-otp)
is required when ADMIN_REQUIRE_2FA is on. Hostile clients lock nobody out from their own address."""

from __future__ import annotations

import base64
from datetime import timedelta
from typing import Any

import pytest
from axes.models import AccessAttempt
from django.conf import settings
from django.contrib.admin.models import DELETION, LogEntry
from django.contrib.auth.models import AbstractBaseUser
from django.core.management import call_command
from django.http import HttpResponse
from django.test import Client
from django.urls import reverse
from django_otp.plugins.otp_totp.models import TOTPDevice

from portal.checks import check_production_settings
from tests.support.parties import STAFF_PASSWORD, Party
from tests.support.two_factor import add_totp_device, totp_code, wrong_code

pytestmark = pytest.mark.django_db

STAFF_ADDRESS = "198.51.100.7"
ATTACKER_ADDRESS = "203.0.113.66"


def _log_in(
    username: str, password: str, *, address: str = STAFF_ADDRESS, client: Client | None = None, **extra: str
) -> tuple[Client, HttpResponse]:
    client = client or Client(REMOTE_ADDR=address)
    response = client.post(
        reverse("admin:login"), {"username": username, "password": password, "next": "/admin/", **extra}
    )
    return client, response


def _logged_in(response: HttpResponse) -> bool:
    return response.status_code == 302 and response["Location"] == "/admin/"


def _guess(username: str, times: int, *, address: str = STAFF_ADDRESS) -> list[int]:
    return [_log_in(username, f"guess {n}", address=address)[1].status_code for n in range(times)]


def test_it_locks_out_a_username_and_address_after_the_failure_limit(auditor: AbstractBaseUser) -> None:
    limit = settings.AXES_FAILURE_LIMIT
    assert limit == 5

    statuses = _guess("arne", 30)

    # The first wrong passwords get the form again; from the one that reaches the limit, 429.
    assert statuses == [200] * (limit - 1) + [429] * (30 - limit + 1)
    client, response = _log_in("arne", STAFF_PASSWORD)
    assert response.status_code == 429
    assert 0 < int(response["Retry-After"]) <= 15 * 60
    page = response.content.decode()
    assert "Too many failed logins" in page and "15 more minutes" in page
    assert "_auth_user_id" not in client.session
    attempt = AccessAttempt.objects.get(username="arne")
    assert attempt.ip_address == STAFF_ADDRESS and attempt.failures_since_start == limit


def test_it_lets_the_right_password_in_again_once_the_lockout_has_cooled_off(
    auditor: AbstractBaseUser,
) -> None:
    _guess("arne", 30)
    assert _log_in("arne", STAFF_PASSWORD)[1].status_code == 429

    # The clock moves on: the last counted failure is older than AXES_COOLOFF_TIME.
    AccessAttempt.objects.update(
        attempt_time=AccessAttempt.objects.get().attempt_time
        - settings.AXES_COOLOFF_TIME
        - timedelta(seconds=1)
    )

    assert _logged_in(_log_in("arne", STAFF_PASSWORD)[1])


def test_it_does_not_lock_a_staff_member_out_from_their_own_address(auditor: AbstractBaseUser) -> None:
    assert _guess("arne", 30, address=ATTACKER_ADDRESS)[-1] == 429

    assert _logged_in(_log_in("arne", STAFF_PASSWORD, address=STAFF_ADDRESS)[1])
    assert _log_in("arne", STAFF_PASSWORD, address=ATTACKER_ADDRESS)[1].status_code == 429


def test_it_lets_an_operator_lift_a_lockout_in_the_admin(
    auditor: AbstractBaseUser, operator_client: Client
) -> None:
    _guess("arne", 30)
    attempt = AccessAttempt.objects.get(username="arne")

    response = operator_client.post(
        reverse("admin:axes_accessattempt_changelist"),
        {"action": "delete_selected", "_selected_action": [attempt.pk], "post": "yes"},
    )

    assert response.status_code == 302
    assert not AccessAttempt.objects.exists()
    assert LogEntry.objects.filter(action_flag=DELETION, user__username="olga").count() == 1
    assert _logged_in(_log_in("arne", STAFF_PASSWORD)[1])


def test_it_lifts_a_lockout_with_axes_reset_username(auditor: AbstractBaseUser, capsys: Any) -> None:
    _guess("arne", 30)

    call_command("axes_reset_username", "arne")

    assert "1 attempts removed" in capsys.readouterr().out
    assert _logged_in(_log_in("arne", STAFF_PASSWORD)[1])


def test_it_lists_a_lockout_for_an_auditor_read_only_and_for_an_operator_to_lift(
    auditor: AbstractBaseUser, auditor_client: Client, operator_client: Client
) -> None:
    _guess("ghost", 6, address=ATTACKER_ADDRESS)
    attempt = AccessAttempt.objects.get(username="ghost")
    changelist = reverse("admin:axes_accessattempt_changelist")

    for client in (auditor_client, operator_client):
        page = client.get(changelist).content.decode()
        assert "ghost" in page and ATTACKER_ADDRESS in page and "Locked Out" in page
        assert client.get(reverse("admin:axes_accessattempt_change", args=[attempt.pk])).status_code == 200
        assert client.get(reverse("admin:axes_accessfailurelog_changelist")).status_code == 200
    auditor_page = auditor_client.get(changelist).content.decode()
    assert 'name="action"' not in auditor_page and "action-checkbox" not in auditor_page
    assert (
        auditor_client.get(reverse("admin:axes_accessattempt_delete", args=[attempt.pk])).status_code == 403
    )
    auditor_client.post(
        changelist, {"action": "delete_selected", "_selected_action": [attempt.pk], "post": "yes"}
    )
    auditor_client.post(changelist, {"action": "cleanup_expired_attempts", "_selected_action": [attempt.pk]})
    assert AccessAttempt.objects.filter(pk=attempt.pk).exists()
    operator_page = operator_client.get(changelist).content.decode()
    assert 'value="delete_selected"' in operator_page
    assert (
        operator_client.get(reverse("admin:axes_accessattempt_delete", args=[attempt.pk])).status_code == 200
    )


def test_it_leaves_api_credential_checks_to_the_apis_own_limiter(
    auditor: AbstractBaseUser, owner: Party
) -> None:
    api = Client(REMOTE_ADDR=STAFF_ADDRESS)
    for username in ("arne", owner.username):
        token = base64.b64encode(f"{username}:{STAFF_PASSWORD}-wrong".encode()).decode()
        for _ in range(30):
            response = api.get(
                reverse("bulk-restore-status"), {"job_uuid": "x"}, HTTP_AUTHORIZATION=f"Basic {token}"
            )
            assert response.status_code == 401
    owner.client.defaults["REMOTE_ADDR"] = STAFF_ADDRESS
    assert owner.client.post(reverse("bulk-restore"), {"numbers": []}, format="json").status_code == 400

    assert not AccessAttempt.objects.exists()
    assert _logged_in(_log_in("arne", STAFF_PASSWORD)[1])


# --- Two-factor ------------------------------------------------------------------------------


@pytest.fixture
def two_factor(settings: Any) -> None:
    settings.ADMIN_REQUIRE_2FA = True


@pytest.fixture
def device(auditor: AbstractBaseUser) -> TOTPDevice:
    return add_totp_device(auditor)


def test_it_asks_only_for_the_password_while_2fa_is_off(device: TOTPDevice) -> None:
    page = Client().get(reverse("admin:login")).content.decode()
    assert 'name="otp_token"' not in page and "Two-factor authentication is required" not in page

    client, response = _log_in("arne", STAFF_PASSWORD)

    assert _logged_in(response)
    assert client.get(reverse("admin:index")).status_code == 200


def test_it_refuses_a_right_password_without_a_code_when_2fa_is_required(
    two_factor: None, device: TOTPDevice
) -> None:
    page = Client().get(reverse("admin:login")).content.decode()
    assert 'name="otp_token"' in page and "Two-factor authentication is required" in page

    client, response = _log_in("arne", STAFF_PASSWORD)

    assert response.status_code == 200
    assert "Enter the two-factor code" in response.content.decode()
    assert "_auth_user_id" not in client.session


def test_it_refuses_a_right_password_with_a_wrong_code_as_a_failed_login(
    two_factor: None, device: TOTPDevice
) -> None:
    client, response = _log_in("arne", STAFF_PASSWORD, otp_token=wrong_code(device))

    assert response.status_code == 200
    assert "_auth_user_id" not in client.session
    # The same answer as a wrong password, and counted as a failure like one.
    wrong_password = _log_in("arne", "not it", otp_token=totp_code(device))[1].content.decode()
    assert (
        "current two-factor code" in response.content.decode() and "current two-factor code" in wrong_password
    )
    assert AccessAttempt.objects.get(username="arne").failures_since_start == 2


def test_it_logs_in_with_the_right_password_and_the_current_code(
    two_factor: None, device: TOTPDevice
) -> None:
    client, response = _log_in("arne", STAFF_PASSWORD, otp_token=totp_code(device))

    assert _logged_in(response)
    assert client.get(reverse("admin:index")).status_code == 200
    assert client.get(reverse("admin:restores_overview")).status_code == 200
    # A code is accepted once: the same one again is refused.
    again = _log_in("arne", STAFF_PASSWORD, otp_token=totp_code(device))[1]
    assert again.status_code == 200


def test_it_tells_a_guesser_nothing_about_the_password_when_2fa_is_required(
    two_factor: None, device: TOTPDevice, django_user_model: Any
) -> None:
    user = django_user_model.objects.create_user(username="nobody", password=STAFF_PASSWORD)
    add_totp_device(user)
    answers = {
        _log_in("arne", "not it", otp_token=totp_code(device))[1].content.decode(),
        _log_in("arne", STAFF_PASSWORD, otp_token=wrong_code(device))[1].content.decode(),
        _log_in("nobody", STAFF_PASSWORD, otp_token="123456")[1].content.decode(),
    }

    errors = {page[page.index('<p class="errornote">') :].split("</p>")[0] for page in answers}
    assert len(errors) == 1 and "current two-factor code" in errors.pop()


def test_it_locks_out_after_the_failure_limit_of_wrong_codes(two_factor: None, device: TOTPDevice) -> None:
    statuses = [
        _log_in("arne", STAFF_PASSWORD, otp_token=wrong_code(device))[1].status_code
        for _ in range(settings.AXES_FAILURE_LIMIT)
    ]

    assert statuses[-1] == 429
    assert _log_in("arne", STAFF_PASSWORD, otp_token=totp_code(device))[1].status_code == 429


def test_it_refuses_a_staff_user_without_a_device_while_2fa_is_required(
    two_factor: None, auditor: AbstractBaseUser
) -> None:
    page = Client().get(reverse("admin:login")).content.decode()
    assert "Staff without a device cannot log in" in page

    client, response = _log_in("arne", STAFF_PASSWORD, otp_token="123456")

    assert response.status_code == 200 and "_auth_user_id" not in client.session


def test_it_sends_a_session_without_two_factor_back_to_the_login(
    two_factor: None, auditor_client: Client, device: TOTPDevice
) -> None:
    response = auditor_client.get(reverse("admin:restores_job_changelist"))

    assert response.status_code == 302 and response["Location"].startswith(reverse("admin:login"))
    page = auditor_client.get(response["Location"]).content.decode()
    assert "without a two-factor code" in page


def test_it_gives_a_new_staff_user_a_totp_device_with_create_staff_user(
    two_factor: None, capsys: Any
) -> None:
    call_command(
        "create_staff_user", "ada", "--role", "operator", "--password", STAFF_PASSWORD, "--with-totp"
    )

    out = capsys.readouterr().out
    device = TOTPDevice.objects.get(user__username="ada")
    assert device.confirmed and f"otpauth://totp/Bulk%20restore%20portal%3Aada?secret={_b32(device)}" in out
    assert _logged_in(_log_in("ada", STAFF_PASSWORD, otp_token=totp_code(device))[1])


def _b32(device: TOTPDevice) -> str:
    return base64.b32encode(device.bin_key).decode()


def test_it_lets_an_operator_add_a_totp_device_for_a_staff_user_and_show_its_qr_code(
    two_factor: None, auditor: AbstractBaseUser, operator: AbstractBaseUser
) -> None:
    operator_device = add_totp_device(operator)
    operator_client, response = _log_in("olga", STAFF_PASSWORD, otp_token=totp_code(operator_device))
    assert _logged_in(response)
    form = operator_client.get(reverse("admin:otp_totp_totpdevice_add")).content.decode()
    assert f'<option value="{auditor.pk}">arne</option>' in form

    key = "3132333435363738393031323334353637383930"
    response = operator_client.post(
        reverse("admin:otp_totp_totpdevice_add"),
        {
            "user": auditor.pk,
            "name": "arne's phone",
            "confirmed": "on",
            "key": key,
            "step": 30,
            "t0": 0,
            "digits": 6,
            "tolerance": 1,
            "drift": 0,
            "throttling_failure_count": 0,
            "_save": "Save",
        },
    )

    device = TOTPDevice.objects.get(user=auditor)
    config = reverse("admin:otp_totp_totpdevice_config", kwargs={"pk": device.pk})
    assert response.status_code == 302 and response["Location"] == config
    assert _b32(device) in operator_client.get(config).content.decode()
    assert operator_client.get(reverse("admin:otp_totp_totpdevice_qrcode", kwargs={"pk": device.pk}))[
        "Content-Type"
    ].startswith("image/svg+xml")
    assert _logged_in(_log_in("arne", STAFF_PASSWORD, otp_token=totp_code(device))[1])


def test_it_shows_an_auditor_who_has_a_totp_device_but_never_its_key(
    auditor_client: Client, device: TOTPDevice
) -> None:
    listing = auditor_client.get(reverse("admin:otp_totp_totpdevice_changelist")).content.decode()
    assert "phone" in listing and "qrcode" not in listing and 'name="action"' not in listing
    page = auditor_client.get(reverse("admin:otp_totp_totpdevice_change", args=[device.pk])).content.decode()
    assert device.key not in page and _b32(device) not in page
    for view in ("config", "qrcode"):
        url = reverse(f"admin:otp_totp_totpdevice_{view}", kwargs={"pk": device.pk})
        assert auditor_client.get(url).status_code == 403
    assert auditor_client.get(reverse("admin:otp_totp_totpdevice_add")).status_code == 403


# --- The deploy check ------------------------------------------------------------------------


def test_it_warns_in_the_deploy_checks_while_2fa_is_off(settings: Any) -> None:
    settings.ADMIN_REQUIRE_2FA = False
    assert "portal.W004" in {problem.id for problem in check_production_settings()}


def test_it_is_quiet_in_the_deploy_checks_once_2fa_is_required(settings: Any) -> None:
    settings.ADMIN_REQUIRE_2FA = True
    assert "portal.W004" not in {problem.id for problem in check_production_settings()}
