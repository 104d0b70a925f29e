"""Tenant isolation for every API endpoint: the owner, a second tenant and an outsider."""

from __future__ import annotations

import json
import uuid
from typing import Any

from restores.models import Job, NumberResult
from tests.support.numbers import number

NUMBERS = [number(111), number(112), number(113)]


def submit(client: Any, numbers: list[str], **extra: Any) -> Any:
    return client.post(
        "/v3/bulk_restore", data=json.dumps({"numbers": numbers, **extra}), content_type="application/json"
    )


def poll(client: Any, **params: str) -> Any:
    return client.get("/v3/bulk_restore_status", params)


# --- POST /v3/bulk_restore --------------------------------------------------------------


def test_it_files_a_job_under_the_caller_and_calls_upstream_with_the_callers_account(
    owner, second, outsider, fake_multitel
):
    mine = submit(owner.client, NUMBERS)
    theirs = submit(second.client, [number(121)])
    refused = submit(outsider.client, [number(131)])

    assert (mine.status_code, theirs.status_code, refused.status_code) == (200, 200, 401)
    my_job = Job.objects.get(uuid=mine.json()["job_uuid"])
    their_job = Job.objects.get(uuid=theirs.json()["job_uuid"])
    assert my_job.tenant == owner.tenant
    assert my_job.credential is not None and my_job.credential.tenant == owner.tenant
    assert their_job.tenant == second.tenant
    assert Job.objects.count() == 2
    assert not NumberResult.objects.filter(number=number(131)).exists()
    stats = fake_multitel.state.stats()
    # Each tenant's numbers went upstream with its own Multitel account, the outsider's not at all.
    assert stats["max_in_flight"].keys() == {"mt-owner", "mt-second"}
    assert stats["calls_by_number"] == {number(111): 1, number(112): 1, number(113): 1, number(121): 1}
    assert stats["rejected_auth"] == 0


def test_it_restores_the_same_number_for_two_tenants_as_two_separate_jobs(owner, second, fake_multitel):
    mine = submit(owner.client, [number(111)]).json()
    theirs = submit(second.client, [number(111)]).json()

    assert mine["job_uuid"] != theirs["job_uuid"]
    assert Job.objects.get(uuid=mine["job_uuid"]).tenant == owner.tenant
    assert Job.objects.get(uuid=theirs["job_uuid"]).tenant == second.tenant
    assert fake_multitel.state.stats()["calls_by_number"] == {number(111): 2}


def test_it_queues_a_large_job_under_the_caller_only(owner, second, outsider, enqueued):
    numbers = [number(100 + i) for i in range(11)]

    mine = submit(owner.client, numbers)
    refused = submit(outsider.client, numbers)

    assert (mine.status_code, refused.status_code) == (202, 401)
    assert list(Job.objects.values_list("tenant_id", flat=True)) == [owner.tenant.pk]
    assert not Job.objects.filter(tenant=second.tenant).exists()


# --- GET /v3/bulk_restore_status ---------------------------------------------------------


def test_it_shows_a_job_only_to_its_own_tenant(owner, second, outsider, fake_multitel):
    job_uuid = submit(owner.client, NUMBERS).json()["job_uuid"]
    unknown = poll(owner.client, job_uuid=str(uuid.uuid4()))

    as_owner = poll(owner.client, job_uuid=job_uuid)
    as_second = poll(second.client, job_uuid=job_uuid)
    as_outsider = poll(outsider.client, job_uuid=job_uuid)

    assert as_owner.status_code == 200
    assert [r["number"] for r in as_owner.json()["results"]] == NUMBERS
    assert as_second.status_code == 404
    assert as_second.json() == {"error": "not_found", "message": unknown.json()["message"]}
    assert as_second.content == poll(second.client, job_uuid=str(uuid.uuid4())).content
    assert as_outsider.status_code == 401
    assert as_outsider.json()["error"] == "authentication_failed"
    for response in (as_second, as_outsider):
        text = response.content.decode()
        assert all(n not in text for n in NUMBERS)


def test_it_hides_a_number_of_another_tenants_job(owner, second, outsider, fake_multitel):
    job_uuid = submit(owner.client, NUMBERS).json()["job_uuid"]

    as_owner = poll(owner.client, job_uuid=job_uuid, number=number(112))
    as_second = poll(second.client, job_uuid=job_uuid, number=number(112))
    as_outsider = poll(outsider.client, job_uuid=job_uuid, number=number(112))

    assert as_owner.status_code == 200
    assert as_owner.json()["filtered_number"] == number(112)
    assert as_second.status_code == 404
    assert as_second.content == poll(second.client, job_uuid=str(uuid.uuid4()), number=number(112)).content
    assert as_outsider.status_code == 401


def test_it_keeps_each_tenants_jobs_apart_when_both_poll(owner, second, fake_multitel):
    mine = submit(owner.client, [number(111)]).json()["job_uuid"]
    theirs = submit(second.client, [number(112)]).json()["job_uuid"]

    assert poll(owner.client, job_uuid=mine).json()["results"][0]["number"] == number(111)
    assert poll(second.client, job_uuid=theirs).json()["results"][0]["number"] == number(112)
    assert poll(owner.client, job_uuid=theirs).status_code == 404
    assert poll(second.client, job_uuid=mine).status_code == 404


def test_it_does_not_let_a_disabled_tenant_reach_another_tenants_job(owner, second, fake_multitel):
    job_uuid = submit(owner.client, [number(111)]).json()["job_uuid"]
    second.tenant.is_active = False
    second.tenant.save()

    response = poll(second.client, job_uuid=job_uuid)

    assert response.status_code == 403
    assert job_uuid not in response.content.decode()


# --- GET /v3/bulk_restore_status?format=csv -------------------------------------------------


def test_it_gives_a_jobs_csv_only_to_its_own_tenant(owner, second, outsider, fake_multitel):
    job_uuid = submit(owner.client, NUMBERS).json()["job_uuid"]

    as_owner = poll(owner.client, job_uuid=job_uuid, format="csv")
    as_second = poll(second.client, job_uuid=job_uuid, format="csv")
    as_outsider = poll(outsider.client, job_uuid=job_uuid, format="csv")

    assert as_owner.status_code == 200
    text = b"".join(as_owner.streaming_content).decode()
    assert all(n in text for n in NUMBERS)
    assert as_second.status_code == 404
    assert as_second.content == poll(second.client, job_uuid=str(uuid.uuid4()), format="csv").content
    assert as_outsider.status_code == 401
    for response in (as_second, as_outsider):
        assert all(n not in response.content.decode() for n in NUMBERS)


# --- GET /v3/bulk_restore_jobs --------------------------------------------------------------


def test_it_lists_to_each_tenant_only_its_own_jobs(owner, second, outsider, fake_multitel, enqueued):
    mine = submit(owner.client, NUMBERS).json()["job_uuid"]
    theirs = submit(second.client, NUMBERS).json()["job_uuid"]

    listed = {
        name: client.get("/v3/bulk_restore_jobs")
        for name, client in (
            ("owner", owner.client),
            ("second", second.client),
            ("outsider", outsider.client),
        )
    }

    assert [j["job_uuid"] for j in listed["owner"].json()["jobs"]] == [mine]
    assert [j["job_uuid"] for j in listed["second"].json()["jobs"]] == [theirs]
    assert listed["outsider"].status_code == 401
    assert (
        mine not in listed["outsider"].content.decode() and theirs not in listed["outsider"].content.decode()
    )


# --- POST /v3/bulk_restore?dry_run=true -------------------------------------------------------


def test_it_stores_nothing_for_anyone_on_a_dry_run(owner, second, outsider, fake_multitel):
    before = Job.objects.count()

    assert (
        owner.client.post(
            "/v3/bulk_restore?dry_run=true",
            data=json.dumps({"numbers": NUMBERS}),
            content_type="application/json",
        ).json()["dry_run"]
        is True
    )
    refused = outsider.client.post(
        "/v3/bulk_restore?dry_run=true",
        data=json.dumps({"numbers": NUMBERS}),
        content_type="application/json",
    )

    assert refused.status_code == 401
    assert Job.objects.count() == before
    assert second.client.get("/v3/bulk_restore_jobs").json()["jobs"] == []
