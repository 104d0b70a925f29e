"""Validation of a bulk restore submission (docs/api.md#bulk-restore-request).

Kept apart from the serializers so that the rules read as one function: every
bad entry is collected (where it came from, its index or line, its value) and
the whole request is refused at once.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import unicodedata
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings

NUMBER_RE = re.compile(r"[0-9]{7,15}")
MAX_WEBHOOK_URL_LENGTH = 2048
# Bad entries named in an error, at the least (every one of them up to the job limit).
MIN_NAMED_BAD_ENTRIES = 100
# IPv4 in the forms that resolvers accept besides dotted quads (127.1, 0x7f000001, 2130706433).
LEGACY_IPV4_RE = re.compile(r"[0-9a-fA-FxX.]+")
NAT64_PREFIX = ipaddress.IPv6Network("64:ff9b::/96")
# Shown back in an error; a huge bad value is cut.
MAX_ECHOED_VALUE = 64


@dataclass(frozen=True)
class BadEntry:
    source: str  # "numbers" or "numbers_text"
    position: int  # 0-based index in numbers, 1-based line in numbers_text
    value: Any
    reason: str

    def as_dict(self) -> dict[str, Any]:
        where = "index" if self.source == "numbers" else "line"
        value = self.value
        if isinstance(value, str) and len(value) > MAX_ECHOED_VALUE:
            value = value[:MAX_ECHOED_VALUE] + "…"
        elif not isinstance(value, (str, int, float, bool)) and value is not None:
            value = type(value).__name__
        return {"source": self.source, where: self.position, "value": value, "reason": self.reason}


class SubmissionError(Exception):
    def __init__(self, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.extra = extra


def _why_not_a_number(value: Any) -> str | None:
    if not isinstance(value, str):
        return f"must be a string of digits, not {_json_type(value)}"
    if value == "":
        return "is empty"
    if NUMBER_RE.fullmatch(value):
        return None
    if not value.isascii() or not all(c.isdigit() for c in value):
        return "must contain digits only (E.164 without '+')"
    return f"must have 7 to 15 digits, not {len(value)}"


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def numbers_parse(*, numbers: Any, numbers_text: Any, max_numbers: int) -> list[str]:
    """The deduplicated numbers of a submission in order, or ``SubmissionError``."""
    if numbers is not None and not isinstance(numbers, list):
        raise SubmissionError(
            "invalid_numbers", f"numbers must be an array of strings, not {_json_type(numbers)}."
        )
    if numbers_text is not None and not isinstance(numbers_text, str):
        raise SubmissionError(
            "invalid_numbers",
            f"numbers_text must be a string with one number per line, not {_json_type(numbers_text)}.",
        )
    bad: list[BadEntry] = []
    ordered: list[str] = []
    for index, value in enumerate(numbers or []):
        reason = _why_not_a_number(value)
        if reason:
            bad.append(BadEntry("numbers", index, value, reason))
        else:
            ordered.append(value)
    # Lines end with "\n" or "\r\n" only (the "\r" goes with the surrounding spaces);
    # str.splitlines() would also split on \v, \f, \x85, \u2028… and shift the line numbers.
    for line_no, line in enumerate((numbers_text or "").split("\n"), start=1):
        value = line.strip()
        if not value:
            continue
        reason = _why_not_a_number(value)
        if reason:
            bad.append(BadEntry("numbers_text", line_no, value, reason))
        else:
            ordered.append(value)
    if bad:
        shown = bad[: max(MIN_NAMED_BAD_ENTRIES, max_numbers)]
        raise SubmissionError(
            "invalid_numbers",
            f"{len(bad)} entr{'y is' if len(bad) == 1 else 'ies are'} not a digit-only phone number "
            "of 7 to 15 digits; nothing was stored.",
            invalid=[b.as_dict() for b in shown],
            invalid_count=len(bad),
        )
    unique = list(dict.fromkeys(ordered))
    if not unique:
        raise SubmissionError("no_numbers", "No numbers were given: send numbers or numbers_text.")
    if len(unique) > max_numbers:
        raise SubmissionError(
            "too_many_numbers",
            f"{len(unique)} numbers were given; at most {max_numbers} are accepted per job.",
            limit=max_numbers,
        )
    return unique


def numbers_given(*, numbers: Any, numbers_text: Any) -> int:
    """How many numbers a valid submission gave, repeats included (``numbers_parse`` keeps
    each once)."""
    lines = (numbers_text or "").split("\n") if isinstance(numbers_text, str) else []
    return len(numbers or []) + sum(1 for line in lines if line.strip())


def webhook_url_validate(value: Any) -> str | None:
    """The webhook URL, or None; ``SubmissionError`` when it is not acceptable."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise SubmissionError("invalid_webhook_url", "webhook_url must be a string.")
    if len(value) > MAX_WEBHOOK_URL_LENGTH:
        raise SubmissionError(
            "invalid_webhook_url", f"webhook_url is longer than {MAX_WEBHOOK_URL_LENGTH} characters."
        )
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        raise SubmissionError("invalid_webhook_url", "webhook_url is not a valid URL.") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SubmissionError("invalid_webhook_url", "webhook_url must be an absolute http or https URL.")
    if any(c.isspace() for c in value) or parts.username or parts.password:
        raise SubmissionError("invalid_webhook_url", "webhook_url must not contain spaces or credentials.")
    if any(unicodedata.category(c) == "Cc" for c in value):
        raise SubmissionError("invalid_webhook_url", "webhook_url must not contain control characters.")
    if port == 0:
        raise SubmissionError("invalid_webhook_url", "webhook_url has an invalid port.")
    address = literal_ip(parts.hostname or "")
    if address is not None and not address_is_public(address) and not settings.WEBHOOK_ALLOW_PRIVATE_TARGETS:
        raise SubmissionError(
            "invalid_webhook_url",
            f"webhook_url points to {address}, which is not a public address.",
        )
    return value


IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def literal_ip(host: str) -> IPAddress | None:
    """The address a host written as an IP literal stands for (legacy IPv4 forms included)."""
    host = host.strip("[]")
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if LEGACY_IPV4_RE.fullmatch(host) and any(c.isdigit() for c in host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def address_is_public(address: IPAddress) -> bool:
    """Whether a webhook may reach ``address`` (docs/api.md#webhook-addresses).

    Loopback, private, link-local, carrier-grade NAT, unique-local, multicast,
    unspecified and reserved addresses are not public, nor IPv6 addresses that
    embed one of them (IPv4-mapped, 6to4, NAT64).
    """
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address in NAT64_PREFIX:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            return address_is_public(embedded)
    return address.is_global and not (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_unspecified
        or address.is_reserved
    )
