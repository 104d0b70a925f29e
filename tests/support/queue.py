"""Tasks handed to django-q2, recorded instead of sent (the ``enqueued`` fixture).

The boundary is ``django_q.tasks.async_task``: restores imports it when it enqueues
(``from django_q.tasks import async_task`` inside the function), so replacing the attribute of
``django_q.tasks`` catches every task, wherever in restores it is enqueued from. Registered as a
plugin by ``tests/conftest.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

Task = tuple[str, tuple[Any, ...]]
"""A task as ``(func, args)``, e.g. ``("restores.tasks.process_job", (job.pk,))``."""

ASYNC_TASK = "django_q.tasks.async_task"


def record_enqueued(
    monkeypatch: pytest.MonkeyPatch, handler: Callable[..., object] | None = None
) -> list[Task]:
    """Replace django-q2's ``async_task``: every task is recorded and none reaches a broker.

    With ``handler``, each task is also handed to ``handler(func, *args)`` (a test that plays the
    worker). Returns the list the tasks are recorded in, in the order they were enqueued.
    """
    calls: list[Task] = []

    def async_task(func: str, *args: Any, **options: Any) -> None:
        calls.append((func, args))
        if handler is not None:
            handler(func, *args)

    monkeypatch.setattr(ASYNC_TASK, async_task)
    return calls


@pytest.fixture
def enqueued(monkeypatch: pytest.MonkeyPatch) -> list[Task]:
    """Tasks handed to the queue, as ``(func, args)``: recorded instead of sent."""
    return record_enqueued(monkeypatch)
