"""A qcluster told to stop goes within seconds, in order, whichever of its processes hears it.

SIGTERM to the cluster's whole process group (what Ctrl-C under ``make run`` and
systemd's default ``KillMode=control-group`` do) or to its main process alone, in the
middle of a job, with the default lease, slice and worker settings (only the upstream
latency is shortened): every process of the cluster is gone within honcho's five-second
grace, the calls in flight are recorded, nothing is left leased, and a cluster started
afterwards finishes the job at once, with no number called twice.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import pytest

from tests.support.harness import Stack, settings_env, wait_until
from tests.support.numbers import first_call_successes

pytestmark = pytest.mark.e2e

CAP = 10
NUMBERS = 400
LATENCY_MS = 100
STOP_GOAL_SECONDS = 5.0  # honcho's grace before its SIGKILL
# After the restart: about 300 numbers at 10 calls of 100 ms (3 s), no lease to wait for.
FINISH_GOAL_SECONDS = 12.0


@pytest.fixture(scope="module")
def stack(make_stack: Any) -> Stack:
    defaults = settings_env(
        "RESTORE_LEASE_SECONDS",
        "RESTORE_TASK_SLICE_SECONDS",
        "RESTORE_BATCH_SIZE",
        "MULTITEL_TIMEOUT",
    )
    s: Stack = make_stack(latency_ms=LATENCY_MS, workers=(), q_workers=None, **defaults)
    s.create_tenant("stopping", max_concurrency=CAP)
    return s


def _numbers(start: int, count: int) -> list[str]:
    return first_call_successes(count, start=15610000000 + start)


def _status(stack: Stack, job_uuid: str) -> dict[str, Any]:
    session = stack.tenants["stopping"].session()
    response = session.get(
        f"{stack.web_url}/v3/bulk_restore_status", params={"job_uuid": job_uuid}, timeout=10
    )
    return dict(response.json())


@pytest.mark.parametrize("whom", ["group", "main"])
def test_it_stops_within_seconds_in_order_and_the_next_cluster_finishes_at_once(
    stack: Stack, whom: str
) -> None:
    worker = f"before-{whom}"
    stack.start_worker(worker, workers=None)
    numbers = _numbers(100_000 if whom == "group" else 200_000, NUMBERS)
    response = (
        stack.tenants["stopping"]
        .session()
        .post(f"{stack.web_url}/v3/bulk_restore", json={"numbers": numbers}, timeout=30)
    )
    assert response.status_code == 202, response.text
    job_uuid = str(response.json()["job_uuid"])
    wait_until(
        lambda: (
            _status(stack, job_uuid)["success_count"] >= 100
            and stack.fake_stats()["in_flight"].get("mt-stopping", 0) > 0
        ),
        timeout=60,
        interval=0.05,
        what="progress with calls in flight",
    )

    main = stack.processes[worker]
    pgid = main.pid
    told = time.monotonic()
    if whom == "group":
        os.killpg(pgid, signal.SIGTERM)
    else:
        os.kill(pgid, signal.SIGTERM)
    wait_until(
        lambda: main.poll() is not None and stack.group_gone(pgid),  # reaped, and its children gone
        timeout=30,
        interval=0.05,
        what=f"every process of {worker}",
    )
    stopped_in = time.monotonic() - told
    stack.stop(worker)  # only forgets it: it is gone

    left = _status(stack, job_uuid)
    assert left["status"] == "processing"
    assert "processing" not in {r["status"] for r in left["results"]}  # nothing left to a lease

    stack.start_worker(f"after-{whom}", workers=None)
    restarted = time.monotonic()
    status = wait_until(
        lambda: (s := _status(stack, job_uuid))["status"] == "completed" and s,
        timeout=120,
        interval=0.2,
        what="the job to complete",
    )
    finished_in = time.monotonic() - restarted
    print(f"SIGTERM to the {whom}: stopped in {stopped_in:.2f} s; done {finished_in:.1f} s after the restart")
    stack.stop(f"after-{whom}", signal.SIGTERM)

    assert stopped_in <= STOP_GOAL_SECONDS, stopped_in
    assert finished_in <= FINISH_GOAL_SECONDS, finished_in
    assert (status["success_count"], status["failure_count"]) == (NUMBERS, 0)
    calls = stack.fake_stats()["calls_by_number"]
    assert [n for n in numbers if calls.get(n, 0) != 1] == []  # each called once: none in flight was lost
