"""Structured logs: one JSON object per line, with the job and tenant a line concerns.

``log_context(job_uuid=..., tenant=...)`` sets fields for everything logged
inside it. The fields are taken when a record is *created* (a log record
factory), so every handler sees them, whichever handler formats the record
and in whichever thread: the console handler, a test's capture, a queue
handler. A value passed explicitly (``extra={"job_uuid": ...}``) wins over the
context. Context variables do not follow work handed to a thread pool by
themselves: wrap such work with ``in_current_context(fn)``.

Credentials are never passed to a logger. As a safety net, both formatters
redact what looks like one anyway (an ``Authorization`` value, ``Basic``/
``Bearer`` tokens, ``whsec_`` signing secrets, ``password=``/``secret=``
pairs, credentials inside a URL) from messages and tracebacks.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, ParamSpec, TypeVar

_context: contextvars.ContextVar[dict[str, str]] = contextvars.ContextVar("log_context", default={})  # noqa: B039

CONTEXT_FIELDS = ("job_uuid", "tenant")
# The attribute of a LogRecord holding the context it was created in.
RECORD_ATTRIBUTE = "log_context"
REDACTED = "[redacted]"

P = ParamSpec("P")
R = TypeVar("R")


@contextmanager
def log_context(**values: Any) -> Iterator[None]:
    """Add fields (``job_uuid``, ``tenant``) to every record logged inside the block."""
    token = _context.set({**_context.get(), **{k: str(v) for k, v in values.items() if v is not None}})
    try:
        yield
    finally:
        _context.reset(token)


def current_context() -> dict[str, str]:
    return dict(_context.get())


def in_current_context(fn: Callable[P, R]) -> Callable[P, R]:
    """``fn`` bound to a copy of the current context: its log lines keep the job and tenant
    when it runs in another thread (``pool.submit(in_current_context(work), ...)``)."""
    context = contextvars.copy_context()

    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        return context.copy().run(fn, *args, **kwargs)

    return run


# --- Records carry their context from birth ----------------------------------------

_base_factory = logging.getLogRecordFactory()


def _record_factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
    record = _base_factory(*args, **kwargs)
    setattr(record, RECORD_ATTRIBUTE, _context.get())
    return record


def install_record_factory() -> None:
    """Make every new record remember the context it was created in (idempotent)."""
    global _base_factory
    current = logging.getLogRecordFactory()
    if getattr(current, "_portal_context", False):
        return
    _base_factory = current
    _record_factory._portal_context = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(_record_factory)


install_record_factory()


def record_context(record: logging.LogRecord) -> dict[str, str]:
    """The job and tenant of a record: explicit values first, then its creation context."""
    born_in: dict[str, str] = getattr(record, RECORD_ATTRIBUTE, None) or {}
    out: dict[str, str] = {}
    for key in CONTEXT_FIELDS:
        value = getattr(record, key, None)
        if value is None:
            value = born_in.get(key)
        if value is not None:
            out[key] = str(value)
    return out


class ContextFilter(logging.Filter):
    """Copy the context onto the record as attributes (for ``%(job_uuid)s`` formats)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, RECORD_ATTRIBUTE, None) is None:  # made before the factory was installed
            setattr(record, RECORD_ATTRIBUTE, _context.get())
        for key, value in record_context(record).items():
            if getattr(record, key, None) is None:
                setattr(record, key, value)
        return True


# --- Redaction -------------------------------------------------------------------------

_SECRET_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    # "Authorization: Basic abc", "'Authorization': 'Bearer abc'", "authorization=abc"
    (
        re.compile(
            r"(?i)((?:proxy-)?authorization['\"]?\s*[:=]\s*['\"]?)"
            r"(?:(?:basic|bearer|digest)\s+)?[^\s'\",}]+"
        ),
        r"\1" + REDACTED,
    ),
    (re.compile(r"(?i)\b(basic|bearer)\s+[A-Za-z0-9+/=._~-]{8,}"), r"\1 " + REDACTED),
    (re.compile(r"whsec_[A-Za-z0-9+/=]+"), "whsec_" + REDACTED),
    (
        re.compile(
            r"(?i)([a-z_-]*(?:password|passwd|secret|token|api_key)['\"]?\s*[:=]\s*['\"]?)"
            r"[^\s'\",}&]+"
        ),
        r"\1" + REDACTED,
    ),
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s:@]+:[^/\s@]+@"), r"\1" + REDACTED + "@"),
]


def redact(text: str) -> str:
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


# --- Formatters --------------------------------------------------------------------------


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, job_uuid, tenant, exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
            **record_context(record),
        }
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        elif record.exc_text:
            entry["exception"] = redact(record.exc_text)
        if record.stack_info:
            entry["stack"] = redact(self.formatStack(record.stack_info))
        return json.dumps(entry, ensure_ascii=False, default=str)


class PlainFormatter(logging.Formatter):
    """Human-readable lines for local use, with the context at the end."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extra = " ".join(f"{k}={v}" for k, v in record_context(record).items())
        return redact(f"{line} {extra}" if extra else line)
