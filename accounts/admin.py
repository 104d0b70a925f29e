from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from accounts.models import ApiCredential, Tenant


@admin.register(Tenant)
class TenantAdmin(admin.ModelAdmin):
    list_display = ["name", "is_active", "multitel_username", "max_concurrency", "created_at"]
    list_filter = ["is_active"]
    search_fields = ["name", "multitel_username"]
    exclude = ["multitel_password", "webhook_secret"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Tenants are created with `manage.py create_tenant`, which sets their secrets.
        return False


@admin.register(ApiCredential)
class ApiCredentialAdmin(admin.ModelAdmin):
    list_display = ["username", "tenant", "secret_hint", "created_at", "last_used_at", "revoked_at"]
    list_select_related = ["tenant"]
    list_filter = ["revoked_at"]
    search_fields = ["username", "tenant__name"]
    raw_id_fields = ["tenant"]
    readonly_fields = ["secret_hint", "created_at", "last_used_at"]
