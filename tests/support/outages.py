"""Backends out of reach for real: the database's connection, or the cache on a closed loopback port.

Used by ``tests/api/test_backend_outages.py`` and ``tests/ops/test_health.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from django.db import connection

from tests.support.harness import closed_loopback_port


@contextmanager
def database_unreachable(tmp_path: Path) -> Iterator[None]:
    """The default database out of reach until the block ends, as after a crash or a restart.

    The open connection is closed and every new one fails in the driver's own connect, the
    way an outage fails: PostgreSQL on a loopback port nothing listens on (connection
    refused), SQLite on a file in a directory that does not exist (``unable to open database
    file``). Needs ``transactional_db``: a connection cannot be closed inside the test's
    transaction. The settings are put back and the connection reopened afterwards.
    """
    settings_dict = connection.settings_dict
    saved = {key: settings_dict.get(key) for key in ("NAME", "HOST", "PORT")}
    if connection.vendor == "sqlite":
        unreachable: dict[str, Any] = {"NAME": str(tmp_path / "no-such-directory" / "db.sqlite3")}
    else:
        unreachable = {"HOST": "127.0.0.1", "PORT": str(closed_loopback_port())}
    connection.close()
    settings_dict.update(unreachable)
    try:
        yield
    finally:
        connection.close()
        settings_dict.update(saved)
        connection.ensure_connection()


def unreachable_redis_cache() -> dict[str, Any]:
    """``CACHES`` for a Redis that is down: a loopback port nothing listens on, short timeouts."""
    return {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{closed_loopback_port()}/0",
            "OPTIONS": {"socket_connect_timeout": 0.2, "socket_timeout": 0.2},
        }
    }
