"""A simulated Multitel: ``GET /v3/restore/<number>`` with the v3 envelope.

Outcomes are decided by the number, so that demos and tests are repeatable
(the rules are listed in ``OUTCOME_RULES`` and in the README). Optional
latency, jitter and random failure rates make it behave like a busy
provider. It checks HTTP Basic credentials against the tenants' Multitel
credentials in the database (or a fixed set given to it), and counts calls
per number, the calls that restored each number (``restored_by_number``: a
number restored twice was restored twice upstream, whoever heard the answers)
and the highest number of calls in flight per username, served as
JSON at ``GET /_fake/stats`` (``POST /_fake/reset`` clears them).
``POST /_fake/outage`` with ``{"seconds": S}`` makes it answer every restore
with HTTP 503 for the next S seconds, as a provider in an outage does.
"""

from __future__ import annotations

import base64
import json
import logging
import random
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

logger = logging.getLogger(__name__)

SUPPORT_MSG = "Error: 'restore failed, please contact support'"

# Documented in the README; the last two digits are looked at first, then the last one.
OUTCOME_RULES: dict[str, str] = {
    "..90": "HTTP 503 on every call (retried, then failed 503)",
    "..91": "HTTP 503 on the first call for the number, then success",
    "..92": "HTTP 429 with Retry-After: 1 on the first call, then success",
    "..93": "HTTP 200 with an HTML page (failed 502)",
    "..94": "HTTP 200 with an empty body (failed 502)",
    "..95": "no answer until --hang-seconds (the portal times out: failed 504)",
    "..96": "HTTP 200 with a truncated JSON body (failed 502)",
    "..97": "HTTP 500 with an HTML page (failed 500)",
    "..2": f'envelope code "500" (a string), msg {SUPPORT_MSG}, response "" (HTTP 200)',
    "..3": "success with requires_identity_update 1 and needs_registration true",
    "..4": 'success with code "200" and requires_identity_update "1" (strings)',
    "..5": "HTTP 404, envelope code 404, msg Error: 'number not found', no response key",
    "other": "success: code 200, msg empty, requires_identity_update 0",
}


@dataclass
class Reply:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    hang: bool = False
    truncate: bool = False
    restores: bool = False  # the answer says the number was restored


def _json(status: int, payload: Any) -> Reply:
    return Reply(status=status, body=json.dumps(payload).encode())


def _restored(envelope: dict[str, Any]) -> Reply:
    """A 200 answer saying the number was restored."""
    return Reply(status=200, body=json.dumps(envelope).encode(), restores=True)


def _envelope(code: Any, msg: str, response: Any = None, *, omit_response: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {"status": {"code": code, "msg": msg}}
    if not omit_response:
        out["response"] = response
    return out


def outcome_for(number: str, call_index: int) -> Reply:
    """What the simulated Multitel answers for ``number`` on its ``call_index``-th call (1-based)."""
    tail2, tail1 = number[-2:], number[-1:]
    html = b"<!DOCTYPE html><html><body><h1>Service error</h1></body></html>"
    if tail2 == "90":
        return Reply(503, b"<html><body>503 Service Unavailable</body></html>", "text/html")
    if tail2 == "91" and call_index == 1:
        return Reply(503, b"", "text/plain")
    if tail2 == "92" and call_index == 1:
        return Reply(
            429, json.dumps(_envelope(429, "Too many requests")).encode(), headers={"Retry-After": "1"}
        )
    if tail2 in ("91", "92"):
        return _restored(_envelope(200, "", {"number": number, "requires_identity_update": 0}))
    if tail2 == "93":
        return Reply(200, html, "text/html")
    if tail2 == "94":
        return Reply(200, b"")
    if tail2 == "95":
        return Reply(200, b"", hang=True)
    if tail2 == "96":
        return Reply(200, b'{"status": {"code": 200, "msg": ""}, "respon', truncate=True)
    if tail2 == "97":
        return Reply(500, html, "text/html")
    if tail1 == "2":
        return _json(200, _envelope("500", SUPPORT_MSG, ""))
    if tail1 == "3":
        return _restored(
            _envelope(200, "", {"number": number, "requires_identity_update": 1, "needs_registration": True})
        )
    if tail1 == "4":
        return _restored(_envelope("200", "", {"number": number, "requires_identity_update": "1"}))
    if tail1 == "5":
        return _json(404, _envelope(404, "Error: 'number not found'", omit_response=True))
    return _restored(_envelope(200, "", {"number": number, "requires_identity_update": 0}))


@dataclass(kw_only=True, eq=False)
class FakeMultitelState:
    """How the simulated Multitel behaves, and what it has seen (``stats``)."""

    credentials: Callable[[], dict[str, str]]
    latency_ms: float = 0
    jitter_ms: float = 0
    fail_rate: float = 0
    timeout_rate: float = 0
    hang_seconds: float = 60
    seed: int | None = None

    def __post_init__(self) -> None:
        self.random = random.Random(self.seed)  # noqa: S311 (simulation, not crypto)
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.calls_by_number: Counter[str] = Counter()
            self.restored_by_number: Counter[str] = Counter()  # calls that restored the number
            self.calls_total = 0
            self.rejected_auth = 0
            self.in_flight: Counter[str] = Counter()
            self.max_in_flight: defaultdict[str, int] = defaultdict(int)
            self.outage_until = 0.0  # time.monotonic(): every restore answers 503 until then
            self.outage_calls = 0

    def stats(self) -> dict[str, Any]:
        with self.lock:
            return {
                "calls_total": self.calls_total,
                "rejected_auth": self.rejected_auth,
                "calls_by_number": dict(self.calls_by_number),
                "restored_by_number": dict(self.restored_by_number),
                "in_flight": dict(self.in_flight),
                "max_in_flight": dict(self.max_in_flight),
                "outage_seconds_left": max(0.0, self.outage_until - time.monotonic()),
                "outage_calls": self.outage_calls,
            }

    def outage_start(self, seconds: float) -> None:
        with self.lock:
            self.outage_until = time.monotonic() + seconds


class Handler(BaseHTTPRequestHandler):
    server: FakeMultitelServer
    protocol_version = "HTTP/1.1"
    server_version = "FakeMultitel/1.0"
    # Buffered, flushed once per request: headers and body leave in one write. Unbuffered,
    # they go out as two small segments, and Nagle's algorithm meeting the client's delayed
    # ACK adds up to 40 ms to a call, a latency no real upstream shows.
    wbufsize = -1

    def log_message(self, format: str, *args: Any) -> None:  # quiet by default
        if self.server.verbose:
            super().log_message(format, *args)

    def _send(self, reply: Reply) -> None:
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        length = len(reply.body) + (50 if reply.truncate else 0)
        self.send_header("Content-Length", str(length))
        for key, value in reply.headers.items():
            self.send_header(key, value)
        if reply.truncate:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(reply.body)
        if reply.truncate:
            self.wfile.flush()
            self.close_connection = True

    def do_GET(self) -> None:
        state = self.server.state
        if self.path == "/_fake/stats":
            self._send(_json(200, state.stats()))
            return
        if not self.path.startswith("/v3/restore/"):
            self._send(_json(404, _envelope(404, "Error: 'unknown endpoint'", "")))
            return
        number = self.path[len("/v3/restore/") :].split("?")[0]
        username = self._authorized_user()
        if username is None:
            with state.lock:
                state.rejected_auth += 1
            self._send(_json(401, _envelope(401, "Error: 'invalid credentials'", "")))
            return
        with state.lock:
            state.calls_total += 1
            state.calls_by_number[number] += 1
            call_index = state.calls_by_number[number]
            state.in_flight[username] += 1
            state.max_in_flight[username] = max(state.max_in_flight[username], state.in_flight[username])
            roll_fail, roll_hang = state.random.random(), state.random.random()
            delay = max(0.0, state.latency_ms + state.random.uniform(-state.jitter_ms, state.jitter_ms))
            in_outage = time.monotonic() < state.outage_until
            if in_outage:
                state.outage_calls += 1
        try:
            reply = (
                outcome_for(number, call_index)
                if number.isdigit()
                else _json(400, _envelope(400, "Error: 'invalid number'", ""))
            )
            if in_outage:
                reply = Reply(503, b"Service Unavailable", "text/plain")
            elif roll_hang < state.timeout_rate:
                reply = Reply(200, b"", hang=True)
            elif roll_fail < state.fail_rate:
                reply = Reply(503, b"Service Unavailable", "text/plain")
            if reply.restores:
                with state.lock:
                    state.restored_by_number[number] += 1  # done upstream, whoever hears the answer
            time.sleep(delay / 1000)
            if reply.hang:
                time.sleep(state.hang_seconds)
            self._send(reply)
        finally:
            with state.lock:
                state.in_flight[username] -= 1

    def do_POST(self) -> None:
        if self.path == "/_fake/reset":
            self.server.state.reset()
            self._send(_json(200, {"reset": True}))
            return
        if self.path == "/_fake/outage":
            try:
                length = int(self.headers.get("Content-Length") or 0)
                seconds = float(json.loads(self.rfile.read(length) or b"{}")["seconds"])
            except (ValueError, KeyError, TypeError):
                self._send(_json(400, {"error": 'body must be {"seconds": <number>}'}))
                return
            self.server.state.outage_start(seconds)
            self._send(_json(200, {"outage_seconds": seconds}))
            return
        self._send(_json(405, _envelope(405, "Error: 'method not allowed'", "")))

    def _authorized_user(self) -> str | None:
        header = self.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return None
        try:
            username, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return None
        expected = self.server.state.credentials().get(username)
        return username if expected is not None and expected == password else None


class FakeMultitelServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256

    def __init__(self, address: tuple[str, int], state: FakeMultitelState, verbose: bool = False) -> None:
        super().__init__(address, Handler)
        self.state = state
        self.verbose = verbose

    @property
    def base_url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"


def database_credentials(refresh_seconds: float = 2.0) -> Callable[[], dict[str, str]]:
    """Tenants' Multitel credentials from the database, cached for a moment."""
    from django.db import DatabaseError, connection

    from accounts.models import Tenant

    lock = threading.Lock()
    cache: dict[str, Any] = {"at": 0.0, "creds": {}}

    def load() -> dict[str, str]:
        with lock:
            if time.monotonic() - cache["at"] > refresh_seconds:
                try:
                    cache["creds"] = dict(
                        Tenant.objects.values_list("multitel_username", "multitel_password")
                    )
                except DatabaseError:
                    # A busy or briefly unreachable database: keep answering with what we knew.
                    if not cache["creds"]:
                        raise
                    logger.warning("could not refresh credentials; using the last ones read")
                finally:
                    connection.close()
                cache["at"] = time.monotonic()
            return dict(cache["creds"])

    return load


def start_in_thread(state: FakeMultitelState, host: str = "127.0.0.1", port: int = 0) -> FakeMultitelServer:
    server = FakeMultitelServer((host, port), state)
    threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-multitel", daemon=True
    ).start()
    return server
