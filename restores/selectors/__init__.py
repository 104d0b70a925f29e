"""Reads: jobs and their numbers, the contract's payloads, the staff export and overview.

Nothing here writes. Callers import from this package; the modules are:

- ``jobs``: jobs and numbers, as rows and counts;
- ``payloads``: the JSON bodies of docs/api.md (answers, status, webhook);
- ``export``: rows of the staff CSV export;
- ``overview``: the staff overview page.
"""

from restores.selectors.export import (
    CSV_FORMULA_PREFIXES,
    EXPORT_COLUMNS,
    STATUS_CSV_COLUMNS,
    csv_chunks,
    csv_safe,
    job_results_csv_rows,
    results_export_rows,
)
from restores.selectors.jobs import (
    RESULT_FIELDS,
    STREAMED_RESULTS_MIN,
    job_get_for_tenant,
    job_has_number,
    job_ids_with_number,
    job_remaining_count,
    job_result_rows,
    jobs_page_for_tenant,
    tenants_with_activity,
)
from restores.selectors.overview import (
    OVERVIEW_BUSIEST_TENANTS,
    OverviewBucket,
    OverviewWindow,
    TenantActivity,
    breakers_not_closed,
    overview,
    overview_window,
    upstream_latency_percentile,
)
from restores.selectors.payloads import (
    BODY_PIECE_RESULTS,
    STATUS_PREVIEW_RESULTS,
    TIMESTAMP_FORMAT,
    dry_run_payload,
    job_final_payload,
    job_final_payload_pieces,
    job_queued_payload,
    job_status_payload,
    job_status_payload_preview,
    job_summary,
    result_entry,
    timestamp,
)

__all__ = [
    "BODY_PIECE_RESULTS",
    "CSV_FORMULA_PREFIXES",
    "EXPORT_COLUMNS",
    "OVERVIEW_BUSIEST_TENANTS",
    "RESULT_FIELDS",
    "STATUS_CSV_COLUMNS",
    "STATUS_PREVIEW_RESULTS",
    "STREAMED_RESULTS_MIN",
    "TIMESTAMP_FORMAT",
    "OverviewBucket",
    "OverviewWindow",
    "TenantActivity",
    "breakers_not_closed",
    "csv_chunks",
    "csv_safe",
    "dry_run_payload",
    "job_final_payload",
    "job_final_payload_pieces",
    "job_get_for_tenant",
    "job_has_number",
    "job_ids_with_number",
    "job_queued_payload",
    "job_remaining_count",
    "job_result_rows",
    "job_results_csv_rows",
    "job_status_payload",
    "job_status_payload_preview",
    "job_summary",
    "jobs_page_for_tenant",
    "overview",
    "overview_window",
    "result_entry",
    "results_export_rows",
    "tenants_with_activity",
    "timestamp",
    "upstream_latency_percentile",
]
