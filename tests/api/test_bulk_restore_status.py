"""GET /v3/bulk_restore_status (docs/api.md#bulk-restore-status)."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

import pytest

from restores import services
from restores.models import Job, NumberResult
from restores.selectors import payloads
from tests.support.contract import JOB_KEYS
from tests.support.numbers import number

URL = "/v3/bulk_restore_status"
STATUS_KEYS = JOB_KEYS
RESULT_KEYS = [
    "number",
    "status",
    "message",
    "status_code",
    "attempts",
    "started_at",
    "completed_at",
    "requires_identity_update",
]
TIMESTAMP_RE = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}")


def submit(client: Any, numbers: list[str], **extra: Any) -> dict[str, Any]:
    response = client.post(
        "/v3/bulk_restore", data=json.dumps({"numbers": numbers, **extra}), content_type="application/json"
    )
    assert response.status_code in (200, 202), response.content
    return response.json()


def status(client: Any, **params: str) -> Any:
    return client.get(URL, params)


def assert_error(response: Any, status_code: int, code: str) -> dict[str, Any]:
    assert response.status_code == status_code, response.content
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert body["error"] == code
    assert isinstance(body["message"], str) and body["message"]
    return body


QUEUED = [number(111), number(112), number(113), number(114), number(115)] + [
    number(121 + 10 * i) for i in range(7)
]


def test_it_shows_a_completed_sync_job_with_the_exact_keys(owner, fake_multitel):
    job_uuid = submit(owner.client, [number(111), number(113)])["job_uuid"]

    response = status(owner.client, job_uuid=job_uuid)

    assert response.status_code == 200
    body = response.json()
    assert list(body.keys()) == STATUS_KEYS
    assert body["job_uuid"] == job_uuid
    assert body["status"] == "completed"
    assert (body["total_numbers"], body["success_count"], body["failure_count"]) == (2, 2, 0)
    assert body["webhook_url"] is None
    for key in ("created_at", "started_at", "completed_at"):
        assert TIMESTAMP_RE.fullmatch(body[key])
    assert [list(r.keys()) for r in body["results"]] == [RESULT_KEYS, [*RESULT_KEYS, "needs_registration"]]
    first, second = body["results"]
    assert first["number"] == number(111)
    assert (first["status"], first["message"], first["status_code"]) == ("success", "Number restored", 200)
    assert first["attempts"] == 1
    assert TIMESTAMP_RE.fullmatch(first["started_at"]) and TIMESTAMP_RE.fullmatch(first["completed_at"])
    assert first["requires_identity_update"] == 0
    assert (second["requires_identity_update"], second["needs_registration"]) == (1, 1)


def test_it_shows_pending_numbers_of_a_queued_job(owner, enqueued):
    queued = submit(owner.client, QUEUED, webhook_url="https://client.example.com/restore-hook")

    body = status(owner.client, job_uuid=queued["job_uuid"]).json()

    assert list(body.keys()) == STATUS_KEYS
    assert body["status"] == "pending"
    assert (body["total_numbers"], body["success_count"], body["failure_count"]) == (12, 0, 0)
    assert body["webhook_url"] == "https://client.example.com/restore-hook"
    assert TIMESTAMP_RE.fullmatch(body["created_at"])
    assert (body["started_at"], body["completed_at"]) == (None, None)
    assert [r["number"] for r in body["results"]] == QUEUED
    for result in body["results"]:
        assert list(result.keys()) == RESULT_KEYS
        assert result["status"] == "pending"
        assert (result["message"], result["status_code"], result["attempts"]) == (None, None, 0)
        assert (result["started_at"], result["completed_at"]) == (None, None)
        assert result["requires_identity_update"] == 0


# Transactional: job_process calls close_old_connections(), which a test transaction on
# PostgreSQL would not survive.
@pytest.mark.django_db(transaction=True)
def test_it_shows_live_counts_while_a_job_is_processed(owner, fake_multitel, enqueued, settings):
    queued = submit(owner.client, QUEUED)
    job_id = Job.objects.get(uuid=queued["job_uuid"]).pk
    settings.RESTORE_TASK_SLICE_SECONDS = 0  # one claim, then hand over
    settings.RESTORE_BATCH_SIZE = 2  # two slots, each with a number in line: four numbers

    services.job_process(job_id=job_id)
    body = status(owner.client, job_uuid=queued["job_uuid"]).json()

    assert body["status"] == "processing"
    assert TIMESTAMP_RE.fullmatch(body["started_at"])
    assert body["completed_at"] is None
    assert [r["number"] for r in body["results"]] == QUEUED
    assert [r["status"] for r in body["results"]] == ["success", "failed", "success", "success"] + [
        "pending"
    ] * 8
    final = [r for r in body["results"] if r["status"] in ("success", "failed")]
    assert body["success_count"] == sum(r["status"] == "success" for r in final) == 3
    assert body["failure_count"] == sum(r["status"] == "failed" for r in final) == 1
    for result in body["results"][4:]:
        assert (result["message"], result["status_code"], result["attempts"]) == (None, None, 0)

    settings.RESTORE_TASK_SLICE_SECONDS = 60
    services.job_process(job_id=job_id)
    body = status(owner.client, job_uuid=queued["job_uuid"]).json()

    assert body["status"] == "completed"
    assert TIMESTAMP_RE.fullmatch(body["completed_at"])
    assert [r["number"] for r in body["results"]] == QUEUED
    assert (body["success_count"], body["failure_count"]) == (10, 2)
    assert body["success_count"] == sum(r["status"] == "success" for r in body["results"])
    assert body["failure_count"] == sum(r["status"] == "failed" for r in body["results"])
    assert all(r["attempts"] == 1 for r in body["results"])


def test_it_shows_counts_that_agree_with_its_results_when_a_number_is_recorded_between_the_reads(
    owner, enqueued, monkeypatch
):
    queued = submit(owner.client, QUEUED)
    job = Job.objects.get(uuid=queued["job_uuid"])
    Job.objects.filter(pk=job.pk).update(status=Job.Status.PROCESSING)
    real_rows = payloads.job_result_rows

    def a_worker_records_a_number_first(**kwargs: Any) -> Any:
        # A worker records a number after the view read the job, before it reads the results.
        first = NumberResult.objects.get(job=job, position=0)
        NumberResult.objects.filter(pk=first.pk).update(status=NumberResult.Status.SUCCESS, status_code=200)
        Job.objects.filter(pk=job.pk).update(success_count=1)
        return real_rows(**kwargs)

    monkeypatch.setattr(payloads, "job_result_rows", a_worker_records_a_number_first)
    body = status(owner.client, job_uuid=queued["job_uuid"]).json()

    assert [r["status"] for r in body["results"]] == ["success"] + ["pending"] * (len(QUEUED) - 1)
    assert (body["success_count"], body["failure_count"]) == (1, 0)


def test_it_shows_a_number_being_restored_as_processing(owner, enqueued):
    queued = submit(owner.client, QUEUED)
    job = Job.objects.get(uuid=queued["job_uuid"])
    Job.objects.filter(pk=job.pk).update(status=Job.Status.PROCESSING)
    claim = services.number_batch_claim(job_id=job.pk, tenant=job.tenant, limit=2)
    assert [r.number for r in claim.results] == QUEUED[:2]

    body = status(owner.client, job_uuid=queued["job_uuid"]).json()

    assert body["status"] == "processing"
    assert [r["status"] for r in body["results"][:3]] == ["processing", "processing", "pending"]
    assert (body["success_count"], body["failure_count"]) == (0, 0)


def test_it_filters_on_one_number(owner, fake_multitel):
    job_uuid = submit(owner.client, [number(111), number(112), number(113)])["job_uuid"]

    response = status(owner.client, job_uuid=job_uuid, number=number(112))

    assert response.status_code == 200
    body = response.json()
    assert body["filtered_number"] == number(112)
    assert list(body.keys()) == [*STATUS_KEYS, "filtered_number"]
    assert len(body["results"]) == 1
    assert body["results"][0]["number"] == number(112)
    assert body["results"][0]["status"] == "failed"
    assert body["results"][0]["status_code"] == 500
    # The counts are the job's, not the filter's.
    assert (body["total_numbers"], body["success_count"], body["failure_count"]) == (3, 2, 1)


def test_it_omits_filtered_number_without_a_number(owner, fake_multitel):
    job_uuid = submit(owner.client, [number(111)])["job_uuid"]

    body = status(owner.client, job_uuid=job_uuid).json()

    assert "filtered_number" not in body
    assert "webhook_error" not in body


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({}, "invalid_job_uuid"),
        ({"job_uuid": ""}, "invalid_job_uuid"),
        ({"job_uuid": "not-a-uuid"}, "invalid_job_uuid"),
        ({"job_uuid": "8f6c1f0e-23d2-4717-8c8e"}, "invalid_job_uuid"),
        ({"job_uuid": "8f6c1f0e-23d2-4717-8c8e-1a518e5738fz"}, "invalid_job_uuid"),
        ({"number": "15551230111"}, "invalid_job_uuid"),
    ],
)
def test_it_rejects_a_missing_or_malformed_job_uuid_with_400(owner, params, code):
    assert_error(status(owner.client, **params), 400, code)


@pytest.mark.parametrize(
    "bad_number",
    ["abc", "+15551230111", "555-0111", "", " 15551230111", "".join(chr(0xFF10 + int(d)) for d in "1555")],
)
def test_it_rejects_a_number_that_is_not_digits_with_400(owner, fake_multitel, bad_number):
    job_uuid = submit(owner.client, [number(111)])["job_uuid"]

    assert_error(status(owner.client, job_uuid=job_uuid, number=bad_number), 400, "invalid_number")


def test_it_answers_404_for_an_unknown_job(owner):
    body = assert_error(status(owner.client, job_uuid=str(uuid.uuid4())), 404, "not_found")

    assert set(body) >= {"error", "message"}


def test_it_answers_404_for_another_tenants_job_exactly_like_an_unknown_job(owner, second, fake_multitel):
    theirs = submit(second.client, [number(111)])["job_uuid"]

    foreign = status(owner.client, job_uuid=theirs)
    unknown = status(owner.client, job_uuid=str(uuid.uuid4()))

    assert_error(foreign, 404, "not_found")
    assert foreign.json() == unknown.json()
    assert foreign.content == unknown.content
    assert theirs not in foreign.content.decode()
    # ... also when asking for a number of it.
    filtered = status(owner.client, job_uuid=theirs, number=number(111))
    assert filtered.content == unknown.content


@pytest.mark.parametrize("other", [number(121), "1555123", "1" * 16, "0" * 40])
def test_it_answers_404_for_a_number_not_in_the_job(owner, fake_multitel, other):
    job_uuid = submit(owner.client, [number(111)])["job_uuid"]

    body = assert_error(status(owner.client, job_uuid=job_uuid, number=other), 404, "not_found")

    assert "results" not in body


def test_it_answers_405_to_other_methods(owner):
    for method in ("post", "put", "patch", "delete"):
        assert_error(getattr(owner.client, method)(URL), 405, "method_not_allowed")


@pytest.mark.parametrize("size", [1, 1000])
def test_it_reads_a_status_with_a_query_count_independent_of_the_result_count(
    owner, enqueued, django_assert_max_num_queries, size
):
    numbers = [f"1666{i:07d}" for i in range(max(size, 11))]
    job_uuid = submit(owner.client, numbers)["job_uuid"]
    job = Job.objects.get(uuid=job_uuid)
    NumberResult.objects.filter(job=job, position__gte=size).delete()

    with django_assert_max_num_queries(3):
        response = status(owner.client, job_uuid=job_uuid)

    assert response.status_code == 200
    assert len(response.json()["results"]) == size
