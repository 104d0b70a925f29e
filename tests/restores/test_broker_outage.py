"""A message the broker refuses is kept and handed over once the broker is back
(``restores.services.queue``), in the order refused and as often as it was sent."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings

from restores.services import queue
from tests.support.harness import wait_until
from tests.support.queue import ASYNC_TASK


class Broker:
    """``async_task`` of a broker that can be taken down and brought back."""

    def __init__(self) -> None:
        self.down = False
        self.received: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    def async_task(self, func: str, *args: Any, **options: Any) -> None:
        if self.down:
            raise ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")
        self.received.append((func, args, options))


@pytest.fixture
def broker(monkeypatch: pytest.MonkeyPatch) -> Iterator[Broker]:
    fake = Broker()
    monkeypatch.setattr(ASYNC_TASK, fake.async_task)
    monkeypatch.setattr(queue, "BROKER_RETRY_INTERVAL", 0.02)
    try:
        yield fake
    finally:
        fake.down = False
        wait_until(lambda: not queue.messages_held(), timeout=5, what="the kept messages handed over")


def test_it_keeps_a_message_the_broker_refuses_and_hands_it_over_once_the_broker_is_back(
    broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    broker.down = True

    queue.enqueue("restores.tasks.process_job", 7)
    time.sleep(0.1)  # several tries while it is down
    kept = queue.messages_held()
    broker.down = False
    wait_until(lambda: broker.received, timeout=5, what="the message handed over")

    assert kept == [("restores.tasks.process_job", (7,))]
    assert broker.received == [("restores.tasks.process_job", (7,), {})]
    wait_until(lambda: not queue.messages_held(), timeout=5, what="nothing kept any more")
    assert "kept until the broker is back" in caplog.text


def test_it_hands_kept_messages_over_in_the_order_refused_each_as_often_as_it_was_sent(
    broker: Broker,
) -> None:
    broker.down = True

    queue.enqueue("restores.tasks.process_job", 1)
    queue.enqueue("restores.tasks.process_job", 1)  # a job's fan-out: two tasks
    queue.enqueue("restores.tasks.deliver_webhook", 2)
    broker.down = False
    wait_until(lambda: len(broker.received) == 3, timeout=5, what="three messages handed over")

    assert broker.received == [
        ("restores.tasks.process_job", (1,), {}),
        ("restores.tasks.process_job", (1,), {}),
        ("restores.tasks.deliver_webhook", (2,), {"cluster": settings.WEBHOOK_QUEUE}),
    ]


def test_it_leaves_to_the_sweeper_what_is_refused_beyond_the_messages_it_keeps(
    broker: Broker, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(queue, "HELD_MAX", 2)
    caplog.set_level(logging.WARNING)
    broker.down = True

    for job_id in (1, 2, 3):
        queue.enqueue("restores.tasks.process_job", job_id)
    kept = queue.messages_held()
    broker.down = False
    wait_until(lambda: len(broker.received) == 2, timeout=5, what="the kept messages handed over")
    time.sleep(0.1)

    assert kept == [("restores.tasks.process_job", (1,)), ("restores.tasks.process_job", (2,))]
    assert [args for _, args, _ in broker.received] == [(1,), (2,)]
    warnings = [r.getMessage() for r in caplog.records if r.name == "restores.services.queue"]
    assert warnings[-1].endswith("the sweeper will pick it up")


def test_it_sends_at_once_while_the_broker_takes_messages(broker: Broker) -> None:
    queue.enqueue("restores.tasks.sweep")

    assert broker.received == [("restores.tasks.sweep", (), {})]
    assert queue.messages_held() == []
