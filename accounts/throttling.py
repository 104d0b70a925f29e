"""Rate limits shared by every process through the cache (fixed windows).

DRF's own throttles keep a list of timestamps per client, read and rewritten
on every request; a fixed-window counter (``cache.add`` + ``cache.incr``,
atomic on Redis) costs one small key per client and window instead.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ImproperlyConfigured
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

from accounts.models import Tenant

PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True)
class Rate:
    limit: int
    period: int


def parse_rate(value: str) -> Rate | None:
    """``"600/min"`` → Rate(600, 60); ``"off"`` (or empty) → None."""
    value = value.strip().lower()
    if value in ("", "off", "none", "0"):
        return None
    try:
        count, unit = value.split("/", 1)
        return Rate(limit=int(count), period=PERIODS[unit.strip()[0]])
    except (ValueError, KeyError, IndexError) as exc:
        raise ImproperlyConfigured(f"Invalid rate {value!r}: use N/s, N/min, N/h or N/day.") from exc


@dataclass(frozen=True)
class WindowState:
    count: int
    retry_after: float


def window_hit(*, name: str, rate: Rate, now: float | None = None) -> WindowState:
    """Count one event for ``name`` in the current window."""
    now = time.time() if now is None else now
    window = int(now // rate.period)
    key = f"rl:{name}:{window}"
    cache.add(key, 0, timeout=rate.period + 1)
    try:
        count = cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.set(key, 1, timeout=rate.period + 1)
        count = 1
    return WindowState(count=count, retry_after=(window + 1) * rate.period - now)


def window_peek(*, name: str, rate: Rate, now: float | None = None) -> WindowState:
    """The current window's count for ``name``, without counting."""
    now = time.time() if now is None else now
    window = int(now // rate.period)
    count = cache.get(f"rl:{name}:{window}", 0)
    return WindowState(count=int(count), retry_after=(window + 1) * rate.period - now)


class TenantRateThrottle(BaseThrottle):
    """At most ``API_THROTTLE_RATE`` requests per tenant, over all its credentials."""

    def __init__(self) -> None:
        self.retry_after: float | None = None

    def allow_request(self, request: Request, view: Any) -> bool:
        rate = parse_rate(settings.API_THROTTLE_RATE)
        tenant = request.user
        if rate is None or not isinstance(tenant, Tenant):
            return True
        state = window_hit(name=f"tenant:{tenant.pk}", rate=rate)
        if state.count > rate.limit:
            self.retry_after = state.retry_after
            return False
        return True

    def wait(self) -> float | None:
        return self.retry_after


def client_address(request: Any) -> str:
    return str(request.META.get("REMOTE_ADDR") or "unknown")
