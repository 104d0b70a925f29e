from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from restores.fake_multitel import (
    OUTCOME_RULES,
    FakeMultitelServer,
    FakeMultitelState,
    database_credentials,
)


class Command(BaseCommand):
    help = "Run a simulated Multitel v3 API (GET /v3/restore/<number>) for local use and tests."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=9100)
        parser.add_argument("--latency-ms", type=float, default=50.0, help="answer delay (default 50)")
        parser.add_argument("--jitter-ms", type=float, default=0.0, help="± random spread of the delay")
        parser.add_argument(
            "--fail-rate", type=float, default=0.0, help="share of calls answered HTTP 503 (0 to 1)"
        )
        parser.add_argument(
            "--timeout-rate", type=float, default=0.0, help="share of calls never answered in time (0 to 1)"
        )
        parser.add_argument(
            "--hang-seconds", type=float, default=60.0, help="how long an unanswered call hangs"
        )
        parser.add_argument("--seed", type=int, default=None, help="seed for the random rates")
        parser.add_argument(
            "--accept",
            action="append",
            default=[],
            metavar="USER:PASSWORD",
            help="accept these credentials instead of the tenants' from the database (repeatable)",
        )
        parser.add_argument("--verbose", action="store_true", help="log every request")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["accept"]:
            fixed = dict(item.partition(":")[::2] for item in options["accept"])
            credentials = lambda: fixed  # noqa: E731
        else:
            credentials = database_credentials()
        state = FakeMultitelState(
            credentials=credentials,
            latency_ms=options["latency_ms"],
            jitter_ms=options["jitter_ms"],
            fail_rate=options["fail_rate"],
            timeout_rate=options["timeout_rate"],
            hang_seconds=options["hang_seconds"],
            seed=options["seed"],
        )
        server = FakeMultitelServer((options["host"], options["port"]), state, verbose=options["verbose"])
        self.stdout.write(f"Simulated Multitel listening on {server.base_url}")
        for pattern, rule in OUTCOME_RULES.items():
            self.stdout.write(f"  {pattern:>6}: {rule}")
        self.stdout.flush()
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()
