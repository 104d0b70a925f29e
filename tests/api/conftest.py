"""Fixtures for the v3 API tests: no real upstream ever, and a loopback webhook receiver."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.harness import closed_loopback_port
from tests.support.webhooks import WebhookReceiver, serve_webhook_receiver


@pytest.fixture(autouse=True)
def _never_the_real_multitel(settings: Any) -> None:
    """Safety net: without ``fake_multitel`` an upstream call hits a closed loopback port, never the
    internet (``fake_multitel`` overrides this when a test asks for it)."""
    settings.MULTITEL_BASE_URL = f"http://127.0.0.1:{closed_loopback_port()}"


@pytest.fixture
def webhook_receiver(settings: Any) -> Iterator[WebhookReceiver]:
    """A tiny HTTP server on 127.0.0.1 that records every POST and answers 204."""
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = True
    with serve_webhook_receiver() as receiver:
        yield receiver
