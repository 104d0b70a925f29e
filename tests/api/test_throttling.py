"""Per-tenant throttling and slowing down credential guessing (docs/api.md#throttling): failed
logins counted per client address (behind trusted proxies only) and per username, so that
guessing is slowed while nobody's failures lock out anybody else's right secret."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from accounts.throttling import Rate, parse_rate
from restores.models import Job
from tests.support.jobs import make_job
from tests.support.parties import Party, api_client

STATUS = "/v3/bulk_restore_status"


def _address() -> str:
    """A client address of this test's own, so counters never carry over between tests."""
    return f"10.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}"


def test_it_parses_rates() -> None:
    assert parse_rate("600/min") == Rate(600, 60)
    assert parse_rate("5/s") == Rate(5, 1)
    assert parse_rate("100/hour") == Rate(100, 3600)
    assert parse_rate("off") is None


def test_it_throttles_a_tenant_over_its_rate_with_429_and_retry_after(
    owner: Party, second: Party, settings: Any
) -> None:
    settings.API_THROTTLE_RATE = "3/min"
    params = {"job_uuid": str(uuid.uuid4())}

    answers = [owner.client.get(STATUS, params).status_code for _ in range(3)]
    over = owner.client.get(STATUS, params)
    others = second.client.get(STATUS, params)

    assert answers == [404, 404, 404]
    assert over.status_code == 429
    assert over.json()["error"] == "throttled"
    assert 1 <= int(over["Retry-After"]) <= 60
    assert others.status_code == 404  # another tenant has its own allowance


def test_it_counts_every_credential_of_a_tenant_together(owner: Party, settings: Any) -> None:
    from accounts.services import api_credential_create

    assert owner.tenant is not None
    settings.API_THROTTLE_RATE = "2/min"
    issued = api_credential_create(tenant=owner.tenant)
    other_key = api_client(issued.credential.username, issued.secret)
    params = {"job_uuid": str(uuid.uuid4())}

    owner.client.get(STATUS, params)
    other_key.get(STATUS, params)

    assert other_key.get(STATUS, params).status_code == 429


def test_it_stores_nothing_for_a_throttled_submission(owner: Party, settings: Any) -> None:
    settings.API_THROTTLE_RATE = "1/min"
    owner.client.get(STATUS, {"job_uuid": str(uuid.uuid4())})

    response = owner.client.post("/v3/bulk_restore", {"numbers": ["15551230111"]}, format="json")

    assert response.status_code == 429
    assert Job.objects.count() == 0


def test_it_slows_down_guessing_of_api_credentials(owner: Party, settings: Any) -> None:
    settings.AUTH_FAILURE_RATE = "5/min"
    address = _address()
    from rest_framework.test import APIClient

    guesser = APIClient(REMOTE_ADDR=address)
    guesser.credentials(HTTP_AUTHORIZATION="Basic b3duZXItYXBpOndyb25n")  # owner-api:wrong
    params = {"job_uuid": str(uuid.uuid4())}

    failures = [guesser.get(STATUS, params).status_code for _ in range(5)]
    blocked = guesser.get(STATUS, params)
    # Even the right secret is refused from that address until the window ends...
    right = APIClient(REMOTE_ADDR=address)
    right.credentials(HTTP_AUTHORIZATION=owner.client._credentials["HTTP_AUTHORIZATION"])
    # ...while the tenant's own system, elsewhere, is unaffected.
    elsewhere = owner.client.get(STATUS, params, REMOTE_ADDR=_address())

    assert failures == [401] * 5
    assert blocked.status_code == 429
    assert blocked.json()["error"] == "throttled"
    assert int(blocked["Retry-After"]) >= 1
    assert right.get(STATUS, params).status_code == 429
    assert elsewhere.status_code == 404


@pytest.mark.django_db
def test_it_does_not_count_successful_logins_as_failures(owner: Party, settings: Any) -> None:
    settings.AUTH_FAILURE_RATE = "2/min"
    params = {"job_uuid": str(uuid.uuid4())}
    address = _address()

    statuses = [owner.client.get(STATUS, params, REMOTE_ADDR=address).status_code for _ in range(5)]

    assert statuses == [404] * 5


# --- Failed logins: whose address, whose username ---------------------------------------------

PROXY = "192.0.2.10"  # a reverse proxy of the deployment (TEST-NET-1)
# Hourly windows below: a test's requests all fall in one window (a minute would end mid-test
# now and then).


def _attempt(username: str, secret: str, *, job_uuid: str | None = None, **meta: str) -> Any:
    """One API call with these credentials; ``meta``: REMOTE_ADDR, HTTP_X_FORWARDED_FOR."""
    params = {"job_uuid": job_uuid or str(uuid.uuid4())}
    return api_client(username, secret).get(STATUS, params, **meta)


def _own_job(party: Party) -> str:
    """A job of ``party``'s tenant, so that a call its credential may make answers 200."""
    assert party.tenant is not None
    return str(make_job(party.tenant).uuid)


def test_it_ignores_x_forwarded_for_when_no_proxy_is_trusted(
    owner: Party, second: Party, settings: Any
) -> None:
    settings.AUTH_FAILURE_RATE = "20/h"
    settings.AUTH_FAILURE_USERNAME_RATE = "40/h"
    settings.TRUSTED_PROXIES = []
    guesser = _address()
    job = _own_job(second)

    # 20 failures from one address, each claiming another client in X-Forwarded-For.
    failures = [
        _attempt("second-api", f"guess-{i}", REMOTE_ADDR=guesser, HTTP_X_FORWARDED_FOR=f"203.0.113.{i}")
        for i in range(20)
    ]
    # They all counted against REMOTE_ADDR: a fresh X-Forwarded-For does not get it more tries.
    again = _attempt("owner-api", "guess", REMOTE_ADDR=guesser, HTTP_X_FORWARDED_FOR="198.51.100.1")
    # Another tenant's system, elsewhere, is not refused, even naming the guesser's claims.
    elsewhere = second.client.get(STATUS, {"job_uuid": job}, REMOTE_ADDR=_address())
    named = second.client.get(
        STATUS, {"job_uuid": job}, REMOTE_ADDR=_address(), HTTP_X_FORWARDED_FOR=f"203.0.113.1, {guesser}"
    )

    assert [r.status_code for r in failures] == [401] * 20
    assert again.status_code == 429 and again.json()["error"] == "throttled"
    assert elsewhere.status_code == 200
    assert named.status_code == 200


def test_it_counts_each_client_behind_a_trusted_proxy_on_its_own(
    owner: Party, second: Party, settings: Any
) -> None:
    settings.AUTH_FAILURE_RATE = "5/h"
    settings.TRUSTED_PROXIES = ["192.0.2.0/28"]  # the deployment's proxies
    guesser, other = "203.0.113.7", "198.51.100.20"
    job = _own_job(second)

    failures = [
        _attempt("owner-api", f"guess-{i}", REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR=guesser) for i in range(5)
    ]
    # The guesser is refused, even with the right secret, however it fills in the header: the
    # proxy appends the address it got the request from, and that right-most untrusted entry
    # is the client; whatever the client wrote to its left is not believed.
    refused = [
        _attempt("owner-api", "guess", REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR=guesser),
        _attempt("owner-api", owner.secret, REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR=guesser),
        _attempt("owner-api", "guess", REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR=f"{other}, {guesser}"),
        _attempt(
            "owner-api",
            "guess",
            REMOTE_ADDR="192.0.2.11",  # through two trusted proxies
            HTTP_X_FORWARDED_FOR=f"198.51.100.99, {guesser}, {PROXY}",
        ),
    ]
    # Another client through the same proxy is counted on its own: its right secret works...
    through_proxy = second.client.get(
        STATUS, {"job_uuid": job}, REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR=other
    )
    # ...and so does naming the guesser to the left of its own address (it is not believed).
    spoofing = second.client.get(
        STATUS, {"job_uuid": job}, REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR=f"{guesser}, {other}"
    )
    # A third client's failure is its own first one: 401, not 429.
    third = _attempt("owner-api", "guess", REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR="203.0.113.8")

    assert [r.status_code for r in failures] == [401] * 5
    assert [r.status_code for r in refused] == [429] * 4
    assert through_proxy.status_code == 200
    assert spoofing.status_code == 200
    assert third.status_code == 401


def test_it_limits_failures_per_username_but_never_refuses_the_owners_right_secret(
    owner: Party, second: Party, settings: Any
) -> None:
    settings.AUTH_FAILURE_RATE = "3/h"
    settings.AUTH_FAILURE_USERNAME_RATE = "10/h"
    home = _address()  # where the owner's system calls from
    job = _own_job(owner)
    assert owner.client.get(STATUS, {"job_uuid": job}, REMOTE_ADDR=home).status_code == 200

    # Guessing owner-api's secret from many addresses, each far below its own limit.
    guessers = [_address() for _ in range(13)]
    answers = [_attempt("owner-api", f"guess-{i}", REMOTE_ADDR=a) for i, a in enumerate(guessers)]

    assert [r.status_code for r in answers] == [401] * 10 + [429] * 3
    assert answers[10].json()["error"] == "throttled"
    assert "username" in answers[10].json()["message"]
    assert 1 <= int(answers[10]["Retry-After"]) <= 3600
    # A failure for the username over its limit spent its address's allowance: no more tries
    # from there, not even a right guess.
    assert _attempt("owner-api", owner.secret, REMOTE_ADDR=guessers[10]).status_code == 429
    # The owner's right secret is accepted, from home, from a new address, and even from an
    # address that failed once before the limit was reached.
    assert owner.client.get(STATUS, {"job_uuid": job}, REMOTE_ADDR=home).status_code == 200
    assert owner.client.get(STATUS, {"job_uuid": job}, REMOTE_ADDR=_address()).status_code == 200
    assert owner.client.get(STATUS, {"job_uuid": job}, REMOTE_ADDR=guessers[0]).status_code == 200
    # Guesses for owner-api stay refused from anywhere; another username is not concerned.
    assert _attempt("owner-api", "guess", REMOTE_ADDR=_address()).status_code == 429
    assert _attempt("second-api", "guess", REMOTE_ADDR=_address()).status_code == 401


def test_it_counts_a_very_long_username_like_any_other(db: None, settings: Any) -> None:
    settings.AUTH_FAILURE_RATE = "5/h"
    settings.AUTH_FAILURE_USERNAME_RATE = "2/h"
    username = "u" * 5000 + "\u00e9"  # longer than any cache key may be

    statuses = [_attempt(username, "guess", REMOTE_ADDR=_address()).status_code for _ in range(3)]

    assert statuses == [401, 401, 429]
