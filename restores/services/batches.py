"""One transaction of a window: the calls that finished recorded, the next numbers claimed.

The upstream breaker hears of the calls in the same transaction, and an upstream 401
fails what is left of the job.
"""

from __future__ import annotations

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.models import Tenant
from portal.durability import commit_unflushed
from restores.clients.multitel import RestoreOutcome
from restores.clients.upstream_health import AccountHealth
from restores.models import Job, NumberResult
from restores.services.breaker import breaker_outcomes_record, never_answered, unanswered_retryable
from restores.services.claims import Claim, number_batch_claim
from restores.services.completion import job_fail_pending
from restores.services.recording import number_results_record

UPSTREAM_AUTH_MESSAGE = (
    "Error: 'Multitel rejected this tenant's Multitel credentials (HTTP 401); "
    "check the Multitel username and password in the portal'"
)
UPSTREAM_AUTH_SKIPPED_MESSAGE = (
    "Error: 'not tried: Multitel rejected this tenant's Multitel credentials (HTTP 401) "
    "for another number of this job'"
)


def outcomes_record_and_claim(
    finished: list[tuple[NumberResult, RestoreOutcome]],
    *,
    job: Job,
    health: AccountHealth,
    limit: int,
    after: int = -1,
    breaker_seen: bool = False,
    breaker_checked: bool = False,
) -> tuple[Claim | None, bool, int]:
    """Record finished calls (grouped by the claim they belong to), then claim up to ``limit``
    more (see ``number_batch_claim``), in one transaction; returns the claim (None when
    none was asked for), whether Multitel rejected the tenant's credentials, and how many
    numbers are now final (a lease lost meanwhile writes nothing; a deferred outcome is not
    final).

    After an upstream 401 nothing more is claimed: every pending number of the job
    fails without a call, since each would be refused too.

    The tenant's breaker is told of the calls when they show trouble (this process saw
    a burst of failures, the breaker was open, or a number ended on a retryable
    failure). While it is open, a queued number that got no answer goes back to
    pending instead of failing: an outage uses up no attempt. A queued number whose
    first round of attempts got no answer at all goes back to pending too, for a second
    round later: it may have met the first seconds of an outage, before the bursts that
    open the breaker were seen (each process counts its own, and with the cap's slots
    spread over many hosts each sees few calls). Only a second round unanswered fails it.
    """
    tenant: Tenant = job.tenant
    outcomes = {result.pk: outcome for result, outcome in finished}
    rejected = False
    for outcome in outcomes.values():
        if outcome.status_code == 401:
            outcome.message = UPSTREAM_AUTH_MESSAGE
            rejected = True
    by_token: dict[str, list[NumberResult]] = {}
    for result, _ in finished:
        by_token.setdefault(result.lease_token or "", []).append(result)
    claim: Claim | None = None
    now = timezone.now()
    troubled = health.is_open or breaker_seen or any(unanswered_retryable(o) for o in outcomes.values())
    with transaction.atomic():
        if job.is_sync:
            commit_unflushed()  # the completion's commit, which the client waits for, flushes it
        breaker_open = False
        if troubled:
            view = breaker_outcomes_record(
                tenant_id=tenant.pk,
                outcomes=outcomes.values(),
                tripped_at=health.tripped_at,
                last_error=health.last_error,
                now=now,
            )
            health.sync(view)
            breaker_open = view.is_open
        for result, outcome in finished:
            # A client waiting on a synchronous answer gets the error now; queued work waits.
            outcome.deferred = not job.is_sync and (
                outcome.deferred
                or (breaker_open and unanswered_retryable(outcome))
                or (never_answered(outcome) and result.attempts < settings.MULTITEL_MAX_ATTEMPTS)
            )
        written = 0
        for token, results in by_token.items():
            written += number_results_record(
                job_id=job.pk,
                token=token,
                results=results,
                outcomes={r.pk: outcomes[r.pk] for r in results},
                now=now,
            )
        if limit and not rejected:
            claim = number_batch_claim(
                job_id=job.pk,
                tenant=tenant,
                limit=limit,
                for_sync=job.is_sync,
                after=after,
                now=now,
                breaker_checked=breaker_checked and not troubled,
            )
            health.sync(claim.breaker)
            if claim.probe:
                health.probe()
    if rejected:
        job_fail_pending(job_id=job.pk, status_code=401, message=UPSTREAM_AUTH_SKIPPED_MESSAGE)
    return claim, rejected, written
