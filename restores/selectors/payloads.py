"""The JSON bodies of the contract (docs/api.md): answers, status and webhook payloads."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from restores.models import Job, NumberResult
from restores.selectors.jobs import RESULT_FIELDS, job_result_rows

TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S"


def timestamp(value: datetime | None) -> str | None:
    """UTC, ``YYYY-MM-DD HH:MM:SS`` (USE_TZ keeps every stored datetime in UTC)."""
    return value.strftime(TIMESTAMP_FORMAT) if value else None


def result_entry(row: dict[str, Any], *, detailed: bool) -> dict[str, Any]:
    """One entry of ``results``: the final shape of 1a, or with attempts and times (2)."""
    entry: dict[str, Any] = {
        "number": row["number"],
        "status": row["status"],
        "message": row["message"],
        "status_code": row["status_code"],
    }
    if detailed:
        entry["attempts"] = row["attempts"]
        entry["started_at"] = timestamp(row["started_at"])
        entry["completed_at"] = timestamp(row["completed_at"])
    entry["requires_identity_update"] = 1 if row["requires_identity_update"] else 0
    if row["needs_registration"]:
        entry["needs_registration"] = 1
    return entry


def job_summary(job: Job) -> dict[str, Any]:
    return {
        "job_uuid": str(job.uuid),
        "status": job.status,
        "total_numbers": job.total_numbers,
        "success_count": job.success_count,
        "failure_count": job.failure_count,
        "webhook_url": job.webhook_url,
        "created_at": timestamp(job.created_at),
        "started_at": timestamp(job.started_at),
        "completed_at": timestamp(job.completed_at),
    }


def job_final_payload(*, job: Job, with_webhook_error: bool) -> dict[str, Any]:
    """The body of docs/api.md#sync-answer: the synchronous answer, and (without the error) the webhook."""
    payload = job_summary(job)
    payload["results"] = [result_entry(row, detailed=False) for row in job_result_rows(job=job)]
    if with_webhook_error and job.webhook_error:
        payload["webhook_error"] = job.webhook_error
    return payload


# Results per piece of a streamed body.
BODY_PIECE_RESULTS = 1000


def job_final_payload_pieces(*, job: Job) -> Iterator[bytes]:
    """``job_final_payload(with_webhook_error=False)`` as JSON bytes, the same as
    ``json.dumps`` of it, a piece at a time: the webhook body of a big job is never
    held in memory whole (100,000 results are about 13 MB of JSON)."""
    head = json.dumps(job_summary(job))
    yield (head[:-1] + ', "results": [').encode()
    entries: list[str] = []
    separator = ""
    for row in job_result_rows(job=job):
        entries.append(json.dumps(result_entry(row, detailed=False)))
        if len(entries) == BODY_PIECE_RESULTS:
            yield (separator + ", ".join(entries)).encode()
            entries, separator = [], ", "
    if entries:
        yield (separator + ", ".join(entries)).encode()
    yield b"]}"


def job_status_payload(*, job: Job, number: str | None = None) -> dict[str, Any] | None:
    """The body of docs/api.md#status-answer, or None when ``number`` is not part of the job."""
    payload = job_summary(job)
    payload["results"] = [result_entry(row, detailed=True) for row in job_result_rows(job=job, number=number)]
    if number is not None and not payload["results"]:
        return None
    if number is None and job.status in Job.ACTIVE_STATUSES:
        # The job and its results are two reads, and numbers are recorded in between while it
        # runs: the counts are those of the results shown, so that the two always agree.
        payload["success_count"] = sum(
            entry["status"] == NumberResult.Status.SUCCESS for entry in payload["results"]
        )
        payload["failure_count"] = sum(
            entry["status"] == NumberResult.Status.FAILED for entry in payload["results"]
        )
    if job.webhook_error:
        payload["webhook_error"] = job.webhook_error
    if number is not None:
        payload["filtered_number"] = number
    return payload


def dry_run_payload(
    *, total_numbers: int, duplicates_removed: int, synchronous: bool, webhook_url: str | None
) -> dict[str, Any]:
    """The body of docs/api.md#dry-run: what a submission would do, made by none."""
    return {
        "dry_run": True,
        "total_numbers": total_numbers,
        "duplicates_removed": duplicates_removed,
        "would_be": "synchronous" if synchronous else "queued",
        "webhook_url": webhook_url,
    }


def job_queued_payload(*, job: Job) -> dict[str, Any]:
    """The body of docs/api.md#queued-answer."""
    if job.webhook_url:
        message = f"Restore job queued. Results will be POSTed to {job.webhook_url}"
    else:
        message = f"Restore job queued. Poll /v3/bulk_restore_status?job_uuid={job.uuid} for results"
    return {
        "job_uuid": str(job.uuid),
        "status": job.status,
        "total_numbers": job.total_numbers,
        "webhook_url": job.webhook_url,
        "message": message,
    }


# The job page shows the status payload in full only up to this many numbers.
STATUS_PREVIEW_RESULTS = 200


def job_status_payload_preview(
    *, job: Job, limit: int = STATUS_PREVIEW_RESULTS
) -> tuple[dict[str, Any], bool]:
    """The body of docs/api.md#status-answer with at most ``limit`` results (in submission order), and
    whether it was cut short. One query, however large the job."""
    payload = job_summary(job)
    rows = NumberResult.objects.filter(job=job).order_by("position").values(*RESULT_FIELDS)[: limit + 1]
    entries = [result_entry(row, detailed=True) for row in rows]
    truncated = len(entries) > limit
    payload["results"] = entries[:limit]
    if job.webhook_error:
        payload["webhook_error"] = job.webhook_error
    return payload, truncated
