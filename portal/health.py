"""Liveness and readiness probes, unauthenticated and cheap."""

from __future__ import annotations

import logging
from typing import Any

from django.db import connection
from django.http import HttpRequest, JsonResponse

logger = logging.getLogger(__name__)


def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness: the process answers. No database or broker work."""
    return JsonResponse({"status": "ok"})


def _check_database() -> str | None:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:  # any failure means not ready
        return type(exc).__name__
    return None


def _check_broker() -> str | None:
    from django_q.brokers import get_broker

    try:
        return None if get_broker().ping() else "no answer"
    except Exception as exc:
        return type(exc).__name__


def _live_clusters() -> int:
    from django_q.status import Stat

    try:
        return sum(1 for stat in Stat.get_all() if stat.status != "Stopped")
    except Exception:
        logger.warning("could not read the clusters' status", exc_info=True)
        return 0


def readyz(request: HttpRequest) -> JsonResponse:
    """Readiness: the database and the broker answer, and at least one qcluster is alive."""
    checks: dict[str, Any] = {
        "database": _check_database() or "ok",
        "broker": _check_broker() or "ok",
    }
    clusters = _live_clusters()
    checks["clusters"] = clusters
    ready = checks["database"] == "ok" and checks["broker"] == "ok" and clusters > 0
    return JsonResponse(
        {"status": "ok" if ready else "unavailable", "checks": checks}, status=200 if ready else 503
    )
