"""POST /v3/bulk_restore (docs/api.md, POST /v3/bulk_restore and the error shape)."""

from __future__ import annotations

import json
import math
import re
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from standardwebhooks.webhooks import Webhook

from restores.models import Job, NumberResult, WebhookDelivery
from tests.support.contract import JOB_KEYS, QUEUED_KEYS
from tests.support.harness import closed_loopback_port
from tests.support.jobs import stored
from tests.support.numbers import number

URL = "/v3/bulk_restore"
SYNC_KEYS = JOB_KEYS
RESULT_KEYS = ["number", "status", "message", "status_code", "requires_identity_update"]
TIMESTAMP_RE = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}")
FULLWIDTH = "".join(chr(0xFF10 + int(d)) for d in "15551230121")  # digits, but not ASCII
SUPPORT_MSG = "Error: 'restore failed, please contact support'"


def post_json(client: Any, body: Any) -> Any:
    return client.post(URL, data=json.dumps(body), content_type="application/json")


def parse_ts(value: str) -> datetime:
    assert TIMESTAMP_RE.fullmatch(value), value
    return datetime.strptime(value, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)


def as_ts(value: datetime | None) -> str | None:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if value else None


# --- 1a: ten numbers or fewer, answered synchronously ------------------------------------


def test_it_answers_a_small_job_synchronously_with_the_exact_keys_and_values(owner, fake_multitel):
    numbers = [number(111), number(112), number(113), number(114), number(115)]

    response = post_json(owner.client, {"numbers": numbers})

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert list(body.keys()) == SYNC_KEYS
    assert body["status"] == "completed"
    assert body["total_numbers"] == 5
    assert body["webhook_url"] is None
    assert [list(r.keys()) for r in body["results"]] == [
        RESULT_KEYS,
        RESULT_KEYS,
        [*RESULT_KEYS, "needs_registration"],
        RESULT_KEYS,
        RESULT_KEYS,
    ]
    assert body["results"] == [
        {
            "number": number(111),
            "status": "success",
            "message": "Number restored",
            "status_code": 200,
            "requires_identity_update": 0,
        },
        {
            "number": number(112),
            "status": "failed",
            "message": SUPPORT_MSG,
            "status_code": 500,
            "requires_identity_update": 0,
        },
        {
            "number": number(113),
            "status": "success",
            "message": "Number restored",
            "status_code": 200,
            "requires_identity_update": 1,
            "needs_registration": 1,
        },
        {
            "number": number(114),
            "status": "success",
            "message": "Number restored",
            "status_code": 200,
            "requires_identity_update": 1,
        },
        {
            "number": number(115),
            "status": "failed",
            "message": "Error: 'number not found'",
            "status_code": 404,
            "requires_identity_update": 0,
        },
    ]
    # The counts always match the results.
    assert body["success_count"] == sum(r["status"] == "success" for r in body["results"]) == 3
    assert body["failure_count"] == sum(r["status"] == "failed" for r in body["results"]) == 2


def test_it_formats_timestamps_as_utc_seconds_matching_the_stored_job(owner, fake_multitel):
    before = datetime.now(UTC).replace(microsecond=0)

    body = post_json(owner.client, {"numbers": [number(111)]}).json()

    after = datetime.now(UTC)
    created, started, completed = (parse_ts(body[k]) for k in ("created_at", "started_at", "completed_at"))
    assert before <= created <= started <= completed <= after
    job = Job.objects.get(uuid=body["job_uuid"])
    assert body["created_at"] == as_ts(job.created_at)
    assert body["started_at"] == as_ts(job.started_at)
    assert body["completed_at"] == as_ts(job.completed_at)


def test_it_stores_the_synchronous_job_like_an_async_one(owner, fake_multitel):
    body = post_json(owner.client, {"numbers": [number(111), number(112)]}).json()

    job = Job.objects.get(uuid=body["job_uuid"])
    assert job.tenant == owner.tenant
    assert job.is_sync
    assert job.status == Job.Status.COMPLETED
    assert (job.success_count, job.failure_count, job.total_numbers) == (1, 1, 2)
    rows = list(job.results.order_by("position").values_list("number", "status", "status_code", "attempts"))
    assert rows == [(number(111), "success", 200, 1), (number(112), "failed", 500, 1)]
    assert job.upstream_attempts.count() == 2
    polled = owner.client.get("/v3/bulk_restore_status", {"job_uuid": body["job_uuid"]}).json()
    assert polled["status"] == "completed"
    assert [(r["number"], r["status"]) for r in polled["results"]] == [
        (number(111), "success"),
        (number(112), "failed"),
    ]


def test_it_answers_200_even_when_every_number_failed(owner, fake_multitel):
    response = post_json(owner.client, {"numbers": [number(112), number(115)]})

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "completed"
    assert (body["success_count"], body["failure_count"]) == (0, 2)
    assert {r["status"] for r in body["results"]} == {"failed"}


def test_it_sends_needs_registration_only_when_true_and_requires_identity_update_always(owner, fake_multitel):
    body = post_json(owner.client, {"numbers": [number(113), number(114), number(111), number(112)]}).json()

    by_number = {r["number"]: r for r in body["results"]}
    assert by_number[number(113)]["needs_registration"] == 1
    for n in (number(114), number(111), number(112)):
        assert "needs_registration" not in by_number[n]
    assert [by_number[n]["requires_identity_update"] for n in (number(113), number(114), number(111))] == [
        1,
        1,
        0,
    ]
    assert all(type(r["requires_identity_update"]) is int for r in body["results"])


def test_it_retries_retryable_upstream_answers_before_answering(owner, fake_multitel):
    body = post_json(owner.client, {"numbers": [number(191), number(190)]}).json()

    by_number = {r["number"]: r for r in body["results"]}
    assert by_number[number(191)]["status"] == "success"  # 503 once, then success
    assert by_number[number(190)]["status"] == "failed"
    assert by_number[number(190)]["status_code"] == 503
    assert fake_multitel.state.stats()["calls_by_number"] == {number(191): 2, number(190): 3}


def test_it_restores_the_numbers_of_a_sync_job_concurrently(owner, fake_multitel):
    fake_multitel.state.latency_ms = 300
    numbers = [number(100 + i) for i in range(10)]

    started = time.monotonic()
    response = post_json(owner.client, {"numbers": numbers})
    elapsed = time.monotonic() - started

    assert response.status_code == 200
    assert len(response.json()["results"]) == 10
    assert elapsed < 1.5, f"10 numbers of 0.3 s took {elapsed:.2f} s: not concurrent"
    assert fake_multitel.state.stats()["max_in_flight"]["mt-owner"] > 1


def test_it_fails_a_number_with_504_when_the_sync_deadline_passes(owner, fake_multitel, settings):
    settings.SYNC_DEADLINE = 1.0

    started = time.monotonic()
    response = post_json(owner.client, {"numbers": [number(111), number(195)]})
    elapsed = time.monotonic() - started

    assert response.status_code == 200
    assert elapsed < 2.5
    body = response.json()
    by_number = {r["number"]: r for r in body["results"]}
    assert by_number[number(111)]["status"] == "success"
    assert by_number[number(195)]["status"] == "failed"
    assert by_number[number(195)]["status_code"] == 504
    assert "deadline" in by_number[number(195)]["message"]
    assert body["status"] == "completed"
    assert (body["success_count"], body["failure_count"]) == (1, 1)


def test_it_answers_ten_numbers_synchronously_and_eleven_asynchronously(owner, fake_multitel):
    ten = [number(100 + i) for i in range(10)]

    assert post_json(owner.client, {"numbers": ten}).status_code == 200
    assert post_json(owner.client, {"numbers": [*ten, number(120)]}).status_code == 202


def test_it_takes_the_sync_threshold_from_sync_max_numbers(owner, fake_multitel, settings):
    settings.SYNC_MAX_NUMBERS = 2

    assert post_json(owner.client, {"numbers": [number(111), number(121)]}).status_code == 200
    response = post_json(owner.client, {"numbers": [number(111), number(121), number(131)]})
    assert response.status_code == 202
    assert fake_multitel.state.stats()["calls_total"] == 2


# --- Webhook of the synchronous answer ------------------------------------------------


def test_it_adds_webhook_error_after_results_when_the_webhook_failed(owner, fake_multitel, settings):
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = True
    port = closed_loopback_port()
    hook = f"http://127.0.0.1:{port}/restore-hook"

    response = post_json(owner.client, {"numbers": [number(111)], "webhook_url": hook})

    assert response.status_code == 200
    body = response.json()
    assert list(body.keys()) == [*SYNC_KEYS, "webhook_error"]
    assert body["webhook_url"] == hook
    assert body["webhook_error"] == f"Failed to connect to 127.0.0.1 port {port}: Connection refused"
    job = Job.objects.get(uuid=body["job_uuid"])
    assert job.webhook_error == body["webhook_error"]
    assert WebhookDelivery.objects.filter(job=job, delivered=False).count() == 1
    # The status endpoint shows the latest failure too, after results.
    polled = owner.client.get("/v3/bulk_restore_status", {"job_uuid": body["job_uuid"]}).json()
    assert list(polled.keys())[-1] == "webhook_error"
    assert polled["webhook_error"] == body["webhook_error"]


def test_it_reports_a_webhook_http_error_in_curl_words(owner, fake_multitel, webhook_receiver):
    webhook_receiver.status = 500

    body = post_json(owner.client, {"numbers": [number(111)], "webhook_url": webhook_receiver.url}).json()

    assert len(webhook_receiver.received) == 1
    assert body["webhook_error"] == "The requested URL returned error: 500"


def test_it_omits_webhook_error_when_the_webhook_was_delivered(owner, fake_multitel, webhook_receiver):
    response = post_json(
        owner.client, {"numbers": [number(111), number(113)], "webhook_url": webhook_receiver.url}
    )

    assert response.status_code == 200
    body = response.json()
    assert list(body.keys()) == SYNC_KEYS
    assert "webhook_error" not in body
    assert body["webhook_url"] == webhook_receiver.url
    assert len(webhook_receiver.received) == 1
    hook = webhook_receiver.received[0]
    assert hook.path == "/restore-hook"
    assert hook.headers["content-type"] == "application/json"
    # The webhook carries exactly the synchronous answer (without webhook_error), in the same order.
    assert list(hook.json().keys()) == SYNC_KEYS
    assert hook.json() == body
    # ... signed with the tenant's Standard Webhooks secret.
    owner.tenant.refresh_from_db()
    Webhook(owner.tenant.webhook_secret).verify(hook.body, hook.headers)
    job = Job.objects.get(uuid=body["job_uuid"])
    assert job.webhook_state == Job.WebhookState.DELIVERED
    assert job.webhook_error is None


def test_it_answers_within_the_sync_deadline_when_the_webhook_hangs(
    owner, fake_multitel, webhook_receiver, settings
):
    settings.SYNC_DEADLINE = 1.0
    webhook_receiver.delay = 2.5

    started = time.monotonic()
    response = post_json(owner.client, {"numbers": [number(111)], "webhook_url": webhook_receiver.url})
    elapsed = time.monotonic() - started

    assert response.status_code == 200
    assert elapsed < 1.8
    body = response.json()
    assert body["results"][0]["status"] == "success"
    assert re.fullmatch(
        r"Operation timed out after \d+ milliseconds with 0 bytes received", body["webhook_error"]
    )


# --- 1b: more than ten numbers, queued ------------------------------------------------


def test_it_queues_a_large_job_with_202_and_the_exact_keys(
    owner, fake_multitel, enqueued, django_capture_on_commit_callbacks
):
    numbers = [number(100 + i) for i in range(25)]

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = post_json(owner.client, {"numbers": numbers})

    assert response.status_code == 202
    body = response.json()
    assert list(body.keys()) == QUEUED_KEYS
    assert body["status"] == "pending"
    assert body["total_numbers"] == 25
    assert body["webhook_url"] is None
    assert body["message"].startswith("Restore job queued.")
    assert f"/v3/bulk_restore_status?job_uuid={body['job_uuid']}" in body["message"]
    # Stored before the answer, every number pending in submission order, nothing restored yet.
    job = Job.objects.get(uuid=body["job_uuid"])
    assert (job.status, job.is_sync, job.tenant_id) == (Job.Status.PENDING, False, owner.tenant.pk)
    assert list(job.results.order_by("position").values_list("number", flat=True)) == numbers
    assert set(job.results.values_list("status", flat=True)) == {NumberResult.Status.PENDING}
    assert fake_multitel.state.stats()["calls_total"] == 0
    # The worker is woken only once the job is committed.
    assert len(callbacks) >= 1
    assert enqueued
    assert set(enqueued) == {("restores.tasks.process_job", (job.pk,))}


def test_it_names_the_webhook_in_the_queued_message(owner, enqueued):
    hook = "https://client.example.com/restore-hook"

    response = post_json(owner.client, {"numbers": [number(100 + i) for i in range(11)], "webhook_url": hook})

    assert response.status_code == 202
    body = response.json()
    assert body["webhook_url"] == hook
    assert body["message"] == f"Restore job queued. Results will be POSTed to {hook}"
    assert Job.objects.get(uuid=body["job_uuid"]).webhook_url == hook


def test_it_counts_a_duplicated_number_once_in_a_queued_job(owner, enqueued):
    numbers = [number(100 + i) for i in range(11)]

    body = post_json(owner.client, {"numbers": [*numbers, numbers[0]], "numbers_text": numbers[3]}).json()

    assert body["total_numbers"] == 11
    assert Job.objects.get(uuid=body["job_uuid"]).results.count() == 11


# --- Body formats and combining numbers -------------------------------------------------


def test_it_combines_numbers_and_numbers_text_numbers_first_without_duplicates(owner, fake_multitel):
    body = post_json(
        owner.client,
        {
            "numbers": [number(111), number(121), number(111)],
            "numbers_text": f"{number(131)}\r\n\n  {number(121)}  \n   \n{number(141)}\n",
        },
    ).json()

    assert [r["number"] for r in body["results"]] == [number(111), number(121), number(131), number(141)]
    assert body["total_numbers"] == 4
    job = Job.objects.get(uuid=body["job_uuid"])
    assert list(job.results.order_by("position").values_list("number", flat=True)) == [
        number(111),
        number(121),
        number(131),
        number(141),
    ]
    assert fake_multitel.state.stats()["calls_by_number"] == {
        number(111): 1,
        number(121): 1,
        number(131): 1,
        number(141): 1,
    }


def test_it_accepts_a_form_encoded_body(owner, fake_multitel):
    data = urlencode(
        [
            ("numbers", number(111)),
            ("numbers", number(112)),
            ("numbers_text", f"{number(113)}\n{number(111)}"),
        ]
    )

    response = owner.client.post(URL, data=data, content_type="application/x-www-form-urlencoded")

    assert response.status_code == 200
    body = response.json()
    assert [r["number"] for r in body["results"]] == [number(111), number(112), number(113)]
    assert body["webhook_url"] is None


def test_it_accepts_a_multipart_body(owner, fake_multitel, webhook_receiver):
    response = owner.client.post(
        URL,
        {
            "numbers": [number(111), number(121)],
            "numbers_text": f"{number(131)}\r\n{number(121)}",
            "webhook_url": webhook_receiver.url,
        },
        format="multipart",
    )

    assert response.status_code == 200
    assert response.request["CONTENT_TYPE"].startswith("multipart/form-data")
    body = response.json()
    assert [r["number"] for r in body["results"]] == [number(111), number(121), number(131)]
    assert body["webhook_url"] == webhook_receiver.url
    assert len(webhook_receiver.received) == 1


def test_it_queues_a_large_form_encoded_job(owner, enqueued):
    text = "\n".join(number(100 + i) for i in range(12))

    response = owner.client.post(
        URL, data=urlencode({"numbers_text": text}), content_type="application/x-www-form-urlencoded"
    )

    assert response.status_code == 202
    assert response.json()["total_numbers"] == 12


def test_it_ignores_unknown_fields(owner, fake_multitel):
    response = post_json(
        owner.client, {"numbers": [number(111)], "priority": "high", "callback": {"x": 1}, "numbers_csv": 7}
    )

    assert response.status_code == 200
    body = response.json()
    assert list(body.keys()) == SYNC_KEYS
    assert [r["number"] for r in body["results"]] == [number(111)]


def test_it_accepts_a_webhook_url_of_exactly_2048_characters(owner, enqueued):
    base = "https://client.example.com/"
    hook = base + "a" * (2048 - len(base))

    response = post_json(owner.client, {"numbers": [number(100 + i) for i in range(11)], "webhook_url": hook})

    assert response.status_code == 202
    assert response.json()["webhook_url"] == hook


# --- 400: the whole request is refused, nothing stored -----------------------------------


def assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert body["error"] == code
    assert isinstance(body["message"], str) and body["message"]
    assert "Traceback" not in response.content.decode()
    return body


def test_it_names_every_bad_entry_and_stores_nothing(owner):
    before = stored()

    response = post_json(
        owner.client,
        {
            "numbers": [
                15551230111,
                "+15551230111",
                "555-0111",
                "",
                "123456",
                "1234567890123456",
                number(121),
            ],
            "numbers_text": f"{number(131)}\n\nabc\n 12 \n{number(141)}",
            "webhook_url": "https://client.example.com/restore-hook",
        },
    )

    body = assert_error(response, 400, "invalid_numbers")
    named = [(e["source"], e.get("index", e.get("line")), e["value"]) for e in body["invalid"]]
    assert named == [
        ("numbers", 0, 15551230111),
        ("numbers", 1, "+15551230111"),
        ("numbers", 2, "555-0111"),
        ("numbers", 3, ""),
        ("numbers", 4, "123456"),
        ("numbers", 5, "1234567890123456"),
        ("numbers_text", 3, "abc"),
        ("numbers_text", 4, "12"),
    ]
    assert [("index" in e, "line" in e) for e in body["invalid"]] == [(True, False)] * 6 + [(False, True)] * 2
    assert body["invalid_count"] == 8
    assert stored() == before


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({"numbers": [number(111), 15551230121, number(131)]}, ("numbers", 1, 15551230121)),
        ({"numbers": [number(111), "+15551230121"]}, ("numbers", 1, "+15551230121")),
        ({"numbers": ["555-0111", number(111)]}, ("numbers", 0, "555-0111")),
        ({"numbers": [number(111), ""]}, ("numbers", 1, "")),
        ({"numbers": [number(111), FULLWIDTH]}, ("numbers", 1, FULLWIDTH)),
        (
            {"numbers": [number(111)], "numbers_text": f"{number(121)}\n155-5123"},
            ("numbers_text", 2, "155-5123"),
        ),
        ({"numbers_text": f"\n\n{number(121)}\r\n+{number(131)}"}, ("numbers_text", 4, f"+{number(131)}")),
    ],
)
def test_it_rejects_one_bad_entry_among_good_ones(owner, payload, expected):
    before = stored()

    body = assert_error(post_json(owner.client, payload), 400, "invalid_numbers")

    assert [(e["source"], e.get("index", e.get("line")), e["value"]) for e in body["invalid"]] == [expected]
    assert stored() == before


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        ({}, "no_numbers"),
        ({"numbers": []}, "no_numbers"),
        ({"numbers": None, "numbers_text": None}, "no_numbers"),
        ({"numbers_text": "\n  \r\n\n"}, "no_numbers"),
        ({"webhook_url": "https://client.example.com/restore-hook"}, "no_numbers"),
        ({"numbers": "15551230111"}, "invalid_numbers"),
        ({"numbers": {"a": "15551230111"}}, "invalid_numbers"),
        ({"numbers_text": ["15551230111"]}, "invalid_numbers"),
        ({"numbers_text": 15551230111}, "invalid_numbers"),
        ({"numbers": [["15551230111"]]}, "invalid_numbers"),
        ({"numbers": [None]}, "invalid_numbers"),
        ({"numbers": [True]}, "invalid_numbers"),
        ({"numbers": ["15551230111"], "webhook_url": "ftp://client.example.com/hook"}, "invalid_webhook_url"),
        ({"numbers": ["15551230111"], "webhook_url": "client.example.com/hook"}, "invalid_webhook_url"),
        ({"numbers": ["15551230111"], "webhook_url": "/restore-hook"}, "invalid_webhook_url"),
        ({"numbers": ["15551230111"], "webhook_url": "http://"}, "invalid_webhook_url"),
        ({"numbers": ["15551230111"], "webhook_url": "not a url"}, "invalid_webhook_url"),
        (
            {"numbers": ["15551230111"], "webhook_url": "https://u:p@client.example.com/"},
            "invalid_webhook_url",
        ),
        ({"numbers": ["15551230111"], "webhook_url": 42}, "invalid_webhook_url"),
        (
            {"numbers": ["15551230111"], "webhook_url": "https://client.example.com/" + "a" * 2022},
            "invalid_webhook_url",
        ),
    ],
)
def test_it_rejects_an_unusable_submission_with_400_and_stores_nothing(owner, payload, code):
    before = stored()

    assert_error(post_json(owner.client, payload), 400, code)

    assert stored() == before


@pytest.mark.parametrize(
    "hook",
    [
        "http://127.0.0.1/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.1.2.3/hook",
        "http://192.168.0.10:8080/hook",
        "http://100.64.0.1/hook",
        "http://[::1]/hook",
        "http://[fd00::1]/hook",
        "http://0.0.0.0/hook",
    ],
)
def test_it_rejects_a_webhook_to_a_non_public_address_unless_allowed(owner, settings, enqueued, hook):
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = False
    numbers = [number(100 + i) for i in range(11)]
    before = stored()

    assert_error(
        post_json(owner.client, {"numbers": numbers, "webhook_url": hook}), 400, "invalid_webhook_url"
    )
    assert stored() == before

    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = True
    response = post_json(owner.client, {"numbers": numbers, "webhook_url": hook})
    assert response.status_code == 202
    assert response.json()["webhook_url"] == hook


def test_it_rejects_more_than_max_numbers_per_job_naming_the_limit(owner, settings):
    settings.MAX_NUMBERS_PER_JOB = 3
    before = stored()

    body = assert_error(
        post_json(
            owner.client,
            {"numbers": [number(111), number(121)], "numbers_text": f"{number(131)}\n{number(141)}"},
        ),
        400,
        "too_many_numbers",
    )

    assert body["limit"] == 3
    assert "3" in body["message"]
    assert stored() == before


def test_it_counts_the_limit_after_removing_duplicates(owner, fake_multitel, settings):
    settings.MAX_NUMBERS_PER_JOB = 3

    response = post_json(owner.client, {"numbers": [number(111), number(121), number(131), number(111)]})

    assert response.status_code == 200
    assert response.json()["total_numbers"] == 3


@pytest.mark.parametrize("raw", ['["15551230111"]', '"15551230111"', "42", "null", "true"])
def test_it_rejects_a_json_body_that_is_not_an_object(owner, raw):
    before = stored()

    assert_error(owner.client.post(URL, data=raw, content_type="application/json"), 400, "invalid_body")

    assert stored() == before


@pytest.mark.parametrize("raw", ['{"numbers": ["15551230111"]', "{numbers: 1}", "\x00\xff"])
def test_it_rejects_malformed_json_with_400(owner, raw):
    before = stored()

    body = assert_error(
        owner.client.post(URL, data=raw, content_type="application/json"), 400, "invalid_body"
    )

    assert "File " not in body["message"]
    assert stored() == before


@pytest.mark.parametrize("method", ["get", "put", "patch", "delete"])
def test_it_answers_405_to_other_methods(owner, method):
    response = getattr(owner.client, method)(URL)

    assert_error(response, 405, "method_not_allowed")
    assert "POST" in response["Allow"]
    assert Job.objects.count() == 0


@pytest.mark.parametrize("content_type", ["text/plain", "application/xml", "text/csv"])
def test_it_answers_415_to_an_unsupported_content_type(owner, content_type):
    response = owner.client.post(URL, data=number(111), content_type=content_type)

    assert_error(response, 415, "unsupported_media_type")
    assert Job.objects.count() == 0


# --- Query counts --------------------------------------------------------------------


def numberresult_insert_batches(n: int) -> int:
    """INSERT statements the database needs for ``n`` result rows (1 on PostgreSQL; SQLite's
    999-variable limit splits a bulk insert)."""
    fields = [f for f in NumberResult._meta.concrete_fields if not f.primary_key]
    rows = [NumberResult(job_id=1, position=i, number="1") for i in range(n)]
    per_batch = min(2000, connection.ops.bulk_batch_size(fields, rows) or n)
    return math.ceil(n / per_batch)


def test_it_queues_a_job_with_a_query_count_independent_of_its_size(
    owner, enqueued, django_assert_max_num_queries
):
    post_json(owner.client, {"numbers": [number(100 + i) for i in range(11)]})  # authenticated once
    counts = {}
    for n in (20, 1000):
        numbers = [f"1666{i:07d}" for i in range(n)]
        bound = 4 + numberresult_insert_batches(n)
        with CaptureQueriesContext(connection) as ctx, django_assert_max_num_queries(bound):
            response = post_json(owner.client, {"numbers": numbers})
        assert response.status_code == 202
        others = [q for q in ctx.captured_queries if 'INSERT INTO "restores_numberresult"' not in q["sql"]]
        counts[n] = len(others)
    # Beyond the rows' bulk insert, 1000 numbers cost exactly the queries of 20.
    assert counts[20] == counts[1000]
