"""Helpers shared by the tests of restores' services."""

from __future__ import annotations

from django.utils import timezone

from restores.multitel import AttemptRecord, RestoreOutcome


def plain_numbers(count: int, start: int = 15551240001) -> list[str]:
    """Plain-success numbers for the simulated Multitel (all end in 01)."""
    return [str(start + i * 100) for i in range(count)]


def recorded_outcome(success: bool = True) -> RestoreOutcome:
    """What the Multitel client returns for one number after one attempt."""
    attempt = AttemptRecord(
        attempt_number=1,
        started_at=timezone.now(),
        duration_ms=5,
        http_status=200,
        envelope_code="200" if success else "500",
        outcome="success" if success else "failed",
        error="" if success else "boom",
        body_excerpt="{}",
    )
    return RestoreOutcome(
        success=success,
        status_code=200 if success else 500,
        message="Number restored" if success else "Error: 'boom'",
        attempts=[attempt],
    )
