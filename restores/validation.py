"""Validation of a bulk restore submission (CONTRACT section 1).

Kept apart from the serializers so that the rules read as one function: every
bad entry is collected (where it came from, its index or line, its value) and
the whole request is refused at once.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

NUMBER_RE = re.compile(r"[0-9]{7,15}")
MAX_WEBHOOK_URL_LENGTH = 2048
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
    for line_no, line in enumerate((numbers_text or "").splitlines(), start=1):
        value = line.strip()
        if not value:
            continue
        reason = _why_not_a_number(value)
        if reason:
            bad.append(BadEntry("numbers_text", line_no, value, reason))
        else:
            ordered.append(value)
    if bad:
        shown = bad[:100]
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
    if port == 0:
        raise SubmissionError("invalid_webhook_url", "webhook_url has an invalid port.")
    return value


def literal_ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None
