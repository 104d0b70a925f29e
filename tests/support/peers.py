"""Hostile HTTP peers on loopback, for the outbound layer's deadline and size limits.

Each is a real TCP server speaking just enough HTTP/1.1 to misbehave in one way: it
drips the body or the headers a byte at a time, never ends a chunked body, stalls
the TLS handshake, sends a huge body, or a small gzip body that inflates to a huge
one. Every loop is bounded (``SERVE_FOR`` seconds at most) and the server stops when
its ``with`` block ends.
"""

from __future__ import annotations

import gzip
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress

# No peer misbehaves for longer than this, whatever the test does.
SERVE_FOR = 90.0

Behaviour = Callable[[socket.socket, float], None]


def _send(conn: socket.socket, data: bytes) -> None:
    conn.sendall(data)


def _drip(conn: socket.socket, data: bytes, *, every: float, until: float) -> None:
    for byte in data:
        if time.monotonic() > until:
            return
        _send(conn, bytes([byte]))
        time.sleep(every)


def drip_body(every: float = 1.0) -> Behaviour:
    """Headers at once (a long Content-Length), then the body a byte every ``every`` seconds."""

    def behave(conn: socket.socket, until: float) -> None:
        _send(conn, b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n")
        _drip(conn, b'{"status": {"code": 200, "msg": ""}}' + b" " * 99_964, every=every, until=until)

    return behave


def drip_headers(every: float = 1.0) -> Behaviour:
    """The status line, then the headers a byte every ``every`` seconds (never a blank line)."""

    def behave(conn: socket.socket, until: float) -> None:
        _send(conn, b"HTTP/1.1 200 OK\r\n")
        _drip(conn, b"X-Slow: " + b"a" * 10_000, every=every, until=until)

    return behave


def endless_chunked(every: float = 0.2) -> Behaviour:
    """A chunked body whose chunks keep coming and never end."""

    def behave(conn: socket.socket, until: float) -> None:
        _send(
            conn, b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        while time.monotonic() < until:
            _send(conn, b"1\r\n \r\n")
            time.sleep(every)

    return behave


def silent() -> Behaviour:
    """Accepts the connection and says nothing: a TLS client waits for a ServerHello forever."""

    def behave(conn: socket.socket, until: float) -> None:
        conn.settimeout(0.1)
        while time.monotonic() < until:
            try:
                if not conn.recv(65536):
                    return  # the client gave up and closed
            except TimeoutError:
                continue

    return behave


def huge_body(size: int) -> Behaviour:
    """A 200 answer of ``size`` bytes, sent as fast as the client reads."""

    def behave(conn: socket.socket, until: float) -> None:
        _send(
            conn,
            f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {size}\r\n\r\n".encode(),
        )
        block = b'{"status": {"code": 200}} ' * 2520  # about 64 KiB
        sent = 0
        while sent < size and time.monotonic() < until:
            piece = block[: size - sent]
            _send(conn, piece)
            sent += len(piece)

    return behave


def gzip_bomb(inflated: int) -> Behaviour:
    """A small gzip body (``Content-Encoding: gzip``) that inflates to ``inflated`` bytes."""
    compressor = gzip.compress(b"\0" * inflated, compresslevel=9)

    def behave(conn: socket.socket, until: float) -> None:
        _send(
            conn,
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\n"
            + f"Content-Length: {len(compressor)}\r\n\r\n".encode()
            + compressor,
        )

    return behave


class HostilePeer:
    """A loopback server that treats every connection with ``behaviour``."""

    def __init__(self, behaviour: Behaviour) -> None:
        self.behaviour = behaviour
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self.connections = 0
        self.closed = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        self.listener.settimeout(0.1)
        until = time.monotonic() + SERVE_FOR
        while not self._stop.is_set() and time.monotonic() < until:
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._handle, args=(conn, until), daemon=True).start()

    def _handle(self, conn: socket.socket, until: float) -> None:
        with conn:
            with suppress(OSError):
                conn.settimeout(1.0)
                with suppress(TimeoutError):
                    conn.recv(65536)  # the request (its headers, at least)
                conn.settimeout(None)
                self.behaviour(conn, until)
                # The client shut its end: the next write fails, or a read sees EOF.
                conn.settimeout(1.0)
                with suppress(TimeoutError):
                    conn.recv(1)
            self.closed.set()

    def __enter__(self) -> HostilePeer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self.listener.close()
        self._thread.join(timeout=5)


@contextmanager
def hostile_peer(behaviour: Behaviour) -> Iterator[HostilePeer]:
    with HostilePeer(behaviour) as peer:
        yield peer
