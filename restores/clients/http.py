"""What every outbound call of the portal shares: who we say we are, how a body is
kept for the audit trail, and how a failure is put into words.

Failures are described in curl's words (``Could not resolve host: …``,
``Failed to connect to … port …: Connection refused``), which an operator or a
tenant's engineer reads without knowing the portal's code.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import requests
from urllib3.exceptions import NameResolutionError

REDACTED = "[redacted]"


def user_agent() -> str:
    from portal import __version__

    return f"bulk-restore-portal/{__version__}"


def text_for_db(text: str) -> str:
    """Text fit for a database column: PostgreSQL refuses NUL characters."""
    return text.replace("\x00", "\ufffd")


def redact(text: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    return text


def excerpt(content: bytes, *, limit: int, secrets: Sequence[str] = ()) -> str:
    """The first ``limit`` bytes of a body as text fit to store, ``secrets`` redacted.

    Secrets are replaced before the cut (so none is left half shown at the end),
    and the result never encodes to more than ``limit`` bytes of UTF-8.
    """
    window = limit + 4 * max((len(s) for s in secrets), default=0)
    text = text_for_db(redact(content[:window].decode("utf-8", errors="replace"), secrets))
    encoded = text.encode("utf-8")
    if len(encoded) <= limit:
        return text
    return encoded[:limit].decode("utf-8", errors="ignore")


def host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        port = parts.port
    except ValueError:
        port = None
    return host, port or (443 if parts.scheme == "https" else 80)


def _chain(exc: BaseException) -> list[BaseException]:
    """The exception and every exception behind it (causes, contexts, wrapped arguments)."""
    seen: list[BaseException] = []
    pending: list[BaseException] = [exc]
    while pending:
        current = pending.pop(0)
        if any(current is e for e in seen):
            continue
        seen.append(current)
        behind: list[Any] = [current.__cause__, current.__context__]
        # requests and urllib3 keep the underlying error in args or in .reason (MaxRetryError)
        behind.append(getattr(current, "reason", None))
        behind.extend(current.args)
        pending.extend(e for e in behind if isinstance(e, BaseException))
    return seen


def describe_failure(exc: BaseException, *, url: str, timeout: float) -> str:
    """A failed request in curl's words."""
    host, port = host_port(url)
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
