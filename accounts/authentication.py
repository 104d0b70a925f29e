"""HTTP Basic authentication of tenant systems against their API credentials."""

from __future__ import annotations

from typing import Any

from rest_framework import exceptions
from rest_framework.authentication import BasicAuthentication
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from accounts.models import Tenant
from accounts.selectors import api_credential_authenticate
from accounts.services import api_credential_touch


class ApiCredentialAuthentication(BasicAuthentication):
    www_authenticate_realm = "bulk-restore"

    def authenticate_credentials(self, userid: str, password: str, request: Any = None) -> tuple[Tenant, Any]:
        credential = api_credential_authenticate(username=userid, secret=password)
        if credential is None:
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
