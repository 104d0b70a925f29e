"""The jobs' results as CSV: streamed in chunks (flat memory), cells safe to open in a spreadsheet."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from django.http import StreamingHttpResponse
from django.utils import timezone

from restores.selectors import EXPORT_COLUMNS, csv_chunks, results_export_rows

# Job ids per export query (keeps each IN list small on every database).
EXPORT_JOB_CHUNK = 500


def _rows(job_ids: Sequence[int]) -> Iterator[list[Any]]:
    for start in range(0, len(job_ids), EXPORT_JOB_CHUNK):
        yield from results_export_rows(job_ids=job_ids[start : start + EXPORT_JOB_CHUNK])


def results_csv_response(job_ids: Sequence[int]) -> StreamingHttpResponse:
    """The download of the jobs' results: ``restore-results-<time>.csv``, never cached."""
    response = StreamingHttpResponse(
        csv_chunks(header=EXPORT_COLUMNS, rows=_rows(job_ids)), content_type="text/csv; charset=utf-8"
    )
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    response["Content-Disposition"] = f'attachment; filename="restore-results-{stamp}.csv"'
    response["Cache-Control"] = "no-store"
    return response
