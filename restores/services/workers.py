"""Who is working: the name recorded on what a process claims or changes."""

from __future__ import annotations

import os
import socket

from django.conf import settings


def worker_name() -> str:
    """``WORKER_NAME`` if set, else host and process id."""
    return settings.WORKER_NAME or f"{socket.gethostname()}:{os.getpid()}"
