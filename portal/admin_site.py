"""The staff admin site: password guessing limited by django-axes, two-factor by django-otp.

``StaffAdminSite`` is ``admin.site`` (``portal.apps.StaffAdminConfig``). It is django-otp's
``OTPAdminSite`` when ``ADMIN_REQUIRE_2FA`` is on: a staff user must then give the current
code of one of their TOTP devices with their password, and a session logged in without one
is not let in. When it is off, the admin asks for the password only, as Django's does.

Failed logins are counted by django-axes through Django's ``authenticate()`` (per username
and client address, ``AXES_*`` in ``portal/settings.py``); a wrong or missing two-factor
code after a right password counts as a failure too, so codes cannot be guessed faster
than passwords. A locked-out login gets ``lockout_response``: 429 with ``Retry-After``.
"""

from __future__ import annotations

import ipaddress
import math
from datetime import timedelta
from typing import Any

from axes.helpers import get_client_username
from axes.models import AccessAttempt
from django import forms
from django.conf import settings
from django.contrib.admin import AdminSite
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.signals import user_login_failed
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Max
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone
from django_otp.admin import OTPAdminSite
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.throttling import client_address

# One message for a wrong password, a wrong code and an account without a device, so that
# the answer never tells someone who guesses whether the password was right.
INVALID_LOGIN_2FA = (
    "Please enter the correct %(username)s, password and current two-factor code of a staff account. "
    "Codes change every 30 seconds, and each is accepted once; after a wrong code, wait a moment."
)
CODE_REQUIRED = "Enter the two-factor code from your authenticator app as well as your password."


def totp_device_verify(*, user: AbstractBaseUser, token: str) -> TOTPDevice | None:
    """The user's confirmed TOTP device that accepts ``token`` now, if any.

    Each device is locked while it is checked (a token is accepted once) and keeps
    django-otp's own throttling (a growing delay after each wrong token).
    """
    with transaction.atomic():
        for device in TOTPDevice.objects.devices_for_user(user, confirmed=True).select_for_update():
            if device.verify_token(token):
                return device
    return None


class StaffAuthenticationForm(AdminAuthenticationForm):
    """The admin's login form, with a two-factor code that is required when ADMIN_REQUIRE_2FA is on."""

    otp_token = forms.CharField(
        label="Two-factor code",
        required=False,
        max_length=10,
        strip=True,
        widget=forms.TextInput(
            attrs={"autocomplete": "one-time-code", "inputmode": "numeric", "pattern": "[0-9 ]*"}
        ),
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if settings.ADMIN_REQUIRE_2FA:
            # Wrong password, not staff, wrong code, no device: all get this one answer.
            self.error_messages = {**self.error_messages, "invalid_login": INVALID_LOGIN_2FA}

    def clean(self) -> dict[str, Any]:
        if not settings.ADMIN_REQUIRE_2FA:
            return super().clean()
        token = (self.cleaned_data.get("otp_token") or "").replace(" ", "")
        if not token:
            # Asked for before the password is checked: nothing is tried, nothing is told.
            raise ValidationError(CODE_REQUIRED, code="token_required")
        cleaned = super().clean()  # the password (a failure is counted by axes)
        user = self.get_user()
        if user is None:  # no username or password given: their fields say so
            return cleaned
        device = totp_device_verify(user=user, token=token)
        if device is None:
            # A right password with a wrong code (or no device) is a failed login for axes too.
            user_login_failed.send(
                sender=type(self), credentials={"username": user.get_username()}, request=self.request
            )
            self.user_cache = None
            raise self.get_invalid_login_error()
        # django-otp stores it in the session when Django's login() runs (user_logged_in).
        user.otp_device = device  # type: ignore[attr-defined]
        return cleaned


class StaffAdminSite(OTPAdminSite):
    """``admin.site``: django-otp's admin site whose two-factor rule follows ADMIN_REQUIRE_2FA."""

    login_form = StaffAuthenticationForm
    login_template = "admin/staff_login.html"

    def __init__(self, name: str = "admin") -> None:
        # OTPAdminSite names itself "otpadmin"; this one is the admin (``admin:…`` URLs).
        super().__init__(name)

    def has_permission(self, request: HttpRequest) -> bool:
        if settings.ADMIN_REQUIRE_2FA:
            return bool(super().has_permission(request))  # also verified by a device
        return AdminSite.has_permission(self, request)

    def each_context(self, request: HttpRequest) -> dict[str, Any]:
        context = super().each_context(request)
        context["admin_require_2fa"] = settings.ADMIN_REQUIRE_2FA
        return context


def axes_client_address(request: HttpRequest) -> str | None:
    """The client address axes counts failures by (``AXES_CLIENT_IP_CALLABLE``).

    The project's rule, ``accounts.throttling.client_address``; only what is not an IP address
    (no ``REMOTE_ADDR``, as behind a Unix socket or in the test client's ``force_login``)
    becomes None, because axes stores addresses in an IP column (``inet`` on PostgreSQL).
    """
    address = client_address(request)
    try:
        ipaddress.ip_address(address)
    except ValueError:
        return None
    return address


def lockout_remaining(request: HttpRequest, credentials: dict[str, Any] | None) -> timedelta:
    """How long the lockout of this request's username and address still lasts."""
    cool_off: timedelta = settings.AXES_COOLOFF_TIME
    latest = AccessAttempt.objects.filter(
        username=get_client_username(request, credentials),
        ip_address=getattr(request, "axes_ip_address", None),
    ).aggregate(latest=Max("attempt_time"))["latest"]
    if latest is None:
        return cool_off
    return max(timedelta(0), latest + cool_off - timezone.now())


def lockout_response(
    request: HttpRequest, original_response: HttpResponse | None = None, credentials: Any = None
) -> HttpResponse:
    """The answer to a login refused by axes (``AXES_LOCKOUT_CALLABLE``): 429, with Retry-After."""
    from django.contrib import admin

    remaining = lockout_remaining(request, credentials)
    seconds = max(1, math.ceil(remaining.total_seconds()))
    context = {
        **admin.site.each_context(request),
        "title": "Too many failed logins",
        "failure_limit": settings.AXES_FAILURE_LIMIT,
        "username": get_client_username(request, credentials) or "",
        "minutes": max(1, math.ceil(seconds / 60)),
    }
    response = TemplateResponse(request, "admin/locked_out.html", context, status=429)
    response["Retry-After"] = str(seconds)
    return response.render()
