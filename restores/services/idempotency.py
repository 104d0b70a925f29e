"""``Idempotency-Key``: one answer per key, replayed (docs/api.md, "Idempotency")."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import Tenant
from restores.models import IdempotencyKey, Job


@dataclass(frozen=True)
class IdempotencyDecision:
    """What to do with a request that carries an Idempotency-Key."""

    record: IdempotencyKey | None = None  # go ahead, then call idempotency_key_finish
    replay_status: int | None = None  # or answer again with what was answered then
    replay_body: object = None
    conflict: str | None = None  # or refuse: "in_progress" (409) or "mismatch" (422)


def idempotency_key_begin(*, tenant: Tenant, key: str, request_hash: str) -> IdempotencyDecision:
    """Reserve ``key`` for this request, or say why not (docs/api.md#idempotency).

    The unique constraint on (tenant, key) decides between two identical
    requests racing each other: exactly one gets the record, the other sees it
    in progress (409). A key older than ``IDEMPOTENCY_KEY_HOURS``, or one left
    in progress by a request that died, is taken over.
    """
    for _ in range(3):
        now = timezone.now()
        lock = now + timedelta(seconds=settings.SYNC_DEADLINE + 60)
        try:
            with transaction.atomic():
                record = IdempotencyKey.objects.create(
                    tenant=tenant, key=key, request_hash=request_hash, created_at=now, locked_until=lock
                )
            return IdempotencyDecision(record=record)
        except IntegrityError:
            pass
        existing = IdempotencyKey.objects.filter(tenant=tenant, key=key).first()
        if existing is None:
            continue  # purged meanwhile: try again
        expired = existing.created_at < now - timedelta(hours=settings.IDEMPOTENCY_KEY_HOURS)
        abandoned = existing.state == IdempotencyKey.State.IN_PROGRESS and existing.locked_until < now
        if expired or abandoned:
            taken = IdempotencyKey.objects.filter(
                pk=existing.pk, created_at=existing.created_at, locked_until=existing.locked_until
            ).update(
                request_hash=request_hash,
                state=IdempotencyKey.State.IN_PROGRESS,
                response_status=None,
                response_body=None,
                job=None,
                created_at=now,
                locked_until=lock,
            )
            if taken:
                existing.refresh_from_db()
                return IdempotencyDecision(record=existing)
            continue
        if existing.request_hash != request_hash:
            return IdempotencyDecision(conflict="mismatch")
        if existing.state == IdempotencyKey.State.IN_PROGRESS:
            return IdempotencyDecision(conflict="in_progress")
        return IdempotencyDecision(replay_status=existing.response_status, replay_body=existing.response_body)
    return IdempotencyDecision(conflict="in_progress")


def idempotency_key_finish(*, record: IdempotencyKey, status: int, body: object, job: Job | None) -> None:
    """Remember a successful answer for replay; forget the key after an error so it can be reused."""
    if 200 <= status < 300:
        IdempotencyKey.objects.filter(pk=record.pk).update(
            state=IdempotencyKey.State.COMPLETED, response_status=status, response_body=body, job=job
        )
    else:
        IdempotencyKey.objects.filter(pk=record.pk, state=IdempotencyKey.State.IN_PROGRESS).delete()


def idempotency_keys_purge(*, now: datetime | None = None) -> int:
    cutoff = (now or timezone.now()) - timedelta(hours=settings.IDEMPOTENCY_KEY_HOURS)
    deleted, _ = IdempotencyKey.objects.filter(created_at__lt=cutoff).delete()
    return deleted
