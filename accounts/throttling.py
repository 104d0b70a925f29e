"""Rate limits shared by every process through the cache (fixed windows), and the client's address.

DRF's own throttles keep a list of timestamps per client, read and rewritten
on every request; a fixed-window counter (``cache.add`` + ``cache.incr``,
atomic on Redis) costs one small key per client and window instead.

The limits fail open: while the cache cannot be reached (Redis restarting, a network
fault; Django's ``RedisCache`` raises redis-py's ``ConnectionError``/``TimeoutError``),
every counter reads as zero, requests are served as if under the limit, and a warning is
logged at most once every ``CACHE_WARNING_INTERVAL`` seconds per process. Refusing, or
answering 500, would make a cache outage an outage of the API.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import threading
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ImproperlyConfigured
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

from accounts.models import Tenant

logger = logging.getLogger(__name__)

PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}

# Seconds between two warnings about the cache being out of reach (per process).
CACHE_WARNING_INTERVAL = 60.0
_cache_warning_lock = threading.Lock()
_cache_warning_at: float | None = None  # time.monotonic() of the last warning
_cache_failures_unlogged = 0  # failures since then


def _cache_failed(exc: Exception, operation: str) -> None:
    """Log that the cache failed and the limits are not enforced, at most once per interval."""
    global _cache_warning_at, _cache_failures_unlogged
    now = time.monotonic()
    with _cache_warning_lock:
        if _cache_warning_at is not None and now - _cache_warning_at < CACHE_WARNING_INTERVAL:
            _cache_failures_unlogged += 1
            return
        earlier, _cache_failures_unlogged = _cache_failures_unlogged, 0
        _cache_warning_at = now
    # The exception's class only: its message can name the cache's host and port.
    logger.warning(
        "rate-limit cache unavailable (%s on %s); rate limits are not enforced until it answers"
        " (%d more failures since the last warning)",
        type(exc).__name__,
        operation,
        earlier,
    )


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


def window_hit(*, name: str, rate: Rate, now: float | None = None, amount: int = 1) -> WindowState:
    """Count ``amount`` events (one by default) for ``name`` in the current window.

    If the cache fails, nothing is counted and the count is 0 (fail open)."""
    now = time.time() if now is None else now
    window = int(now // rate.period)
    key = f"rl:{name}:{window}"
    retry_after = (window + 1) * rate.period - now
    try:
        cache.add(key, 0, timeout=rate.period + 1)
        try:
            count = cache.incr(key, amount)
        except ValueError:  # expired between add and incr
            cache.set(key, amount, timeout=rate.period + 1)
            count = amount
    except Exception as exc:  # the cache is out of reach: fail open (nothing counted)
        _cache_failed(exc, "count")
        return WindowState(count=0, retry_after=retry_after)
    return WindowState(count=count, retry_after=retry_after)


def window_peek(*, name: str, rate: Rate, now: float | None = None) -> WindowState:
    """The current window's count for ``name``, without counting (0 if the cache fails)."""
    now = time.time() if now is None else now
    window = int(now // rate.period)
    retry_after = (window + 1) * rate.period - now
    try:
        count = cache.get(f"rl:{name}:{window}", 0)
    except Exception as exc:  # the cache is out of reach: fail open (as if nothing counted)
        _cache_failed(exc, "read")
        return WindowState(count=0, retry_after=retry_after)
    return WindowState(count=int(count), retry_after=retry_after)


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


# --- The client's address ------------------------------------------------------------------

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
# An X-Forwarded-For entry may carry a port: 203.0.113.7:4711, [2001:db8::7]:4711.
_IPV4_WITH_PORT = re.compile(r"(\d{1,3}(?:\.\d{1,3}){3}):\d{1,5}")
_BRACKETED_IPV6 = re.compile(r"\[([0-9A-Fa-f:.]+)\](?::\d{1,5})?")


def ip_parse(value: object) -> IPAddress | None:
    """The address in ``value`` (an IPv4-mapped IPv6 address as IPv4; a port dropped), else None."""
    text = str(value or "").strip()
    match = _IPV4_WITH_PORT.fullmatch(text) or _BRACKETED_IPV6.fullmatch(text)
    if match:
        text = match.group(1)
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


@lru_cache(maxsize=8)
def _trusted_networks(entries: tuple[str, ...]) -> tuple[IPNetwork, ...]:
    networks = []
    for entry in filter(None, (e.strip() for e in entries)):
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            logger.warning("TRUSTED_PROXIES: %r is not an address or network; ignored", entry)
    return tuple(networks)


def trusted_proxies_invalid(entries: list[str] | tuple[str, ...]) -> list[str]:
    """The entries of ``TRUSTED_PROXIES`` that are neither an address nor a network."""
    invalid = []
    for entry in filter(None, (e.strip() for e in entries)):
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            invalid.append(entry)
    return invalid


def _is_trusted(address: IPAddress, networks: tuple[IPNetwork, ...]) -> bool:
    return any(address.version == net.version and address in net for net in networks)


def client_address(request: Any) -> str:
    """The address of the client that sent ``request``: the one rule for every client address.

    ``REMOTE_ADDR``, unless it is one of ``TRUSTED_PROXIES``: then ``X-Forwarded-For`` is read
    from the right (each proxy appends the address it got the request from), trusted proxies
    are skipped, and the first other address is the client. Entries left of it were written
    by the client, or by proxies nobody vouches for, and are never believed. A missing or
    garbled header gives ``REMOTE_ADDR``; a header of trusted proxies only, its left-most
    one. With ``TRUSTED_PROXIES`` empty, ``X-Forwarded-For`` is ignored entirely.
    """
    remote = request.META.get("REMOTE_ADDR")
    remote_ip = ip_parse(remote)
    if remote_ip is None:
        return str(remote or "unknown")
    networks = _trusted_networks(tuple(settings.TRUSTED_PROXIES))
    if not networks or not _is_trusted(remote_ip, networks):
        return str(remote_ip)
    header = str(request.META.get("HTTP_X_FORWARDED_FOR") or "").strip()
    if not header:
        return str(remote_ip)
    farthest = remote_ip
    for entry in reversed(header.split(",")):
        hop = ip_parse(entry)
        if hop is None:  # garbled: nothing left of here can be placed
            return str(remote_ip)
        if not _is_trusted(hop, networks):
            return str(hop)
        farthest = hop
    return str(farthest)  # only trusted proxies: the farthest one
