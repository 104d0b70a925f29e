"""What the staff admins of every app share: the capped paginator, the tenant filter,
the read-only base and small link helpers.

Apps' admins import from here, never from each other's admin modules (``restores``
extends ``accounts``' tenant admin, and nothing in ``accounts`` imports ``restores``).
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.core.paginator import Paginator
from django.db.models import Model, QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.functional import cached_property
from django.utils.html import format_html
from django.utils.safestring import SafeString

from accounts.models import Tenant


def admin_url(model: type[Model], view: str, *args: Any, current_app: str | None = None) -> str:
    """The URL of one of a model's admin views: ``admin:<app>_<model>_<view>``."""
    opts = model._meta
    return reverse(f"admin:{opts.app_label}_{opts.model_name}_{view}", args=args, current_app=current_app)


def link(url: str, text: Any) -> SafeString:
    return format_html('<a href="{}">{}</a>', url, text)


class CappedCountPaginator(Paginator):
    """Counts a list's rows only up to ``COUNT_CAP``: the list of a big table costs the same with
    a million rows as with ten thousand (``SELECT COUNT(*) FROM (… LIMIT cap + 1)``).

    Beyond the cap the list shows its first ``COUNT_CAP`` rows' pages and says "more than …";
    the filters and the search narrow it down.
    """

    COUNT_CAP = 10_000

    @cached_property
    def _counted(self) -> int:
        return int(self.object_list.order_by()[: self.COUNT_CAP + 1].count())  # type: ignore[attr-defined]

    @cached_property
    def count(self) -> int:
        return min(self._counted, self.COUNT_CAP)

    @property
    def capped(self) -> bool:
        """Whether there are more rows than counted."""
        return self._counted > self.COUNT_CAP


class TenantListFilter(admin.SimpleListFilter):
    """Tenants by name; one small query (tenants are few), whatever the size of the list.

    Filters ``field`` (``tenant_id`` here; subclasses follow a relation, e.g. ``job__tenant_id``).
    """

    title = "tenant"
    parameter_name = "tenant"
    field = "tenant_id"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[Any, str]]:
        return list(Tenant.objects.order_by("name").values_list("pk", "name"))

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        if value is None:
            return queryset
        if not str(value).isdigit():
            return queryset.none()
        return queryset.filter(**{self.field: int(value)})


class ReadOnlyAdmin(admin.ModelAdmin):
    """Records staff may view and never add, change or delete here (actions may still call services)."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
