"""The tenant's concurrency cap, shared out as call slots: who may have how many calls in flight.

A task that restores numbers holds a ``SlotLease``: a number of slots of its
tenant's ``max_concurrency``, renewed with its number leases and released when
it ends (or when its holder dies, once ``RESTORE_LEASE_SECONDS`` pass). Each
slot is one upstream call in flight at most, so the live slots of a tenant
never exceed its cap, across every process and host; the numbers themselves
are claimed ahead and recorded behind, in batches, without a round trip
between one call's end and the next call's start.

Synchronous requests come first: a queued task's share leaves room for the
numbers of the tenant's synchronous requests still waiting for a slot (within
``SYNC_DEADLINE``), and gives slots back while such a request waits.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Sum
from django.utils import timezone

from accounts.models import Tenant
from portal.durability import commit_unflushed
from restores.models import Job, NumberResult, SlotLease
from restores.services.workers import worker_name


def tenant_slots_in_use(*, tenant_id: int, now: datetime | None = None, exclude_token: str = "") -> int:
    """Slots of the tenant held right now: at most that many of its upstream calls are in flight."""
    leases = SlotLease.objects.live(now or timezone.now()).filter(tenant_id=tenant_id)
    if exclude_token:
        leases = leases.exclude(token=exclude_token)
    return int(leases.aggregate(n=Sum("slots"))["n"] or 0)


def tenant_sync_waiting(*, tenant_id: int, now: datetime | None = None) -> int:
    """Numbers of the tenant's synchronous requests that wait for a slot: what queued work must
    leave room for. Only requests within their ``SYNC_DEADLINE`` count, so a request whose
    process died holds nothing back for long."""
    now = now or timezone.now()
    pending = NumberResult.objects.sync_waiting(tenant_id=tenant_id, since=_sync_since(now)).count()
    if not pending:
        return 0
    held = SlotLease.objects.live(now).filter(tenant_id=tenant_id, for_sync=True).aggregate(n=Sum("slots"))
    return max(0, pending - int(held["n"] or 0))


def _sync_since(now: datetime) -> datetime:
    return now - timedelta(seconds=settings.SYNC_DEADLINE)


def slots_acquire(
    *,
    tenant: Tenant,
    token: str,
    job_id: int,
    want: int,
    for_sync: bool = False,
    held: int | None = None,
    now: datetime | None = None,
) -> int:
    """Hold up to ``want`` slots of the tenant under ``token`` (the ones already held count);
    returns how many are held now, never more than the cap leaves.

    The slots in use are counted and the lease written in one transaction, serialised per
    tenant (a row lock on the tenant on PostgreSQL; SQLite's IMMEDIATE transactions
    serialise all writers). ``want`` below what is held gives the rest back. ``held``: the
    caller knows how many it holds (0: none yet), so they are not read.
    """
    now = now or timezone.now()
    expires_at = now + timedelta(seconds=settings.RESTORE_LEASE_SECONDS)
    first_of_a_request = for_sync and held == 0
    if (
        not first_of_a_request  # a client waits: ask straight away, with the lock
        and not transaction.get_connection().in_atomic_block
        and tenant_cap_full(tenant=tenant, now=now)
    ):
        # The cap is full: say so with a plain read, without the tenant's lock (or SQLite's
        # writer lock), which the holders need to record their calls. The slots already
        # held count in that read, so a holder asking for more learns it holds what it can.
        return SlotLease.objects.filter(token=token).values_list("slots", flat=True).first() or 0
    with transaction.atomic(savepoint=False):
        if for_sync:
            commit_unflushed()  # the request's last commit, which its client waits for, flushes it
        if connection.vendor == "postgresql":
            list(Tenant.objects.select_for_update().filter(pk=tenant.pk).values_list("pk"))
        mine = held
        if mine is None:
            mine = SlotLease.objects.filter(token=token).values_list("slots", flat=True).first() or 0
        if want <= mine:
            return slots_set(token=token, slots=want, now=now)
        room = tenant.max_concurrency - tenant_slots_in_use(tenant_id=tenant.pk, now=now, exclude_token=token)
        if not for_sync:
            room -= tenant_sync_waiting(tenant_id=tenant.pk, now=now)
        granted = max(mine, min(want, room))
        if granted == mine:
            return mine
        lease = {"slots": granted, "expires_at": expires_at}
        if mine and SlotLease.objects.filter(token=token).update(**lease):
            return granted
        # None held yet: no lease row (giving every slot back deletes it). Or the lease ran
        # out and was swept while its holder was cut off from the database: a new one.
        SlotLease.objects.create(
            token=token, tenant_id=tenant.pk, job_id=job_id, for_sync=for_sync, holder=worker_name(), **lease
        )
        return granted


def slots_set(*, token: str, slots: int, now: datetime | None = None) -> int:
    """Keep ``slots`` of the slots held with ``token`` (0: release them all); returns ``slots``."""
    if slots <= 0:
        SlotLease.objects.filter(token=token).delete()
        return 0
    SlotLease.objects.filter(token=token, slots__gt=slots).update(slots=slots)
    return slots


def slots_renew(*, token: str, now: datetime) -> bool:
    """Extend the slots held with ``token`` by ``RESTORE_LEASE_SECONDS`` from ``now``; False when
    they are no longer held: they ran out first (their holder was cut off from the database
    for longer than a lease), and others may hold them now. A lease that ran out is never
    renewed: the cap was counted without it."""
    return bool(
        SlotLease.objects.live(now)
        .filter(token=token)
        .update(expires_at=now + timedelta(seconds=settings.RESTORE_LEASE_SECONDS))
    )


def others_waiting_for_a_worker(*, tenant_id: int, idle: bool = False, now: datetime | None = None) -> bool:
    """A queued job of another tenant whose cap has room has waited for a worker for longer
    than ``FAIR_WAIT_SECONDS`` (but not so long that its wake-up is more likely lost than
    queued: ``FAIR_WAIT_GIVE_UP_SECONDS``; the sweeper sees to that one).

    ``idle``: the asking task can do nothing (its tenant's cap is full), so a job under way
    whose tenant's cap has room its tasks do not fill counts too: its tasks wait in the queue
    behind tasks like this one. (A task that holds slots hands over only to jobs that have
    not started: handing over to every tenant below its cap would pass the workers round and
    round when there are more tenants than workers.)"""
    now = now or timezone.now()
    since = now - timedelta(seconds=FAIR_WAIT_GIVE_UP_SECONDS)
    waiting = set(
        Job.objects.waiting_for_a_worker(since=since, before=now - timedelta(seconds=FAIR_WAIT_SECONDS))
        .exclude(tenant_id=tenant_id)
        .values_list("tenant_id", "tenant__max_concurrency")
        .distinct()[:5]
    )
    if idle:
        waiting |= set(
            Job.objects.under_way_with_work(since=since)
            .exclude(tenant_id=tenant_id)
            .values_list("tenant_id", "tenant__max_concurrency")
            .distinct()[:5]
        )
    return any(tenant_slots_in_use(tenant_id=other, now=now) < cap for other, cap in waiting)


def tenant_cap_full(*, tenant: Tenant, now: datetime | None = None) -> bool:
    """Every slot of the tenant's cap is held: a task of it that holds none can do nothing."""
    return tenant_slots_in_use(tenant_id=tenant.pk, now=now or timezone.now()) >= tenant.max_concurrency


# A queued job not started this long after its creation waits for a worker; one not
# started after the longer time is left to the sweeper (its wake-up may be lost).
FAIR_WAIT_SECONDS = 0.2
FAIR_WAIT_GIVE_UP_SECONDS = 30.0
