"""The real stack on loopback: gunicorn, qcluster processes, the simulated Multitel,
and a webhook receiver, sharing a database of their own (an SQLite file, or a fresh
PostgreSQL database when DATABASE_URL points at PostgreSQL; Redis as the broker
when REDIS_URL is set).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
import requests

REPO = Path(__file__).resolve().parents[2]
PYTHON = sys.executable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class GiveUp(AssertionError):
    """Raised by a ``wait_until`` check when waiting longer cannot help (a process died)."""


def wait_until(check: Callable[[], Any], *, timeout: float, interval: float = 0.1, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except GiveUp:
            raise
        except Exception as exc:
            last_error = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or check}: {last_error!r}")


# --- Webhook receiver -----------------------------------------------------------------


@dataclass
class ReceivedHook:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class WebhookReceiver:
    """A real HTTP server that records every POST and answers with a set status."""

    def __init__(self) -> None:
        self.received: list[ReceivedHook] = []
        self.status_for: dict[str, int] = {}
        # Statuses answered in turn (then ``status_for``), and headers added, per path.
        self.statuses_for: dict[str, list[int]] = {}
        self.headers_for: dict[str, dict[str, str]] = {}
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(length)
                with receiver.lock:
                    receiver.received.append(
                        ReceivedHook(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                    )
                    queued = receiver.statuses_for.get(self.path)
                    status = queued.pop(0) if queued else receiver.status_for.get(self.path, 200)
                    extra = dict(receiver.headers_for.get(self.path, {}))
                self.send_response(status)
                for key, value in extra.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def hooks_for(self, path: str) -> list[ReceivedHook]:
        with self.lock:
            return [h for h in self.received if h.path == path]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# --- The stack ------------------------------------------------------------------------


@dataclass
class Tenant:
    name: str
    api_username: str
    api_password: str
    webhook_secret: str

    def session(self) -> requests.Session:
        s = requests.Session()
        s.auth = (self.api_username, self.api_password)
        return s


@dataclass
class Stack:
    tmp: Path
    env: dict[str, str]
    web_url: str
    multitel_url: str
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    tenants: dict[str, Tenant] = field(default_factory=dict)

    # processes
    def start(
        self, name: str, *args: str, extra_env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        log = open(self.tmp / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(
            [PYTHON, *args],
            cwd=REPO,
            env={**self.env, **(extra_env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.processes[name] = proc
        return proc

    def stop(self, name: str, sig: int = signal.SIGKILL, timeout: float = 10) -> None:
        proc = self.processes.pop(name, None)
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, sig)
            proc.wait(timeout=timeout)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)

    def group_gone(self, pgid: int) -> bool:
        """True once no process of the process group ``pgid`` is left."""
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        return False

    def running(self, name: str) -> bool:
        """True while the process is up; raises ``GiveUp`` (with its log) once it has exited."""
        proc = self.processes[name]
        if proc.poll() is not None:
            raise GiveUp(f"{name} exited with {proc.returncode}:\n{self.log(name)[-3000:]}")
        return True

    def log(self, name: str) -> str:
        path = self.tmp / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def manage(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [PYTHON, "manage.py", *args], cwd=REPO, env=self.env, capture_output=True, text=True, timeout=120
        )
        if check and result.returncode != 0:
            raise AssertionError(f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result

    def query(self, code: str) -> Any:
        """Run Python in a Django shell of the stack; ``code`` prints one JSON value."""
        return json.loads(self.manage("shell", "-c", code).stdout.strip().splitlines()[-1])

    def start_worker(self, name: str, workers: int = 2) -> None:
        self.start(name, "manage.py", "qcluster", extra_env={"WORKER_NAME": name, "Q_WORKERS": str(workers)})
        wait_until(
            lambda: self.running(name) and "running" in self.log(name).lower(),
            timeout=30,
            what=f"{name} to start",
        )

    # tenants and API
    def create_tenant(self, name: str, max_concurrency: int = 10) -> Tenant:
        out = self.manage(
            "create_tenant",
            name,
            "--api-username",
            f"{name}-api",
            "--api-password",
            f"{name}-secret",
            "--upstream-username",
            f"mt-{name}",
            "--upstream-password",
            f"mt-{name}-pw",
            "--max-concurrency",
            str(max_concurrency),
        ).stdout
        secret = next(line.split(": ", 1)[1] for line in out.splitlines() if "signing secret" in line)
        tenant = Tenant(name, f"{name}-api", f"{name}-secret", secret.strip())
        self.tenants[name] = tenant
        return tenant

    def fake_stats(self) -> dict[str, Any]:
        return dict(requests.get(f"{self.multitel_url}/_fake/stats", timeout=5).json())

    def wait_for_job(self, tenant: Tenant, job_uuid: str, timeout: float = 60) -> dict[str, Any]:
        session = tenant.session()

        def done() -> dict[str, Any] | None:
            body = session.get(
                f"{self.web_url}/v3/bulk_restore_status", params={"job_uuid": job_uuid}, timeout=10
            ).json()
            return body if body["status"] in ("completed", "cancelled") else None

        return dict(wait_until(done, timeout=timeout, interval=0.25, what=f"job {job_uuid}"))


def _database_url(tmp: Path) -> tuple[str, Callable[[], None]]:
    base = os.environ.get("DATABASE_URL", "")
    if not base.startswith(("postgres://", "postgresql://")):
        return f"sqlite:///{tmp / 'e2e.sqlite3'}", lambda: None
    import psycopg

    name = f"portal_e2e_{uuid.uuid4().hex[:10]}"
    parts = urlsplit(base)
    admin_url = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return urlunsplit(parts._replace(path=f"/{name}")), drop


@pytest.fixture(scope="module")
def make_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Stack]]:
    """Build a stack: ``make_stack(latency_ms=..., workers=[...], **env)``."""
    built: list[tuple[Stack, Callable[[], None]]] = []

    def build(
        *,
        latency_ms: int = 20,
        workers: tuple[str, ...] = ("worker-a",),
        web_workers: int = 2,
        web_threads: int = 8,
        q_workers: int = 2,
        **env: str,
    ) -> Stack:
        tmp = tmp_path_factory.mktemp("stack")
        database_url, drop = _database_url(tmp)
        web_port, multitel_port = free_port(), free_port()
        stack_env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "DJANGO_SETTINGS"))},
            "DATABASE_URL": database_url,
            "SECRET_KEY": "e2e-secret-key-for-tests-only-0123456789",
            "MULTITEL_BASE_URL": f"http://127.0.0.1:{multitel_port}",
            "MULTITEL_TIMEOUT": "2",
            "MULTITEL_BACKOFF_BASE": "0.05",
            "MULTITEL_BACKOFF_MAX": "0.2",
            "WEBHOOK_ALLOW_PRIVATE_TARGETS": "true",
            "WEBHOOK_TIMEOUT": "2",
            "WEBHOOK_RETRY_SCHEDULE": "1s,1s,2s",
            "Q_CLUSTER_NAME": f"e2e{uuid.uuid4().hex[:8]}",
            "Q_POLL": "0.05",
            "RESTORE_BATCH_SIZE": "5",
            "RESTORE_TASK_SLICE_SECONDS": "0.5",
            "PYTHONUNBUFFERED": "1",
            **env,
        }
        stack = Stack(
            tmp=tmp,
            env=stack_env,
            web_url=f"http://127.0.0.1:{web_port}",
            multitel_url=f"http://127.0.0.1:{multitel_port}",
        )
        built.append((stack, drop))
        stack.manage("migrate", "--noinput", "-v0")
        stack.start(
            "multitel",
            "manage.py",
            "fake_multitel",
            "--port",
            str(multitel_port),
            "--latency-ms",
            str(latency_ms),
            "--hang-seconds",
            "5",
        )
        stack.start(
            "web",
            "-m",
            "gunicorn",
            "portal.wsgi",
            "--bind",
            f"127.0.0.1:{web_port}",
            "--workers",
            str(web_workers),
            "--threads",
            str(web_threads),
            "--timeout",
            "60",
        )
        for worker in workers:
            stack.start_worker(worker, workers=q_workers)
        wait_until(
            lambda: stack.running("multitel") and stack.fake_stats(),
            timeout=30,
            what="the simulated Multitel",
        )
        wait_until(
            lambda: (
                stack.running("web")
                and requests.get(f"{stack.web_url}/v3/bulk_restore_status", timeout=2).status_code == 401
            ),
            timeout=30,
            what="gunicorn",
        )
        return stack

    try:
        yield build
    finally:
        for stack, drop in built:
            for name in list(stack.processes):
                stack.stop(name)
            drop()


@pytest.fixture(scope="module")
def receiver() -> Iterator[WebhookReceiver]:
    r = WebhookReceiver()
    try:
        yield r
    finally:
        r.close()
