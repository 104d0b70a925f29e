"""Hand work to the task queue: wake-up calls only, the database holds the work.

A message lost (broker down, flushed, a worker killed holding it) costs time,
never work: the sweeper enqueues again whatever is left (see ``recovery``).
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import transaction

logger = logging.getLogger(__name__)


# Tasks served by the webhook queue's own qclusters (``Q_QUEUE=webhooks``); every other
# task goes to the restore queue.
WEBHOOK_TASKS = frozenset({"restores.tasks.deliver_webhook"})


def enqueue(func: str, *args: object) -> None:
    """Hand a task to the broker; a failure is logged, and the sweeper makes up for it."""
    from django_q.tasks import async_task

    options = {"cluster": settings.WEBHOOK_QUEUE} if func in WEBHOOK_TASKS else {}
    try:
        async_task(func, *args, **options)
    except Exception:  # broker down: the job stays in the database
        logger.warning("could not enqueue %s%r; the sweeper will pick it up", func, args, exc_info=True)


def enqueue_on_commit(func: str, *args: object, times: int = 1) -> None:
    def send() -> None:
        for _ in range(times):
            enqueue(func, *args)

    transaction.on_commit(send)
