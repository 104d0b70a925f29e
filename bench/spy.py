"""Where a qcluster spends its time on one queued job: py-spy on every process of its tree.

Builds the stack of section 2 of ``bench/run.py`` (one qcluster with the default worker
settings, tenant cap C, the simulated Multitel at latency L), runs a warm-up job, then
records the qcluster's process tree with py-spy while one job of N numbers is worked, and
prints the functions that take the most samples: by their own time (the innermost frame)
and inclusive of what they call, for the whole tree and for the portal's own code.

With ``--sql``, no py-spy: the qcluster runs under ``bench/sqltrace.py`` instead, and the
statements and commits of its processes during the job are counted per number, with the
time the workers spent in them.

Without ``--idle`` only samples of threads py-spy finds active are kept; with ``--gil``
only those of threads holding the GIL (the closest to a CPU profile of the Python code:
C code that releases the GIL, like SQLite's queries, is left out); with ``--idle``,
waiting threads too (a wall-clock profile: where the task's thread waits). ``--native``
adds C frames (the database drivers, the interpreter). py-spy is not part of the pinned
requirements: ``.venv/bin/pip install py-spy``. Needs permission to trace the processes
(root, or ptrace allowed).

Usage: python bench/spy.py [--db postgres|sqlite] [-n 10000] [--latency-ms 50]
       [--cap 10] [--rate 100] [--idle] [--native] [--sql] [--top 25] [--raw FILE]
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import sqltrace
from bench.run import build, run_job
from bench.stack import Stack, Tenant, numbers
from tests.support.harness import REPO

PORTAL_CODE = ("restores/", "accounts/", "portal/")
STDLIB = re.compile(r"^.*/lib/python3\.\d+/")
FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def _frame_key(frame: str) -> tuple[str, str]:
    """(function, short file) of one py-spy frame ``func (path:line)``."""
    match = FRAME.match(frame.strip())
    if not match:
        return frame.strip(), ""
    path = match.group("file")
    for marker in ("site-packages/", str(REPO) + "/"):
        if marker in path:
            return match.group("func"), path.split(marker, 1)[1]
    # The standard library: /usr/lib/python3.11/threading.py -> threading.py
    return match.group("func"), STDLIB.sub("", path)


def _thread_kind(frame: str) -> str:
    """``thread (123): restore_4`` -> ``restore_*``: threads of one kind together."""
    name = frame.split(": ", 1)[1] if ": " in frame else frame
    return re.sub(r"\d+", "*", name)


def _where(frame: str) -> str:
    """A frame as ``function (file:line)``, the file shortened."""
    match = FRAME.match(frame.strip())
    func, path = _frame_key(frame)
    line = match.group("line") if match else None
    return f"{func} ({path}:{line})" if line else f"{func} ({path})"


def summarise(raw: Path, *, top: int) -> str:
    """The top functions of a py-spy ``--format raw`` file (collapsed stacks): own and
    inclusive time; with thread names in it (``--threads``), samples by kind of thread, and
    for each of the busiest kinds, where its threads are: the innermost frame of the
    portal's code (with its line) and the innermost frame of all."""
    own: collections.Counter[tuple[str, str]] = collections.Counter()
    inclusive: collections.Counter[tuple[str, str]] = collections.Counter()
    by_kind: collections.Counter[str] = collections.Counter()
    where: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        thread = next((f for f in frames if f.startswith("thread (")), None)
        code = [f for f in frames if not f.startswith(("process ", "thread "))]
        keys = [_frame_key(f) for f in code]
        if not keys:
            continue
        total += count
        own[keys[-1]] += count
        for key in set(keys):
            inclusive[key] += count
        if thread is not None:
            kind = _thread_kind(thread)
            by_kind[kind] += count
            portal = [f for f in code if _frame_key(f)[1].startswith(PORTAL_CODE)]
            spot = (_where(portal[-1]) + " -> " if portal else "") + _where(code[-1])
            where[kind][spot] += count
    if not total:
        return "no samples"

    def table(
        counter: collections.Counter[tuple[str, str]], title: str, only_portal: bool = False
    ) -> list[str]:
        rows = [f"\n{title}", f"{'samples':>8} {'share':>7}  function (file)"]
        shown = 0
        for (func, path), count in counter.most_common():
            if only_portal and not path.startswith(PORTAL_CODE):
                continue
            rows.append(f"{count:>8} {100 * count / total:>6.1f}%  {func} ({path})")
            shown += 1
            if shown >= top:
                break
        return rows

    lines = [f"{total} samples"]
    if by_kind:
        lines.append("\nby kind of thread (every process of the tree):")
        lines += [
            f"{count:>8} {100 * count / total:>6.1f}%  {kind}" for kind, count in by_kind.most_common(12)
        ]
        for kind, _ in by_kind.most_common(3):
            kind_total = by_kind[kind]
            lines.append(f"\nwhere the {kind} threads are (share of their samples):")
            lines += [
                f"{count:>8} {100 * count / kind_total:>6.1f}%  {spot}"
                for spot, count in where[kind].most_common(top)
            ]
    lines += table(own, "own time (innermost frame), whole tree")
    lines += table(inclusive, "inclusive time, the portal's code", only_portal=True)
    lines += table(inclusive, "inclusive time, whole tree")
    return "\n".join(lines)


def _job(args: argparse.Namespace, stack: Stack, tenant: Tenant) -> dict[str, Any]:
    job = run_job(stack, tenant, numbers(args.n, offset=1), timeout=args.n * args.latency_ms / 1000 + 600)
    ideal = args.n * args.latency_ms / 1000 / args.cap
    print(
        f"{args.db}: N = {args.n}, L = {args.latency_ms:g} ms, C = {args.cap}: "
        f"job {job['total_s']:.2f} s (N·L/C {ideal:.2f} s)"
    )
    return job


def sql_profile(args: argparse.Namespace) -> int:
    directory = Path(tempfile.mkdtemp(prefix="portal-sql-"))
    with build(args.db, latency_ms=args.latency_ms) as stack:
        tenant = stack.create_tenant("profile", max_concurrency=args.cap)
        stack.start_worker("host", workers=None, command=("bench/sqltrace.py", str(directory)))
        run_job(stack, tenant, numbers(200), timeout=120)  # warm up
        job = _job(args, stack, tenant)
        time.sleep(0.5)
    summary = sqltrace.summarise(
        directory, numbers=args.n, since=job["sent"], until=job["completed"] + 0.2, top=args.top
    )
    print(summary)
    print(f"\nstatements noted in {directory}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--db", choices=("postgres", "sqlite"), default="postgres")
    parser.add_argument("-n", type=int, default=10_000, help="numbers in the profiled job")
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--cap", type=int, default=10)
    parser.add_argument("--rate", type=int, default=100, help="samples per second")
    parser.add_argument("--idle", action="store_true", help="keep waiting threads too (wall-clock profile)")
    parser.add_argument("--native", action="store_true", help="C frames too")
    parser.add_argument("--gil", action="store_true", help="only samples of threads holding the GIL")
    parser.add_argument("--sql", action="store_true", help="count statements instead (no py-spy)")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--raw", default=None, help="keep py-spy's collapsed stacks in this file")
    args = parser.parse_args(argv)
    if args.sql:
        return sql_profile(args)
    py_spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if py_spy is None:
        parser.error("py-spy is not installed: .venv/bin/pip install py-spy")
    raw = Path(args.raw) if args.raw else Path(tempfile.mkdtemp(prefix="portal-spy-")) / "stacks.txt"
    with build(args.db, latency_ms=args.latency_ms) as stack:
        tenant = stack.create_tenant("profile", max_concurrency=args.cap)
        root = stack.start_worker("host", workers=None)
        run_job(stack, tenant, numbers(200), timeout=120)  # warm up
        command = [py_spy, "record", "--pid", str(root), "--subprocesses", "--format", "raw"]
        command += ["--rate", str(args.rate), "--output", str(raw)]
        command += [] if args.native else ["--nonblocking"]
        command += ["--threads"]
        command += ["--idle"] if args.idle else []
        command += ["--native"] if args.native else []
        command += ["--gil"] if args.gil else []
        spy = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
        )
        time.sleep(2)  # py-spy attaches to every process of the tree
        try:
            _job(args, stack, tenant)
        finally:
            os.killpg(spy.pid, signal.SIGINT)
            _, err = spy.communicate(timeout=120)
        print(f"py-spy {'wall-clock' if args.idle else 'CPU'} profile at {args.rate} samples/s")
        if not raw.exists():
            print(err.decode(errors="replace")[-2000:])
            return 1
    print(summarise(raw, top=args.top))
    print(f"\ncollapsed stacks: {raw}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
