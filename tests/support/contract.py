"""The contract's shapes (docs/api.md), as clients check them: the keys of each answer, in
order, and the 503 error's body."""

from __future__ import annotations

# The synchronous answer, the status answer and the webhook's body: a job and its results.
JOB_KEYS = [
    "job_uuid",
    "status",
    "total_numbers",
    "success_count",
    "failure_count",
    "webhook_url",
    "created_at",
    "started_at",
    "completed_at",
    "results",
]
# A job's summary in the jobs list: the same, without its results.
JOB_SUMMARY_KEYS = JOB_KEYS[:-1]
# The 202 answer of a queued job.
QUEUED_KEYS = ["job_uuid", "status", "total_numbers", "webhook_url", "message"]
# The 503 while the database is out of reach (with Retry-After).
UNAVAILABLE = {
    "error": "service_unavailable",
    "message": "The service is temporarily unavailable; retry after the number of seconds in Retry-After.",
}
