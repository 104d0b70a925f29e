"""django-q2 tasks: each takes an id and calls one service."""

from __future__ import annotations

from restores import services


def process_job(job_id: int) -> None:
    services.job_process(job_id=job_id)


def deliver_webhook(job_id: int) -> None:
    services.job_webhook_deliver(job_id=job_id)


def sweep() -> str:
    return str(services.jobs_sweep())


def recover() -> str:
    """At a worker's start: wake every active job at once, rather than when it looks stale
    (a cluster restarted after a crash has lost the tasks it held)."""
    return str(services.jobs_sweep(stale_after=0))
