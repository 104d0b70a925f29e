"""What the restores admins share: the read-only base of their big lists, search terms, links.

Everything in the restores admin is read-only. Operators (``restores.operate_job``) may run
the job actions, each of which calls a service in ``restores.services`` and is recorded in
the admin log. The tables are big (millions of rows), so every list:

- counts nothing beyond the page (``show_full_result_count = False``);
- joins what it shows in the same query (``get_queryset``/``list_select_related``)
  and never decrypts a tenant's secrets;
- filters with small, query-free filters (or one small query on tenants) instead
  of filters that read distinct values of a big table;
- searches numbers and UUIDs by exact, indexed lookups.
"""

from __future__ import annotations

import uuid
from typing import Any, ClassVar

from django.contrib import admin
from django.db.models import Model, Q, QuerySet
from django.http import HttpRequest
from django.utils.html import format_html
from django.utils.safestring import SafeString

from portal.admin_utils import CappedCountPaginator, ReadOnlyAdmin, admin_url, link
from restores.admin.filters import ViaJobTenantFilter
from restores.models import Job

TENANT_SECRETS = ("multitel_password", "webhook_secret")


def search_number(term: str) -> str | None:
    """A phone number as typed in the search box (digits only, 7 to 15), else None."""
    term = term.strip()
    return term if term.isdigit() and 7 <= len(term) <= 15 else None


def search_uuid(term: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(term.strip())
    except ValueError:
        return None


def preformatted(text: str) -> SafeString:
    """A stored body excerpt, shown as it came."""
    return format_html("<pre>{}</pre>", text or "(empty)")


def changelist_link(model: type[Model], label: str, **params: Any) -> SafeString:
    query = "&".join(f"{key}={value}" for key, value in params.items())
    return format_html('<a href="{}?{}">{}</a>', admin_url(model, "changelist"), query, label)


class AuditAdmin(ReadOnlyAdmin):
    """Audit records: visible to staff with view permission, never added, changed or deleted.

    Lists count at most ``CappedCountPaginator.COUNT_CAP`` rows, and sort only by indexed columns.
    """

    show_full_result_count = False
    paginator = CappedCountPaginator
    list_per_page = 50
    sortable_by: ClassVar[list[str] | tuple[str, ...] | None] = ()
    # The order while the list is filtered by tenant: newest jobs first, through the tenant's jobs
    # (index job_tenant_created), then each job's rows by their own index; empty: the usual order.
    tenant_ordering: ClassVar[list[str]] = []

    def get_ordering(self, request: HttpRequest) -> Any:
        if self.tenant_ordering and request.GET.get(ViaJobTenantFilter.parameter_name):
            return self.tenant_ordering
        return super().get_ordering(request)

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Any], search_term: str
    ) -> tuple[QuerySet[Any], bool]:
        """Exact, indexed lookups only: no term lists everything; a term that is none of the
        forms ``search_condition`` accepts finds nothing."""
        term = search_term.strip()
        if not term:
            return queryset, False
        condition = self.search_condition(term)
        return (queryset.none() if condition is None else queryset.filter(condition)), False

    def search_condition(self, term: str) -> Q | None:
        """The rows a search term finds, or None when the term is not a form this list knows."""
        return None


class JobRowAdmin(AuditAdmin):
    """An audit list whose rows belong to one job each (``job`` joined by the list)."""

    @admin.display(description="job", ordering="job_id")
    def job_link(self, obj: Any) -> SafeString:
        return link(admin_url(Job, "change", obj.job_id), obj.job.uuid)
