"""Stopping a ``qcluster`` in order, whichever of its processes the signal reaches.

django-q2 stops a cluster when its main process gets SIGTERM or SIGINT: the sentinel
stops the pusher, gives each worker a stop after its current task, then stops the
monitor. Two things go wrong with that as it comes:

- A SIGTERM sent to the cluster's whole process group (Ctrl-C under ``make run``, whose
  honcho then terminates each process's group; systemd's default
  ``KillMode=control-group``; ``kill -- -PGID``) reaches the sentinel too, which
  django-q2 leaves to the default action: it dies at once, and the main process waits
  on it for ever (until a SIGKILL), while every worker dies in the middle of its task.
- A worker finishes its current task before it stops, and a restore task runs for its
  whole slice (``RESTORE_TASK_SLICE_SECONDS``).

So the sentinel ignores SIGTERM (and so do the pusher and the monitor it forks: the
sentinel stops them in order), it passes the stop on to its workers as a SIGTERM, and a
worker takes SIGTERM as "finish up": its restore window stops claiming, lets the calls
in flight end and records them, puts the numbers in its line back and re-enqueues the
rest of the job (``restores.services.window``). The cluster is gone about one upstream
call after the signal, and nothing it did has to wait for a lease to run out. A worker
that does not finish within ``WORKER_STOP_GRACE_SECONDS`` (a stuck task, or django-q2
terminating a worker past its timeout) exits then, as it would have at once before.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from types import FrameType
from typing import Any

# How long a worker may take to finish up after SIGTERM before it exits regardless.
WORKER_STOP_GRACE_SECONDS = 10.0

_stopping = threading.Event()


def worker_stopping() -> bool:
    """This worker process was told to stop: finish what is in hand, start nothing new."""
    return _stopping.is_set()


def worker_signals_install() -> None:
    """In a worker process (django-q2's ``post_spawn``): SIGTERM means finish up."""
    _stopping.clear()
    signal.signal(signal.SIGTERM, _worker_sigterm)


def _worker_sigterm(signum: int, frame: FrameType | None) -> None:
    if _stopping.is_set():
        return  # told again (by the group's signal, then by the sentinel): already finishing
    _stopping.set()
    deadline = threading.Timer(WORKER_STOP_GRACE_SECONDS, os._exit, args=(128 + signum,))
    deadline.daemon = True
    deadline.start()


def sentinel_signals_install() -> None:
    """Make django-q2's sentinel ignore SIGTERM and hand the stop on to its workers."""
    from django_q.cluster import Sentinel

    if getattr(Sentinel, "_stops_in_order", False):
        return
    start, stop = Sentinel.start, Sentinel.stop

    def start_ignoring_sigterm(self: Any) -> None:
        # In the sentinel, before it forks the pusher, the monitor and the workers.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        start(self)

    def stop_telling_the_workers(self: Any) -> None:
        for process in list(self.pool):
            if process.pid is not None and process.is_alive():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGTERM)
        stop(self)

    Sentinel.start = start_ignoring_sigterm
    Sentinel.stop = stop_telling_the_workers
    Sentinel._stops_in_order = True
