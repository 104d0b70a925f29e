"""Search by job UUID and by phone number, and the filters of the job, result and audit lists."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from restores.models import Job, NumberResult, UpstreamAttempt
from tests.support.jobs import HOOK, make_job
from tests.support.parties import Party

pytestmark = pytest.mark.django_db


def _shown(client: Client, name: str, **params: str) -> list[int]:
    response = client.get(reverse(f"admin:restores_{name}_changelist"), params)
    assert response.status_code == 200, response.get("Location")
    return sorted(obj.pk for obj in response.context["cl"].result_list)


@pytest.fixture
def jobs(owner: Party, second: Party) -> dict[str, Job]:
    assert owner.tenant is not None and second.tenant is not None
    now = timezone.now()
    return {
        "clean": make_job(owner.tenant, numbers=3, first_number=15550100000),
        "failed": make_job(owner.tenant, numbers=3, failed=1, first_number=15550100001),
        "hook_failing": make_job(
            second.tenant,
            numbers=2,
            webhook_url=HOOK,
            webhook_state="failing",
            deliveries=2,
            first_number=15550200000,
        ),
        "running": make_job(
            second.tenant, numbers=4, pending=2, status="processing", first_number=15550300000
        ),
        "old": make_job(
            owner.tenant, numbers=1, created_at=now - timedelta(days=40), first_number=15550400000
        ),
    }


def test_it_finds_a_job_by_its_uuid(auditor_client: Client, jobs: dict[str, Job]) -> None:
    job = jobs["failed"]
    assert _shown(auditor_client, "job", q=str(job.uuid)) == [job.pk]
    assert _shown(auditor_client, "job", q=f"  {str(job.uuid).upper()} ") == [job.pk]


def test_it_finds_every_job_that_contains_a_number(auditor_client: Client, jobs: dict[str, Job]) -> None:
    # 15550100001 is the second number of "clean" and the first of "failed".
    assert _shown(auditor_client, "job", q="15550100001") == sorted([jobs["clean"].pk, jobs["failed"].pk])
    assert _shown(auditor_client, "job", q="15550300003") == [jobs["running"].pk]
    assert _shown(auditor_client, "job", q="19999999999") == []


def test_it_finds_nothing_for_a_term_that_is_neither(auditor_client: Client, jobs: dict[str, Job]) -> None:
    assert _shown(auditor_client, "job", q="owner") == []
    assert _shown(auditor_client, "job", q="1234") == []


def test_it_finds_the_results_and_attempts_of_a_number(auditor_client: Client, jobs: dict[str, Job]) -> None:
    results = NumberResult.objects.filter(number="15550100001")
    assert _shown(auditor_client, "numberresult", q="15550100001") == sorted(r.pk for r in results)
    attempts = UpstreamAttempt.objects.filter(result__number="15550100001")
    assert _shown(auditor_client, "upstreamattempt", q="15550100001") == sorted(a.pk for a in attempts)


def test_it_filters_jobs_by_status_tenant_and_creation_date(
    auditor_client: Client, jobs: dict[str, Job], second: Party
) -> None:
    assert _shown(auditor_client, "job", status__exact="processing") == [jobs["running"].pk]
    assert second.tenant is not None
    assert _shown(auditor_client, "job", tenant=str(second.tenant.pk)) == sorted(
        [jobs["hook_failing"].pk, jobs["running"].pk]
    )
    since = (timezone.now() - timedelta(days=7)).isoformat(sep=" ")
    recent = _shown(auditor_client, "job", created_at__gte=since)
    assert jobs["old"].pk not in recent and len(recent) == 4


def test_it_filters_jobs_with_failures_and_with_a_failing_webhook(
    auditor_client: Client, jobs: dict[str, Job]
) -> None:
    assert _shown(auditor_client, "job", has_failures="yes") == [jobs["failed"].pk]
    assert jobs["failed"].pk not in _shown(auditor_client, "job", has_failures="no")
    assert _shown(auditor_client, "job", webhook_failing="yes") == [jobs["hook_failing"].pk]
    Job.objects.filter(pk=jobs["clean"].pk).update(webhook_state="failed", webhook_url=HOOK)
    assert _shown(auditor_client, "job", webhook_failing="yes") == sorted(
        [jobs["clean"].pk, jobs["hook_failing"].pk]
    )


def test_it_filters_results_by_status_code_and_flags(auditor_client: Client, jobs: dict[str, Job]) -> None:
    failed = NumberResult.objects.get(job=jobs["failed"], status="failed")
    assert _shown(auditor_client, "numberresult", status__exact="failed") == [failed.pk]
    assert _shown(auditor_client, "numberresult", status_code="404") == [failed.pk]
    pending = NumberResult.objects.filter(status="pending")
    assert _shown(auditor_client, "numberresult", status_code="none") == sorted(r.pk for r in pending)
    flagged = NumberResult.objects.get(job=jobs["clean"], position=0)
    NumberResult.objects.filter(pk=flagged.pk).update(requires_identity_update=True)
    registration = NumberResult.objects.get(job=jobs["clean"], position=1)
    NumberResult.objects.filter(pk=registration.pk).update(needs_registration=True)
    assert _shown(auditor_client, "numberresult", requires_identity_update__exact="1") == [flagged.pk]
    assert _shown(auditor_client, "numberresult", needs_registration__exact="1") == [registration.pk]


def test_it_filters_the_audit_lists_by_tenant_and_by_job(
    auditor_client: Client, jobs: dict[str, Job], second: Party
) -> None:
    assert second.tenant is not None
    job = jobs["hook_failing"]
    tenant = str(second.tenant.pk)
    results = NumberResult.objects.filter(job__tenant=second.tenant)
    assert _shown(auditor_client, "numberresult", tenant=tenant) == sorted(r.pk for r in results)
    attempts = UpstreamAttempt.objects.filter(job__tenant=second.tenant)
    assert _shown(auditor_client, "upstreamattempt", tenant=tenant) == sorted(a.pk for a in attempts)
    deliveries = list(job.webhook_deliveries.values_list("pk", flat=True))
    assert _shown(auditor_client, "webhookdelivery", tenant=tenant) == sorted(deliveries)
    assert _shown(auditor_client, "webhookdelivery", job__id__exact=str(job.pk)) == sorted(deliveries)
    assert _shown(auditor_client, "webhookdelivery", delivered__exact="0") == sorted(deliveries)
    assert _shown(auditor_client, "webhookdelivery", q=str(job.uuid)) == sorted(deliveries)
    assert _shown(auditor_client, "upstreamattempt", outcome__exact="failed") == sorted(
        UpstreamAttempt.objects.filter(outcome="failed").values_list("pk", flat=True)
    )
    assert _shown(auditor_client, "upstreamattempt", http_status="404") == sorted(
        UpstreamAttempt.objects.filter(http_status=404).values_list("pk", flat=True)
    )


def test_it_lists_a_tenants_results_newest_job_first_in_submission_order(
    auditor_client: Client, jobs: dict[str, Job], owner: Party
) -> None:
    assert owner.tenant is not None
    response = auditor_client.get(
        reverse("admin:restores_numberresult_changelist"), {"tenant": owner.tenant.pk}
    )
    shown = [(r.job_id, r.position) for r in response.context["cl"].result_list]
    expected = sorted(
        NumberResult.objects.filter(job__tenant=owner.tenant).values_list(
            "job__created_at", "job_id", "position"
        ),
        key=lambda row: (-row[0].timestamp(), row[2]),
    )
    assert shown == [(job_id, position) for _, job_id, position in expected]


def test_it_refuses_a_malformed_filter_value_without_an_error_page(
    auditor_client: Client, jobs: dict[str, Job]
) -> None:
    for params in ({"job__id__exact": "abc"}, {"status_code": "x"}, {"tenant": "x"}):
        response = auditor_client.get(reverse("admin:restores_numberresult_changelist"), params)
        assert response.status_code in (200, 302)


def test_it_counts_a_big_list_only_up_to_its_cap(
    auditor_client: Client, jobs: dict[str, Job], monkeypatch: pytest.MonkeyPatch
) -> None:
    from accounts.admin import CappedCountPaginator

    monkeypatch.setattr(CappedCountPaginator, "COUNT_CAP", 5)
    page = auditor_client.get(reverse("admin:restores_numberresult_changelist")).content.decode()
    assert "more than 5 number results" in page
    page = auditor_client.get(reverse("admin:restores_job_changelist")).content.decode()
    assert "more than 5" not in page and "5 jobs" in page
