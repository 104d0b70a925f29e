"""Rows of the staff CSV export of job results."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from restores.models import NumberResult
from restores.selectors.payloads import timestamp


def _text(value: Any) -> Any:
    return "" if value is None else value


def _time(value: Any) -> str:
    return timestamp(value) or ""


# Each column of the export: its header, the field it is read from, how it is written.
_COLUMNS: tuple[tuple[str, str, Callable[[Any], Any]], ...] = (
    ("job_uuid", "job__uuid", str),
    ("tenant", "job__tenant__name", _text),
    ("position", "position", _text),
    ("number", "number", _text),
    ("status", "status", _text),
    ("status_code", "status_code", _text),
    ("message", "message", _text),
    ("attempts", "attempts", _text),
    ("requires_identity_update", "requires_identity_update", int),
    ("needs_registration", "needs_registration", int),
    ("started_at", "started_at", _time),
    ("completed_at", "completed_at", _time),
)
EXPORT_COLUMNS = tuple(header for header, _, _ in _COLUMNS)


def results_export_rows(*, job_ids: Iterable[int]) -> Iterable[list[Any]]:
    """Rows of the selected jobs' results for CSV export, streamed in chunks (flat memory)."""
    qs = (
        NumberResult.objects.filter(job_id__in=list(job_ids))
        .order_by("job_id", "position")
        .values_list(*(field for _, field, _ in _COLUMNS))
    )
    writers = [write for _, _, write in _COLUMNS]
    for row in qs.iterator(chunk_size=5000):
        yield [write(value) for write, value in zip(writers, row, strict=True)]
