"""Recording upstream outcomes: written only by the holder of a live lease.

A worker that lost its lease (it was too slow, or presumed dead and swept)
cannot overwrite or double-count anything: every write is conditional on the
lease token.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from restores.clients.multitel import RestoreOutcome
from restores.models import Job, NumberResult, UpstreamAttempt


def number_results_record(
    *,
    job_id: int,
    token: str,
    results: Sequence[NumberResult],
    outcomes: dict[int, RestoreOutcome],
    now: datetime | None = None,
) -> int:
    """Write outcomes of numbers still leased with ``token``, their attempts and live counts;
    returns how many results were written. In the caller's transaction when there is one.

    Attempts are stored whatever happened to the lease: they were real calls. A
    ``deferred`` outcome (the tenant's breaker opened) puts its number back to pending.
    Numbers with the same outcome (usually all of a batch) are written by one
    conditional UPDATE (still leased with ``token``), whose row count says how
    many were this holder's to write.
    """
    now = now or timezone.now()
    with transaction.atomic(savepoint=False):
        by_pk = {r.pk: r for r in results}
        attempts: list[UpstreamAttempt] = []
        groups: dict[tuple[bool, int, str, bool, bool, int], list[int]] = {}
        for pk, outcome in outcomes.items():
            attempts.extend(
                UpstreamAttempt(
                    result_id=pk,
                    job_id=job_id,
                    attempt_number=by_pk[pk].attempts + a.attempt_number,
                    started_at=a.started_at,
                    duration_ms=a.duration_ms,
                    http_status=a.http_status,
                    envelope_code=a.envelope_code[:32],
                    outcome=a.outcome,
                    error=a.error,
                    body_excerpt=a.body_excerpt,
                )
                for a in outcome.attempts
            )
            if outcome.deferred:
                continue
            key = (
                outcome.success,
                outcome.status_code,
                outcome.message,
                outcome.requires_identity_update,
                outcome.needs_registration,
                len(outcome.attempts),
            )
            groups.setdefault(key, []).append(pk)
        successes = failures = 0
        deferred = [pk for pk, outcome in outcomes.items() if outcome.deferred]
        for pk in deferred:
            # Cut short by the tenant's open breaker: pending again, to be claimed once
            # Multitel answers; the calls made are counted, no result is written.
            NumberResult.objects.filter(pk=pk).held_by(token).release(
                status=NumberResult.Status.PENDING, attempts=F("attempts") + len(outcomes[pk].attempts)
            )
        for (success, status_code, message, identity, registration, tries), pks in groups.items():
            written = (
                NumberResult.objects.filter(pk__in=pks)
                .held_by(token)
                .release(
                    status=NumberResult.Status.SUCCESS if success else NumberResult.Status.FAILED,
                    status_code=status_code,
                    message=message,
                    requires_identity_update=identity,
                    needs_registration=registration,
                    attempts=F("attempts") + tries,
                    completed_at=now,
                )
            )
            if success:
                successes += written
            else:
                failures += written
        if attempts:
            UpstreamAttempt.objects.bulk_create(attempts)
        Job.objects.filter(pk=job_id).update(
            success_count=F("success_count") + successes,
            failure_count=F("failure_count") + failures,
            heartbeat_at=now,
        )
        return successes + failures
