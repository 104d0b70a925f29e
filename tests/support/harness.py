"""The real stack on loopback, as processes: gunicorn, qcluster processes and the simulated
Multitel, sharing a database of their own (an SQLite file, or a fresh PostgreSQL database),
with Redis as the broker when ``REDIS_URL`` is set; and a webhook receiver for them to call.

Every process runs in its own session, logs to a file in the stack's temporary directory,
and is stopped by process group. ``Processes`` and ``ServedStack`` are shared with the
benchmarks (``bench/stack.py``); ``Stack`` and ``start_stack`` are the end-to-end tests' stack.
Nothing here imports pytest or Django: the benchmarks run it outside both.
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
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests

from tests.support.webhooks import ReceivedHook

REPO = Path(__file__).resolve().parents[2]
PYTHON = sys.executable


# --- Ports and waiting ------------------------------------------------------------------------


def free_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def closed_loopback_port() -> int:
    """A loopback port nothing listens on: a connection to it is refused."""
    return free_port()


class GiveUp(AssertionError):
    """Raised by a ``wait_until`` check when waiting longer cannot help (a process died)."""


class TimedOut(AssertionError, TimeoutError):
    """``wait_until`` waited in vain: a failed assertion to pytest, a ``TimeoutError`` to others."""


# The settings of the engine's slices, leases and fan-out: what the fairness tests run with
# at their defaults.
ENGINE_SETTINGS = (
    "RESTORE_LEASE_SECONDS",
    "RESTORE_TASK_SLICE_SECONDS",
    "RESTORE_BATCH_SIZE",
    "RESTORE_JOB_FANOUT",
    "RESTORE_STALE_SECONDS",
)


def settings_env(*names: str) -> dict[str, str]:
    """The settings ``names`` at their values here (the defaults, in tests), as environment for
    a stack: a test of a guarantee runs its processes with the defaults it is about, whatever
    the test settings shorten."""
    from django.conf import settings

    return {name: str(getattr(settings, name)) for name in names}


def wait_until(check: Callable[[], Any], *, timeout: float, interval: float = 0.1, what: str = "") -> Any:
    """Call ``check`` until it returns something true, and return that; errors count as not yet,
    except ``GiveUp``. Raises ``TimedOut`` after ``timeout`` seconds."""
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
    raise TimedOut(f"timed out after {timeout}s waiting for {what or check}: {last_error!r}")


# --- Database and broker ----------------------------------------------------------------------


def inherited_env() -> dict[str, str]:
    """This process's environment, without what would make a child think it runs under pytest."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "DJANGO_SETTINGS"))}


def new_database(tmp: Path, *, label: str, server_url: str | None) -> tuple[str, Callable[[], None]]:
    """A database of the stack's own, and how to drop it.

    Without ``server_url``, the SQLite file ``<tmp>/<label>.sqlite3``; with it (a PostgreSQL URL
    to connect to for ``CREATE DATABASE``), a new database ``portal_<label>_<random>`` there.
    """
    if server_url is None:
        return f"sqlite:///{tmp / f'{label}.sqlite3'}", lambda: None
    import psycopg

    name = f"portal_{label}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return urlunsplit(urlsplit(server_url)._replace(path=f"/{name}")), drop


def database_rows(database_url: str, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Rows of ``query`` (``%s`` placeholders) on the database ``database_url`` (an SQLite
    file or PostgreSQL), in a connection of its own."""
    if database_url.startswith("sqlite:///"):
        import sqlite3

        with contextlib.closing(sqlite3.connect(database_url[len("sqlite:///") :], timeout=30)) as conn:
            return list(conn.execute(query.replace("%s", "?"), params).fetchall())
    import psycopg

    with psycopg.connect(database_url, connect_timeout=5) as conn:
        return list(conn.execute(query, params).fetchall())


def forget_cluster_keys(url: str, cluster: str) -> None:
    """Remove the queue keys of the cluster ``cluster`` from Redis (nothing else in its database)."""
    with contextlib.suppress(Exception):
        import redis

        client = redis.Redis.from_url(url)
        keys = list(client.scan_iter(match=f"*{cluster}*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()


# --- Processes --------------------------------------------------------------------------------


@dataclass(kw_only=True)
class Processes:
    """Named child processes, each in a session of its own, logging to ``<tmp>/<name>.log``."""

    tmp: Path
    env: dict[str, str]
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(
        self,
        name: str,
        *args: str,
        extra_env: dict[str, str] | None = None,
        prefix: list[str] | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start ``python *args`` in the repository, as process ``name``; ``prefix`` goes
        before it (``ip netns exec <namespace>``, to run it on another host)."""
        log = open(self.tmp / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(
            [*(prefix or []), PYTHON, *args],
            cwd=REPO,
            env={**self.env, **(extra_env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.processes[name] = proc
        return proc

    def stop(
        self, name: str, sig: int = signal.SIGKILL, timeout: float = 10, *, then_kill_group: bool = False
    ) -> None:
        """Send ``sig`` to the process group of ``name`` and wait; SIGKILL if that is not enough.

        With ``then_kill_group``, whatever the group still holds afterwards (children the
        process left behind) is killed too.
        """
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
        if then_kill_group:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)

    def stop_all(self) -> None:
        for name in list(self.processes):
            self.stop(name)

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

    def run_manage(
        self, *args: str, extra_env: dict[str, str] | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """Run ``manage.py *args`` in the stack's environment, to the end; output captured."""
        return subprocess.run(
            [PYTHON, "manage.py", *args],
            cwd=REPO,
            env={**self.env, **(extra_env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
        )


@dataclass(kw_only=True)
class ServedStack(Processes):
    """The portal's processes on loopback ports: gunicorn and the simulated Multitel (qcluster
    processes are started by the subclasses, which wait for them in their own ways)."""

    web_url: str
    multitel_url: str
    database_url: str
    drop: Callable[[], None]

    def start_web(self, port: int, *, workers: int, threads: int, timeout: int) -> subprocess.Popen[bytes]:
        """Start gunicorn as process ``web``."""
        return self.start(
            "web",
            "-m",
            "gunicorn",
            "portal.wsgi",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(workers),
            "--threads",
            str(threads),
            "--timeout",
            str(timeout),
        )

    def start_fake_multitel(self, port: int, *, latency_ms: float) -> subprocess.Popen[bytes]:
        """Start the simulated Multitel as process ``multitel``."""
        return self.start(
            "multitel",
            "manage.py",
            "fake_multitel",
            "--port",
            str(port),
            "--latency-ms",
            str(latency_ms),
            "--hang-seconds",
            "5",
        )

    def sql(self, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Rows of ``query`` read straight from the stack's database (see ``database_rows``):
        no process of the stack is asked, so it can be timed to the moment."""
        return database_rows(self.database_url, query, params)

    def fake_stats(self, *, timeout: float = 5) -> dict[str, Any]:
        """The simulated Multitel's counters (``/_fake/stats``)."""
        return dict(requests.get(f"{self.multitel_url}/_fake/stats", timeout=timeout).json())


# --- The end-to-end tests' stack ----------------------------------------------------------------


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


@dataclass(kw_only=True)
class Stack(ServedStack):
    """One end-to-end stack: ``start_stack(...)``, then ``close()``."""

    tenants: dict[str, Tenant] = field(default_factory=dict)

    def close(self) -> None:
        self.stop_all()
        self.drop()

    def manage(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = self.run_manage(*args, timeout=120)
        if check and result.returncode != 0:
            raise AssertionError(f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result

    def query(self, code: str) -> Any:
        """Run Python in a Django shell of the stack; ``code`` prints one JSON value."""
        return json.loads(self.manage("shell", "-c", code).stdout.strip().splitlines()[-1])

    def start_worker(self, name: str, workers: int | None = 2, *, queue: str = "restores") -> None:
        """A qcluster process serving ``queue`` ("restores" or "webhooks"), of ``workers``
        workers (None: the settings' default for that queue)."""
        count_setting = "Q_WORKERS" if queue == "restores" else "Q_WEBHOOK_WORKERS"
        count = {} if workers is None else {count_setting: str(workers)}
        self.start(name, "manage.py", "qcluster", extra_env={"WORKER_NAME": name, "Q_QUEUE": queue, **count})
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
            f"{name}-api-secret-for-e2e-tests",  # 24+ characters, as create_tenant requires
            "--upstream-username",
            f"mt-{name}",
            "--upstream-password",
            f"mt-{name}-pw",
            "--max-concurrency",
            str(max_concurrency),
        ).stdout
        secret = next(line.split(": ", 1)[1] for line in out.splitlines() if "signing secret" in line)
        tenant = Tenant(name, f"{name}-api", f"{name}-api-secret-for-e2e-tests", secret.strip())
        self.tenants[name] = tenant
        return tenant

    def wait_for_job(self, tenant: Tenant, job_uuid: str, timeout: float = 60) -> dict[str, Any]:
        session = tenant.session()

        def done() -> dict[str, Any] | None:
            body = session.get(
                f"{self.web_url}/v3/bulk_restore_status", params={"job_uuid": job_uuid}, timeout=10
            ).json()
            return body if body["status"] in ("completed", "cancelled") else None

        return dict(wait_until(done, timeout=timeout, interval=0.25, what=f"job {job_uuid}"))


def _e2e_database(tmp: Path, *, server_url: str | None = None) -> tuple[str, Callable[[], None]]:
    """A fresh PostgreSQL database on ``server_url`` if given, else on the server of
    ``DATABASE_URL`` if it is PostgreSQL, else an SQLite file."""
    if server_url is not None:
        return new_database(tmp, label="e2e", server_url=server_url)
    base = os.environ.get("DATABASE_URL", "")
    if not base.startswith(("postgres://", "postgresql://")):
        return new_database(tmp, label="e2e", server_url=None)
    server_url = urlunsplit(urlsplit(base)._replace(path="/postgres"))
    return new_database(tmp, label="e2e", server_url=server_url)


def start_stack(
    tmp: Path,
    *,
    latency_ms: int = 20,
    workers: tuple[str, ...] = ("worker-a",),
    web_workers: int = 2,
    web_threads: int = 8,
    q_workers: int = 2,
    webhook_workers: int | None = 2,
    database_server: str | None = None,
    **env: str,
) -> Stack:
    """Migrate, start the simulated Multitel, gunicorn, one qcluster process per name in
    ``workers`` and one for the webhook queue (unless ``webhook_workers`` is 0; None: its
    default number of workers), and wait
    until they answer. ``env`` overrides the stack's settings. ``database_server`` (a
    PostgreSQL URL to connect to for ``CREATE DATABASE``) puts the stack's database on that
    server instead of the suite's (see ``_e2e_database``). On failure
    whatever was started is stopped again."""
    database_url, drop = _e2e_database(tmp, server_url=database_server)
    web_port, multitel_port = free_port(), free_port()
    stack_env = {
        **inherited_env(),
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
        database_url=database_url,
        drop=drop,
    )
    try:
        stack.manage("migrate", "--noinput", "-v0")
        stack.start_fake_multitel(multitel_port, latency_ms=latency_ms)
        stack.start_web(web_port, workers=web_workers, threads=web_threads, timeout=60)
        for worker in workers:
            stack.start_worker(worker, workers=q_workers)
        if webhook_workers != 0:
            stack.start_worker("webhooks", workers=webhook_workers, queue="webhooks")
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
    except BaseException:
        stack.close()
        raise
    return stack


# --- Webhook receiver for the stack -------------------------------------------------------------


class WebhookReceiver:
    """A real HTTP server that records every POST and answers with a set status, per path."""

    def __init__(self, host: str = "127.0.0.1") -> None:
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

        self.host = host
        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://{self.host}:{self.server.server_address[1]}{path}"

    def hooks_for(self, path: str) -> list[ReceivedHook]:
        with self.lock:
            return [h for h in self.received if h.path == path]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
