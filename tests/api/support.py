"""Helpers shared by the v3 API tests."""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from typing import Any

from restores.models import Job, NumberResult, UpstreamAttempt, WebhookDelivery


def closed_loopback_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ReceivedHook:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class WebhookReceiver:
    server: ThreadingHTTPServer
    received: list[ReceivedHook] = field(default_factory=list)
    status: int = 204
    delay: float = 0.0  # seconds to wait before answering

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}/restore-hook"


@dataclass(frozen=True)
class Stored:
    jobs: int
    results: int
    attempts: int
    deliveries: int


def stored() -> Stored:
    """How many rows of each kind the portal holds."""
    return Stored(
        jobs=Job.objects.count(),
        results=NumberResult.objects.count(),
        attempts=UpstreamAttempt.objects.count(),
        deliveries=WebhookDelivery.objects.count(),
    )


def number(suffix: int) -> str:
    """A valid 11-digit number whose last digits choose the simulated Multitel's outcome."""
    return f"1555123{suffix:04d}"
