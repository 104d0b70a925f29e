"""POST /v3/bulk_restore?dry_run=true (docs/api.md#dry-run): the same checks as a submission,
an answer that says what it would do, and nothing stored or called."""

from __future__ import annotations

import json
from typing import Any

import pytest

from restores.models import IdempotencyKey
from tests.api.test_bulk_restore import assert_error
from tests.support.jobs import Stored, stored
from tests.support.numbers import number, plain_numbers

URL = "/v3/bulk_restore"
DRY_RUN_KEYS = ["dry_run", "total_numbers", "duplicates_removed", "would_be", "webhook_url"]
NOTHING = Stored(jobs=0, results=0, attempts=0, deliveries=0)


def dry_run(client: Any, body: Any, *, value: str = "true", **headers: str) -> Any:
    return client.post(
        f"{URL}?dry_run={value}", data=json.dumps(body), content_type="application/json", **headers
    )


def test_it_says_a_small_job_would_be_synchronous_and_calls_nothing(owner, fake_multitel):
    numbers = [number(111), number(112), number(111)]

    response = dry_run(owner.client, {"numbers": numbers, "numbers_text": f"{number(113)}\n{number(112)}\n"})

    assert response.status_code == 200
    body = response.json()
    assert list(body) == DRY_RUN_KEYS
    assert body == {
        "dry_run": True,
        "total_numbers": 3,
        "duplicates_removed": 2,
        "would_be": "synchronous",
        "webhook_url": None,
    }
    assert stored() == NOTHING
    assert fake_multitel.state.stats()["calls_total"] == 0


def test_it_says_a_large_job_would_be_queued_and_stores_nothing(owner, enqueued):
    numbers = plain_numbers(11)

    response = dry_run(owner.client, {"numbers": numbers, "webhook_url": "https://hooks.example.com/r"})

    assert response.status_code == 200
    assert response.json() == {
        "dry_run": True,
        "total_numbers": 11,
        "duplicates_removed": 0,
        "would_be": "queued",
        "webhook_url": "https://hooks.example.com/r",
    }
    assert stored() == NOTHING
    assert enqueued == []


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"numbers": ["12", number(111)]}, "invalid_numbers"),
        ({"numbers": []}, "no_numbers"),
        ({"numbers": [number(111)], "webhook_url": "http://10.0.0.7/hook"}, "invalid_webhook_url"),
        ([number(111)], "invalid_body"),
    ],
)
def test_it_answers_the_same_400s_as_a_submission(owner, body, code):
    dry = assert_error(dry_run(owner.client, body), 400, code)
    real = assert_error(
        owner.client.post(URL, data=json.dumps(body), content_type="application/json"), 400, code
    )

    assert dry == real
    assert stored() == NOTHING


def test_it_refuses_a_dry_run_value_it_does_not_know(owner):
    body = assert_error(
        dry_run(owner.client, {"numbers": [number(111)]}, value="yes"), 400, "invalid_dry_run"
    )

    assert "dry_run" in body["message"]
    assert stored() == NOTHING


def test_it_submits_for_real_with_dry_run_false(owner, fake_multitel):
    response = dry_run(owner.client, {"numbers": [number(111)]}, value="false")

    assert response.status_code == 200
    assert response.json()["status"] == "completed"
    assert stored().jobs == 1


def test_it_neither_uses_nor_takes_an_idempotency_key(owner, fake_multitel):
    body = {"numbers": [number(111)]}

    assert dry_run(owner.client, body, HTTP_IDEMPOTENCY_KEY="order-1").status_code == 200
    assert not IdempotencyKey.objects.exists()
    real = owner.client.post(
        URL, data=json.dumps(body), content_type="application/json", HTTP_IDEMPOTENCY_KEY="order-1"
    )

    assert real.status_code == 200 and real.json()["status"] == "completed"  # not a replay
    assert "Idempotent-Replayed" not in real


def test_it_stores_nothing_for_any_tenant(owner, second, fake_multitel):
    # A dry run reads no job and writes none: another tenant's data is untouched by it.
    assert dry_run(second.client, {"numbers": [number(111)]}).status_code == 200
    assert dry_run(owner.client, {"numbers": plain_numbers(12)}).status_code == 200

    assert stored() == NOTHING
