"""CPU time of the stack's processes, from /proc, over one measured interval.

A process's CPU is ``utime + stime`` of ``/proc/<pid>/stat`` (every thread), plus
``cutime + cstime``: the CPU of its children that have exited and been waited for. Summed
over a process tree at the start and at the end of the interval, that counts every
process of the tree exactly once, including children that started or exited (and were
reaped) in between: an exited child's last figure moves into its parent's ``cutime``.

The database server is measured on its own: on PostgreSQL (when it runs on this machine)
the backends serving the stack's database, found in ``pg_stat_activity`` and sampled
while the interval lasts (a backend that exits between two samples loses at most the
CPU of one sampling period), and, as a bound that includes any other load on the
server, the postmaster's whole process tree (exited backends are in its ``cutime``).
Redis is the whole server's process tree (the pid it reports in ``INFO``).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

CLK_TCK = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces.
    return stat.rsplit(")", 1)[1].split()


def ticks(pid: int, *, children: bool = True) -> int:
    """utime + stime (+ cutime + cstime) of ``pid`` in clock ticks; 0 once it is gone."""
    fields = _stat_fields(pid)
    if fields is None:
        return 0
    # After the name: state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt
    # utime stime cutime cstime ...
    own = int(fields[11]) + int(fields[12])
    return own + (int(fields[13]) + int(fields[14]) if children else 0)


def _parents() -> dict[int, int]:
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(int(entry))
            if fields is not None:
                parents[int(entry)] = int(fields[1])
    return parents


def tree(root: int) -> list[int]:
    """``root`` and all its descendants."""
    children: dict[int, list[int]] = {}
    for pid, ppid in _parents().items():
        children.setdefault(ppid, []).append(pid)
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def parent(pid: int) -> int | None:
    fields = _stat_fields(pid)
    return int(fields[1]) if fields is not None else None


def exists(pid: int) -> bool:
    return _stat_fields(pid) is not None


@dataclass
class SetCpu:
    """CPU of a set of processes (``find()``: a process tree, or every process of a user,
    whose exited children are in their parents' ``cutime``) between ``start()`` and
    ``stop()``, and which pids came and went."""

    find: Callable[[], Iterable[int]]
    before: int = 0
    pids_before: set[int] = field(default_factory=set)
    seconds: float = 0.0
    started: set[int] = field(default_factory=set)
    exited: set[int] = field(default_factory=set)

    def start(self) -> None:
        pids = list(self.find())
        self.pids_before = set(pids)
        self.before = sum(ticks(pid) for pid in pids)

    def stop(self) -> float:
        pids = list(self.find())
        after = sum(ticks(pid) for pid in pids)
        self.started = set(pids) - self.pids_before
        self.exited = self.pids_before - set(pids)
        self.seconds = (after - self.before) / CLK_TCK
        return self.seconds


def tree_cpu(root: int) -> SetCpu:
    return SetCpu(lambda: tree(root))


@dataclass
class PidsCpu:
    """CPU of a changing set of processes (``find()``), sampled every ``interval`` seconds
    between ``start()`` and ``stop()``: for each pid, its last figure less its first (0 for
    a pid first seen after the start, which began inside the interval). Without
    ``children``, ``cutime`` is left out (the pids are not a tree)."""

    find: Callable[[], Iterable[int]]
    interval: float = 0.2
    children: bool = False
    first: dict[int, int] = field(default_factory=dict)
    last: dict[int, int] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _sample(self, *, initial: bool = False) -> None:
        for pid in self.find():
            value = ticks(pid, children=self.children)
            if pid not in self.first:
                self.first[pid] = value if initial else 0
            self.last[pid] = max(self.last.get(pid, 0), value)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            with contextlib.suppress(Exception):
                self._sample()

    def start(self) -> None:
        self._sample(initial=True)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stop(self) -> float:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        with contextlib.suppress(Exception):
            self._sample()
        return sum(self.last[pid] - self.first[pid] for pid in self.last) / CLK_TCK


class PgBackends:
    """The pids of the PostgreSQL backends connected to one database, except some (the
    benchmark's own connection), through an admin connection to another database; and the
    postmaster's pid (the parent of every backend), when the server runs here."""

    def __init__(self, admin_url: str, database: str, *, exclude: Iterable[int] = ()) -> None:
        import psycopg

        self.conn: Any = psycopg.connect(admin_url, autocommit=True)
        self.database = database
        self.exclude = set(exclude)
        self.lock = threading.Lock()
        row = self.conn.execute("SELECT pg_backend_pid()").fetchone()
        pid = int(row[0]) if row else 0
        self.postmaster = parent(pid) if pid and exists(pid) else None

    def __call__(self) -> list[int]:
        with self.lock:
            rows = self.conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s", (self.database,)
            ).fetchall()
        return [int(row[0]) for row in rows if int(row[0]) not in self.exclude]

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.conn.close()
