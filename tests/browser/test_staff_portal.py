"""The staff portal in Chromium: auditors look, operators act, and no page logs a JavaScript error.

Staff log in through the login form: with a two-factor code from their TOTP device when
ADMIN_REQUIRE_2FA is on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.models import Tenant
from accounts.services import staff_user_create
from restores.management.commands.seed_history import seed_history
from restores.models import Job
from tests.support.jobs import HOOK, make_job
from tests.support.parties import STAFF_PASSWORD
from tests.support.two_factor import add_totp_device, totp_code

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def portal(live_server: Any) -> dict[str, Any]:
    """A few weeks of history over four tenants, one job with failed numbers, and a user of each role."""
    seed_history(jobs=120, tenants=4, days=10, seed=11, big_jobs=0)
    tenant = Tenant.objects.get(name="seed-tenant-01")
    job = make_job(
        tenant,
        numbers=12,
        failed=3,
        webhook_url=HOOK,
        webhook_state="failing",
        webhook_error="HTTP 502 from the webhook URL",
        deliveries=2,
        first_number=19990000000,
    )
    staff_user_create(username="olga", password=STAFF_PASSWORD, role="operator")
    staff_user_create(username="arne", password=STAFF_PASSWORD, role="auditor")
    return {"url": live_server.url, "job": job}


def _log_in(page: Any, base: str, username: str) -> None:
    page.goto(f"{base}/admin/login/?next=/admin/")
    page.fill("#id_username", username)
    page.fill("#id_password", STAFF_PASSWORD)
    if settings.ADMIN_REQUIRE_2FA:
        # The code the user's authenticator app shows now.
        page.fill("#id_otp_token", totp_code(TOTPDevice.objects.get(user__username=username)))
    page.click("input[type=submit]")
    page.wait_for_url(f"{base}/admin/")
    assert page.locator("#user-tools").inner_text().upper().count(username.upper()) == 1


def test_it_lets_an_auditor_filter_and_open_jobs_without_any_action(
    page: Any, portal: dict[str, Any], screenshots: Path
) -> None:
    base, job = portal["url"], portal["job"]
    _log_in(page, base, "arne")
    page.click("#overview-module a.section")
    page.wait_for_selector("svg.chart")
    assert page.locator("svg.chart").count() == 10
    page.screenshot(path=str(screenshots / "overview.png"), full_page=True)

    page.goto(f"{base}/admin/restores/job/")
    page.click("#toggle-nav-sidebar")  # more room for the list (remembered by the browser)
    assert page.locator("select[name=action]").count() == 0
    assert page.locator("input.action-select, #action-toggle").count() == 0
    assert page.locator("a.addlink").count() == 0
    page.click("#changelist-filter a:text-is('yes') >> nth=0")  # has failures: yes
    page.wait_for_url("**has_failures=yes**")
    rows = page.locator("#result_list tbody tr")
    assert rows.count() > 0
    assert page.locator(f"#result_list a:text('{job.uuid}')").count() == 1
    page.screenshot(path=str(screenshots / "job-list.png"), full_page=False)

    page.click(f"#result_list a:text('{job.uuid}')")
    page.wait_for_selector("pre.job-status-payload")
    body = page.locator("#content-main").inner_text()
    assert "HTTP 502 from the webhook URL" in body and HOOK in body
    assert page.locator("input[name=_save], a.deletelink").count() == 0
    page.screenshot(path=str(screenshots / "job-page.png"), full_page=True)
    page.click("a:text('12 numbers')")
    page.wait_for_url(f"**job__id__exact={job.pk}**")
    assert page.locator("#result_list tbody tr").count() == 12


def test_it_lets_an_operator_retry_the_failed_numbers_of_a_job(
    page: Any, portal: dict[str, Any], _browser_settings: list[Any]
) -> None:
    base, job = portal["url"], portal["job"]
    _log_in(page, base, "olga")
    page.goto(f"{base}/admin/restores/job/?q={job.uuid}")
    assert page.locator("#result_list tbody tr").count() == 1
    page.check(f"input.action-select[value='{job.pk}']")
    page.select_option("select[name=action]", "retry_failed")
    page.click("button[name=index]")
    page.wait_for_selector("ul.messagelist li")
    assert (
        "Put 3 failed numbers of 1 job(s) back in the queue." in page.locator("ul.messagelist").inner_text()
    )
    job.refresh_from_db()
    assert job.status == Job.Status.PROCESSING and job.failure_count == 0
    assert ("restores.tasks.process_job", (job.pk,)) in _browser_settings

    page.goto(f"{base}/admin/admin/logentry/")
    assert "Retried 3 failed numbers." in page.locator("#result_list").inner_text()


def test_it_logs_staff_in_with_a_two_factor_code_and_lets_an_operator_lift_a_lockout(
    page: Any, portal: dict[str, Any], settings: Any, console: Any
) -> None:
    settings.ADMIN_REQUIRE_2FA = True
    base = portal["url"]
    add_totp_device(get_user_model().objects.get(username="olga"))
    add_totp_device(get_user_model().objects.get(username="arne"))

    # Without a code, the right password is not enough.
    page.goto(f"{base}/admin/login/?next=/admin/")
    assert "Two-factor authentication is required" in page.locator("#two-factor-required").inner_text()
    page.fill("#id_username", "arne")
    page.fill("#id_password", STAFF_PASSWORD)
    page.click("input[type=submit]")
    assert "Enter the two-factor code" in page.locator("p.errornote").inner_text()

    # Someone guesses arne's password from this browser's address until it is locked out.
    for attempt in range(settings.AXES_FAILURE_LIMIT):
        page.fill("#id_username", "arne")
        page.fill("#id_password", f"guess {attempt}")
        page.fill("#id_otp_token", "123456")
        page.click("input[type=submit]")
    assert "Too many failed logins" in page.locator("#locked-out").inner_text()
    # Chromium reports the 429 of that page as a failed resource; nothing else may fail.
    console.errors[:] = [e for e in console.errors if "status of 429" not in e]

    _log_in(page, base, "olga")
    page.goto(f"{base}/admin/axes/accessattempt/")
    row = page.locator("#result_list tbody tr", has_text="arne")
    assert "Locked Out" in row.inner_text()
    row.locator("input.action-select").check()
    page.select_option("select[name=action]", "delete_selected")
    page.click("button[name=index]")
    page.click("#content form input[type=submit]")  # "Yes, I'm sure"
    assert "Successfully deleted 1" in page.locator("ul.messagelist").inner_text()
    page.click("#logout-form button")

    _log_in(page, base, "arne")
