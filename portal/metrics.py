"""Prometheus metrics at ``/metrics``, computed from the database at scrape time.

Why from the database: web and worker processes run on many hosts and are
restarted at will; counters kept in each process would be lost with it and
would have to be summed across hosts. The database already holds the truth
for all of them, so a scrape reads it. Each app registers the collector of its
families (``metrics_collector_register``, from its ``AppConfig.ready``); the
restore engine's families and how to read them are in ``restores.metrics``.

Access: a client address in ``METRICS_ALLOWED_IPS`` (only for requests that
came straight to the portal, without a proxy's forwarding header: behind a
reverse proxy every client would seem to come from the proxy's address), or
``Authorization: Bearer <METRICS_TOKEN>``. Anyone else gets 403 in the API's
error shape.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import time
from collections.abc import Callable, Iterator
from functools import lru_cache

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.registry import Collector

from portal.api_errors import error_body

logger = logging.getLogger(__name__)

# Headers a reverse proxy adds: a request with one did not come straight from its client.
FORWARDING_HEADERS = ("HTTP_X_FORWARDED_FOR", "HTTP_FORWARDED", "HTTP_X_REAL_IP")

_collector_factories: list[Callable[[], Collector]] = []


def metrics_collector_register(factory: Callable[[], Collector]) -> None:
    """Serve the families of ``factory()`` at every scrape (a new collector per scrape)."""
    if factory not in _collector_factories:
        _collector_factories.append(factory)


class _ScrapeCollector(Collector):
    """Every registered app's families, then how long the scrape took."""

    def collect(self) -> Iterator[Metric]:
        started = time.monotonic()
        for factory in _collector_factories:
            yield from factory().collect()
        duration = GaugeMetricFamily(
            "portal_metrics_scrape_duration_seconds", "Time this scrape took to compute."
        )
        duration.add_metric([], time.monotonic() - started)
        yield duration


@lru_cache(maxsize=8)
def _networks(allowed: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    networks = []
    for entry in filter(None, (a.strip() for a in allowed)):
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            logger.warning("METRICS_ALLOWED_IPS: %r is not an address or network; ignored", entry)
    return tuple(networks)


def _token_ok(request: HttpRequest) -> bool:
    token = settings.METRICS_TOKEN
    if not token:
        return False
    scheme, _, given = request.headers.get("Authorization", "").strip().partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        return False
    return hmac.compare_digest(given.strip().encode("utf-8", "replace"), token.encode("utf-8"))


def _address_ok(request: HttpRequest) -> bool:
    if any(request.META.get(h) for h in FORWARDING_HEADERS):
        return False
    try:
        address = ipaddress.ip_address(str(request.META.get("REMOTE_ADDR", "")).strip())
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return any(
        address.version == net.version and address in net
        for net in _networks(tuple(settings.METRICS_ALLOWED_IPS))
    )


def metrics_allowed(request: HttpRequest) -> bool:
    return _token_ok(request) or _address_ok(request)


@never_cache
@require_safe
def metrics(request: HttpRequest) -> HttpResponse:
    if not metrics_allowed(request):
        return JsonResponse(
            error_body(
                "permission_denied",
                "Metrics are served only to allowed addresses or with the metrics bearer token.",
            ),
            status=403,
        )
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_ScrapeCollector())
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_PLAIN_0_0_4)
