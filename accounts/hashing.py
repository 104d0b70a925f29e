"""Fast salted hashing for API secrets (checked on every request)."""

from __future__ import annotations

import hashlib
import hmac
import secrets


def new_salt() -> str:
    return secrets.token_hex(16)


def hash_secret(*, secret: str, salt: str) -> str:
    return hmac.new(bytes.fromhex(salt), secret.encode(), hashlib.sha256).hexdigest()


def secret_matches(*, secret: str, salt: str, expected_hash: str) -> bool:
    return hmac.compare_digest(hash_secret(secret=secret, salt=salt), expected_hash)


# Compared against when the username is unknown, so that the answer takes as long.
DUMMY_SALT = "00" * 16
DUMMY_HASH = hash_secret(secret="unknown", salt=DUMMY_SALT)  # noqa: S106
