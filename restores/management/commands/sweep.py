from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from restores.services import jobs_sweep


class Command(BaseCommand):
    help = (
        "Reclaim expired leases, re-enqueue jobs whose queue message was lost, complete "
        "finished jobs and enqueue due webhooks (also runs every minute as a schedule)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--stale-after",
            type=float,
            default=None,
            help="Seconds of silence after which an active job is enqueued again "
            "(default RESTORE_STALE_SECONDS).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        report = jobs_sweep(stale_after=options["stale_after"])
        self.stdout.write(
            f"leases reclaimed: {report.leases_reclaimed}, jobs re-enqueued: {report.jobs_requeued}, "
            f"jobs completed: {report.jobs_completed}, webhooks due: {report.webhooks_due}"
        )
