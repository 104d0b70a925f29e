"""The peer: what a tenant's engineer would write instead of using the portal.

A pool of C threads calls Multitel's single-number endpoint (``GET /v3/restore/<number>``
with HTTP Basic) over one keep-alive ``requests.Session`` whose pool holds C connections,
retries 429, 502, 503, 504 and failed connections with a small backoff (or what
``Retry-After`` says), and keeps every result in a dict in memory. Nothing is stored,
audited, leased or reported anywhere.

Run by ``bench/run.py`` as a process of its own, so that its CPU time is its own: the
numbers come on standard input, one per line, and one JSON object goes to standard
output with the wall time and the CPU time (user + system, all threads) of the run,
both measured around the calls only (not the interpreter's start or the imports).

Usage: python bench/peer.py --url http://127.0.0.1:PORT --username U --password P
       [--concurrency 10] < numbers.txt
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import requests
from requests.adapters import HTTPAdapter

RETRY_STATUSES = frozenset({429, 502, 503, 504})
MAX_ATTEMPTS = 5
BACKOFF_BASE = 0.1  # seconds: 0.1, 0.2, 0.4, 0.8 between attempts
RETRY_AFTER_MAX = 10.0
TIMEOUT = 30.0


def _retry_delay(response: requests.Response | None, attempt: int) -> float:
    if response is not None:
        value = response.headers.get("Retry-After", "")
        if value.strip().isdigit():
            return min(float(value), RETRY_AFTER_MAX)
    return float(BACKOFF_BASE * 2 ** (attempt - 1))


def restore_all(
    base_url: str, username: str, password: str, numbers: list[str], *, concurrency: int
) -> tuple[dict[str, dict[str, Any]], int]:
    """Restore every number, ``concurrency`` calls at a time; returns the results by number
    and how many calls were made."""
    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=1, pool_maxsize=concurrency)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.auth = (username, password)
    session.headers["Accept"] = "application/json"
    calls = 0
    calls_lock = threading.Lock()

    def restore(number: str) -> dict[str, Any]:
        nonlocal calls
        for attempt in range(1, MAX_ATTEMPTS + 1):
            response: requests.Response | None = None
            with calls_lock:
                calls += 1
            try:
                response = session.get(f"{base_url}/v3/restore/{number}", timeout=TIMEOUT)
            except requests.RequestException as exc:
                error = str(exc)
            else:
                if response.status_code not in RETRY_STATUSES:
                    try:
                        body = response.json()
                    except ValueError:
                        body = None
                    status = body.get("status", {}) if isinstance(body, dict) else {}
                    code = status.get("code") if isinstance(status, dict) else None
                    return {
                        "http_status": response.status_code,
                        "success": str(code) == "200",
                        "body": body,
                        "attempts": attempt,
                    }
                error = f"HTTP {response.status_code}"
            if attempt < MAX_ATTEMPTS:
                time.sleep(_retry_delay(response, attempt))
        return {"http_status": None, "success": False, "error": error, "attempts": MAX_ATTEMPTS}

    results: dict[str, dict[str, Any]] = {}
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        for number, result in zip(numbers, pool.map(restore, numbers), strict=True):
            results[number] = result
    session.close()
    return results, calls


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", required=True, help="Multitel's base URL")
    parser.add_argument("--username", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--concurrency", type=int, default=10)
    args = parser.parse_args(argv)
    numbers = [line.strip() for line in sys.stdin if line.strip()]
    cpu_before, started = cpu_seconds(), time.monotonic()
    results, calls = restore_all(
        args.url.rstrip("/"), args.username, args.password, numbers, concurrency=args.concurrency
    )
    wall, cpu = time.monotonic() - started, cpu_seconds() - cpu_before
    print(
        json.dumps(
            {
                "numbers": len(numbers),
                "results": len(results),
                "succeeded": sum(1 for r in results.values() if r["success"]),
                "calls": calls,
                "wall_s": wall,
                "cpu_s": cpu,
                "max_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
