"""The webhook body of a job: built a piece at a time, spooled to a file when big."""

from __future__ import annotations

import base64
import json
import tempfile
from typing import IO, Any

import pytest
from standardwebhooks.webhooks import Webhook

from restores import services
from restores.clients import webhook_sender as webhooks
from restores.models import Job
from restores.selectors import job_final_payload, job_final_payload_pieces
from tests.support.jobs import recorded_outcome
from tests.support.numbers import plain_numbers
from tests.support.parties import Party
from tests.support.queue import Task
from tests.support.webhooks import Receiver

SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef01234567").decode()


@pytest.fixture(autouse=True)
def no_broker(enqueued: list[Task]) -> None:
    """The broker is the boundary: tasks are recorded (``enqueued``), not sent anywhere."""


def _completed_job(party: Party, count: int, *, webhook_url: str | None = None) -> Job:
    assert party.tenant is not None
    party.tenant.max_concurrency = count
    party.tenant.save()
    job = services.job_create(
        tenant=party.tenant, credential=None, numbers=plain_numbers(count), webhook_url=webhook_url
    )
    claim = services.number_batch_claim(job_id=job.pk, tenant=job.tenant, limit=count)
    services.number_results_record(
        job_id=job.pk,
        token=claim.token,
        results=claim.results,
        outcomes={r.pk: recorded_outcome(success=r.position % 3 != 0) for r in claim.results},
    )
    assert services.job_complete_if_done(job_id=job.pk, enqueue_webhook=False)
    job.refresh_from_db()
    return job


def test_it_streams_exactly_the_bytes_of_the_whole_payload(owner: Party) -> None:
    job = _completed_job(owner, 2345)
    job.webhook_error = "Connection timed out after 10000 milliseconds"  # never in the webhook body

    pieces = list(job_final_payload_pieces(job=job))

    assert b"".join(pieces) == json.dumps(job_final_payload(job=job, with_webhook_error=False)).encode()
    assert len(pieces) == 5  # head, three pieces of at most 1,000 results, tail
    payload = json.loads(b"".join(pieces))
    assert [r["number"] for r in payload["results"]] == plain_numbers(2345)
    assert (payload["success_count"], payload["failure_count"]) == (1563, 782)


def test_it_keeps_a_small_body_in_memory_and_spools_a_big_one_to_a_file() -> None:
    small = webhooks.spool([b'{"a": ', b"1}"], in_memory_max=100)
    big = webhooks.spool([b"x" * 60, b"y" * 60, b"z" * 60], in_memory_max=100)

    assert small == b'{"a": 1}'
    assert not isinstance(big, bytes)
    with big:
        assert big.read() == b"x" * 60 + b"y" * 60 + b"z" * 60


def test_it_signs_a_file_body_like_the_same_bytes_and_leaves_it_at_its_start() -> None:
    body = b'{"results": ["' + b"7" * 5000 + b'"]}'
    spooled = webhooks.spool([body[:100], body[100:]], in_memory_max=10)
    assert not isinstance(spooled, bytes)
    with spooled:
        signed = webhooks.sign(secret=SECRET, webhook_id="msg_1", timestamp=1700000000, body=spooled)
        assert spooled.tell() == 0
    assert signed == webhooks.sign(secret=SECRET, webhook_id="msg_1", timestamp=1700000000, body=body)


def test_it_posts_a_file_body_with_its_length_and_a_valid_signature(settings: Any) -> None:
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = True
    body = json.dumps({"results": [{"number": str(15550000000 + i)} for i in range(100_000)]}).encode()
    spooled = webhooks.spool([body[i : i + 65536] for i in range(0, len(body), 65536)])
    assert not isinstance(spooled, bytes)

    with Receiver() as receiver, spooled:
        result = webhooks.deliver(
            url=f"http://127.0.0.1:{receiver.port}/hook",
            body=spooled,
            webhook_id="msg_big",
            secret=SECRET,
            timeout=10,
        )

    assert result.delivered, result.error
    [seen] = receiver.requests
    assert seen.headers["Content-Length"] == str(len(body))
    assert "Transfer-Encoding" not in seen.headers
    assert seen.body == body
    assert Webhook(SECRET).verify(seen.body, seen.headers) == json.loads(body)


def test_it_delivers_a_big_jobs_webhook_from_a_file_and_closes_it(
    owner: Party, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = True
    monkeypatch.setattr(webhooks, "BODY_IN_MEMORY_MAX", 1000)
    files: list[IO[bytes]] = []
    real_temporary_file = tempfile.TemporaryFile

    def temporary_file(*args: Any, **kwargs: Any) -> IO[bytes]:
        files.append(real_temporary_file(*args, **kwargs))
        return files[-1]

    monkeypatch.setattr(tempfile, "TemporaryFile", temporary_file)

    with Receiver() as receiver:
        job = _completed_job(owner, 300, webhook_url=f"http://127.0.0.1:{receiver.port}/hook")
        delivery = services.job_webhook_deliver(job_id=job.pk, timeout=10)

    assert delivery is not None and delivery.delivered
    assert len(files) == 1 and files[0].closed
    [seen] = receiver.requests
    assert owner.tenant is not None
    verified = Webhook(owner.tenant.webhook_secret).verify(seen.body, seen.headers)
    assert verified == job_final_payload(job=job, with_webhook_error=False)
    assert len(verified["results"]) == 300
