"""Count the database queries of one request of each kind, in-process.

Run by ``bench/run.py`` with the environment of a running stack (same
database): Django's test client calls the views, and ``CaptureQueriesContext``
counts the queries. Prints one JSON object: kind -> number of queries.

Usage: python bench/queries.py JOB_UUID NUMBER API_USERNAME API_PASSWORD
"""

from __future__ import annotations

import base64
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
os.environ["ALLOWED_HOSTS"] = "testserver,127.0.0.1,localhost"


def main() -> None:
    import django

    django.setup()
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    job_uuid, number, username, password = sys.argv[1:5]
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    client = Client(HTTP_AUTHORIZATION=f"Basic {token}")
    status_url = "/v3/bulk_restore_status"
    numbers = [f"1556{i:07d}8" for i in range(10_000)]
    requests = {
        "post_10000": lambda: client.post(
            "/v3/bulk_restore", data=json.dumps({"numbers": numbers}), content_type="application/json"
        ),
        "status_full": lambda: client.get(status_url, {"job_uuid": job_uuid}),
        "status_filtered": lambda: client.get(status_url, {"job_uuid": job_uuid, "number": number}),
        "auth_only": lambda: client.get(status_url),
    }
    counts: dict[str, int] = {}
    expected = {"post_10000": 202, "status_full": 200, "status_filtered": 200, "auth_only": 400}
    for kind, call in requests.items():
        call()  # once to warm up (credential last-use write, caches)
        with CaptureQueriesContext(connection) as ctx:
            response = call()
        if response.status_code != expected[kind]:
            raise SystemExit(f"{kind}: HTTP {response.status_code}: {response.content[:300]!r}")
        counts[kind] = len(ctx.captured_queries)
    print(json.dumps(counts))


if __name__ == "__main__":
    main()
