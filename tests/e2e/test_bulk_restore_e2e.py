"""End to end on loopback: gunicorn, two qcluster processes, the simulated Multitel
and a webhook receiver, all real HTTP servers and processes."""

from __future__ import annotations

from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook

from tests.support.harness import Stack, WebhookReceiver, wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack(make_stack: Any) -> Stack:
    # One worker per qcluster, so each holds one task (plus at most two fetched ahead) rather
    # than a backlog, and a job's tasks reach both processes.
    s: Stack = make_stack(latency_ms=50, workers=("cluster-a", "cluster-b"), q_workers=1)
    s.create_tenant("acme", max_concurrency=10)
    return s


def _numbers(start: int, count: int) -> list[str]:
    """Numbers without the simulated Multitel's fault tails (..90 to ..97)."""
    candidates = (str(15550000000 + start + i) for i in range(count * 2))
    return [n for n in candidates if not 90 <= int(n[-2:]) <= 97][:count]


def _verified(receiver_hook: Any, secret: str) -> dict[str, Any]:
    """The webhook's payload, after checking its Standard Webhooks signature."""
    headers = {k: v for k, v in receiver_hook.headers.items() if k.startswith("webhook-")}
    return dict(Webhook(secret).verify(receiver_hook.body, headers))


def test_it_restores_a_small_job_synchronously_and_posts_the_webhook(
    stack: Stack, receiver: WebhookReceiver
) -> None:
    tenant = stack.tenants["acme"]
    numbers = ["15551230111", "15551230112", "15551230113", "15551230114", "15551230115", "15551230191"]
    response = tenant.session().post(
        f"{stack.web_url}/v3/bulk_restore",
        json={"numbers": numbers, "webhook_url": receiver.url("/sync")},
        timeout=30,
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "completed"
    assert [r["number"] for r in body["results"]] == numbers
    assert [r["status"] for r in body["results"]] == [
        "success",
        "failed",
        "success",
        "success",
        "failed",
        "success",
    ]
    assert [r["status_code"] for r in body["results"]] == [200, 500, 200, 200, 404, 200]
    assert body["results"][2]["needs_registration"] == 1
    assert (body["success_count"], body["failure_count"]) == (4, 2)
    assert "webhook_error" not in body
    # The webhook was delivered before the answer, signed, with the same final structure.
    [hook] = receiver.hooks_for("/sync")
    assert _verified(hook, tenant.webhook_secret) == body
    assert hook.headers["user-agent"].startswith("bulk-restore-portal/")
    # ...91 answered 503 once and was retried; every other number was called once.
    calls = stack.fake_stats()["calls_by_number"]
    assert {n: calls[n] for n in numbers} == {n: 2 if n.endswith("91") else 1 for n in numbers}


def test_it_queues_a_25_number_job_and_delivers_it_to_the_webhook(
    stack: Stack, receiver: WebhookReceiver
) -> None:
    tenant = stack.tenants["acme"]
    numbers = _numbers(1000, 25)
    response = tenant.session().post(
        f"{stack.web_url}/v3/bulk_restore",
        json={"numbers": numbers, "webhook_url": receiver.url("/async")},
        timeout=30,
    )

    assert response.status_code == 202, response.text
    queued = response.json()
    assert list(queued) == ["job_uuid", "status", "total_numbers", "webhook_url", "message"]
    assert queued["status"] == "pending" and queued["total_numbers"] == 25
    hooks = wait_until(lambda: receiver.hooks_for("/async"), timeout=60, what="the webhook")
    payload = _verified(hooks[0], tenant.webhook_secret)
    assert payload["job_uuid"] == queued["job_uuid"]
    assert payload["status"] == "completed"
    assert [r["number"] for r in payload["results"]] == numbers
    assert payload["success_count"] + payload["failure_count"] == 25
    assert payload["success_count"] == sum(r["status"] == "success" for r in payload["results"])
    status = stack.wait_for_job(tenant, queued["job_uuid"])
    assert status["completed_at"] == payload["completed_at"]
    assert all(r["attempts"] >= 1 and r["completed_at"] for r in status["results"])
    calls = stack.fake_stats()["calls_by_number"]
    assert all(calls[n] == 1 for n in numbers if not n.endswith(("90", "91", "92")))
    assert len(receiver.hooks_for("/async")) == 1


def test_it_spreads_one_job_over_two_qcluster_processes(stack: Stack) -> None:
    tenant = stack.tenants["acme"]
    numbers = _numbers(5000, 400)
    response = tenant.session().post(
        f"{stack.web_url}/v3/bulk_restore", json={"numbers_text": "\n".join(numbers)}, timeout=30
    )
    assert response.status_code == 202, response.text
    job_uuid = response.json()["job_uuid"]

    status = stack.wait_for_job(tenant, job_uuid, timeout=120)

    assert status["success_count"] + status["failure_count"] == 400
    assert [r["number"] for r in status["results"]] == numbers
    assert all(r["status"] in ("success", "failed") for r in status["results"])
    claimed_by = stack.query(
        "import json; from restores.models import NumberResult as R; "
        f"print(json.dumps(sorted(set(R.objects.filter(job__uuid='{job_uuid}')"
        ".values_list('claimed_by', flat=True)))))"
    )
    assert claimed_by == ["cluster-a", "cluster-b"]
