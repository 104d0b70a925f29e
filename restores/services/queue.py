"""Hand work to the task queue: wake-up calls only, the database holds the work.

A message lost (broker down, flushed, a worker killed holding it) costs time,
never work: the sweeper enqueues again whatever is left (see ``recovery``).

A message the broker refuses (Redis restarting, say) is not dropped either: the process
keeps it and a thread of its own (``broker-retry``) hands it over as soon as the broker
takes messages again, so that the job it wakes goes on within a second or so of the
broker's return rather than at the sweeper's next round. What is kept lives in the process
only (at most ``HELD_MAX`` messages); if the process dies first, the sweeper makes up for it.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

from django.conf import settings
from django.db import connection, transaction

logger = logging.getLogger(__name__)


# Tasks served by the webhook queue's own qclusters (``Q_QUEUE=webhooks``); every other
# task goes to the restore queue.
WEBHOOK_TASKS = frozenset({"restores.tasks.deliver_webhook"})
# Seconds between two attempts to hand the kept messages over while the broker refuses them.
BROKER_RETRY_INTERVAL = 1.0
# Messages kept per process while the broker refuses them; beyond that, the sweeper's.
HELD_MAX = 1000

Message = tuple[str, tuple[object, ...]]

_held_lock = threading.Lock()
_held: list[Message] = []  # in the order refused
_held_thread: threading.Thread | None = None


def _held_forget() -> None:
    """In a forked child: the parent's kept messages and thread are not this process's."""
    global _held_lock, _held_thread
    _held_lock = threading.Lock()
    _held.clear()
    _held_thread = None


os.register_at_fork(after_in_child=_held_forget)


def _send(func: str, args: tuple[object, ...]) -> None:
    from django_q.tasks import async_task

    options: dict[str, Any] = {"cluster": settings.WEBHOOK_QUEUE} if func in WEBHOOK_TASKS else {}
    async_task(func, *args, **options)


def enqueue(func: str, *args: object) -> None:
    """Hand a task to the broker; if it refuses, the message is kept and handed over once
    the broker is back (``messages_held``), and the sweeper makes up for what is lost."""
    try:
        _send(func, args)
    except Exception:  # broker down: the job stays in the database
        kept = _hold((func, args))
        logger.warning(
            "could not enqueue %s%r; %s",
            func,
            args,
            "kept until the broker is back" if kept else "the sweeper will pick it up",
            exc_info=True,
        )


def enqueue_on_commit(func: str, *args: object, times: int = 1) -> None:
    def send() -> None:
        for _ in range(times):
            enqueue(func, *args)

    transaction.on_commit(send)


def messages_held() -> list[Message]:
    """The messages this process keeps for the broker, in the order they were refused."""
    with _held_lock:
        return list(_held)


def _hold(message: Message) -> bool:
    """Keep ``message`` for the broker, and make sure the thread that hands it over runs;
    False when too many are kept already."""
    global _held_thread
    with _held_lock:
        if len(_held) >= HELD_MAX:
            return False
        _held.append(message)
        if _held_thread is None or not _held_thread.is_alive():
            _held_thread = threading.Thread(target=_hand_over_held, name="broker-retry", daemon=True)
            _held_thread.start()
    return True


def _hand_over_held() -> None:
    """Every ``BROKER_RETRY_INTERVAL``, hand the kept messages to the broker in order, until
    none is left; stops at the first refusal and tries again later."""
    global _held_thread
    while True:
        time.sleep(BROKER_RETRY_INTERVAL)
        handed = 0
        try:
            for message in messages_held():
                try:
                    _send(*message)
                except Exception:
                    break  # still down
                with _held_lock:
                    _held.pop(0)  # this one: only this thread takes messages out
                handed += 1
        finally:
            connection.close()  # this thread's own, if the broker is the database (ORM)
        if handed:
            logger.info("broker back: %d kept messages handed over", handed)
        with _held_lock:
            if not _held:
                _held_thread = None
                return
