"""Liveness and readiness probes: unauthenticated, cheap, and never a 500.

``/healthz`` (liveness) answers 200 as long as the process serves requests; it
does no I/O, so a slow database never gets a healthy web process restarted.

``/readyz`` (readiness) answers 200 when this process can do useful work:

- ``database``: ``SELECT 1`` on the default database;
- ``broker``: the django-q2 broker answers (Redis ``PING``; with the ORM
  broker, one indexed lookup in its queue table);
- ``cluster``: at least one qcluster of this ``Q_CLUSTER`` name reports itself
  idle or working (clusters publish their status every few seconds with a
  short expiry, so a killed cluster disappears by itself).

Otherwise it answers 503 and ``failed`` names every part that failed. Errors
are reported by exception class only: a message could carry a host name or a
connection string. Each check is one round trip; nothing scans a table.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

logger = logging.getLogger(__name__)

CheckResult = dict[str, Any]


@never_cache
@require_safe
def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness: the process answers. No database or broker work."""
    return JsonResponse({"status": "ok"})


def get_broker() -> Any:
    """The django-q2 broker of this process's ``Q_CLUSTER`` settings."""
    from django_q.brokers import get_broker as django_q_broker

    return django_q_broker()


def check_database() -> CheckResult:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:  # any failure means not ready
        return {"ok": False, "error": type(exc).__name__}
    return {"ok": True}


def check_broker(broker: Any) -> CheckResult:
    from django_q.brokers.orm import ORM

    try:
        if isinstance(broker, ORM):
            # The ORM broker's ping() is always True: look at its table instead.
            broker.get_connection().filter(pk=0).exists()
        elif not broker.ping():
            return {"ok": False, "error": "no answer"}
    except Exception as exc:
        return {"ok": False, "error": type(exc).__name__}
    return {"ok": True}


def check_cluster(broker: Any) -> CheckResult:
    from django_q.conf import Conf
    from django_q.status import Stat

    live_states = {str(Conf.IDLE), str(Conf.WORKING)}
    try:
        stats = Stat.get_all(broker=broker)
    except Exception as exc:
        return {"ok": False, "error": type(exc).__name__, "live": 0}
    live = sum(1 for stat in stats if str(getattr(stat, "status", "")) in live_states)
    if not live:
        return {"ok": False, "error": "no live cluster", "live": 0}
    return {"ok": True, "live": live}


@never_cache
@require_safe
def readyz(request: HttpRequest) -> JsonResponse:
    """Readiness: the database and the broker answer, and at least one qcluster is alive."""
    checks: dict[str, CheckResult] = {"database": check_database()}
    try:
        broker = get_broker()
    except Exception as exc:  # a broker that cannot even be built (bad settings)
        failure = {"ok": False, "error": type(exc).__name__}
        checks["broker"] = failure
        checks["cluster"] = {**failure, "live": 0}
    else:
        checks["broker"] = check_broker(broker)
        checks["cluster"] = check_cluster(broker)
    failed = [name for name, result in checks.items() if not result["ok"]]
    if failed:
        logger.warning("not ready: %s", ", ".join(f"{n} ({checks[n].get('error')})" for n in failed))
    return JsonResponse(
        {"status": "unavailable" if failed else "ok", "checks": checks, "failed": failed},
        status=503 if failed else 200,
    )
