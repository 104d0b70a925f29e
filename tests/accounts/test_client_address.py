"""The client's address (accounts.throttling.client_address): behind trusted proxies only."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import RequestFactory

from accounts.checks import check_trusted_proxies
from accounts.throttling import client_address

TRUSTED = ["192.0.2.0/28", "2001:db8::1"]


def address(remote: str | None, forwarded: str | None = None) -> str:
    meta: dict[str, Any] = {}
    if forwarded is not None:
        meta["HTTP_X_FORWARDED_FOR"] = forwarded
    request = RequestFactory().get("/", **meta)
    if remote is None:
        del request.META["REMOTE_ADDR"]
    else:
        request.META["REMOTE_ADDR"] = remote
    return client_address(request)


@pytest.mark.parametrize(
    ("remote", "forwarded"),
    [
        ("203.0.113.5", None),
        ("203.0.113.5", "198.51.100.1"),
        ("203.0.113.5", "198.51.100.1, 192.0.2.1"),
        ("::ffff:203.0.113.5", "198.51.100.1"),
    ],
)
def test_it_ignores_x_forwarded_for_when_no_proxy_is_trusted(
    settings: Any, remote: str, forwarded: Any
) -> None:
    settings.TRUSTED_PROXIES = []

    assert address(remote, forwarded) == "203.0.113.5"


def test_it_ignores_x_forwarded_for_from_an_untrusted_peer(settings: Any) -> None:
    settings.TRUSTED_PROXIES = TRUSTED

    assert address("203.0.113.5", "198.51.100.1") == "203.0.113.5"


@pytest.mark.parametrize(
    ("remote", "forwarded", "client"),
    [
        # The proxy appended the address it got the request from.
        ("192.0.2.10", "198.51.100.1", "198.51.100.1"),
        # What the client wrote itself, left of that, is not believed.
        ("192.0.2.10", "203.0.113.9, 198.51.100.1", "198.51.100.1"),
        ("192.0.2.10", "192.0.2.3, 198.51.100.1", "198.51.100.1"),
        # Several trusted proxies in a row are skipped.
        ("192.0.2.10", "203.0.113.9, 198.51.100.1, 192.0.2.11", "198.51.100.1"),
        ("2001:db8::1", "198.51.100.1,192.0.2.11", "198.51.100.1"),
        # Ports and IPv6 spellings; one client is one address however it is written.
        ("192.0.2.10", "198.51.100.1:4711", "198.51.100.1"),
        ("192.0.2.10", "[2001:db8:1::7]:4711", "2001:db8:1::7"),
        ("192.0.2.10", "2001:DB8:1:0::7", "2001:db8:1::7"),
        ("::ffff:192.0.2.10", "::ffff:198.51.100.1", "198.51.100.1"),
        # Garbage left of the client's address is never reached.
        ("192.0.2.10", "not-an-address, 198.51.100.1", "198.51.100.1"),
        # A missing, empty or garbled header: the proxy's own address.
        ("192.0.2.10", None, "192.0.2.10"),
        ("192.0.2.10", "", "192.0.2.10"),
        ("192.0.2.10", "unknown", "192.0.2.10"),
        ("192.0.2.10", "198.51.100.1, ", "192.0.2.10"),
        ("192.0.2.10", "198.51.100.1, 192.0.2.11, garbage", "192.0.2.10"),
        # Only trusted proxies: the farthest of them.
        ("192.0.2.10", "192.0.2.2, 192.0.2.11", "192.0.2.2"),
    ],
)
def test_it_takes_the_right_most_untrusted_address_behind_trusted_proxies(
    settings: Any, remote: str, forwarded: Any, client: str
) -> None:
    settings.TRUSTED_PROXIES = TRUSTED

    assert address(remote, forwarded) == client


def test_it_never_believes_x_forwarded_for_without_a_peer_address(settings: Any) -> None:
    settings.TRUSTED_PROXIES = ["0.0.0.0/0", "::/0"]

    assert address(None, "198.51.100.1") == "unknown"
    assert address("", "198.51.100.1") == "unknown"


def test_it_reports_trusted_proxies_that_are_not_addresses(settings: Any) -> None:
    settings.TRUSTED_PROXIES = ["10.0.0.5", "10.1.0.0/16", "proxy.internal", "10.0.0.0/33"]

    problems = check_trusted_proxies()

    assert [p.id for p in problems] == ["accounts.E001"]
    assert "proxy.internal" in problems[0].msg and "10.0.0.0/33" in problems[0].msg
    settings.TRUSTED_PROXIES = ["10.0.0.5", " fd00::/8 "]
    assert check_trusted_proxies() == []
