"""django-q2 tasks: each takes an id and calls one service.

Every task waits out a database outage (``portal.outages.database_outages_waited_out``):
when the database goes away under it (a restart, a failover), the task waits for it to
answer again and starts over, rather than failing and leaving its job to the sweeper.
Starting over is safe: claims, records and completion are conditional. It waits at most
half of ``Q_TASK_TIMEOUT``, so that the cluster never kills it as stuck meanwhile.
"""

from __future__ import annotations

from django.conf import settings

from portal.outages import database_outages_waited_out
from restores import services


def _database_wait_at_most() -> float:
    return float(settings.Q_TASK_TIMEOUT) / 2


waits_out_database_outages = database_outages_waited_out(wait_at_most=_database_wait_at_most)


@waits_out_database_outages
def process_job(job_id: int) -> None:
    services.job_process(job_id=job_id)


@waits_out_database_outages
def deliver_webhook(job_id: int) -> None:
    services.job_webhook_deliver(job_id=job_id)


@waits_out_database_outages
def sweep() -> str:
    return str(services.jobs_sweep())


@waits_out_database_outages
def recover() -> str:
    """At a worker's start: wake every active job at once, rather than when it looks stale
    (a cluster restarted after a crash has lost the tasks it held)."""
    return str(services.jobs_sweep(stale_after=0))
