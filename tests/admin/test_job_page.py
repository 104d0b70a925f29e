"""The job page: summary, webhook, links to its records as filtered lists, the status JSON."""

from __future__ import annotations

import html
import json
import re

import pytest
from django.test import Client
from django.urls import reverse

from restores.models import Job
from restores.selectors import STATUS_PREVIEW_RESULTS, job_status_payload
from tests.support.jobs import HOOK, make_job
from tests.support.parties import Party

pytestmark = pytest.mark.django_db


def _page(client: Client, job: Job) -> str:
    response = client.get(reverse("admin:restores_job_change", args=[job.pk]))
    assert response.status_code == 200
    return response.content.decode()


def _payload(page: str) -> dict:  # type: ignore[type-arg]
    found = re.search(r'<pre class="job-status-payload">(.*?)</pre>', page, re.S)
    assert found
    return json.loads(html.unescape(found.group(1)))  # type: ignore[no-any-return]


def test_it_shows_the_summary_the_webhook_and_its_latest_error(auditor_client: Client, owner: Party) -> None:
    assert owner.tenant is not None
    job = make_job(
        owner.tenant,
        numbers=4,
        failed=1,
        webhook_url=HOOK,
        webhook_state="failing",
        webhook_error="HTTP 503 from the webhook URL",
        deliveries=2,
    )

    page = _page(auditor_client, job)

    for text in (str(job.uuid), "owner", HOOK, "HTTP 503 from the webhook URL", "failing, will retry", "4/4"):
        assert text in page, text
    assert 'name="_save"' not in page and "deletelink" not in page


def test_it_links_to_the_jobs_records_as_filtered_lists(auditor_client: Client, owner: Party) -> None:
    assert owner.tenant is not None
    job = make_job(owner.tenant, numbers=3, webhook_url=HOOK, webhook_state="delivered", deliveries=1)

    page = _page(auditor_client, job)

    for name in ("numberresult", "upstreamattempt", "webhookdelivery"):
        link = f"{reverse(f'admin:restores_{name}_changelist')}?job__id__exact={job.pk}"
        assert f'href="{link}"' in page, name
        listed = auditor_client.get(link)
        assert listed.status_code == 200
        assert {obj.job_id for obj in listed.context["cl"].result_list} == {job.pk}


def test_it_shows_the_json_of_the_status_endpoint(auditor_client: Client, owner: Party) -> None:
    assert owner.tenant is not None
    job = make_job(owner.tenant, numbers=3, failed=1)

    payload = _payload(_page(auditor_client, job))

    assert payload == job_status_payload(job=Job.objects.get(pk=job.pk))


def test_it_never_renders_every_number_of_a_big_job(auditor_client: Client, owner: Party) -> None:
    assert owner.tenant is not None
    job = make_job(owner.tenant, numbers=STATUS_PREVIEW_RESULTS + 50, attempts=False)

    page = _page(auditor_client, job)

    payload = _payload(page)
    assert len(payload["results"]) == STATUS_PREVIEW_RESULTS
    assert payload["total_numbers"] == STATUS_PREVIEW_RESULTS + 50
    assert f"This job has {STATUS_PREVIEW_RESULTS + 50} numbers" in page
    last = str(15550100000 + STATUS_PREVIEW_RESULTS + 49)
    assert last not in page
    assert "inline-group" not in page
