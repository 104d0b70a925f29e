"""System checks that refuse dangerous production combinations."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register


@register(Tags.security, deploy=True)
def check_production_settings(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    problems: list[Any] = []
    if settings.SECRET_KEY == settings.INSECURE_DEFAULT_SECRET_KEY:
        problems.append(
            Error(
                "SECRET_KEY is the local default.",
                hint="Set SECRET_KEY in the environment to a long random value.",
                id="portal.E001",
            )
        )
    if settings.DEBUG:
        problems.append(Error("DEBUG is on in a deployment.", id="portal.E002"))
    if settings.WEBHOOK_ALLOW_PRIVATE_TARGETS:
        problems.append(
            Error(
                "WEBHOOK_ALLOW_PRIVATE_TARGETS is on: tenants' webhooks could reach internal hosts.",
                hint="It is for local development and tests only.",
                id="portal.E003",
            )
        )
    if not settings.FIELD_ENCRYPTION_KEYS:
        problems.append(
            Warning(
                "FIELD_ENCRYPTION_KEYS is empty: secrets at rest use a key derived from SECRET_KEY.",
                hint="Set FIELD_ENCRYPTION_KEYS so SECRET_KEY can be rotated on its own.",
                id="portal.W001",
            )
        )
    if settings.DATABASES["default"]["ENGINE"].endswith("sqlite3"):
        problems.append(
            Warning(
                "SQLite is the embedded default; use PostgreSQL (DATABASE_URL) in production.",
                id="portal.W002",
            )
        )
    if not settings.MULTITEL_BASE_URL.startswith("https://"):
        problems.append(
            Warning(
                "MULTITEL_BASE_URL is not https: tenants' Multitel passwords travel in clear.",
                id="portal.W003",
            )
        )
    if not settings.ADMIN_REQUIRE_2FA:
        problems.append(
            Warning(
                "ADMIN_REQUIRE_2FA is off: a staff password alone logs in to the admin.",
                hint="Give every staff user a TOTP device, then set ADMIN_REQUIRE_2FA=true.",
                id="portal.W004",
            )
        )
    return problems


LEASE_SECONDS_MIN = 4


@register()
def check_queue_settings(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    q = settings.Q_CLUSTER
    problems: list[Any] = []
    if q["retry"] <= q["timeout"]:
        problems.append(
            Error(
                "Q_CLUSTER retry must be larger than timeout, or running tasks are handed out twice.",
                id="portal.E010",
            )
        )
    if (
        q["timeout"]
        <= settings.RESTORE_TASK_SLICE_SECONDS + settings.MULTITEL_TIMEOUT * settings.MULTITEL_MAX_ATTEMPTS
    ):
        problems.append(
            Error(
                "Q_TASK_TIMEOUT is too short for RESTORE_TASK_SLICE_SECONDS "
                "plus one number's upstream attempts.",
                id="portal.E011",
            )
        )
    # Live tasks renew their leases every quarter of RESTORE_LEASE_SECONDS, however long a
    # call takes; below a few seconds a busy database could make a renewal come too late.
    if settings.RESTORE_LEASE_SECONDS < LEASE_SECONDS_MIN:
        problems.append(
            Error(
                f"RESTORE_LEASE_SECONDS must be at least {LEASE_SECONDS_MIN}: leases are renewed "
                "every quarter of it, and a renewal that comes late hands a live call to another worker.",
                id="portal.E012",
            )
        )
    return problems
