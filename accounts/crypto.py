"""Encryption at rest for secrets the portal must be able to read back.

Multitel passwords and webhook signing secrets are needed in clear to call
Multitel and to sign webhooks, so they cannot be hashed; they are encrypted
with Fernet (AES-128-CBC + HMAC-SHA256) from the ``cryptography`` package.
``FIELD_ENCRYPTION_KEYS`` holds one or more keys: the first encrypts, every
key decrypts, so keys can be rotated (``MultiFernet``).
"""

from __future__ import annotations

import base64
import functools
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.db import models

PREFIX = "fernet:"


@functools.cache
def _fernet() -> MultiFernet:
    keys = list(settings.FIELD_ENCRYPTION_KEYS)
    if not keys:
        derived = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=b"portal-field-encryption", info=b"fernet"
        ).derive(settings.SECRET_KEY.encode())
        keys = [base64.urlsafe_b64encode(derived).decode()]
    return MultiFernet([Fernet(k.encode() if isinstance(k, str) else k) for k in keys])


def encrypt(value: str) -> str:
    return PREFIX + _fernet().encrypt(value.encode()).decode()


def decrypt(token: str) -> str:
    if not token.startswith(PREFIX):
        raise ValueError("value is not an encrypted token")
    try:
        return _fernet().decrypt(token[len(PREFIX) :].encode()).decode()
    except InvalidToken as exc:  # a key was removed or the row was tampered with
        raise ValueError("cannot decrypt value with the configured FIELD_ENCRYPTION_KEYS") from exc


class EncryptedTextField(models.TextField):
    """A text field stored encrypted; Python code only ever sees clear text."""

    description = "Text encrypted at rest"

    def from_db_value(self, value: str | None, expression: Any, connection: Any) -> str | None:
        if value is None or value == "":
            return value
        return decrypt(value)

    def get_prep_value(self, value: Any) -> Any:
        value = super().get_prep_value(value)
        if value is None or value == "":
            return value
        return encrypt(str(value))
