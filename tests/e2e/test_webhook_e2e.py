"""Webhook delivery (docs/api.md#webhooks) against real receivers: a failed delivery is shown
as ``webhook_error`` and retried by the sweeper with the same ``webhook-id`` until
it succeeds, which clears the error; a receiver that hangs is cut off after
``WEBHOOK_TIMEOUT`` without failing the job."""

from __future__ import annotations

import itertools
import re
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook

from tests.support.harness import Stack, WebhookReceiver, wait_until

pytestmark = pytest.mark.e2e

HANG_SECONDS = 10  # far beyond the stack's WEBHOOK_TIMEOUT of 2 s


class HangingReceiver:
    """Reads each POST, then keeps the caller waiting ``HANG_SECONDS`` before answering 200."""

    def __init__(self) -> None:
        self.requests: list[float] = []
        self.release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.requests.append(time.monotonic())
                receiver.release.wait(HANG_SECONDS)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def stack(make_stack: Any) -> Stack:
    s: Stack = make_stack(latency_ms=20, workers=("hook-worker",))
    s.create_tenant("hooks", max_concurrency=10)
    assert s.env["WEBHOOK_TIMEOUT"] == "2" and s.env["WEBHOOK_RETRY_SCHEDULE"] == "1s,1s,2s"
    return s


@pytest.fixture
def hanging_receiver() -> Iterator[HangingReceiver]:
    r = HangingReceiver()
    try:
        yield r
    finally:
        r.close()


def _numbers(start: int, count: int) -> list[str]:
    """Numbers without the simulated Multitel's fault tails (..90 to ..97)."""
    candidates = (str(15590000000 + start + i) for i in range(count * 2))
    return [n for n in candidates if not 90 <= int(n[-2:]) <= 97][:count]


def _submit(stack: Stack, numbers: list[str], webhook_url: str) -> str:
    response = (
        stack.tenants["hooks"]
        .session()
        .post(
            f"{stack.web_url}/v3/bulk_restore",
            json={"numbers": numbers, "webhook_url": webhook_url},
            timeout=30,
        )
    )
    assert response.status_code == 202, response.text
    return str(response.json()["job_uuid"])


def _status(stack: Stack, job_uuid: str) -> dict[str, Any]:
    response = (
        stack.tenants["hooks"]
        .session()
        .get(f"{stack.web_url}/v3/bulk_restore_status", params={"job_uuid": job_uuid}, timeout=10)
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


def _deliveries(stack: Stack, job_uuid: str) -> list[dict[str, Any]]:
    return list(
        stack.query(
            "import json; from restores.models import WebhookDelivery as D; "
            f"print(json.dumps(list(D.objects.filter(job__uuid='{job_uuid}').order_by('attempt_number')"
            ".values('attempt_number', 'webhook_id', 'http_status', 'delivered', 'error', 'duration_ms', "
            "'started_at')), default=str))"
        )
    )


def _job_webhook_state(stack: Stack, job_uuid: str) -> tuple[str, str | None]:
    """The job's webhook state and when its next attempt is due (None: no more attempts)."""
    state, next_attempt = stack.query(
        "import json; from restores.models import Job; "
        f"j = Job.objects.get(uuid='{job_uuid}'); "
        "print(json.dumps([j.webhook_state, j.webhook_next_attempt_at], default=str))"
    )
    return str(state), next_attempt


def _sweep_until(stack: Stack, check: Callable[[], Any], *, timeout: float, what: str) -> Any:
    """Run ``manage.py sweep`` (which enqueues due retries) until ``check`` holds."""

    def swept_and_checked() -> Any:
        stack.manage("sweep")
        return check()

    return wait_until(swept_and_checked, timeout=timeout, interval=0.2, what=what)


def _assert_completed_with_consistent_counts(status: dict[str, Any], numbers: list[str]) -> None:
    assert status["status"] == "completed"
    assert [r["number"] for r in status["results"]] == numbers
    assert all(r["status"] in ("success", "failed") for r in status["results"])
    assert status["success_count"] == sum(r["status"] == "success" for r in status["results"])
    assert status["failure_count"] == sum(r["status"] == "failed" for r in status["results"])
    assert status["success_count"] + status["failure_count"] == len(numbers)


def test_it_retries_a_failed_webhook_with_the_same_id_and_then_clears_the_error(
    stack: Stack, receiver: WebhookReceiver
) -> None:
    tenant = stack.tenants["hooks"]
    path = "/flaky"
    receiver.status_for[path] = 500
    numbers = _numbers(0, 15)
    job_uuid = _submit(stack, numbers, receiver.url(path))

    # The job completes; its first delivery gets a 500, shown as webhook_error.
    failing = wait_until(
        lambda: (s := _status(stack, job_uuid)).get("webhook_error") and s,
        timeout=60,
        interval=0.25,
        what="the failed delivery",
    )
    _assert_completed_with_consistent_counts(failing, numbers)
    assert failing["webhook_error"] == "The requested URL returned error: 500"
    assert list(failing)[-1] == "webhook_error"
    with receiver.lock:  # from now on the receiver accepts; what it got so far was refused
        receiver.status_for[path] = 200
        failed_hooks = [h for h in receiver.received if h.path == path]
    assert failed_hooks
    webhook_id = failed_hooks[0].headers["webhook-id"]
    assert webhook_id.startswith("msg_")

    # Retries are enqueued by the sweeper once due (the first after 1 s).
    delivered = _sweep_until(
        stack, lambda: receiver.hooks_for(path)[len(failed_hooks) :], timeout=30, what="the retried webhook"
    )

    assert [h.headers["webhook-id"] for h in failed_hooks + delivered] == [webhook_id] * (
        len(failed_hooks) + len(delivered)
    )
    headers = {k: v for k, v in delivered[0].headers.items() if k.startswith("webhook-")}
    payload = Webhook(tenant.webhook_secret).verify(delivered[0].body, headers)
    assert payload["job_uuid"] == job_uuid and "webhook_error" not in payload
    cleared = wait_until(
        lambda: "webhook_error" not in (s := _status(stack, job_uuid)) and s,
        timeout=30,
        interval=0.25,
        what="webhook_error to be cleared",
    )
    _assert_completed_with_consistent_counts(cleared, numbers)
    assert payload["results"] == [
        {k: v for k, v in r.items() if k not in ("attempts", "started_at", "completed_at")}
        for r in cleared["results"]
    ]
    # Every attempt is recorded under the one webhook-id; the last one delivered.
    deliveries = _deliveries(stack, job_uuid)
    assert len(deliveries) == len(failed_hooks) + len(delivered) >= 2
    assert {d["webhook_id"] for d in deliveries} == {webhook_id}
    assert [d["http_status"] for d in deliveries] == [500] * len(failed_hooks) + [200] * len(delivered)
    assert deliveries[-1]["delivered"] is True and deliveries[-1]["error"] == ""
    assert len(receiver.hooks_for(path)) == len(failed_hooks) + 1  # nothing after the delivery


def test_it_cuts_off_a_hanging_webhook_receiver_without_failing_the_job(
    stack: Stack, hanging_receiver: HangingReceiver
) -> None:
    numbers = _numbers(1000, 15)
    job_uuid = _submit(stack, numbers, hanging_receiver.url("/slow"))

    status = wait_until(
        lambda: (s := _status(stack, job_uuid)).get("webhook_error") and s,
        timeout=60,
        interval=0.25,
        what="the timed-out delivery",
    )

    timed_out = r"Operation timed out after 2\d\d\d milliseconds with 0 bytes received"
    assert re.fullmatch(timed_out, status["webhook_error"]), status["webhook_error"]
    _assert_completed_with_consistent_counts(status, numbers)
    assert hanging_receiver.requests  # the request did reach the receiver, which kept it waiting
    first = _deliveries(stack, job_uuid)[0]
    assert first["delivered"] is False and first["http_status"] is None
    assert re.fullmatch(timed_out, first["error"]), first["error"]
    # Cut off at the timeout, not when the receiver finally answered.
    assert 1900 <= first["duration_ms"] < (HANG_SECONDS - 2) * 1000


def test_it_retries_on_the_schedule_records_every_attempt_and_gives_up_without_failing_the_job(
    stack: Stack, receiver: WebhookReceiver
) -> None:
    tenant = stack.tenants["hooks"]
    path = "/down"
    # The first attempt and the three retries of WEBHOOK_RETRY_SCHEDULE "1s,1s,2s", each refused.
    refusals = [500, 502, 503, 504]
    receiver.statuses_for[path] = list(refusals)
    receiver.status_for[path] = 200  # never reached: there is no fifth attempt
    numbers = _numbers(2000, 12)
    job_uuid = _submit(stack, numbers, receiver.url(path))

    _sweep_until(
        stack, lambda: _job_webhook_state(stack, job_uuid)[0] == "failed", timeout=60, what="the last retry"
    )

    deliveries = _deliveries(stack, job_uuid)
    assert [d["attempt_number"] for d in deliveries] == [1, 2, 3, 4]
    assert [d["http_status"] for d in deliveries] == refusals
    assert [d["error"] for d in deliveries] == [f"The requested URL returned error: {s}" for s in refusals]
    assert not any(d["delivered"] for d in deliveries)
    # Each retry came no earlier than its delay in the schedule after the attempt before it.
    started = [datetime.fromisoformat(d["started_at"]) for d in deliveries]
    gaps = [(later - earlier).total_seconds() for earlier, later in itertools.pairwise(started)]
    assert all(gap >= delay for gap, delay in zip(gaps, [1, 1, 2], strict=True)), gaps
    # The receiver got the same message four times: one webhook-id, one body, each signature valid.
    hooks = receiver.hooks_for(path)
    assert len(hooks) == 4
    assert {h.headers["webhook-id"] for h in hooks} == {deliveries[0]["webhook_id"]}
    assert len({h.body for h in hooks}) == 1
    for hook in hooks:
        headers = {k: v for k, v in hook.headers.items() if k.startswith("webhook-")}
        assert Webhook(tenant.webhook_secret).verify(hook.body, headers)["job_uuid"] == job_uuid
    # The job is completed all the same, showing the latest failure; nothing more is due.
    status = _status(stack, job_uuid)
    _assert_completed_with_consistent_counts(status, numbers)
    assert status["webhook_error"] == "The requested URL returned error: 504"
    assert _job_webhook_state(stack, job_uuid) == ("failed", None)


def test_it_never_follows_a_redirect_of_the_webhook(stack: Stack, receiver: WebhookReceiver) -> None:
    tenant = stack.tenants["hooks"]
    # 307 keeps the method and body: a client that followed it would POST the results to the target.
    for path, status_code in (("/moved-sync", 302), ("/moved-async", 307)):
        receiver.status_for[path] = status_code
        receiver.headers_for[path] = {"Location": receiver.url("/redirect-target")}

    # Synchronous: the one attempt before the answer fails, and the answer says so.
    numbers = _numbers(3000, 3)
    response = tenant.session().post(
        f"{stack.web_url}/v3/bulk_restore",
        json={"numbers": numbers, "webhook_url": receiver.url("/moved-sync")},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    assert response.json()["webhook_error"] == "The requested URL returned error: 302"
    _assert_completed_with_consistent_counts(response.json(), numbers)

    # Queued: the same.
    numbers = _numbers(4000, 12)
    job_uuid = _submit(stack, numbers, receiver.url("/moved-async"))
    status = wait_until(
        lambda: (s := _status(stack, job_uuid)).get("webhook_error") and s,
        timeout=60,
        interval=0.25,
        what="the redirected delivery",
    )
    assert status["webhook_error"] == "The requested URL returned error: 307"
    _assert_completed_with_consistent_counts(status, numbers)
    deliveries = _deliveries(stack, job_uuid)  # the first, and any retry made meanwhile
    assert {d["http_status"] for d in deliveries} == {307}

    # Each delivery was recorded after its answer: a followed redirect would have arrived by then.
    assert len(receiver.hooks_for("/moved-sync")) >= 1  # and its retries in the background
    assert len(receiver.hooks_for("/moved-async")) >= len(deliveries)
    assert receiver.hooks_for("/redirect-target") == []
