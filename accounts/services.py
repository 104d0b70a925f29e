"""Writes for tenants and their API credentials."""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import Group, Permission
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from accounts.hashing import hash_secret, new_salt
from accounts.models import ApiCredential, Tenant

# last_used_at is written at most this often per credential, not on every request.
LAST_USED_RESOLUTION = timedelta(seconds=60)


def webhook_secret_generate() -> str:
    """A Standard Webhooks signing secret: ``whsec_`` + base64 of 24 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def api_secret_generate() -> str:
    return secrets.token_urlsafe(24)


# An API secret someone chooses (create_tenant --api-password, the admin's add form) is
# at least this long; generated ones have 32 characters (192 random bits).
API_SECRET_MIN_LENGTH = 24
API_SECRET_TOO_SHORT = (
    f"The API secret must be at least {API_SECRET_MIN_LENGTH} characters; "
    "leave it empty to have one generated."
)


def api_secret_validate(secret: str) -> None:
    """Refuse a chosen API secret shorter than ``API_SECRET_MIN_LENGTH`` (a ``ValidationError``)."""
    if len(secret) < API_SECRET_MIN_LENGTH:
        raise ValidationError(API_SECRET_TOO_SHORT, code="api_secret_too_short")


@dataclass(frozen=True)
class IssuedCredential:
    credential: ApiCredential
    secret: str  # shown once, never stored in clear


def api_credential_create(
    *, tenant: Tenant, username: str | None = None, secret: str | None = None
) -> IssuedCredential:
    """Issue a new API credential; the clear secret is returned once and never stored.

    Without ``secret`` (or with an empty one) a secret is generated; a given one must pass
    ``api_secret_validate``.
    """
    username = username or f"{tenant.name.lower().replace(' ', '-')}-{secrets.token_hex(4)}"
    if secret:
        api_secret_validate(secret)
    else:
        secret = api_secret_generate()
    salt = new_salt()
    credential = ApiCredential.objects.create(
        tenant=tenant,
        username=username,
        secret_salt=salt,
        secret_hash=hash_secret(secret=secret, salt=salt),
        secret_hint=secret[:4],
    )
    return IssuedCredential(credential=credential, secret=secret)


def api_credential_revoke(*, credential: ApiCredential) -> None:
    ApiCredential.objects.filter(pk=credential.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())


def api_credential_touch(*, credential: ApiCredential) -> None:
    """Record use of a credential, writing at most once a minute."""
    now = timezone.now()
    if credential.last_used_at and now - credential.last_used_at < LAST_USED_RESOLUTION:
        return
    ApiCredential.objects.filter(pk=credential.pk).update(last_used_at=now)
    credential.last_used_at = now


@dataclass(frozen=True)
class CreatedTenant:
    tenant: Tenant
    credential: IssuedCredential


@transaction.atomic
def tenant_create(
    *,
    name: str,
    api_username: str,
    api_password: str | None,
    multitel_username: str,
    multitel_password: str,
    max_concurrency: int = 10,
) -> CreatedTenant:
    """A tenant, its webhook signing secret and its first API credential.

    ``api_password`` is the credential's secret (``api_secret_validate``), or None (or empty)
    to have one generated; either way it is in the result, to be shown once.
    """
    tenant = Tenant.objects.create(
        name=name,
        multitel_username=multitel_username,
        multitel_password=multitel_password,
        webhook_secret=webhook_secret_generate(),
        max_concurrency=max_concurrency,
    )
    issued = api_credential_create(tenant=tenant, username=api_username, secret=api_password)
    return CreatedTenant(tenant=tenant, credential=issued)


def tenant_rotate_webhook_secret(*, tenant: Tenant) -> str:
    tenant.webhook_secret = webhook_secret_generate()
    tenant.save(update_fields=["webhook_secret", "updated_at"])
    return tenant.webhook_secret


@transaction.atomic
def tenant_onboard(
    *,
    name: str,
    multitel_username: str,
    multitel_password: str,
    api_username: str,
    api_secret: str | None = None,
    is_active: bool = True,
    max_concurrency: int = 10,
) -> CreatedTenant:
    """Create a tenant and its first API credential (admin's add form).

    The API secret is the one the operator typed (``api_secret_validate``), or generated
    when none was. It and the webhook signing secret are in the result, to be shown once.
    """
    created = tenant_create(
        name=name,
        api_username=api_username,
        api_password=api_secret or None,
        multitel_username=multitel_username,
        multitel_password=multitel_password,
        max_concurrency=max_concurrency,
    )
    if not is_active:
        created.tenant.is_active = False
        created.tenant.save(update_fields=["is_active", "updated_at"])
    return created


# --- Staff roles ------------------------------------------------------------------------

OPERATORS_GROUP = "Operators"
AUDITORS_GROUP = "Auditors"

# Auditors see everything (never the secrets) and change nothing.
AUDITOR_PERMISSIONS = (
    "accounts.view_tenant",
    "accounts.view_apicredential",
    "restores.view_job",
    "restores.view_numberresult",
    "restores.view_upstreamattempt",
    "restores.view_webhookdelivery",
    "restores.view_breakerevent",
    "admin.view_logentry",
    # Staff logins: lockouts, the login logs, and who has a TOTP device (never its key).
    "axes.view_accessattempt",
    "axes.view_accesslog",
    "axes.view_accessfailurelog",
    "otp_totp.view_totpdevice",
)
# Operators also manage tenants and credentials and run the job actions.
OPERATOR_PERMISSIONS = (
    *AUDITOR_PERMISSIONS,
    "accounts.add_tenant",
    "accounts.change_tenant",
    "accounts.change_apicredential",
    "restores.operate_job",
    # Lift lockouts; add staff users' TOTP devices and show their QR codes.
    "axes.delete_accessattempt",
    "otp_totp.add_totpdevice",
    "otp_totp.change_totpdevice",
    "otp_totp.delete_totpdevice",
)
STAFF_ROLES = {"operator": OPERATORS_GROUP, "auditor": AUDITORS_GROUP}
ROLE_PERMISSIONS = {OPERATORS_GROUP: OPERATOR_PERMISSIONS, AUDITORS_GROUP: AUDITOR_PERMISSIONS}


@transaction.atomic
def staff_roles_sync() -> dict[str, Group]:
    """Make sure the Operators and Auditors groups exist with exactly their permissions."""
    groups: dict[str, Group] = {}
    for name, perms in ROLE_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=name)
        wanted = Q(pk__in=[])
        for perm in perms:
            app_label, codename = perm.split(".")
            wanted |= Q(content_type__app_label=app_label, codename=codename)
        found = list(Permission.objects.filter(wanted).select_related("content_type"))
        if len(found) != len(perms):
            missing = set(perms) - {f"{p.content_type.app_label}.{p.codename}" for p in found}
            raise LookupError(f"permissions missing (run migrate): {', '.join(sorted(missing))}")
        group.permissions.set(found)
        groups[name] = group
    return groups


@transaction.atomic
def staff_user_create(*, username: str, password: str, role: str, email: str = "") -> AbstractBaseUser:
    """A staff user (not a superuser) in the group of ``role`` (``operator`` or ``auditor``)."""
    if role not in STAFF_ROLES:
        raise ValueError(f"unknown role {role!r}; expected one of {', '.join(STAFF_ROLES)}")
    group = staff_roles_sync()[STAFF_ROLES[role]]
    User = get_user_model()
    user = User.objects.create_user(username=username, email=email, password=password)
    user.is_staff = True
    user.save(update_fields=["is_staff"])
    user.groups.add(group)
    return user
