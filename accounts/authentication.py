"""HTTP Basic authentication of tenant systems against their API credentials."""

from __future__ import annotations

import hashlib
from typing import Any

from django.conf import settings
from rest_framework import exceptions
from rest_framework.authentication import BasicAuthentication
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from accounts.models import Tenant
from accounts.selectors import api_credential_authenticate
from accounts.services import api_credential_touch
from accounts.throttling import client_address, parse_rate, window_hit, window_peek


def _username_key(userid: str) -> str:
    # A digest: the userid is whatever the client sent, of any length and any characters.
    return hashlib.sha256(userid.encode("utf-8", "surrogatepass")).hexdigest()[:32]


class ApiCredentialAuthentication(BasicAuthentication):
    """HTTP Basic against ``ApiCredential``, with failed logins counted per address and per username.

    - ``AUTH_FAILURE_RATE``: after that many failures from one client address (see
      ``client_address``) in the window, every further attempt from it gets 429 with
      ``Retry-After`` until the window ends, before any credential is checked, so the
      address learns nothing more, not even from a right guess.
    - ``AUTH_FAILURE_USERNAME_RATE``: failures for one username, from every address together.
      It only ever refuses attempts that fail: a right secret, from an address that is not
      over its own limit, is accepted however many failures others made for that username,
      so nobody can lock a credential's owner out. A failure for a username over its limit
      is answered 429 instead of 401, and uses up the whole allowance of the address it came
      from for the window: guessing one username from many addresses then costs an address
      per guess, instead of ``AUTH_FAILURE_RATE`` guesses per address.

    Every attempt that is checked costs the same hash (see ``api_credential_authenticate``).
    """

    www_authenticate_realm = "bulk-restore"

    def authenticate_credentials(self, userid: str, password: str, request: Any = None) -> tuple[Tenant, Any]:
        address_rate = parse_rate(settings.AUTH_FAILURE_RATE)
        username_rate = parse_rate(settings.AUTH_FAILURE_USERNAME_RATE)
        address_key = f"authfail:addr:{client_address(request)}"
        if address_rate is not None:
            state = window_peek(name=address_key, rate=address_rate)
            if state.count >= address_rate.limit:
                raise exceptions.Throttled(
                    wait=state.retry_after, detail="Too many failed logins from this address."
                )
        credential = api_credential_authenticate(username=userid, secret=password)
        if credential is not None:
            api_credential_touch(credential=credential)
            return credential.tenant, credential
        # A failure: it counts against the address and against the username.
        address = None if address_rate is None else window_hit(name=address_key, rate=address_rate)
        if username_rate is not None:
            username = window_hit(name=f"authfail:user:{_username_key(userid)}", rate=username_rate)
            if username.count > username_rate.limit:
                wait = username.retry_after
                if address_rate is not None and address is not None:
                    # Someone is guessing this username: the address that just failed for it
                    # gets no more tries in this window (its failures, no one else's).
                    if address.count < address_rate.limit:
                        missing = address_rate.limit - address.count
                        window_hit(name=address_key, rate=address_rate, amount=missing)
                    wait = max(wait, address.retry_after)
                raise exceptions.Throttled(wait=wait, detail="Too many failed logins for this username.")
        raise exceptions.AuthenticationFailed("Invalid API username or password.")


class TenantDisabled(exceptions.PermissionDenied):
    default_detail = "This tenant is disabled; contact support."
    default_code = "tenant_disabled"


class IsActiveTenant(BasePermission):
    """Only an authenticated, active tenant may call the API."""

    def has_permission(self, request: Request, view: Any) -> bool:
        tenant = request.user
        if not isinstance(tenant, Tenant):
            return False
        if not tenant.is_active:
            raise TenantDisabled()
        return True
