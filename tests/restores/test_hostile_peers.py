"""Slow and hostile peers hold nothing: every outbound call ends within its timeout (the
defaults: ``MULTITEL_TIMEOUT``, ``WEBHOOK_TIMEOUT``, ``SYNC_DEADLINE``), however the peer
drips, and a body is read up to its cap, decoded size included. Real servers on loopback.
"""

from __future__ import annotations

import json
import re
import time
import tracemalloc
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from django.conf import settings

from restores.clients import webhook_sender
from restores.clients.multitel import MAX_BODY_BYTES, MultitelClient, RestoreOutcome
from restores.models import Job
from tests.support import peers
from tests.support.numbers import number
from tests.support.parties import Party

pytestmark = pytest.mark.timing

# What a call may take beyond its timeout: the watchdog's wake-up, closing the socket.
MARGIN = 1.5
TIMED_OUT = re.compile(r"Operation timed out after (\d+) milliseconds with (\d+) bytes received")


def _timed(call: Callable[[], Any]) -> tuple[Any, float]:
    started = time.monotonic()
    result = call()
    return result, time.monotonic() - started


def _restore(base_url: str) -> RestoreOutcome:
    # One attempt: the retry schedule is not what these tests measure; the timeout is the default.
    return MultitelClient(base_url=base_url, max_attempts=1).restore(number(111), username="u", password="p")


def _in_parallel(calls: dict[str, Callable[[], Any]]) -> dict[str, tuple[Any, float]]:
    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        futures = {name: pool.submit(_timed, call) for name, call in calls.items()}
        return {name: future.result() for name, future in futures.items()}


def test_it_ends_a_multitel_call_within_its_timeout_however_the_peer_drips() -> None:
    timeout = settings.MULTITEL_TIMEOUT
    behaviours = {
        "body": peers.drip_body(),
        "headers": peers.drip_headers(),
        "chunked": peers.endless_chunked(),
    }
    servers = {name: peers.HostilePeer(behaviour).__enter__() for name, behaviour in behaviours.items()}
    try:
        results = _in_parallel({name: (lambda s=server: _restore(s.url)) for name, server in servers.items()})
    finally:
        for server in servers.values():
            server.__exit__()
    for name, (outcome, elapsed) in results.items():
        assert timeout - 0.5 <= elapsed <= timeout + MARGIN, (name, elapsed)
        assert (outcome.success, outcome.status_code) == (False, 504), name
        assert outcome.message == f"Error: 'upstream timed out after {timeout:g} seconds'"
        [attempt] = outcome.attempts
        match = TIMED_OUT.fullmatch(attempt.error)
        assert match, (name, attempt.error)
        assert timeout * 1000 <= int(match[1]) <= (timeout + MARGIN) * 1000
        received = int(match[2])
        if name == "headers":
            assert received == 0
        else:
            assert received > 0, name  # what had come of the body is said
        assert servers[name].closed.wait(5), f"{name}: the connection was left open"


def test_it_ends_a_stalled_tls_handshake_with_multitel() -> None:
    with peers.hostile_peer(peers.silent()) as peer:
        outcome, elapsed = _timed(lambda: _restore(peer.url.replace("http://", "https://")))
    assert elapsed <= settings.MULTITEL_TIMEOUT + MARGIN
    assert outcome.success is False
    assert outcome.status_code in (502, 504)
    assert outcome.attempts[0].error


def test_it_fails_a_huge_multitel_answer_as_too_large_without_holding_it() -> None:
    with peers.hostile_peer(peers.huge_body(200 * 1024 * 1024)) as peer:
        tracemalloc.start()
        try:
            outcome, elapsed = _timed(lambda: _restore(peer.url))
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert (outcome.success, outcome.status_code) == (False, 502)
    assert outcome.message == "Error: 'response too large'"
    assert outcome.attempts[0].error == f"response too large: more than {MAX_BODY_BYTES} bytes"
    assert peak < 4 * 1024 * 1024, peak
    assert elapsed < 5


def _gzip_of_zeros(size: int) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)  # gzip framing
    block = b"\0" * (1024 * 1024)
    pieces = [compressor.compress(block) for _ in range(size // len(block))]
    return b"".join([*pieces, compressor.flush()])


def test_it_decodes_a_compressed_multitel_answer_under_the_same_cap() -> None:
    bomb = _gzip_of_zeros(256 * 1024 * 1024)
    assert len(bomb) < 300 * 1024  # about 261 KB on the wire

    def behave(conn: Any, until: float) -> None:
        conn.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\n"
            + f"Content-Length: {len(bomb)}\r\n\r\n".encode()
            + bomb
        )

    with peers.hostile_peer(behave) as peer:
        tracemalloc.start()
        try:
            outcome = _restore(peer.url)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert (outcome.success, outcome.status_code) == (False, 502)
    assert outcome.attempts[0].error == f"response too large: more than {MAX_BODY_BYTES} bytes"
    assert peak < 8 * 1024 * 1024, peak


def _deliver(url: str, timeout: float) -> webhook_sender.DeliveryResult:
    return webhook_sender.deliver(
        url=url, body=b'{"job_uuid": "x"}', webhook_id="msg_1", secret="whsec_" + "A" * 32, timeout=timeout
    )


@pytest.mark.usefixtures("allow_private_webhooks")
def test_it_ends_a_webhook_delivery_within_its_timeout_however_the_receiver_drips() -> None:
    timeout = settings.WEBHOOK_TIMEOUT
    behaviours = {
        "body": peers.drip_body(),
        "headers": peers.drip_headers(),
        "chunked": peers.endless_chunked(),
        "tls": peers.silent(),
    }
    servers = {name: peers.HostilePeer(behaviour).__enter__() for name, behaviour in behaviours.items()}
    try:
        urls = {name: server.url + "/hook" for name, server in servers.items()}
        urls["tls"] = urls["tls"].replace("http://", "https://")
        results = _in_parallel({name: (lambda u=url: _deliver(u, timeout)) for name, url in urls.items()})
    finally:
        for server in servers.values():
            server.__exit__()
    for name, (result, elapsed) in results.items():
        assert elapsed <= timeout + MARGIN, (name, elapsed)
        assert result.delivered is False, name
        if name != "tls":
            assert TIMED_OUT.fullmatch(result.error), (name, result.error)
            assert timeout - 0.5 <= elapsed, (name, elapsed)


@pytest.fixture
def allow_private_webhooks(settings: Any) -> None:
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = True  # the receivers are on loopback


@pytest.mark.django_db
@pytest.mark.usefixtures("allow_private_webhooks")
def test_it_answers_a_synchronous_request_within_its_deadline_whatever_the_peers_do(
    owner: Party, settings: Any
) -> None:
    deadline = settings.SYNC_DEADLINE
    with peers.hostile_peer(peers.drip_body()) as multitel, peers.hostile_peer(peers.drip_headers()) as hook:
        settings.MULTITEL_BASE_URL = multitel.url
        body = {"numbers": [number(111), number(112)], "webhook_url": hook.url + "/hook"}
        response, elapsed = _timed(
            lambda: owner.client.post(
                "/v3/bulk_restore", data=json.dumps(body), content_type="application/json"
            )
        )
    assert elapsed <= deadline + MARGIN, elapsed
    assert response.status_code == 200
    payload = response.json()
    assert [(r["status"], r["status_code"]) for r in payload["results"]] == [("failed", 504)] * 2
    job = Job.objects.get(uuid=payload["job_uuid"])
    assert job.webhook_deliveries.count() == 1
    delivery = job.webhook_deliveries.get()
    assert delivery.delivered is False
    assert TIMED_OUT.fullmatch(delivery.error), delivery.error
