"""Private database and broker servers owned by a test: a PostgreSQL cluster of its own
(``initdb``) and a ``redis-server`` of its own, each on a free loopback port, that the test
may stop, start and restart at will. The machine's own PostgreSQL and Redis are never
touched.

PostgreSQL refuses to run as root: as root (CI), every PostgreSQL command runs as the
``postgres`` user (``runuser``). That user cannot reach into pytest's temporary
directories (0700, and pytest puts its root back to 0700 whenever a session starts), so
the cluster lives in a directory of its own in the system's temporary directory, handed
to that user and removed by ``destroy()``, which copies the server's log into the test's
directory first. The cluster trusts every local connection, listens on 127.0.0.1 only and
has no Unix socket. Redis saves nothing (``--save "" --appendonly no``), so a restart
loses every key, as a Redis that crashed without persistence does.

Nothing here imports pytest or Django. Both servers log to ``<the test's dir>/server.log``
(PostgreSQL once destroyed, to its own directory until then); ``servers_missing()`` says
what a machine lacks to run them.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.harness import free_port, wait_until

POSTGRES_BIN = Path(os.environ.get("PORTAL_TEST_POSTGRES_BIN", "/usr/lib/postgresql/15/bin"))
# The user that owns and runs the private cluster when the tests run as root.
POSTGRES_OS_USER = "postgres"


def servers_missing() -> list[str]:
    """What this machine lacks to run the private servers (empty: nothing)."""
    missing = [str(POSTGRES_BIN / p) for p in ("initdb", "pg_ctl") if not (POSTGRES_BIN / p).exists()]
    if shutil.which("redis-server") is None:
        missing.append("redis-server")
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(POSTGRES_OS_USER)
        except KeyError:
            missing.append(f"the {POSTGRES_OS_USER!r} user (PostgreSQL refuses to run as root)")
    return missing


@dataclass(kw_only=True)
class PrivatePostgres:
    """A PostgreSQL cluster of the test's own: ``PrivatePostgres.create(dir)``, then
    ``start()``, ``stop()``, ``restart()``; ``destroy()`` stops it, removes its files and
    leaves its log in ``directory``."""

    directory: Path  # the test's: the server's log ends up here
    home: Path  # the cluster's own: its data directory and its log while it lives
    port: int
    os_user: str | None  # who runs it (None: this process's user)

    @classmethod
    def create(
        cls, directory: Path, *, listen: tuple[str, ...] = ("127.0.0.1",), trusted: tuple[str, ...] = ()
    ) -> PrivatePostgres:
        """``initdb`` a cluster (trust authentication, user ``postgres``) in a new directory
        of its own, listening on the addresses ``listen`` and trusting connections from the
        networks ``trusted`` too (besides 127.0.0.1)."""
        directory.mkdir(parents=True, exist_ok=True)
        os_user = POSTGRES_OS_USER if os.geteuid() == 0 else None
        home = Path(tempfile.mkdtemp(prefix="portal-test-postgres-"))  # 0700
        if os_user is not None:
            shutil.chown(home, user=os_user, group=pwd.getpwnam(os_user).pw_gid)
        server = cls(directory=directory, home=home, port=free_port(), os_user=os_user)
        server._run(
            "initdb",
            "--pgdata",
            str(server.data),
            "--username",
            "postgres",
            "--auth",
            "trust",
            "--encoding",
            "UTF8",
            "--no-sync",
        )
        with (server.data / "postgresql.conf").open("a") as conf:
            conf.write(
                f"\nlisten_addresses = '{','.join(listen)}'\nport = {server.port}\n"
                "unix_socket_directories = ''\nmax_connections = 200\n"
                # Nothing is flushed to disk (the machine does not crash, only the server), but
                # every commit is written before it is acknowledged: a crash of the server
                # (``stop("immediate")``) loses no committed transaction.
                "fsync = off\nfull_page_writes = off\n"
            )
        with (server.data / "pg_hba.conf").open("a") as hba:
            hba.writelines(f"host all all {network} trust\n" for network in trusted)
        return server

    @property
    def data(self) -> Path:
        return self.home / "data"

    @property
    def log_path(self) -> Path:
        return self.home / "server.log"

    def url(self, database: str = "postgres", *, host: str = "127.0.0.1") -> str:
        return f"postgres://postgres@{host}:{self.port}/{database}"

    def _run(self, program: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        command = [str(POSTGRES_BIN / program), *args]
        if self.os_user is not None:
            command = ["runuser", "-u", self.os_user, "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd="/")
        if result.returncode != 0:
            raise RuntimeError(f"{program} {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result

    def _pg_ctl(self, action: str, *args: str) -> None:
        self._run("pg_ctl", action, "--pgdata", str(self.data), "--silent", *args)

    def start(self) -> None:
        """Start the server and return once it accepts connections."""
        self._pg_ctl("start", "--wait", "--log", str(self.log_path))
        wait_until(self.accepting, timeout=30, interval=0.1, what="the private PostgreSQL")

    def stop(self, mode: str = "fast") -> None:
        """Stop the server: ``fast`` (sessions ended, a clean shut-down) or ``immediate`` (as
        a crash: no shut-down checkpoint, recovery at the next start)."""
        assert mode in ("smart", "fast", "immediate")
        self._pg_ctl("stop", "--wait", "--mode", mode)

    def restart(self, mode: str = "fast") -> None:
        self.stop(mode)
        self.start()

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def accepting(self) -> bool:
        import psycopg

        try:
            with psycopg.connect(self.url(), connect_timeout=2):
                return True
        except psycopg.OperationalError:
            return False

    def destroy(self) -> None:
        """Stop the server if it runs, keep its log in ``directory``, and remove its files."""
        if self.running():
            with contextlib.suppress(Exception):
                self.stop("immediate")
        with contextlib.suppress(OSError):
            shutil.copyfile(self.log_path, self.directory / "server.log")
        shutil.rmtree(self.home, ignore_errors=True)


@dataclass(kw_only=True)
class PrivateRedis:
    """A ``redis-server`` of the test's own that keeps nothing on disk: ``start()``,
    ``stop()``, ``restart()`` (every key lost); ``destroy()`` stops it."""

    directory: Path
    port: int = field(default_factory=free_port)
    bind: tuple[str, ...] = ("127.0.0.1",)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def url_on(self, host: str) -> str:
        return f"redis://{host}:{self.port}/0"

    @property
    def log_path(self) -> Path:
        return self.directory / "server.log"

    def start(self) -> None:
        """Start the server and return once it answers PING."""
        assert self.process is None, "already running"
        self.directory.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [
                shutil.which("redis-server") or "redis-server",
                "--bind",
                *self.bind,
                "--port",
                str(self.port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
                "--protected-mode",
                # Off only when it listens beyond loopback: on the addresses of a test's own
                # networks (see ``tests/support/netns.py``), which nothing else reaches.
                "yes" if self.bind == ("127.0.0.1",) else "no",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        wait_until(self.accepting, timeout=30, interval=0.05, what="the private Redis")

    def stop(self, sig: int = signal.SIGKILL) -> None:
        """Stop the server (killed by default: nothing is saved either way)."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(sig)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)

    def restart(self) -> None:
        self.stop()
        self.start()

    def accepting(self) -> bool:
        import redis

        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"redis-server exited:\n{self.log_path.read_text(errors='replace')[-2000:]}")
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=1, socket_timeout=1)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    def destroy(self) -> None:
        self.stop()
