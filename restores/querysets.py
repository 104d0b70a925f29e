"""The status filters of jobs and numbers, each written once.

Every rule about which rows are "pending", "leased right now", "active" or
"due" lives here, so the services, the selectors, the metrics and the admin
ask the same question the same way. The partial indexes of ``models`` are
built on exactly these conditions.

Statuses are read from ``self.model`` so that this module needs nothing from
``models``, which builds its managers from these classes.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, Self

from django.db import models

if TYPE_CHECKING:
    from restores.models import Job, NumberResult, SlotLease, UpstreamBreaker  # noqa: F401 (the querysets' type arguments)


class JobQuerySet(models.QuerySet["Job"]):
    def of_tenant(self, tenant_id: int) -> Self:
        return self.filter(tenant_id=tenant_id)

    def newest_first(self) -> Self:
        return self.order_by("-created_at", "-id")

    def older_than(self, created_at: datetime, job_id: int) -> Self:
        """After the job (``created_at``, ``job_id``) in ``newest_first`` order: a page's next."""
        return self.filter(
            models.Q(created_at__lt=created_at) | models.Q(created_at=created_at, id__lt=job_id)
        )

    def active(self) -> Self:
        """Pending or processing: numbers may still be restored."""
        return self.filter(status__in=self.model.ACTIVE_STATUSES)

    def finished(self) -> Self:
        """Completed or cancelled: every number is final, the webhook may be sent."""
        return self.filter(status__in=self.model.FINISHED_STATUSES)

    def webhook_outstanding(self) -> Self:
        """Jobs whose webhook waits for its first attempt or a retry."""
        return self.filter(webhook_state__in=self.model.WEBHOOK_OUTSTANDING_STATES)

    def webhook_due(self, now: datetime) -> Self:
        """Jobs whose next webhook attempt is due at ``now``."""
        return self.webhook_outstanding().filter(webhook_next_attempt_at__lte=now)

    def webhook_failing(self) -> Self:
        """Jobs whose webhook failed at least once and was not delivered since."""
        return self.filter(webhook_state__in=self.model.WEBHOOK_FAILING_STATES)

    def waiting_for_a_worker(self, *, since: datetime, before: datetime) -> Self:
        """Queued jobs created between ``since`` and ``before`` that no task has started yet:
        every worker is busy (a free one starts a job within a poll of the queue)."""
        return self.filter(status=self.model.Status.PENDING, is_sync=False, created_at__range=(since, before))

    def under_way_with_work(self, *, since: datetime) -> Self:
        """Queued jobs that have started, still have numbers to claim and were touched since
        ``since``, of tenants whose upstream breaker is closed: their tasks may be waiting in
        the queue while their tenant's cap has room."""
        return (
            self.filter(status=self.model.Status.PROCESSING, is_sync=False, heartbeat_at__gte=since)
            .filter(results__status="pending")
            .exclude(tenant__upstream_breaker__state__in=["open", "half_open"])
        )

    def idle_since(self, when: datetime) -> Self:
        """Active jobs nobody touched since ``when`` (their queue message may be lost)."""
        return self.active().filter(heartbeat_at__lte=when)


class NumberResultQuerySet(models.QuerySet["NumberResult"]):
    def of_job(self, job_id: int) -> Self:
        return self.filter(job_id=job_id)

    def of_tenant(self, tenant_id: int) -> Self:
        return self.filter(job__tenant_id=tenant_id)

    def pending(self) -> Self:
        """Not claimed yet: the work queue."""
        return self.filter(status=self.model.Status.PENDING)

    def processing(self) -> Self:
        """Claimed under a lease, whether or not the lease is still in force."""
        return self.filter(status=self.model.Status.PROCESSING)

    def leased(self, now: datetime) -> Self:
        """Leased right now: upstream calls in flight, what counts against the cap."""
        return self.processing().filter(lease_expires_at__gt=now)

    def lease_expired(self, now: datetime) -> Self:
        """Claimed by a holder that did not record in time (it died or hung)."""
        return self.processing().filter(lease_expires_at__lt=now)

    def held_by(self, token: str) -> Self:
        """Still leased with ``token``: what that holder may write."""
        return self.processing().filter(lease_token=token)

    def release(self, **changes: Any) -> int:
        """End the lease of every number here (if any) and apply ``changes``; returns how many."""
        return self.update(lease_token=None, lease_expires_at=None, **changes)

    def unfinished(self) -> Self:
        """Without a final result yet: pending or processing."""
        return self.filter(status__in=[self.model.Status.PENDING, self.model.Status.PROCESSING])

    def failed(self) -> Self:
        return self.filter(status=self.model.Status.FAILED)

    def final(self) -> Self:
        return self.filter(status__in=self.model.FINAL_STATUSES)

    def claimable(self) -> Self:
        """Pending numbers of active jobs, in submission order."""
        job_model: Any = self.model._meta.get_field("job").related_model
        return self.pending().filter(job__status__in=job_model.ACTIVE_STATUSES).order_by("position")

    def sync_waiting(self, *, tenant_id: int, since: datetime) -> Self:
        """Numbers of the tenant's synchronous requests made since ``since`` not yet started."""
        return self.of_tenant(tenant_id).pending().filter(job__is_sync=True, job__created_at__gte=since)


class UpstreamBreakerQuerySet(models.QuerySet["UpstreamBreaker"]):
    def not_closed(self) -> Self:
        """Open or half open: Multitel is down for the tenant (read by the state index)."""
        State = self.model.State
        return self.filter(state__in=[State.OPEN, State.HALF_OPEN])


class SlotLeaseQuerySet(models.QuerySet["SlotLease"]):
    def live(self, now: datetime) -> Self:
        """Held right now: their holder renewed them in time."""
        return self.filter(expires_at__gt=now)

    def expired(self, now: datetime) -> Self:
        """Not renewed in time: their holder died."""
        return self.filter(expires_at__lte=now)
