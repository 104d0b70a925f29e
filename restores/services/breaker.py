"""The upstream circuit breaker of each tenant's Multitel account, shared by every process.

An outage must not use up the numbers' attempts. So a burst of retryable
failures (``UPSTREAM_BREAKER_FAILURES`` in a row, counted attempt by attempt in
each process by ``clients.upstream_health``) opens the tenant's breaker; while it
is open nothing of the tenant is claimed, numbers whose calls were cut short go
back to pending, and a synchronous request is answered at once with 503 results.
After a cooldown one claim (the probe) may take one number; an answer closes
the breaker and work resumes, a retryable failure opens it again for twice the
cooldown (up to ``UPSTREAM_BREAKER_COOLDOWN_MAX``). Only an outage longer than
``UPSTREAM_OUTAGE_MAX`` fails the numbers it holds back (``breaker_outage_fail``).

Every change of state is one conditional UPDATE, a ``BreakerEvent`` and a log line.
The functions that change the state run in the claim's or the recording's
transaction, under the tenant's lock (PostgreSQL) or SQLite's writer lock.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import ClassVar

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.models import Tenant
from restores.clients.multitel import RestoreOutcome
from restores.models import BreakerEvent, Job, UpstreamBreaker
from restores.services.completion import job_complete_if_done, job_fail_pending
from restores.services.workers import worker_name

logger = logging.getLogger(__name__)

State = UpstreamBreaker.State


class Admission(enum.Enum):
    """What a claim may take: everything the cap allows, one number (the probe), or nothing."""

    ALL = "all"
    PROBE = "probe"
    NONE = "none"


@dataclass(frozen=True)
class BreakerView:
    """The breaker as a claim found it: its state and when that state began (None: no row)."""

    state: str = State.CLOSED
    changed_at: datetime | None = None

    CLOSED: ClassVar[BreakerView]

    @property
    def is_open(self) -> bool:
        return self.state != State.CLOSED


BreakerView.CLOSED = BreakerView()


def breaker_admission(
    *, tenant_id: int, token: str, for_sync: bool, now: datetime
) -> tuple[Admission, BreakerView]:
    """How much a claim of the tenant may take, given its breaker; in the claim's transaction.

    A queued claim that finds the cooldown over (or a probe whose holder went quiet)
    becomes the probe: the breaker turns half open with ``token`` as its probe, and the
    claim may take one number. A synchronous request never probes: a client is waiting.
    """
    breaker = UpstreamBreaker.objects.filter(tenant_id=tenant_id).first()
    if breaker is None or breaker.state == State.CLOSED:
        return Admission.ALL, _view(breaker)
    probe_due = (
        breaker.state == State.OPEN and breaker.retry_at is not None and breaker.retry_at <= now
    ) or (
        breaker.state == State.HALF_OPEN
        and breaker.probe_expires_at is not None
        and breaker.probe_expires_at <= now
    )
    if for_sync or not probe_due:
        return Admission.NONE, _view(breaker)
    won = UpstreamBreaker.objects.filter(
        pk=breaker.pk, state=breaker.state, changed_at=breaker.changed_at
    ).update(
        state=State.HALF_OPEN,
        probe_token=token,
        probe_expires_at=now + timedelta(seconds=settings.RESTORE_LEASE_SECONDS),
        changed_at=now,
    )
    if won != 1:
        return Admission.NONE, _view(breaker)  # another claim became the probe first
    _event(
        tenant_id=tenant_id,
        state=State.HALF_OPEN,
        reason="cooldown over: one number probes Multitel",
        now=now,
    )
    return Admission.PROBE, BreakerView(state=State.HALF_OPEN, changed_at=now)


def _view(breaker: UpstreamBreaker | None) -> BreakerView:
    return (
        BreakerView() if breaker is None else BreakerView(state=breaker.state, changed_at=breaker.changed_at)
    )


def answered(outcome: RestoreOutcome) -> bool:
    """Multitel answered at least one attempt of the number (even with an error envelope)."""
    return any(a.http_status is not None and a.outcome != "retryable" for a in outcome.attempts)


def never_answered(outcome: RestoreOutcome) -> bool:
    """Every attempt of the number ended on a retryable failure: Multitel never answered it."""
    return (
        not outcome.success
        and not outcome.deferred
        and bool(outcome.attempts)
        and all(a.outcome == "retryable" for a in outcome.attempts)
    )


def unanswered_retryable(outcome: RestoreOutcome) -> bool:
    """The number ended on a retryable failure (or was cut short by the breaker)."""
    if outcome.deferred:
        return True
    return not outcome.success and bool(outcome.attempts) and outcome.attempts[-1].outcome == "retryable"


def breaker_outcomes_record(
    *,
    tenant_id: int,
    outcomes: Iterable[RestoreOutcome],
    tripped_at: datetime | None,
    last_error: str = "",
    now: datetime | None = None,
) -> BreakerView:
    """Update the tenant's breaker with finished calls; in the recording's transaction.

    ``tripped_at``: when this process saw a burst of retryable failures that no answer has
    ended (None: it has not). An answer from Multitel closes an open or half-open breaker;
    a trip opens a closed one, unless the breaker closed after it (the trip belongs to the
    outage that ended then: its process has not heard yet); a probe that failed opens it
    again for a longer cooldown. Returns the breaker as it is now.
    """
    now = now or timezone.now()
    outcomes = list(outcomes)
    breaker = UpstreamBreaker.objects.filter(tenant_id=tenant_id).first()
    state = State.CLOSED if breaker is None else breaker.state
    any_answer = any(answered(o) for o in outcomes)
    if state == State.CLOSED:
        closed_since = breaker.changed_at if breaker is not None else None
        fresh_trip = tripped_at is not None and (closed_since is None or tripped_at > closed_since)
        if fresh_trip and not any_answer:
            return _open(tenant_id=tenant_id, breaker=breaker, last_error=last_error, now=now)
        return _view(breaker)
    assert breaker is not None
    if any_answer:
        return _close(breaker=breaker, now=now)
    if state == State.HALF_OPEN and any(unanswered_retryable(o) for o in outcomes):
        return _open(tenant_id=tenant_id, breaker=breaker, last_error=last_error, now=now)
    return _view(breaker)


def _open(*, tenant_id: int, breaker: UpstreamBreaker | None, last_error: str, now: datetime) -> BreakerView:
    """Open the breaker: the first time for an outage (from closed), or again after a failed probe."""
    if breaker is None:
        breaker, _ = UpstreamBreaker.objects.get_or_create(tenant_id=tenant_id, defaults={"changed_at": now})
    reopening = breaker.state == State.HALF_OPEN
    cooldown = (
        min(breaker.cooldown_seconds * 2, settings.UPSTREAM_BREAKER_COOLDOWN_MAX)
        if reopening
        else settings.UPSTREAM_BREAKER_COOLDOWN
    )
    won = UpstreamBreaker.objects.filter(
        pk=breaker.pk, state=breaker.state, changed_at=breaker.changed_at
    ).update(
        state=State.OPEN,
        outage_started_at=breaker.outage_started_at if reopening else now,
        retry_at=now + timedelta(seconds=cooldown),
        cooldown_seconds=cooldown,
        probe_token="",
        probe_expires_at=None,
        last_error=last_error[:300],
        changed_at=now,
    )
    if won != 1:
        return _view(UpstreamBreaker.objects.filter(pk=breaker.pk).first())
    if reopening:
        reason = f"probe failed ({last_error or 'no answer'}); next probe in {cooldown:g} s"
    else:
        reason = (
            f"{settings.UPSTREAM_BREAKER_FAILURES} retryable failures in a row "
            f"(last: {last_error or 'no answer'}); next probe in {cooldown:g} s"
        )
    _event(tenant_id=tenant_id, state=State.OPEN, reason=reason, now=now)
    return BreakerView(state=State.OPEN, changed_at=now)


def _close(*, breaker: UpstreamBreaker, now: datetime) -> BreakerView:
    won = UpstreamBreaker.objects.filter(
        pk=breaker.pk, state=breaker.state, changed_at=breaker.changed_at
    ).update(
        state=State.CLOSED,
        outage_started_at=None,
        retry_at=None,
        cooldown_seconds=0,
        probe_token="",
        probe_expires_at=None,
        changed_at=now,
    )
    if won != 1:
        return _view(UpstreamBreaker.objects.filter(pk=breaker.pk).first())
    lasted = (now - breaker.outage_started_at).total_seconds() if breaker.outage_started_at else 0
    _event(
        tenant_id=breaker.tenant_id,
        state=State.CLOSED,
        reason=f"Multitel answered again after {lasted:.1f} s; work resumes",
        now=now,
    )
    return BreakerView(state=State.CLOSED, changed_at=now)


def _event(*, tenant_id: int, state: str, reason: str, now: datetime) -> None:
    BreakerEvent.objects.create(
        tenant_id=tenant_id, at=now, state=state, reason=reason[:300], worker=worker_name()
    )
    tenant_name = Tenant.objects.filter(pk=tenant_id).values_list("name", flat=True).first()
    logger.warning(
        "upstream breaker %s: %s", state, reason, extra={"tenant": tenant_name, "breaker_state": state}
    )


def outage_message(*, since: datetime) -> str:
    minutes = settings.UPSTREAM_OUTAGE_MAX / 60
    return (
        f"Error: 'not tried: Multitel has been unavailable since {since:%Y-%m-%d %H:%M:%S} UTC, "
        f"an outage longer than {minutes:g} minutes'"
    )


def breaker_outage_fail(*, tenant_id: int | None = None, now: datetime | None = None) -> int:
    """Fail the numbers an open breaker has held back for longer than ``UPSTREAM_OUTAGE_MAX``
    (counted from the outage's start, or from the job's creation if it came later), with a
    message that names the outage; complete the jobs that leaves done. Returns how many
    numbers failed."""
    now = now or timezone.now()
    limit = now - timedelta(seconds=settings.UPSTREAM_OUTAGE_MAX)
    breakers = UpstreamBreaker.objects.not_closed().filter(outage_started_at__lte=limit)
    if tenant_id is not None:
        breakers = breakers.filter(tenant_id=tenant_id)
    failed = 0
    for breaker_tenant_id, since in list(breakers.values_list("tenant_id", "outage_started_at")):
        assert since is not None  # filtered on it
        jobs = Job.objects.active().of_tenant(breaker_tenant_id).filter(created_at__lte=limit, is_sync=False)
        for job_id in list(jobs.values_list("pk", flat=True)):
            with transaction.atomic():
                failed += job_fail_pending(
                    job_id=job_id, status_code=503, message=outage_message(since=since)
                )
            job_complete_if_done(job_id=job_id)
    return failed
