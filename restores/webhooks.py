"""The webhook sender: POST a job's result to a tenant's endpoint (CONTRACT section 4).

Signed with Standard Webhooks headers, never follows redirects, mandatory
timeout, and failures described in words a curl user knows. No database work
here; the caller records each attempt.
"""

from __future__ import annotations

import base64
import errno
import hashlib
import hmac
import socket
import time
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

import requests
from django.utils import timezone
from urllib3.exceptions import NameResolutionError

from restores.multitel import user_agent

RESPONSE_EXCERPT_BYTES = 512


@dataclass(frozen=True)
class DeliveryResult:
    delivered: bool
    started_at: datetime
    duration_ms: int
    http_status: int | None
    error: str
    response_excerpt: str


def sign(*, secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    """Standard Webhooks ``webhook-signature`` value for one message."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def _host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return host, port


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
        if current is None and seen[-1].args:
            # urllib3 keeps the underlying error in args (MaxRetryError.reason)
            reason = getattr(seen[-1], "reason", None)
            if isinstance(reason, BaseException):
                current = reason
    return seen


def describe_failure(exc: BaseException, *, url: str, timeout: float) -> str:
    host, port = _host_port(url)
    chain = _chain(exc)
    if any(isinstance(e, (NameResolutionError, socket.gaierror)) for e in chain):
        return f"Could not resolve host: {host}"
    if isinstance(exc, requests.Timeout) or any(isinstance(e, TimeoutError) for e in chain):
        return f"Connection timed out after {int(timeout * 1000)} milliseconds"
    if any(
        isinstance(e, ConnectionRefusedError) or (isinstance(e, OSError) and e.errno == errno.ECONNREFUSED)
        for e in chain
    ):
        return f"Failed to connect to {host} port {port}: Connection refused"
    if isinstance(exc, requests.exceptions.SSLError):
        return f"SSL connect error with {host} port {port}"
    if any(isinstance(e, ConnectionResetError) for e in chain):
        return f"Recv failure: Connection reset by peer ({host} port {port})"
    return f"Failed to connect to {host} port {port}: {type(exc).__name__}"


def deliver(
    *,
    url: str,
    body: bytes,
    webhook_id: str,
    secret: str,
    timeout: float,
    session: requests.Session | None = None,
) -> DeliveryResult:
    """POST one signed webhook; returns what happened, never raises for network faults."""
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": user_agent(),
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret=secret, webhook_id=webhook_id, timestamp=timestamp, body=body),
    }
    started_at = timezone.now()
    t0 = time.monotonic()
    http = session or requests
    try:
        response = http.post(url, data=body, headers=headers, timeout=timeout, allow_redirects=False)
    except requests.RequestException as exc:
        return DeliveryResult(
            delivered=False,
            started_at=started_at,
            duration_ms=int((time.monotonic() - t0) * 1000),
            http_status=None,
            error=describe_failure(exc, url=url, timeout=timeout),
            response_excerpt="",
        )
    duration_ms = int((time.monotonic() - t0) * 1000)
    excerpt = (response.content or b"")[:RESPONSE_EXCERPT_BYTES].decode("utf-8", errors="replace")
    delivered = 200 <= response.status_code < 300
    return DeliveryResult(
        delivered=delivered,
        started_at=started_at,
        duration_ms=duration_ms,
        http_status=response.status_code,
        error="" if delivered else f"The requested URL returned error: {response.status_code}",
        response_excerpt=excerpt,
    )
