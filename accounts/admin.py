"""Staff admin for tenants, API credentials and the admin log.

Secrets never reach a list, a form or a log: API secrets exist only as salted
hashes, and the Multitel password is a write-only field. The API secret and the
webhook signing secret that a tenant is given are shown once, on a page that
takes them out of the session (encrypted there) as it shows them.

Nothing here knows about restores: ``restores.admin.tenants`` extends the tenant
list with each tenant's recent jobs and API use, and registers that in its place.
"""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.models import LogEntry
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.forms import ModelForm
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path

from accounts import crypto
from accounts.forms import TenantAddForm, TenantChangeForm
from accounts.models import ApiCredential, Tenant
from accounts.services import (
    api_credential_create,
    api_credential_revoke,
    tenant_onboard,
    tenant_rotate_webhook_secret,
)
from portal.admin_utils import CappedCountPaginator, ReadOnlyAdmin, TenantListFilter, admin_url, link

# Session key of the secrets waiting to be shown once: {tenant pk: encrypted JSON}.
ONCE_SESSION_KEY = "admin_secrets_shown_once"
SECRET_FIELDS = ("multitel_password", "webhook_secret")


def _secrets_stash(request: HttpRequest, *, tenant: Tenant, **secrets: str) -> None:
    """Keep freshly issued secrets for the one-time page, encrypted, in the staff user's session."""
    pending = dict(request.session.get(ONCE_SESSION_KEY, {}))
    pending[str(tenant.pk)] = crypto.encrypt(json.dumps(secrets))
    request.session[ONCE_SESSION_KEY] = pending


def _secrets_pop(request: HttpRequest, *, tenant: Tenant) -> dict[str, str] | None:
    pending = dict(request.session.get(ONCE_SESSION_KEY, {}))
    token = pending.pop(str(tenant.pk), None)
    request.session[ONCE_SESSION_KEY] = pending
    if token is None:
        return None
    try:
        secrets: dict[str, str] = json.loads(crypto.decrypt(token))
    except ValueError:  # the encryption keys changed in between
        return None
    return secrets


class RevokedFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("live", "live"), ("revoked", "revoked")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == "live":
            return queryset.filter(revoked_at__isnull=True)
        if self.value() == "revoked":
            return queryset.filter(revoked_at__isnull=False)
        return queryset


@admin.register(Tenant)
class TenantAdmin(admin.ModelAdmin):
    list_display = ["name", "is_active", "max_concurrency", "created_at"]
    list_filter = ["is_active"]
    search_fields = ["name", "multitel_username"]
    show_full_result_count = False
    readonly_fields = ["webhook_signing_secret", "multitel_password_state", "created_at", "updated_at"]

    # --- List -----------------------------------------------------------------------

    def get_queryset(self, request: HttpRequest) -> QuerySet[Tenant]:
        # Secrets are never needed to list or show a tenant: not even decrypted.
        return super().get_queryset(request).defer(*SECRET_FIELDS)

    # --- Forms ----------------------------------------------------------------------

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        kwargs["form"] = TenantChangeForm if obj is not None else TenantAddForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:
            fields = ["name", "is_active", "multitel_username", "multitel_password", "max_concurrency"]
            return [
                (None, {"fields": fields}),
                ("First API credential", {"fields": ["api_username", "api_secret"]}),
            ]
        # Read-only views (auditors) show only whether a password is set, never the field.
        password = (
            "multitel_password" if self.has_change_permission(request, obj) else "multitel_password_state"
        )
        return [
            (None, {"fields": ["name", "is_active", "multitel_username", password, "max_concurrency"]}),
            ("Secrets", {"fields": ["webhook_signing_secret"]}),
            ("Record", {"fields": ["created_at", "updated_at"]}),
        ]

    @admin.display(description="Multitel password")
    def multitel_password_state(self, obj: Tenant) -> str:
        return "set (write-only, never shown)"

    @admin.display(description="webhook signing secret")
    def webhook_signing_secret(self, obj: Tenant) -> str:
        return "set (shown once when issued; rotate to issue a new one)"

    def save_model(self, request: HttpRequest, obj: Tenant, form: ModelForm, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        data = form.cleaned_data
        created = tenant_onboard(
            name=data["name"],
            is_active=data["is_active"],
            multitel_username=data["multitel_username"],
            multitel_password=data["multitel_password"],
            max_concurrency=data["max_concurrency"],
            api_username=data["api_username"],
            api_secret=data.get("api_secret") or None,
        )
        tenant = created.tenant
        obj.pk = tenant.pk
        obj.created_at, obj.updated_at = tenant.created_at, tenant.updated_at
        obj.webhook_secret = tenant.webhook_secret
        obj._state.adding = False
        _secrets_stash(
            request,
            tenant=tenant,
            api_username=created.credential.credential.username,
            api_secret=created.credential.secret,
            webhook_secret=tenant.webhook_secret,
        )

    def response_add(self, request: HttpRequest, obj: Tenant, post_url_continue: str | None = None) -> Any:
        self.message_user(request, f"Tenant “{obj}” was added with its first API credential.")
        return HttpResponseRedirect(self._url("secrets", obj.pk))

    # --- Change page: credentials and secrets ------------------------------------------

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        extra_context = dict(extra_context or {})
        if object_id.isdigit():
            extra_context["credentials"] = list(
                ApiCredential.objects.filter(tenant_id=int(object_id)).order_by("-created_at")
            )
        extra_context["can_manage_credentials"] = self.has_change_permission(request)
        return super().change_view(request, object_id, form_url, extra_context)

    def _url(self, name: str, *args: Any) -> str:
        return admin_url(Tenant, name, *args, current_app=self.admin_site.name)

    def get_urls(self) -> list[URLPattern]:
        wrap = self.admin_site.admin_view
        own = [
            path("<int:tenant_id>/secrets/", wrap(self.secrets_view), name="accounts_tenant_secrets"),
            path(
                "<int:tenant_id>/rotate-credential/",
                wrap(self.rotate_credential_view),
                name="accounts_tenant_rotate_credential",
            ),
            path(
                "<int:tenant_id>/credentials/<int:credential_id>/revoke/",
                wrap(self.revoke_credential_view),
                name="accounts_tenant_revoke_credential",
            ),
            path(
                "<int:tenant_id>/rotate-webhook-secret/",
                wrap(self.rotate_webhook_secret_view),
                name="accounts_tenant_rotate_webhook_secret",
            ),
        ]
        return own + super().get_urls()

    def _tenant_for_change(self, request: HttpRequest, tenant_id: int) -> Tenant:
        tenant = get_object_or_404(Tenant.objects.defer(*SECRET_FIELDS), pk=tenant_id)
        if not self.has_change_permission(request, tenant):
            raise PermissionDenied
        return tenant

    def secrets_view(self, request: HttpRequest, tenant_id: int) -> HttpResponse:
        """Show the secrets just issued for a tenant, once: they leave the session as they are shown."""
        tenant = self._tenant_for_change(request, tenant_id)
        secrets = _secrets_pop(request, tenant=tenant)
        if secrets is None:
            self.message_user(
                request,
                "Those secrets were shown already and cannot be shown again; rotate to issue new ones.",
                messages.WARNING,
            )
            return HttpResponseRedirect(self._url("change", tenant.pk))
        context = {
            **self.admin_site.each_context(request),
            "title": f"New secrets of {tenant}",
            "subtitle": None,
            "opts": self.opts,
            "original": tenant,
            "has_view_permission": True,
            "secrets": secrets,
            "change_url": self._url("change", tenant.pk),
        }
        return TemplateResponse(request, "admin/accounts/tenant/secrets.html", context)

    def rotate_credential_view(self, request: HttpRequest, tenant_id: int) -> HttpResponse:
        """Issue a new API credential; the old ones keep working until revoked."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        tenant = self._tenant_for_change(request, tenant_id)
        issued = api_credential_create(tenant=tenant)
        self.log_change(request, tenant, f"Issued API credential {issued.credential.username} (rotation).")
        _secrets_stash(
            request, tenant=tenant, api_username=issued.credential.username, api_secret=issued.secret
        )
        self.message_user(
            request,
            f"Issued API credential {issued.credential.username}. The others keep working until revoked.",
        )
        return HttpResponseRedirect(self._url("secrets", tenant.pk))

    def revoke_credential_view(
        self, request: HttpRequest, tenant_id: int, credential_id: int
    ) -> HttpResponse:
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        tenant = self._tenant_for_change(request, tenant_id)
        credential = get_object_or_404(ApiCredential, pk=credential_id, tenant=tenant)
        if credential.is_revoked:
            self.message_user(request, f"API credential {credential} was revoked already.", messages.WARNING)
        else:
            api_credential_revoke(credential=credential)
            self.log_change(request, tenant, f"Revoked API credential {credential.username}.")
            self.message_user(request, f"Revoked API credential {credential.username}.")
        return HttpResponseRedirect(self._url("change", tenant.pk))

    def rotate_webhook_secret_view(self, request: HttpRequest, tenant_id: int) -> HttpResponse:
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        tenant = self._tenant_for_change(request, tenant_id)
        secret = tenant_rotate_webhook_secret(tenant=tenant)
        self.log_change(request, tenant, "Rotated the webhook signing secret.")
        _secrets_stash(request, tenant=tenant, webhook_secret=secret)
        self.message_user(
            request, "Rotated the webhook signing secret; webhooks are signed with the new one from now on."
        )
        return HttpResponseRedirect(self._url("secrets", tenant.pk))


@admin.register(ApiCredential)
class ApiCredentialAdmin(ReadOnlyAdmin):
    """Read-only: credentials are issued and revoked from their tenant's page (or revoked here).

    None is added here (the tenant's page issues them and shows the secret once), and none is
    ever deleted (revoked instead: jobs refer to them).
    """

    list_display = ["username", "tenant", "secret_hint", "created_at", "last_used_at", "revoked_at"]
    list_select_related = ["tenant"]
    list_filter = [RevokedFilter, TenantListFilter]
    search_fields = ["username", "tenant__name"]
    raw_id_fields = ["tenant"]
    fields = ("username", "tenant", "secret_hint", "created_at", "last_used_at", "revoked_at")
    exclude = ("secret_salt", "secret_hash")
    readonly_fields = fields
    show_full_result_count = False
    actions = ["revoke"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[ApiCredential]:
        return (
            super()
            .get_queryset(request)
            .select_related("tenant")
            .defer("secret_salt", "secret_hash", *(f"tenant__{f}" for f in SECRET_FIELDS))
        )

    def has_revoke_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("accounts.change_apicredential")

    @admin.action(description="Revoke selected API credentials", permissions=["revoke"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiCredential]) -> None:
        revoked = 0
        for credential in queryset.filter(revoked_at__isnull=True):
            api_credential_revoke(credential=credential)
            self.log_change(request, credential, "Revoked.")
            revoked += 1
        self.message_user(request, f"Revoked {revoked} API credential(s).")


@admin.register(LogEntry)
class LogEntryAdmin(ReadOnlyAdmin):
    """The admin log (who did what, when): read-only, for auditors and operators."""

    list_display = ["action_time", "user", "content_type", "object_link", "action_flag", "message"]
    list_filter = ["action_flag", ("action_time", admin.DateFieldListFilter)]
    list_select_related = ["user", "content_type"]
    search_fields = ["object_repr", "change_message", "user__username"]
    show_full_result_count = False
    paginator = CappedCountPaginator

    @admin.display(description="object")
    def object_link(self, obj: LogEntry) -> str:
        url = obj.get_admin_url()
        if not url or obj.is_deletion():
            return obj.object_repr
        return link(url, obj.object_repr)

    @admin.display(description="message")
    def message(self, obj: LogEntry) -> str:
        return obj.get_change_message()
