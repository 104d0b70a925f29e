"""The database out of reach: which errors say so, and how long-running work waits it out.

``database_unreachable`` is the one rule for telling an outage (the server restarting, a
connection dropped) from a bug: the API answers the first with 503 (``portal.api_errors``),
and queued tasks wait for the database to return and start again
(``database_outages_waited_out``) instead of failing, so that a restart of the database
costs a job seconds, not a sweep interval.
"""

from __future__ import annotations

import functools
import logging
import sqlite3
import time
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from django.db import InterfaceError, OperationalError, connection, connections

logger = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

# SQLite's generic result code: what it answers to a syntax error or an unknown table.
SQLITE_ERROR = 1
# Seconds between two attempts to reach the database again while it is out of reach.
DATABASE_RETRY_INTERVAL = 0.5


def _sqlite_programming_error(exc: BaseException) -> bool:
    """SQLite reports its programming errors (a syntax error, no such table or column) as
    ``OperationalError`` too, with the generic result code ``SQLITE_ERROR``."""
    driver_error = exc if isinstance(exc, sqlite3.Error) else exc.__cause__
    if not isinstance(driver_error, sqlite3.Error):
        return False
    code = getattr(driver_error, "sqlite_errorcode", None)
    return isinstance(code, int) and code & 0xFF == SQLITE_ERROR


def _driver_unreachable_errors() -> tuple[type[BaseException], ...]:
    """The DB-API driver's own ``OperationalError`` and ``InterfaceError`` (psycopg's, sqlite3's)."""
    classes: list[type[BaseException]] = []
    for conn in connections.all(initialized_only=True):
        for name in ("OperationalError", "InterfaceError"):
            klass = getattr(getattr(conn, "Database", None), name, None)
            if isinstance(klass, type) and issubclass(klass, BaseException):
                classes.append(klass)
    return tuple(classes)


def database_unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` says the database cannot be reached (or dropped the connection).

    Django wraps the driver's errors in its own ``OperationalError`` and ``InterfaceError``;
    the driver's own classes are recognised too, for an error raised outside Django's
    wrapper. ``ProgrammingError``, ``IntegrityError`` and ``DataError`` (bugs, bad data) are
    not among them, and neither are SQLite's programming errors.
    """
    if _sqlite_programming_error(exc):
        return False
    return isinstance(exc, (OperationalError, InterfaceError, *_driver_unreachable_errors()))


def database_wait(*, until: float) -> bool:
    """Wait until the default database accepts a connection again, or until the
    ``time.monotonic()`` moment ``until``; returns whether it did. Every connection of this
    thread is closed first: one the server dropped is of no use any more."""
    connections.close_all()
    while True:
        try:
            connection.ensure_connection()
            return True
        except Exception as exc:
            if not database_unreachable(exc):
                raise
            connection.close()
        if time.monotonic() + DATABASE_RETRY_INTERVAL > until:
            return False
        time.sleep(DATABASE_RETRY_INTERVAL)


def database_outages_waited_out(
    *, wait_at_most: Callable[[], float]
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Make a function that runs outside any request (a queued task) wait out a database
    outage: when it fails because the database is out of reach, wait for the database to
    answer again and call it again from the start, for at most ``wait_at_most()`` seconds
    from the first failure, after which the error is raised.

    Only for work that is safe to start again (every write of a task is conditional), and
    never inside a transaction (``atomic``), which an outage has broken for good: there the
    error is raised at once.
    """

    def decorate(func: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(func)
        def waited_out(*args: P.args, **kwargs: P.kwargs) -> R:
            gives_up_at: float | None = None
            while True:
                try:
                    return func(*args, **kwargs)
                except Exception as exc:
                    if not database_unreachable(exc) or connection.in_atomic_block:
                        raise
                    if gives_up_at is None:
                        gives_up_at = time.monotonic() + wait_at_most()
                    # The exception's class only: a driver's message can name hosts and users.
                    logger.warning(
                        "database unavailable: %s in %s; waiting for it to come back",
                        type(exc).__name__,
                        func.__qualname__,
                    )
                    if not database_wait(until=gives_up_at):
                        logger.warning("database still unavailable: %s gives up", func.__qualname__)
                        raise
                    logger.info("database back: %s starts again", func.__qualname__)

        return waited_out

    return decorate
