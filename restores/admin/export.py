"""The jobs' results as CSV: streamed in chunks (flat memory), cells safe to open in a spreadsheet."""

from __future__ import annotations

import csv
from collections.abc import Iterator, Sequence
from typing import Any

from django.http import StreamingHttpResponse
from django.utils import timezone

from restores.selectors import EXPORT_COLUMNS, results_export_rows

# Job ids per export query (keeps each IN list small on every database).
EXPORT_JOB_CHUNK = 500
# Bytes of CSV gathered before a chunk is sent.
EXPORT_FLUSH_BYTES = 64 * 1024
CSV_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


class _EchoBuffer:
    """csv.writer writes into this and gets the line back, to be streamed."""

    def write(self, value: str) -> str:
        return value


def _csv_safe(value: Any) -> Any:
    """Text cells that a spreadsheet would run as a formula are quoted with a leading '."""
    if isinstance(value, str) and value.startswith(CSV_FORMULA_PREFIXES):
        return "'" + value
    return value


def _csv_stream(job_ids: Sequence[int]) -> Iterator[str]:
    """The CSV of the jobs' results, in chunks of about 64 KB (flat memory, rows streamed)."""
    writer = csv.writer(_EchoBuffer())
    buffer = [writer.writerow(EXPORT_COLUMNS)]
    size = 0
    for start in range(0, len(job_ids), EXPORT_JOB_CHUNK):
        for row in results_export_rows(job_ids=job_ids[start : start + EXPORT_JOB_CHUNK]):
            line = writer.writerow([_csv_safe(value) for value in row])
            buffer.append(line)
            size += len(line)
            if size >= EXPORT_FLUSH_BYTES:
                yield "".join(buffer)
                buffer, size = [], 0
    if buffer:
        yield "".join(buffer)


def results_csv_response(job_ids: Sequence[int]) -> StreamingHttpResponse:
    """The download of the jobs' results: ``restore-results-<time>.csv``, never cached."""
    response = StreamingHttpResponse(_csv_stream(job_ids), content_type="text/csv; charset=utf-8")
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    response["Content-Disposition"] = f'attachment; filename="restore-results-{stamp}.csv"'
    response["Cache-Control"] = "no-store"
    return response
