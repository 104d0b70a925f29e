"""Admin forms for tenants: the Multitel password is write-only, secrets are never rendered."""

from __future__ import annotations

from typing import Any

from django import forms

from accounts.models import ApiCredential, Tenant
from accounts.services import API_SECRET_MIN_LENGTH, api_secret_validate

PASSWORD_KEEP_HELP = "Write-only. Leave blank to keep the current password; it is never shown."  # noqa: S105 (help text)


def _password_field(*, required: bool, help_text: str) -> forms.CharField:
    return forms.CharField(
        label="Multitel password",
        required=required,
        strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text=help_text,
    )


class TenantAddForm(forms.ModelForm):
    """A tenant and its first API credential in one form; the API secret is generated unless typed."""

    multitel_password = _password_field(required=True, help_text="Stored encrypted; never shown again.")
    api_username = forms.CharField(
        label="API username",
        max_length=150,
        help_text="The HTTP Basic username of the tenant's first API credential.",
    )
    api_secret = forms.CharField(
        label="API secret",
        required=False,
        strip=False,
        validators=[api_secret_validate],
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Leave empty to have one generated (recommended). One of your own must be at "
        f"least {API_SECRET_MIN_LENGTH} characters. Either way it is shown once, after saving, "
        "with the webhook signing secret, and only its hash is kept.",
    )

    class Meta:
        model = Tenant
        fields = ["name", "is_active", "multitel_username", "multitel_password", "max_concurrency"]

    def clean_api_username(self) -> str:
        username: str = self.cleaned_data["api_username"].strip()
        if not username:
            raise forms.ValidationError("This field is required.")
        if ApiCredential.objects.filter(username=username).exists():
            raise forms.ValidationError("This API username is taken.")
        return username

    def clean_max_concurrency(self) -> int:
        value: int = self.cleaned_data["max_concurrency"]
        if value < 1:
            raise forms.ValidationError("Must be at least 1.")
        return value


class TenantChangeForm(forms.ModelForm):
    """Edit a tenant. A blank Multitel password keeps the stored one."""

    multitel_password = _password_field(required=False, help_text=PASSWORD_KEEP_HELP)

    class Meta:
        model = Tenant
        fields = ["name", "is_active", "multitel_username", "multitel_password", "max_concurrency"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The stored password never reaches the form, not even as an unrendered initial value.
        self.initial.pop("multitel_password", None)

    def clean_multitel_password(self) -> str:
        value: str = self.cleaned_data.get("multitel_password") or ""
        if not value:
            return self.instance.multitel_password  # keep
        return value

    def clean_max_concurrency(self) -> int:
        value: int = self.cleaned_data["max_concurrency"]
        if value < 1:
            raise forms.ValidationError("Must be at least 1.")
        return value
