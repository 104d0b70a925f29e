"""What every outbound call of the portal shares: who we say we are, how a body is
kept for the audit trail, and how a failure is put into words.

Failures are described in curl's words (``Could not resolve host: …``,
``Failed to connect to … port …: Connection refused``), which an operator or a
tenant's engineer reads without knowing the portal's code.
"""

from __future__ import annotations

import contextlib
import errno
import heapq
import http.cookiejar
import os
import socket
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.exceptions import NameResolutionError

REDACTED = "[redacted]"


def user_agent() -> str:
    from portal import __version__

    return f"bulk-restore-portal/{__version__}"


def text_for_db(text: str) -> str:
    """Text fit for a database column: PostgreSQL refuses NUL characters."""
    return text.replace("\x00", "\ufffd")


def redact(text: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    return text


def excerpt(content: bytes, *, limit: int, secrets: Sequence[str] = ()) -> str:
    """The first ``limit`` bytes of a body as text fit to store, ``secrets`` redacted.

    Secrets are replaced before the cut (so none is left half shown at the end),
    and the result never encodes to more than ``limit`` bytes of UTF-8.
    """
    window = limit + 4 * max((len(s) for s in secrets), default=0)
    text = text_for_db(redact(content[:window].decode("utf-8", errors="replace"), secrets))
    encoded = text.encode("utf-8")
    if len(encoded) <= limit:
        return text
    return encoded[:limit].decode("utf-8", errors="ignore")


def host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        port = parts.port
    except ValueError:
        port = None
    return host, port or (443 if parts.scheme == "https" else 80)


def _chain(exc: BaseException) -> list[BaseException]:
    """The exception and every exception behind it (causes, contexts, wrapped arguments)."""
    seen: list[BaseException] = []
    pending: list[BaseException] = [exc]
    while pending:
        current = pending.pop(0)
        if any(current is e for e in seen):
            continue
        seen.append(current)
        behind: list[Any] = [current.__cause__, current.__context__]
        # requests and urllib3 keep the underlying error in args or in .reason (MaxRetryError)
        behind.append(getattr(current, "reason", None))
        behind.extend(current.args)
        pending.extend(e for e in behind if isinstance(e, BaseException))
    return seen


def describe_failure(exc: BaseException, *, url: str, timeout: float) -> str:
    """A failed request in curl's words."""
    host, port = host_port(url)
    chain = _chain(exc)
    if any(isinstance(e, (NameResolutionError, socket.gaierror)) for e in chain):
        return f"Could not resolve host: {host}"
    if isinstance(exc, requests.Timeout) or any(isinstance(e, TimeoutError) for e in chain):
        return f"Connection timed out after {int(timeout * 1000)} milliseconds"
    if any(
        isinstance(e, ConnectionRefusedError) or (isinstance(e, OSError) and e.errno == errno.ECONNREFUSED)
        for e in chain
    ):
        return f"Failed to connect to {host} port {port}: Connection refused"
    if isinstance(exc, requests.exceptions.SSLError):
        return f"SSL connect error with {host} port {port}"
    if any(isinstance(e, ConnectionResetError) for e in chain):
        return f"Recv failure: Connection reset by peer ({host} port {port})"
    return f"Failed to connect to {host} port {port}: {type(exc).__name__}"


# --- A total deadline on every request ------------------------------------------------
#
# requests' timeouts are per socket operation: a peer that sends one byte a second never
# trips them. Every request made through ``send`` runs under a ``Deadline``; the sockets
# it uses are registered with it as they are opened or reused, and one watchdog thread
# per process shuts them down when the deadline passes, which ends whatever read or
# write the request is blocked in. The request then fails as a timeout, in curl's words.


class Deadline:
    """The end of one request (``time.monotonic()``), the sockets it uses, what came back."""

    def __init__(self, seconds: float) -> None:
        self.started = time.monotonic()
        self.at = self.started + max(0.0, seconds)
        self.received = 0
        self.expired = False
        self._finished = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()

    def add(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)
            expired = self.expired
        if expired:
            _shutdown(sock)

    def expire(self) -> None:
        """Shut every socket of the request, unless it finished first (its connection may be
        back in the pool, serving another request)."""
        with self._lock:
            if self.expired or self._finished:
                return
            self.expired = True
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            _shutdown(sock)

    def finish(self) -> None:
        with self._lock:
            self._finished = True
            self._sockets = []

    def remaining(self) -> float:
        return self.at - time.monotonic()

    def elapsed_ms(self) -> int:
        return int((time.monotonic() - self.started) * 1000)

    def timed_out_words(self) -> str:
        return (
            f"Operation timed out after {self.elapsed_ms()} milliseconds with {self.received} bytes received"
        )


def _shutdown(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


# How late a deadline may be expired, so that deadlines close together are expired at one
# wake-up (most requests finish long before theirs, and their wake-up is only bookkeeping).
WATCHDOG_SLACK = 0.02


class _Watchdog:
    """One thread per process that expires deadlines as they pass (started on first use,
    again after a fork: worker processes fork and a thread does not follow)."""

    def __init__(self) -> None:
        self._reset()
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        # A forked child has none of its parent's threads, and a lock the thread held
        # at the fork would stay held: start again with nothing.
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Deadline]] = []
        self._pid: int | None = None
        self._serial = 0

    def watch(self, deadline: Deadline) -> None:
        with self._cond:
            if self._pid != os.getpid():
                self._pid = os.getpid()
                self._heap = []
                threading.Thread(target=self._run, name="http-deadlines", daemon=True).start()
            self._serial += 1
            heapq.heappush(self._heap, (deadline.at, self._serial, deadline))
            if self._heap[0][2] is deadline:
                # Earlier than any other: the thread sleeps until a later one, wake it. Deadlines
                # of one timeout come in order, so most calls leave the thread asleep.
                self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                now = time.monotonic()
                due = []
                while self._heap and self._heap[0][0] <= now:
                    due.append(heapq.heappop(self._heap)[2])
                # Deadlines that pass close together are expired together (at most
                # WATCHDOG_SLACK late): the thread wakes a few times a second, not once a call.
                wait = max(self._heap[0][0] - now, WATCHDOG_SLACK) if self._heap else None
            for deadline in due:
                deadline.expire()
            with self._cond:
                if not due:
                    self._cond.wait(timeout=wait)


_watchdog = _Watchdog()
_current = threading.local()


def _register(sock: socket.socket | None) -> None:
    deadline: Deadline | None = getattr(_current, "deadline", None)
    if deadline is not None and sock is not None:
        deadline.add(sock)


class _Connection(urllib3.connection.HTTPConnection):
    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        _register(sock)  # before TLS: a stalled handshake is cut off too
        return sock

    def request(self, *args: Any, **kwargs: Any) -> None:
        _register(self.sock)  # a kept-alive connection, reused
        super().request(*args, **kwargs)


class _TLSConnection(urllib3.connection.HTTPSConnection):
    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        _register(sock)
        return sock

    def request(self, *args: Any, **kwargs: Any) -> None:
        _register(self.sock)
        super().request(*args, **kwargs)


class _Pool(urllib3.HTTPConnectionPool):
    ConnectionCls = _Connection


class _TLSPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = _TLSConnection


class DeadlineAdapter(HTTPAdapter):
    """An adapter whose connections register their sockets with the request's deadline."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("max_retries", 0)
        super().__init__(**kwargs)

    def init_poolmanager(
        self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any
    ) -> None:
        super().init_poolmanager(connections, maxsize, block, **pool_kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _Pool, "https": _TLSPool}


def new_session(*, adapter: HTTPAdapter | None = None, pool_maxsize: int = 10) -> requests.Session:
    """A session whose every request can be put under a total deadline (see ``send``)."""
    session = requests.Session()
    # Nothing from the environment but a CA bundle (see ``send``): no proxy, and no ~/.netrc
    # whose passwords would go to a tenant's webhook. It also spares every request a walk
    # through the whole environment, a fifth of a call's CPU.
    session.trust_env = False
    # No cookies kept or sent: neither Multitel's API nor a webhook is a browser session.
    session.cookies.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
    session.mount("http://", adapter or DeadlineAdapter(pool_maxsize=pool_maxsize))
    session.mount("https://", adapter or DeadlineAdapter(pool_maxsize=pool_maxsize))
    session.headers["User-Agent"] = user_agent()
    return session


class TransportError(Exception):
    """A request that gave no complete answer, described in curl's words.

    ``kind``: "timeout" (no complete answer in time), "connect_timeout" (no connection
    in time), "too_large" (the body went over its
    cap), "truncated" (the peer closed the connection in the middle of the body) or
    "connection" (no answer: name, connect, TLS, reset before the headers). Whether to
    try again is the caller's decision, from the kind.
    """

    def __init__(self, message: str, *, kind: str) -> None:
        super().__init__(message)
        self.message = message
        self.kind = kind


@dataclass(frozen=True, kw_only=True)
class CallRecord:
    """What the audit trail keeps of one outbound call, whoever made it."""

    started_at: datetime
    duration_ms: int
    http_status: int | None  # None: no answer came
    error: str  # in curl's words; empty for a call that went well


@dataclass(frozen=True)
class Answer:
    """A complete answer: status, headers and the (decoded) body, at most the cap."""

    status_code: int
    headers: Mapping[str, str]
    content: bytes
    truncated: bool = False


READ_CHUNK = 16 * 1024
NO_PROXIES = {"http": None, "https": None, "all": None}


def send(
    session: requests.Session,
    method: str,
    url: str,
    *,
    timeout: float,
    connect_timeout: float | None = None,
    max_body: int,
    truncate: bool = False,
    words_url: str | None = None,
    **kwargs: Any,
) -> Answer:
    """Make one request that ends within ``timeout`` seconds, whatever the peer does.

    Connecting, sending, the headers and the body together: the sockets are shut when
    the deadline passes. At most ``max_body`` bytes of the body are kept, decoded (so
    a compressed body is capped on its decoded size); past that the request fails as
    ``too_large``, or with ``truncate`` the answer is kept cut at the cap. Raises
    ``TransportError`` for every failure, described for ``words_url`` (default ``url``).
    """
    # Never through a proxy from the environment: its connections would escape the deadline
    # (and a proxy would resolve a webhook's host itself, after the address was checked).
    kwargs.setdefault("proxies", NO_PROXIES)
    # The CA bundle the environment names, as requests reads it (sessions here do not
    # otherwise trust the environment).
    ca_bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    kwargs.setdefault("verify", ca_bundle or True)
    deadline = Deadline(timeout)
    connect = min(timeout, connect_timeout if connect_timeout is not None else timeout)
    previous = getattr(_current, "deadline", None)
    _current.deadline = deadline
    _watchdog.watch(deadline)
    response: requests.Response | None = None
    pieces: list[bytes] = []
    try:
        try:
            response = session.request(
                method, url, timeout=(connect, timeout), allow_redirects=False, stream=True, **kwargs
            )
            truncated = _read_capped(
                response, pieces, deadline=deadline, max_body=max_body, truncate=truncate
            )
        except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
            error = _transport_error(
                exc,
                deadline=deadline,
                headers_came=response is not None,
                url=words_url or url,
                connect=connect,
            )
            if not (truncate and error.kind == "truncated" and response is not None):
                raise error from exc
            truncated = True  # an excerpt was all that was asked for: what came is kept
        if deadline.expired:  # a body that ended when its socket was shut is not complete
            raise TransportError(deadline.timed_out_words(), kind="timeout")
        return Answer(
            status_code=response.status_code,
            headers=response.headers,
            content=b"".join(pieces)[:max_body],
            truncated=truncated,
        )
    finally:
        deadline.finish()
        _current.deadline = previous
        if response is not None:
            response.close()


def _transport_error(
    exc: BaseException, *, deadline: Deadline, headers_came: bool, url: str, connect: float
) -> TransportError:
    if deadline.expired or isinstance(exc, requests.ReadTimeout):
        return TransportError(deadline.timed_out_words(), kind="timeout")
    if isinstance(exc, requests.ConnectTimeout):
        return TransportError(describe_failure(exc, url=url, timeout=connect), kind="connect_timeout")
    if headers_came or _is_truncated(exc):
        return TransportError(
            f"transfer closed with outstanding read data remaining ({deadline.received} bytes received)",
            kind="truncated",
        )
    return TransportError(describe_failure(exc, url=url, timeout=connect), kind="connection")


def _is_truncated(exc: BaseException) -> bool:
    """A body cut short after the headers came (a reset mid-body, a short Content-Length)."""
    return isinstance(exc, requests.exceptions.ChunkedEncodingError) or "IncompleteRead" in repr(exc)


def _read_capped(
    response: requests.Response, pieces: list[bytes], *, deadline: Deadline, max_body: int, truncate: bool
) -> bool:
    """Read the body into ``pieces`` up to ``max_body`` decoded bytes; True when it was longer.

    ``read1`` returns what has come so far rather than waiting for a whole chunk, so
    ``received`` says how much a dripping peer had sent when the deadline passed.
    """
    while piece := response.raw.read1(READ_CHUNK, decode_content=True):
        deadline.received += len(piece)
        pieces.append(piece)
        if deadline.received > max_body:
            if truncate:
                return True
            raise TransportError(f"response too large: more than {max_body} bytes", kind="too_large")
    return False


def parse_retry_after(value: str | None) -> float | None:
    """Seconds a peer asks to wait (``Retry-After``: seconds, or an HTTP-date), or None."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        # An HTTP-date is always GMT ("-0000" parses without a zone).
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())
