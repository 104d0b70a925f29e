"""``manage.py qcluster`` with every database statement and commit of its processes noted.

For the diagnosis of ``bench/spy.py --sql``: each process of the cluster appends one line
per statement to ``<dir>/sql-<pid>.tsv``: wall-clock start, duration in seconds, thread,
and the statement's first words (``COMMIT`` for a commit). Django's own debug cursor does
the timing of statements (forced on for every connection, whatever ``DEBUG`` says);
commits are timed around the connection's commit. It slows the processes a little;
counts are exact, times are the client's view (round trip included).

Usage: python bench/sqltrace.py DIR [qcluster options]
"""

from __future__ import annotations

import collections
import os
import re
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

WORDS = re.compile(r"\s+")


def statement_kind(sql: str) -> str:
    """A statement's kind: its first words with quotes dropped, cut before the values."""
    text = WORDS.sub(" ", sql.replace('"', "")).strip()
    for stop in (" WHERE ", " VALUES ", " SET ", " FROM ( SELECT 1"):
        if stop in text:
            text = text.split(stop, 1)[0] + stop.rstrip()
    return text[:110]


class _Writer:
    """One file per process (workers fork: the pid is checked on every write)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.pid: int | None = None
        self.file: Any = None
        self.lock = threading.Lock()

    def write(self, started: float, duration: float, kind: str) -> None:
        with self.lock:
            if self.pid != os.getpid():
                self.pid = os.getpid()
                self.file = open(self.directory / f"sql-{self.pid}.tsv", "a", buffering=1)  # noqa: SIM115
            self.file.write(f"{started:.6f}\t{duration:.6f}\t{threading.get_ident()}\t{kind}\n")


def install(directory: Path) -> None:
    from django.db.backends.base.base import BaseDatabaseWrapper
    from django.db.backends.signals import connection_created
    from django.db.backends.utils import CursorDebugWrapper

    writer = _Writer(directory)

    def force_debug(sender: Any, connection: Any, **kwargs: Any) -> None:
        connection.force_debug_cursor = True

    connection_created.connect(force_debug, weak=False)

    original_debug_sql = CursorDebugWrapper.debug_sql

    def debug_sql(
        self: Any,
        sql: Any = None,
        params: Any = None,
        use_last_executed_query: bool = False,
        many: bool = False,
    ) -> Any:
        manager = original_debug_sql(self, sql, params, use_last_executed_query, many)

        class Timed:
            def __enter__(self_inner) -> None:
                self_inner.started = time.time()
                manager.__enter__()

            def __exit__(self_inner, *exc: Any) -> Any:
                result = manager.__exit__(*exc)
                writer.write(self_inner.started, time.time() - self_inner.started, statement_kind(str(sql)))
                return result

        return Timed()

    CursorDebugWrapper.debug_sql = debug_sql  # type: ignore[method-assign]

    original_commit = getattr(BaseDatabaseWrapper, "_commit")  # noqa: B009 - not in the stubs

    def commit(self: Any) -> Any:
        started = time.time()
        try:
            return original_commit(self)
        finally:
            writer.write(started, time.time() - started, "COMMIT")

    setattr(BaseDatabaseWrapper, "_commit", commit)  # noqa: B010


def summarise(directory: Path, *, numbers: int, since: float, until: float, top: int = 25) -> str:
    """Statements per number and the client's time in them, by kind, between two moments."""
    count: collections.Counter[str] = collections.Counter()
    seconds: collections.defaultdict[str, float] = collections.defaultdict(float)
    for path in directory.glob("sql-*.tsv"):
        for line in path.read_text(errors="replace").splitlines():
            parts = line.split("\t", 3)
            if len(parts) != 4:
                continue
            started, duration = float(parts[0]), float(parts[1])
            if since <= started <= until:
                count[parts[3]] += 1
                seconds[parts[3]] += duration
    total_count, total_seconds = sum(count.values()), sum(seconds.values())
    lines = [
        f"{total_count} statements and commits, {total_count / numbers:.2f} per number; "
        f"{total_seconds:.2f} s in them (client's view), {total_seconds * 1000 / numbers:.2f} ms per number",
        f"{'count':>8} {'/number':>8} {'mean ms':>8} {'total s':>8}  statement",
    ]
    for kind, n in sorted(count.items(), key=lambda kv: -seconds[kv[0]])[:top]:
        lines.append(
            f"{n:>8} {n / numbers:>8.3f} {seconds[kind] * 1000 / n:>8.2f} {seconds[kind]:>8.2f}  {kind}"
        )
    return "\n".join(lines)


def main() -> None:
    directory = Path(sys.argv[1])
    directory.mkdir(parents=True, exist_ok=True)
    import django

    django.setup()
    install(directory)
    from django.core.management import call_command

    call_command("qcluster", *sys.argv[2:])


if __name__ == "__main__":
    main()
