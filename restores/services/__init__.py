"""Writes and workflows of bulk restore jobs.

The database is the record of work still to do; the task queue only carries
wake-up calls. A number is ``pending`` until a worker claims it under a lease,
``processing`` while it is leased, and ``success`` or ``failed`` once recorded.
Callers import from this package; the modules are:

- ``submission``: accept a job, restore it now (small) or queue it (large);
- ``claims``: number leases;
- ``slots``: the tenant's concurrency cap, shared out as call slots;
- ``window``: one task's pipeline of upstream calls within its slots;
- ``batches``: one transaction of a window (record what finished, claim what is next);
- ``breaker``: the upstream circuit breaker of each tenant's Multitel account;
- ``processing``: the sliding window of upstream calls, queued and synchronous;
- ``recording``: outcomes written by the lease holder only;
- ``completion``: one process completes a job and schedules its webhook;
- ``webhooks``: delivery attempts and their record;
- ``recovery``: the sweeper;
- ``idempotency``: ``Idempotency-Key``;
- ``staff``: retry, cancel and resend, for the admin;
- ``queue``: handing wake-up calls to django-q2;
- ``workers``: the name of the process at work.
"""

from restores.services.batches import (
    UPSTREAM_AUTH_MESSAGE,
    UPSTREAM_AUTH_SKIPPED_MESSAGE,
    outcomes_record_and_claim,
)
from restores.services.breaker import (
    Admission,
    BreakerView,
    breaker_admission,
    breaker_outage_fail,
    breaker_outcomes_record,
)
from restores.services.claims import Claim, number_batch_claim, tenant_in_flight
from restores.services.completion import job_complete_if_done, job_fail_pending, job_finish
from restores.services.idempotency import (
    IdempotencyDecision,
    idempotency_key_begin,
    idempotency_key_finish,
    idempotency_keys_purge,
)
from restores.services.processing import job_process, job_run_sync
from restores.services.recording import number_results_record
from restores.services.recovery import SweepReport, jobs_orphaned_wake, jobs_sweep
from restores.services.slots import (
    others_waiting_for_a_worker,
    slots_acquire,
    slots_set,
    tenant_cap_full,
    tenant_slots_in_use,
    tenant_sync_waiting,
)
from restores.services.staff import (
    CANCELLED_MESSAGE,
    CancelResult,
    job_cancel,
    job_retry_failed,
    job_webhook_resend,
)
from restores.services.submission import job_create, job_is_sync, job_submit
from restores.services.webhooks import (
    job_webhook_deliver,
    webhook_delivery_record,
    webhook_message_new,
    webhook_retry_delays,
)
from restores.services.window import CAP_POLL_BACKOFF_MAX, CAP_POLL_SECONDS, WindowEnd, restore_window
from restores.services.workers import worker_name

__all__ = [
    "CANCELLED_MESSAGE",
    "CAP_POLL_BACKOFF_MAX",
    "CAP_POLL_SECONDS",
    "UPSTREAM_AUTH_MESSAGE",
    "UPSTREAM_AUTH_SKIPPED_MESSAGE",
    "Admission",
    "BreakerView",
    "CancelResult",
    "Claim",
    "IdempotencyDecision",
    "SweepReport",
    "WindowEnd",
    "breaker_admission",
    "breaker_outage_fail",
    "breaker_outcomes_record",
    "idempotency_key_begin",
    "idempotency_key_finish",
    "idempotency_keys_purge",
    "job_cancel",
    "job_complete_if_done",
    "job_create",
    "job_fail_pending",
    "job_finish",
    "job_is_sync",
    "job_process",
    "job_retry_failed",
    "job_run_sync",
    "job_submit",
    "job_webhook_deliver",
    "job_webhook_resend",
    "jobs_orphaned_wake",
    "jobs_sweep",
    "number_batch_claim",
    "number_results_record",
    "others_waiting_for_a_worker",
    "outcomes_record_and_claim",
    "restore_window",
    "slots_acquire",
    "slots_set",
    "tenant_cap_full",
    "tenant_in_flight",
    "tenant_slots_in_use",
    "tenant_sync_waiting",
    "webhook_delivery_record",
    "webhook_message_new",
    "webhook_retry_delays",
    "worker_name",
]
