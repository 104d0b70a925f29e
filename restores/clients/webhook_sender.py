"""The webhook sender: POST a job's result to a tenant's endpoint (docs/api.md#webhooks).

Signed with Standard Webhooks headers, never follows redirects, mandatory
timeout, and failures described in words a curl user knows. No database work
here; the caller records each attempt.

SSRF guard: unless ``WEBHOOK_ALLOW_PRIVATE_TARGETS`` is on, the host is
resolved here, every address it resolves to must be public, and the request
goes to the address that was checked (TLS still verifies the host name), so a
second lookup cannot send it elsewhere (no DNS rebinding).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import socket
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import IO, Any
from urllib.parse import urlsplit, urlunsplit

from django.conf import settings
from django.utils import timezone
from requests.adapters import HTTPAdapter

from restores.clients import http
from restores.clients.http import excerpt, host_port
from restores.validation import IPAddress, address_is_public, literal_ip

RESPONSE_EXCERPT_BYTES = 512
# A body larger than this is spooled to a temporary file rather than kept in memory.
BODY_IN_MEMORY_MAX = 1024 * 1024


@dataclass(frozen=True, kw_only=True)
class DeliveryResult(http.CallRecord):
    """One delivery attempt of a webhook. ``retry_after``: seconds the receiver asked to wait
    before the next attempt (``Retry-After`` with a 429 or 503), None when it did not."""

    delivered: bool
    response_excerpt: str
    retry_after: float | None = None


Body = bytes | IO[bytes]


def sign(*, secret: str, webhook_id: str, timestamp: int, body: Body) -> str:
    """Standard Webhooks ``webhook-signature`` value for one message.

    ``body`` is bytes, or a file read from its start and left at its start again.
    """
    encoded = secret.removeprefix("whsec_")
    # Like the reference libraries, accept a secret whose base64 padding was left off.
    key = base64.b64decode(encoded + "=" * (-len(encoded) % 4))
    mac = hmac.new(key, f"{webhook_id}.{timestamp}.".encode(), hashlib.sha256)
    if isinstance(body, bytes):
        mac.update(body)
    else:
        body.seek(0)
        while chunk := body.read(64 * 1024):
            mac.update(chunk)
        body.seek(0)
    return "v1," + base64.b64encode(mac.digest()).decode()


def spool(pieces: Iterable[bytes], *, in_memory_max: int | None = None) -> Body:
    """A body made of ``pieces``: bytes when it is small, else a temporary file (at its
    start; the caller closes it), so that a big body costs disk, not memory."""
    limit = BODY_IN_MEMORY_MAX if in_memory_max is None else in_memory_max
    held: list[bytes] = []
    size = 0
    spooled: IO[bytes] | None = None
    for piece in pieces:
        if spooled is not None:
            spooled.write(piece)
            continue
        held.append(piece)
        size += len(piece)
        if size > limit:
            spooled = tempfile.TemporaryFile()  # noqa: SIM115 - returned to the caller, who closes it
            spooled.writelines(held)
            held = []
    if spooled is None:
        return b"".join(held)
    spooled.seek(0)
    return spooled


class BlockedAddressError(Exception):
    """The webhook's host is, or resolves to, an address that is not public."""

    def __init__(self, address: IPAddress) -> None:
        super().__init__(str(address))
        self.address = address


def resolve_public_address(host: str, port: int) -> IPAddress:
    """The address to connect to for ``host``: every address it has must be public.

    Raises ``socket.gaierror`` when the host cannot be resolved and
    ``BlockedAddressError`` when any of its addresses is not public.
    """
    literal = literal_ip(host)
    if literal is not None:
        addresses: list[IPAddress] = [literal]
    else:
        try:
            ascii_host = host.encode("idna").decode("ascii")
        except UnicodeError as exc:
            raise socket.gaierror(socket.EAI_NONAME, "invalid host name") from exc
        addresses = []
        for info in socket.getaddrinfo(ascii_host, port, type=socket.SOCK_STREAM):
            address = literal_ip(str(info[4][0]).split("%", 1)[0])  # without an IPv6 zone
            if address is None:
                raise socket.gaierror(socket.EAI_NONAME, f"unusable address {info[4][0]!r}")
            addresses.append(address)
        if not addresses:
            raise socket.gaierror(socket.EAI_NONAME, "no address")
    for address in addresses:
        if not address_is_public(address):
            raise BlockedAddressError(address)
    return addresses[0]


class PinnedAddressAdapter(http.DeadlineAdapter):
    """For a URL rewritten to a checked IP: TLS still sends and verifies the original host name."""

    def __init__(self, server_hostname: str) -> None:
        self.server_hostname = server_hostname  # set before HTTPAdapter builds its pool manager
        super().__init__()

    def init_poolmanager(
        self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any
    ) -> None:
        pool_kwargs["server_hostname"] = self.server_hostname
        pool_kwargs["assert_hostname"] = self.server_hostname
        super().init_poolmanager(connections, maxsize, block, **pool_kwargs)


def _pinned_url(url: str, address: IPAddress) -> str:
    parts = urlsplit(url)
    host = f"[{address}]" if address.version == 6 else str(address)
    netloc = host if parts.port is None else f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def deliver(*, url: str, body: Body, webhook_id: str, secret: str, timeout: float) -> DeliveryResult:
    """POST one signed webhook; returns what happened, never raises for network faults.

    The whole exchange (connecting, sending the body, the answer's headers and the
    first ``RESPONSE_EXCERPT_BYTES`` of its body) ends within ``timeout`` seconds,
    however slowly the receiver reads or answers. A file ``body`` (see ``spool``) is
    streamed, with its length in ``Content-Length``.
    """
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret=secret, webhook_id=webhook_id, timestamp=timestamp, body=body),
    }
    started_at = timezone.now()
    t0 = time.monotonic()

    def result(
        *, http_status: int | None, error: str, response_excerpt: str = "", retry_after: float | None = None
    ) -> DeliveryResult:
        return DeliveryResult(
            delivered=not error,
            started_at=started_at,
            duration_ms=int((time.monotonic() - t0) * 1000),
            http_status=http_status,
            error=error,
            response_excerpt=response_excerpt,
            retry_after=retry_after,
        )

    target = url
    adapter: HTTPAdapter | None = None
    if not settings.WEBHOOK_ALLOW_PRIVATE_TARGETS:
        host, port = host_port(url)
        try:
            address = resolve_public_address(host, port)
        except (socket.gaierror, UnicodeError):
            return result(http_status=None, error=f"Could not resolve host: {host}")
        except BlockedAddressError as exc:
            error = f"Failed to connect to {host} port {port}: {exc.address} is not a public address"
            return result(http_status=None, error=error)
        if literal_ip(host) is None:
            target = _pinned_url(url, address)
            server_hostname = host.encode("idna").decode("ascii")
            explicit_port = urlsplit(url).port
            headers["Host"] = (
                server_hostname if explicit_port is None else f"{server_hostname}:{explicit_port}"
            )
            adapter = PinnedAddressAdapter(server_hostname)
    with http.new_session(adapter=adapter) as session:
        try:
            answer = http.send(
                session,
                "POST",
                target,
                timeout=timeout,
                max_body=RESPONSE_EXCERPT_BYTES,
                truncate=True,  # only the excerpt is kept: a long answer is cut, not refused
                words_url=url,
                data=body,
                headers=headers,
            )
        except http.TransportError as exc:
            return result(http_status=None, error=exc.message)
    delivered = 200 <= answer.status_code < 300
    asks_to_wait = answer.status_code in (429, 503)
    return result(
        http_status=answer.status_code,
        error="" if delivered else f"The requested URL returned error: {answer.status_code}",
        response_excerpt=excerpt(answer.content, limit=RESPONSE_EXCERPT_BYTES),
        retry_after=http.parse_retry_after(answer.headers.get("Retry-After")) if asks_to_wait else None,
    )
