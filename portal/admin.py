"""The staff-login records in the admin: axes' lockouts and logs, and staff TOTP devices.

- **Lockouts** are axes' access attempts (one row per username and address, with its count of
  failures). Auditors view them; operators also delete them, which lifts the lockout.
  The access log (successful logins) and the failure log are read-only.
- **TOTP devices**: operators add one for a staff user and show its QR code to be scanned;
  auditors see who has a device, never its key.
"""

from __future__ import annotations

from typing import Any

from axes.admin import AccessAttemptAdmin
from axes.models import AccessAttempt
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.db.models import ForeignKey
from django.forms import ModelChoiceField
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django_otp.plugins.otp_totp.admin import TOTPDeviceAdmin
from django_otp.plugins.otp_totp.models import TOTPDevice

SECRET_FIELDS = ("key", "qrcode_link")


class LockoutAdmin(AccessAttemptAdmin):
    """Axes' access attempts: deleting one lifts its lockout (and is in the admin log)."""

    actions = ["delete_selected", "cleanup_expired_attempts"]

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        if not self.has_delete_permission(request):
            # axes' clean-up deletes rows too: not for those who may only look.
            actions.pop("cleanup_expired_attempts", None)
        return actions


class StaffTOTPDeviceAdmin(TOTPDeviceAdmin):
    """django-otp's TOTP device admin; the key and the QR code only for who may change devices."""

    raw_id_fields: list[str] = []

    def formfield_for_foreignkey(
        self, db_field: ForeignKey[Any, Any], request: HttpRequest, **kwargs: Any
    ) -> ModelChoiceField | None:
        if db_field.name == "user":
            # Staff users by name (operators may not browse users otherwise).
            kwargs["queryset"] = get_user_model().objects.filter(is_staff=True).order_by("username")
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def get_list_display(self, request: HttpRequest) -> Any:
        shown = list(super().get_list_display(request))
        if not self.has_change_permission(request):
            shown = [name for name in shown if name not in SECRET_FIELDS]
        return shown

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        fieldsets = super().get_fieldsets(request, obj)
        if self.has_change_permission(request, obj):
            return fieldsets
        return [
            (title, {**options, "fields": [f for f in options["fields"] if f not in SECRET_FIELDS]})
            for title, options in fieldsets
            if [f for f in options["fields"] if f not in SECRET_FIELDS]
        ]

    def _device_for_change(self, request: HttpRequest, pk: int) -> TOTPDevice:
        device = TOTPDevice.objects.filter(pk=pk).first()
        if device is None or not self.has_change_permission(request, device):
            raise PermissionDenied
        return device

    def config_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        self._device_for_change(request, pk)
        return super().config_view(request, pk)

    def qrcode_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        self._device_for_change(request, pk)
        return super().qrcode_view(request, pk)

    def response_add(self, request: HttpRequest, obj: Any, post_url_continue: str | None = None) -> Any:
        if "_addanother" in request.POST or "_continue" in request.POST or "_popup" in request.POST:
            return super().response_add(request, obj, post_url_continue)
        self.message_user(
            request,
            f"Added the TOTP device “{obj.name}” for {obj.user}. Scan this QR code with their "
            "authenticator app (or type in the secret of the address below it); its codes then log them in.",
        )
        return HttpResponseRedirect(reverse("admin:otp_totp_totpdevice_config", kwargs={"pk": obj.pk}))


admin.site.unregister(AccessAttempt)
admin.site.register(AccessAttempt, LockoutAdmin)
admin.site.unregister(TOTPDevice)
admin.site.register(TOTPDevice, StaffTOTPDeviceAdmin)
