"""Fixtures for the v3 API tests: no real upstream ever, and a loopback webhook receiver."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.api.support import ReceivedHook, WebhookReceiver, closed_loopback_port


@pytest.fixture(autouse=True)
def _never_the_real_multitel(settings: Any) -> None:
    """Safety net: without ``fake_multitel`` an upstream call hits a closed loopback port, never the
    internet (``fake_multitel`` overrides this when a test asks for it)."""
    settings.MULTITEL_BASE_URL = f"http://127.0.0.1:{closed_loopback_port()}"


@pytest.fixture
def webhook_receiver(settings: Any) -> Iterator[WebhookReceiver]:
    """A tiny HTTP server on 127.0.0.1 that records every POST and answers 204."""
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = True

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            receiver.received.append(
                ReceivedHook(
                    path=self.path, headers={k.lower(): v for k, v in self.headers.items()}, body=body
                )
            )
            time.sleep(receiver.delay)
            try:
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()
            except OSError:  # the portal gave up waiting
                pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    receiver = WebhookReceiver(server=server)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="webhook-receiver", daemon=True
    )
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
