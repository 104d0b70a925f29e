"""Each list page and the job page cost the same number of queries with 5 rows as with 50."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from accounts.services import api_credential_create
from restores.models import Job
from tests.support.jobs import HOOK, make_job
from tests.support.parties import Party, make_party

pytestmark = pytest.mark.django_db


def _queries(client: Client, url: str) -> int:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code == 200
    return len(captured.captured_queries)


def _rows(client: Client, url: str) -> int:
    return len(client.get(url).context["cl"].result_list)


def _jobs(tenant: Any, count: int, start: int) -> None:
    for n in range(start, start + count):
        make_job(
            tenant,
            numbers=1,
            failed=n % 2,
            webhook_url=HOOK,
            webhook_state="delivered",
            deliveries=1,
            first_number=15550000000 + n * 10,
        )


def _tenants(party: Party, count: int, start: int) -> None:
    for n in range(start, start + count):
        make_party(f"tenant-{n}")


def _credentials(party: Party, count: int, start: int) -> None:
    assert party.tenant is not None
    for _ in range(count):
        api_credential_create(tenant=party.tenant)


def _log_entries(party: Party, count: int, start: int) -> None:
    user = get_user_model().objects.get(username="admin")
    LogEntry.objects.log_actions(
        user_id=user.pk, queryset=[party.tenant] * count, action_flag=CHANGE, change_message="Checked."
    )


def _job_rows(party: Party, count: int, start: int) -> None:
    _jobs(party.tenant, count, start)


ADD_ROWS: dict[str, Callable[[Party, int, int], None]] = {
    "restores_job": _job_rows,
    "restores_numberresult": _job_rows,
    "restores_upstreamattempt": _job_rows,
    "restores_webhookdelivery": _job_rows,
    "accounts_tenant": _tenants,
    "accounts_apicredential": _credentials,
    "admin_logentry": _log_entries,
}
CASES = [
    *((name, "") for name in ADD_ROWS),
    *((name, "tenant") for name in ADD_ROWS if name.startswith("restores_")),
    ("restores_job", "q=15550000010"),
    ("restores_numberresult", "q=15550000010"),
    ("restores_upstreamattempt", "q=15550000010"),
    ("restores_job", "has_failures=no&webhook_failing=no&status__exact=completed"),
    ("restores_numberresult", "status__exact=success&status_code=200"),
]


@pytest.mark.parametrize(("name", "params"), CASES)
def test_it_costs_the_same_queries_whatever_the_rows_shown(
    name: str, params: str, superuser_client: Client, owner: Party
) -> None:
    assert owner.tenant is not None
    if params == "tenant":
        params = f"tenant={owner.tenant.pk}"
    url = f"{reverse(f'admin:{name}_changelist')}?{params}"
    ADD_ROWS[name](owner, 5, 0)
    few = _queries(superuser_client, url)
    shown_few = _rows(superuser_client, url)

    ADD_ROWS[name](owner, 45, 5)
    many = _queries(superuser_client, url)
    shown_many = _rows(superuser_client, url)

    if params.startswith("q="):
        assert shown_few == shown_many >= 1  # a search shows the same rows, however big the table
    else:
        assert 1 <= shown_few <= 6 and shown_many >= 5 * shown_few, (shown_few, shown_many)
    assert many == few, f"{name}?{params}: {few} queries with {shown_few} rows, {many} with {shown_many}"


def test_it_costs_the_same_queries_for_the_page_of_a_small_and_a_big_job(
    superuser_client: Client, owner: Party
) -> None:
    assert owner.tenant is not None
    small = make_job(
        owner.tenant, numbers=5, failed=1, webhook_url=HOOK, webhook_state="delivered", deliveries=1
    )
    big = make_job(
        owner.tenant,
        numbers=300,
        failed=20,
        webhook_url=HOOK,
        webhook_state="failing",
        deliveries=3,
        first_number=15560000000,
    )

    superuser_client.get(reverse("admin:restores_job_change", args=[small.pk]))  # caches content types
    with CaptureQueriesContext(connection) as few:
        superuser_client.get(reverse("admin:restores_job_change", args=[small.pk]))
    with CaptureQueriesContext(connection) as many:
        superuser_client.get(reverse("admin:restores_job_change", args=[big.pk]))

    assert len(many) == len(few), [q["sql"][:120] for q in many.captured_queries]


def test_it_costs_the_same_queries_for_the_overview_with_more_history(
    superuser_client: Client, owner: Party
) -> None:
    assert owner.tenant is not None
    _jobs(owner.tenant, 5, 0)
    few = _queries(superuser_client, reverse("admin:restores_overview"))
    _jobs(owner.tenant, 45, 5)
    many = _queries(superuser_client, reverse("admin:restores_overview"))
    assert many == few
    assert Job.objects.count() == 50
