"""List filters of the restores admins: query-free (or one small query on tenants or one row).

None reads the distinct values of a big table.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.db.models import QuerySet
from django.http import HttpRequest

from portal.admin_utils import TenantListFilter
from restores.models import Job, NumberResult


class _ChoicesFilter(admin.SimpleListFilter):
    """A yes/no filter that costs no query."""

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "yes"), ("no", "no")]


class HasFailuresFilter(_ChoicesFilter):
    title = "has failures"
    parameter_name = "has_failures"

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == "yes":
            return queryset.filter(failure_count__gt=0)
        if self.value() == "no":
            return queryset.filter(failure_count=0)
        return queryset


class WebhookFailingFilter(_ChoicesFilter):
    title = "webhook failing"
    parameter_name = "webhook_failing"

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == "yes":
            return queryset.filter(webhook_state__in=Job.WEBHOOK_FAILING_STATES)
        if self.value() == "no":
            return queryset.exclude(webhook_state__in=Job.WEBHOOK_FAILING_STATES)
        return queryset


class JobTenantFilter(TenantListFilter):
    parameter_name = "tenant"
    field = "tenant_id"


class ViaJobTenantFilter(TenantListFilter):
    parameter_name = "tenant"
    field = "job__tenant_id"


class SelectedJobFilter(admin.SimpleListFilter):
    """``?job__id__exact=<id>`` (the job page's links): shows which job, and a way back to all.

    It lists only the selected job, never the big table of jobs.
    """

    title = "job"
    parameter_name = "job__id__exact"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[Any, str]]:
        value = self.value()
        if value is None or not str(value).isdigit():
            return []
        job = Job.objects.filter(pk=int(value)).values_list("uuid", flat=True).first()
        return [(value, str(job))] if job else []

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        if value is None:
            return queryset
        if not str(value).isdigit():
            raise IncorrectLookupParameters(f"not a job id: {value!r}")
        return queryset.filter(job_id=int(value))


class SelectedResultFilter(SelectedJobFilter):
    """``?result__id__exact=<id>`` (a number's attempts)."""

    title = "number"
    parameter_name = "result__id__exact"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[Any, str]]:
        value = self.value()
        if value is None or not str(value).isdigit():
            return []
        number = NumberResult.objects.filter(pk=int(value)).values_list("number", flat=True).first()
        return [(value, number)] if number else []

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        if value is None:
            return queryset
        if not str(value).isdigit():
            raise IncorrectLookupParameters(f"not a result id: {value!r}")
        return queryset.filter(result_id=int(value))


class StatusCodeFilter(admin.SimpleListFilter):
    """The codes the portal records; any other code works as ``?status_code=<n>``."""

    title = "status code"
    parameter_name = "status_code"
    CODES: tuple[int, ...] = (200, 401, 404, 429, 500, 502, 503, 504)

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        choices = [(str(code), str(code)) for code in self.CODES]
        value = self.value()
        if value and value.isdigit() and int(value) not in self.CODES:
            choices.append((value, value))
        return [*choices, ("none", "none yet")]

    field = "status_code"
    what = "a status code"

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        if value is None:
            return queryset
        if value == "none":
            return queryset.filter(**{f"{self.field}__isnull": True})
        if not value.isdigit():
            raise IncorrectLookupParameters(f"not {self.what}: {value!r}")
        return queryset.filter(**{self.field: int(value)})


class HttpStatusFilter(StatusCodeFilter):
    title = "HTTP status"
    parameter_name = "http_status"
    CODES: tuple[int, ...] = (200, 204, 400, 401, 404, 429, 500, 502, 503, 504)
    field = "http_status"
    what = "an HTTP status"
