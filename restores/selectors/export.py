"""Job results as CSV: the staff export's rows, the status endpoint's, and the CSV text of
either, in chunks (flat memory), its cells safe to open in a spreadsheet."""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from restores.models import Job, NumberResult
from restores.selectors.payloads import timestamp

# Bytes of CSV gathered before a chunk is sent.
CSV_FLUSH_BYTES = 64 * 1024
CSV_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


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


# The status endpoint's CSV (docs/api.md#status-csv): one job's results in submission order.
_STATUS_COLUMNS: tuple[tuple[str, str, Callable[[Any], Any]], ...] = (
    ("number", "number", _text),
    ("status", "status", _text),
    ("status_code", "status_code", _text),
    ("message", "message", _text),
    ("attempts", "attempts", _text),
    ("started_at", "started_at", _time),
    ("completed_at", "completed_at", _time),
    ("requires_identity_update", "requires_identity_update", int),
    ("needs_registration", "needs_registration", int),
)
STATUS_CSV_COLUMNS = tuple(header for header, _, _ in _STATUS_COLUMNS)


def job_results_csv_rows(*, job: Job, number: str | None = None) -> Iterator[list[Any]]:
    """The rows of one job's results (or of one number) for the status CSV, streamed."""
    qs = NumberResult.objects.filter(job=job)
    if number is not None:
        qs = qs.filter(number=number)
    writers = [write for _, _, write in _STATUS_COLUMNS]
    rows = qs.order_by("position").values_list(*(field for _, field, _ in _STATUS_COLUMNS))
    for row in rows.iterator(chunk_size=5000):
        yield [write(value) for write, value in zip(writers, row, strict=True)]


class _EchoBuffer:
    """csv.writer writes into this and gets the line back, to be streamed."""

    def write(self, value: str) -> str:
        return value


def csv_safe(value: Any) -> Any:
    """Text cells that a spreadsheet would run as a formula are quoted with a leading '."""
    if isinstance(value, str) and value.startswith(CSV_FORMULA_PREFIXES):
        return "'" + value
    return value


def csv_chunks(*, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Iterator[str]:
    """The CSV text of ``header`` and ``rows``, in chunks of about 64 KB."""
    writer = csv.writer(_EchoBuffer())
    buffer = [writer.writerow(header)]
    size = 0
    for row in rows:
        line = writer.writerow([csv_safe(value) for value in row])
        buffer.append(line)
        size += len(line)
        if size >= CSV_FLUSH_BYTES:
            yield "".join(buffer)
            buffer, size = [], 0
    if buffer:
        yield "".join(buffer)
