"""Multitel's v3 answer, read defensively: the envelope, the typed errors of one attempt,
and ``Retry-After`` (docs/api.md#upstream).

The v3 envelope is loose (codes as numbers or strings, ``response`` an object, "" or
absent, HTTP status and envelope code that may disagree); everything here turns one
HTTP response into an ``Envelope`` or an ``UpstreamError`` that says whether to retry.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from restores.clients.http import Answer, excerpt, parse_retry_after, redact, text_for_db

BODY_EXCERPT_BYTES = 2048
RETRYABLE_HTTP_STATUSES = frozenset({429, 502, 503, 504})
TRUTHY = (1, "1", True, "true", "True")


# --- Typed errors: what went wrong with one attempt -----------------------------


class UpstreamError(Exception):
    """One attempt gave no usable envelope. ``retryable`` says whether to try again."""

    retryable = False

    def __init__(
        self,
        reason: str,
        *,
        status_code: int,
        http_status: int | None = None,
        body_excerpt: str = "",
        retry_after: float | None = None,
        envelope_code: str = "",
        msg: str = "",
        detail: str = "",
    ) -> None:
        super().__init__(reason)
        self.detail = detail  # what happened on the wire, in curl's words, for the attempt record
        self.reason = reason
        self.status_code = status_code
        self.http_status = http_status
        self.body_excerpt = body_excerpt
        self.retry_after = retry_after
        self.envelope_code = envelope_code
        self.msg = msg


class UpstreamTimeout(UpstreamError):
    retryable = True


class UpstreamConnectionError(UpstreamError):
    retryable = True


class UpstreamRetryableStatus(UpstreamError):
    """HTTP 429, 502, 503 or 504 (without an envelope that reports success)."""

    retryable = True


class UpstreamBadResponse(UpstreamError):
    """An answer that is not a JSON envelope (HTML, empty, truncated, wrong shape)."""


class UpstreamDeadlineExceeded(UpstreamError):
    """The caller's deadline ran out before an answer came."""


@dataclass(frozen=True)
class Envelope:
    http_status: int
    code: int
    msg: str
    raw_code: str
    requires_identity_update: bool
    needs_registration: bool
    body_excerpt: str

    @property
    def success(self) -> bool:
        return 200 <= self.code < 300


# --- Parsing --------------------------------------------------------------------


def _excerpt(content: bytes, secrets: Sequence[str] = ()) -> str:
    return excerpt(content, limit=BODY_EXCERPT_BYTES, secrets=secrets)


def _as_int(value: Any) -> int | None:
    """An envelope code as an int; None when it is missing or not a plausible status code."""
    number: int | None = None
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        number = int(value.strip())
    # Stored in a small integer column: anything else is not a status code.
    if number is None or not 100 <= number <= 999:
        return None
    return number


def _flag(*sources: Any, key: str) -> bool:
    for source in sources:
        if isinstance(source, dict) and key in source:
            return source[key] in TRUTHY
    return False


def _describe_body(content: bytes, content_type: str) -> str:
    text = content.strip()
    if not text:
        return "empty response from upstream"
    lowered = text[:512].lower()
    if lowered.startswith((b"<!doctype html", b"<html")) or b"<html" in lowered or "html" in content_type:
        return "HTML instead of JSON from upstream"
    return "invalid JSON from upstream"


def http_reason(status: int) -> str:
    try:
        return f"HTTP {status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"HTTP {status}"


def parse_response(response: Answer, *, secrets: Sequence[str] = ()) -> Envelope:
    """Turn one HTTP answer into an ``Envelope`` or raise an ``UpstreamError``.

    ``secrets`` (the caller's credentials) are redacted from every text kept.
    """
    http_status = response.status_code
    content = response.content or b""
    excerpt = _excerpt(content, secrets)
    parsed = True
    try:
        data = json.loads(content.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError):
        data, parsed = None, False
    status_obj = data.get("status") if isinstance(data, dict) else None
    code = None
    raw_code = ""
    msg = ""
    if isinstance(status_obj, dict):
        raw_code = "" if status_obj.get("code") is None else text_for_db(str(status_obj.get("code")))
        code = _as_int(status_obj.get("code"))
        raw_msg = status_obj.get("msg", status_obj.get("message", ""))
        msg = text_for_db(redact(raw_msg.strip(), secrets)) if isinstance(raw_msg, str) else ""
    if http_status in RETRYABLE_HTTP_STATUSES and not (code is not None and 200 <= code < 300):
        # Retried; an envelope that came with it still gives the code and message.
        raise UpstreamRetryableStatus(
            http_reason(http_status),
            status_code=http_status if code is None else code,
            http_status=http_status,
            body_excerpt=excerpt,
            retry_after=parse_retry_after(response.headers.get("Retry-After")),
            envelope_code=raw_code if code is not None else "",
            msg=msg if code is not None else "",
        )
    if code is None:
        # No usable envelope: say what came back.
        if not 200 <= http_status < 300:
            reason = http_reason(http_status)
        elif parsed:
            reason = "unexpected JSON from upstream (no status code in the envelope)"
        else:
            reason = _describe_body(content, response.headers.get("Content-Type", ""))
        raise UpstreamBadResponse(
            reason,
            status_code=http_status if not 200 <= http_status < 300 else 502,
            http_status=http_status,
            body_excerpt=excerpt,
        )
    assert isinstance(data, dict)
    inner = data.get("response")
    return Envelope(
        http_status=http_status,
        code=code,
        msg=msg,
        raw_code=raw_code,
        requires_identity_update=_flag(inner, data, key="requires_identity_update"),
        needs_registration=_flag(inner, data, key="needs_registration"),
        body_excerpt=excerpt,
    )


def seconds_text(value: float) -> str:
    return f"{value:g}"
