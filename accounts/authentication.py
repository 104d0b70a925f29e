"""HTTP Basic authentication of tenant systems against their API credentials."""

from __future__ import annotations

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


class ApiCredentialAuthentication(BasicAuthentication):
    """HTTP Basic against ``ApiCredential``; repeated failures from one address are slowed down.

    After ``AUTH_FAILURE_RATE`` failed attempts from a client address within the
    window, every further attempt from it gets 429 with ``Retry-After`` until the
    window ends, before any credential is checked.
    """

    www_authenticate_realm = "bulk-restore"

    def authenticate_credentials(self, userid: str, password: str, request: Any = None) -> tuple[Tenant, Any]:
        rate = parse_rate(settings.AUTH_FAILURE_RATE)
        name = f"authfail:{client_address(request)}"
        if rate is not None:
            state = window_peek(name=name, rate=rate)
            if state.count >= rate.limit:
                raise exceptions.Throttled(
                    wait=state.retry_after, detail="Too many failed logins from this address."
                )
        credential = api_credential_authenticate(username=userid, secret=password)
        if credential is None:
            if rate is not None:
                window_hit(name=name, rate=rate)
            raise exceptions.AuthenticationFailed("Invalid API username or password.")
        api_credential_touch(credential=credential)
        return credential.tenant, credential


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
