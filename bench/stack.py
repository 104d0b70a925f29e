"""The real stack on loopback for the benchmarks: gunicorn, qcluster processes and the
simulated Multitel, with a database of their own (a fresh PostgreSQL database, or an
SQLite file) and Redis as the broker when asked for.

Processes, their database and the broker come from the harness the end-to-end tests use
(``tests/support/harness.py``), which needs no pytest: every process runs in its own
session, logs to a file in a temporary directory, and is stopped by process group. What is
here is the benchmarks' own: the stack's settings, raw reads of its database, tenants and
jobs as the measurements use them, and the memory of process trees.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests

from tests.support.harness import (
    ServedStack,
    forget_cluster_keys,
    free_port,
    inherited_env,
    new_database,
    wait_until,
)

PG_ADMIN_URL = os.environ.get("BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres")
REDIS_BASE_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/3")

# Settings the benchmarks set themselves where a section needs them, and otherwise leave at
# the settings' defaults: never taken from the environment the benchmark was started in.
TUNING_SETTINGS = (
    "Q_WORKERS",
    "Q_POLL",
    "Q_WEBHOOK_WORKERS",
    "Q_QUEUE",
    "RESTORE_BATCH_SIZE",
    "RESTORE_JOB_FANOUT",
    "RESTORE_TASK_SLICE_SECONDS",
    "RESTORE_LEASE_SECONDS",
    "CONN_MAX_AGE",
)


def numbers(count: int, *, offset: int = 0) -> list[str]:
    """``count`` distinct 12-digit numbers that the simulated Multitel restores at the first call.

    Every one ends in 8, a digit none of its failure rules uses.
    """
    return [f"1555{offset + i:07d}8" for i in range(count)]


@dataclass
class Tenant:
    name: str
    api_username: str
    api_password: str
    multitel_username: str
    multitel_password: str
    max_concurrency: int

    def session(self) -> requests.Session:
        s = requests.Session()
        s.auth = (self.api_username, self.api_password)
        return s


JOB_QUERY = (
    "SELECT status, created_at, started_at, completed_at, webhook_state, success_count,"
    " failure_count, total_numbers FROM restores_job WHERE uuid = %s"
)


class Database:
    """Raw reads of the stack's database, without Django (the bench process stays light)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        self._conn: Any = None

    def conn(self) -> Any:
        if self._conn is None:
            if self.is_sqlite:
                self._conn = sqlite3.connect(urlsplit(self.url).path[1:] or ":memory:", timeout=30)
                self._conn.isolation_level = None
            else:
                import psycopg

                self._conn = psycopg.connect(self.url, autocommit=True)
        return self._conn

    def _dt(self, value: Any) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, datetime):
            return value if value.tzinfo else value.replace(tzinfo=UTC)
        parsed = datetime.fromisoformat(str(value))
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)

    def job(self, job_uuid: str) -> dict[str, Any]:
        key = uuid.UUID(job_uuid).hex if self.is_sqlite else job_uuid
        query = JOB_QUERY.replace("%s", "?") if self.is_sqlite else JOB_QUERY
        row = self.conn().execute(query, (key,)).fetchone()
        if row is None:
            raise LookupError(job_uuid)
        status, created, started, completed, webhook_state, ok, failed, total = row
        return {
            "status": status,
            "created_at": self._dt(created),
            "started_at": self._dt(started),
            "completed_at": self._dt(completed),
            "webhook_state": webhook_state,
            "success_count": ok,
            "failure_count": failed,
            "total_numbers": total,
        }

    def backend_pid(self) -> int | None:
        """The PostgreSQL backend serving this connection (None on SQLite)."""
        if self.is_sqlite:
            return None
        row = self.conn().execute("SELECT pg_backend_pid()").fetchone()
        return int(row[0])

    @property
    def name(self) -> str:
        return urlsplit(self.url).path.lstrip("/")

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None


@dataclass(kw_only=True)
class Stack(ServedStack):
    """One stack: ``Stack.build(...)``, then ``close()`` (or use it as a context manager)."""

    tenants: dict[str, Tenant] = field(default_factory=dict)
    traced: bool = False
    db: Database = field(init=False)

    def __post_init__(self) -> None:
        self.db = Database(self.database_url)

    @classmethod
    def build(
        cls,
        *,
        db: str = "postgres",
        redis: bool = True,
        latency_ms: float = 50,
        web_workers: int = 2,
        web_threads: int = 8,
        traced: bool = False,
        **env: str,
    ) -> Stack:
        """Migrate, start the simulated Multitel (``traced``: the one of
        ``bench/traced_multitel.py``, which notes when each call began and ended) and
        gunicorn; ``env`` overrides the settings (the rest are the settings' defaults)."""
        tmp = Path(tempfile.mkdtemp(prefix="portal-bench-"))
        database_url, drop = _database_url(db, tmp)
        web_port, multitel_port = free_port(), free_port()
        cluster = f"bench{uuid.uuid4().hex[:8]}"
        inherited = {k: v for k, v in inherited_env().items() if k not in TUNING_SETTINGS}
        stack_env = {
            **inherited,
            "DATABASE_URL": database_url,
            "SECRET_KEY": "bench-secret-key-for-local-measurements-0123456789",
            "MULTITEL_BASE_URL": f"http://127.0.0.1:{multitel_port}",
            "WEBHOOK_ALLOW_PRIVATE_TARGETS": "true",
            "Q_CLUSTER_NAME": cluster,
            # The limits under test are the tenant's caps, not the per-tenant request rate.
            "API_THROTTLE_RATE": "1000000/min",
            "LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
            **env,
        }
        if redis:
            stack_env["REDIS_URL"] = REDIS_BASE_URL
        else:
            stack_env.pop("REDIS_URL", None)
        stack = cls(
            tmp=tmp,
            env=stack_env,
            web_url=f"http://127.0.0.1:{web_port}",
            multitel_url=f"http://127.0.0.1:{multitel_port}",
            database_url=database_url,
            drop=drop,
            traced=traced,
        )
        try:
            stack.manage("migrate", "--noinput", "-v0")
            stack.start_multitel(latency_ms, port=multitel_port)
            stack.start_web(web_port, workers=web_workers, threads=web_threads, timeout=120)
            wait_until(
                lambda: requests.get(f"{stack.web_url}/v3/bulk_restore_status", timeout=2).status_code == 401,
                timeout=60,
                what="gunicorn",
            )
        except BaseException:
            stack.close()
            raise
        return stack

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is not None:
            self.keep_logs()
        self.close()

    def keep_logs(self) -> Path:
        """Copy the processes' logs out of the stack's directory (which ``close`` removes)."""
        kept = Path(tempfile.mkdtemp(prefix="portal-bench-logs-"))
        for log in self.tmp.glob("*.log"):
            shutil.copy2(log, kept / log.name)
        alive = {name: proc.poll() for name, proc in self.processes.items()}
        (kept / "processes.txt").write_text(
            "\n".join(
                f"{name}: {'running' if code is None else f'exited {code}'}" for name, code in alive.items()
            )
        )
        print(f"logs of the failed stack kept in {kept}", flush=True)
        return kept

    def close(self) -> None:
        for name in list(self.processes):
            self.stop(name)
        self.db.close()
        with contextlib.suppress(Exception):
            self.drop()
        if "REDIS_URL" in self.env:
            forget_cluster_keys(self.env["REDIS_URL"], self.env["Q_CLUSTER_NAME"])
        shutil.rmtree(self.tmp, ignore_errors=True)

    # processes
    def stop(
        self, name: str, sig: int = signal.SIGTERM, timeout: float = 15, *, then_kill_group: bool = True
    ) -> None:
        """``sig`` to the process itself, and a wait for it to exit (SIGKILL to its group after
        ``timeout``); then whatever the process group left behind (qcluster's children) is killed.

        The signal goes to the group's leader only: qcluster (like gunicorn's master) stops its
        children itself, in order. Sent to the whole group, as the harness does, it reaches the
        sentinel, the workers, the monitor and the pusher at once, and the cluster never gets
        to "has stopped": every stop would wait out the timeout and end in SIGKILL.
        """
        proc = self.processes.pop(name, None)
        if proc is None:
            return
        if proc.poll() is None:
            try:
                os.kill(proc.pid, sig)
                proc.wait(timeout=timeout)
            except ProcessLookupError:
                pass
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
        # Even when the leader had already exited: children it left behind.
        if then_kill_group:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)

    def manage(self, *args: str, extra_env: dict[str, str] | None = None) -> str:
        result = self.run_manage(*args, extra_env=extra_env, timeout=600)
        if result.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result.stdout

    def start_multitel(self, latency_ms: float, *, port: int | None = None) -> None:
        """(Re)start the simulated Multitel with a fixed latency."""
        self.stop("multitel")
        port = port or int(urlsplit(self.multitel_url).port or 0)
        if self.traced:
            self.start(
                "multitel",
                "bench/traced_multitel.py",
                "--port",
                str(port),
                "--latency-ms",
                str(latency_ms),
                "--hang-seconds",
                "5",
            )
        else:
            self.start_fake_multitel(port, latency_ms=latency_ms)
        wait_until(self.fake_stats, timeout=30, what="the simulated Multitel")

    def start_worker(
        self,
        name: str,
        *,
        workers: int | None,
        extra_env: dict[str, str] | None = None,
        command: tuple[str, ...] = ("manage.py", "qcluster"),
    ) -> int:
        """Start a qcluster process of ``workers`` workers (None: the settings' default);
        returns its pid (the root of its process tree). ``command``: how qcluster is run."""
        count = {} if workers is None else {"Q_WORKERS": str(workers)}
        proc = self.start(
            name,
            *command,
            extra_env={"WORKER_NAME": name, "LOG_LEVEL": "INFO", **count, **(extra_env or {})},
        )
        try:
            wait_until(
                lambda: self.running(name) and "running" in self.log(name).lower(),
                timeout=60,
                what=f"{name} to start",
            )
        except AssertionError as exc:  # exited, or timed out: say what its log says
            raise RuntimeError(f"{exc}\n--- log of {name}:\n{self.log(name)[-3000:]}") from exc
        return proc.pid

    # tenants and upstream
    def create_tenant(self, name: str, *, max_concurrency: int) -> Tenant:
        tenant = Tenant(
            name=name,
            api_username=f"{name}-api",
            api_password=f"{name}-api-secret-of-the-bench",  # 24+ characters: create_tenant refuses shorter
            multitel_username=f"mt-{name}",
            multitel_password=f"mt-{name}-pw",
            max_concurrency=max_concurrency,
        )
        self.manage(
            "create_tenant",
            name,
            "--api-username",
            tenant.api_username,
            "--api-password",
            tenant.api_password,
            "--upstream-username",
            tenant.multitel_username,
            "--upstream-password",
            tenant.multitel_password,
            "--max-concurrency",
            str(max_concurrency),
        )
        self.tenants[name] = tenant
        # The simulated Multitel reloads credentials from the database every 2 seconds.
        time.sleep(2.5)
        return tenant

    def fake_stats(self, *, timeout: float = 30) -> dict[str, Any]:
        return super().fake_stats(timeout=timeout)

    def fake_calls_total(self) -> int:
        return int(self.fake_stats()["calls_total"])

    def fake_reset(self) -> None:
        requests.post(f"{self.multitel_url}/_fake/reset", timeout=30).raise_for_status()

    def fake_trace(self) -> list[tuple[float, float, int]]:
        """(start, end, client port) of every upstream call since the last reset, in wall-clock
        seconds; only with ``traced``."""
        response = requests.get(f"{self.multitel_url}/_trace", timeout=60)
        response.raise_for_status()
        return [(float(a), float(b), int(c)) for a, b, c in response.json()["calls"]]

    def settings_in_force(
        self, names: tuple[str, ...], extra_env: dict[str, str] | None = None
    ) -> dict[str, Any]:
        """The values of some settings as the stack's processes see them (``Q_WORKERS`` is
        ``Q_CLUSTER["workers"]``, ``Q_POLL`` ``Q_CLUSTER["poll"]``)."""
        code = (
            "import json; from django.conf import settings as s; "
            "q = s.Q_CLUSTER; v = {'Q_WORKERS': q.get('workers'), 'Q_POLL': q.get('poll')}; "
            f"v.update({{n: getattr(s, n, None) for n in {list(names)!r} if n not in v}}); "
            "print(json.dumps(v, default=str))"
        )
        out = self.manage("shell", "-c", code, extra_env=extra_env)
        values: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        return {name: values.get(name) for name in names}

    # jobs
    def submit(self, tenant: Tenant, nums: list[str], **extra: Any) -> tuple[float, requests.Response]:
        """POST a job; returns the wall-clock time the request was sent, and the answer."""
        body = json.dumps({"numbers": nums, **extra})
        with tenant.session() as session:
            sent = time.time()
            response = session.post(
                f"{self.web_url}/v3/bulk_restore",
                data=body,
                headers={"Content-Type": "application/json"},
                timeout=120,
            )
        response.raise_for_status()
        return sent, response

    def wait_job(
        self, job_uuid: str, *, timeout: float, webhook: bool = False, interval: float = 0.01
    ) -> dict[str, Any]:
        def done() -> dict[str, Any] | None:
            job = self.db.job(job_uuid)
            if job["status"] not in ("completed", "cancelled"):
                return None
            if webhook and job["webhook_state"] in ("pending", "failing"):
                return None
            return job

        return dict(wait_until(done, timeout=timeout, interval=interval, what=f"job {job_uuid}"))


def _database_url(kind: str, tmp: Path) -> tuple[str, Callable[[], None]]:
    if kind == "sqlite":
        return new_database(tmp, label="bench", server_url=None)
    if kind != "postgres":
        raise ValueError(f"unknown database {kind!r}")
    return new_database(tmp, label="bench", server_url=PG_ADMIN_URL)


# --- Process trees and memory ------------------------------------------------------------


def process_tree(root: int) -> list[int]:
    """``root`` and all its descendants (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def memory_kib(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a process in KiB; (0, 0) once it is gone."""
    rss = hwm = 0
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
                elif line.startswith("VmHWM:"):
                    hwm = int(line.split()[1])
    except OSError:
        pass
    return rss, hwm
