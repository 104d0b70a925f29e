"""Reads for tenants and API credentials."""

from __future__ import annotations

from accounts.hashing import DUMMY_HASH, DUMMY_SALT, secret_matches
from accounts.models import ApiCredential


def api_credential_authenticate(*, username: str, secret: str) -> ApiCredential | None:
    """The live credential matching username and secret, with its tenant; else None.

    One query. An unknown username costs the same hash as a known one. A username
    with a NUL character cannot exist (PostgreSQL text cannot hold one) and is
    refused without a query.
    """
    if "\x00" in username:
        secret_matches(secret=secret, salt=DUMMY_SALT, expected_hash=DUMMY_HASH)
        return None
    credential = (
        ApiCredential.objects.select_related("tenant")
        .filter(username=username, revoked_at__isnull=True)
        .first()
    )
    if credential is None:
        secret_matches(secret=secret, salt=DUMMY_SALT, expected_hash=DUMMY_HASH)
        return None
    if not secret_matches(secret=secret, salt=credential.secret_salt, expected_hash=credential.secret_hash):
        return None
    return credential
