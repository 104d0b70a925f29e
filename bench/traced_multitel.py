"""The simulated Multitel of ``manage.py fake_multitel``, also noting when each call began
and ended, for the benchmarks' breakdown of a job's time.

The same server, state and handler as the command (``restores.fake_multitel``), the
tenants' credentials from the database as there; each ``GET /v3/restore/…`` is noted as
(wall-clock start, wall-clock end, the client's port) around the handler's own work, so
the note does not change what the client sees. ``GET /_trace`` answers
``{"calls": [[start, end, port], …]}``; ``POST /_fake/reset`` clears the notes too.

Usage: python bench/traced_multitel.py --port PORT --latency-ms L [--hang-seconds S]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--hang-seconds", type=float, default=60.0)
    args = parser.parse_args(argv)

    import django

    django.setup()
    from restores.fake_multitel import FakeMultitelServer, FakeMultitelState, Handler, database_credentials

    trace: list[tuple[float, float, int]] = []

    class TracingHandler(Handler):
        def do_GET(self) -> None:
            if self.path == "/_trace":
                body = json.dumps({"calls": list(trace)}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            if not self.path.startswith("/v3/restore/"):
                super().do_GET()
                return
            started = time.time()
            try:
                super().do_GET()
            finally:
                trace.append((started, time.time(), int(self.client_address[1])))

        def do_POST(self) -> None:
            if self.path == "/_fake/reset":
                trace.clear()
            super().do_POST()

    state = FakeMultitelState(
        credentials=database_credentials(), latency_ms=args.latency_ms, hang_seconds=args.hang_seconds
    )
    server = FakeMultitelServer((args.host, args.port), state)
    server.RequestHandlerClass = TracingHandler
    print(f"Simulated Multitel (traced) listening on {server.base_url}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
