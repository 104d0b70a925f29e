"""Staff see each tenant's upstream breaker: its state, its history, and the open ones at a glance."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from restores import services
from restores.models import BreakerEvent
from tests.support.jobs import recorded_outcome
from tests.support.parties import Party

pytestmark = pytest.mark.django_db


@pytest.fixture
def outage(owner: Party) -> None:
    """The owner's breaker opened once, closed, and opened again; the second tenant's never did."""
    assert owner.tenant is not None
    tenant_id = owner.tenant.pk
    services.breaker_outcomes_record(
        tenant_id=tenant_id, outcomes=[], tripped_at=timezone.now(), last_error="HTTP 503"
    )
    services.breaker_outcomes_record(tenant_id=tenant_id, outcomes=[recorded_outcome()], tripped_at=None)
    services.breaker_outcomes_record(
        tenant_id=tenant_id, outcomes=[], tripped_at=timezone.now(), last_error="connection refused"
    )


def test_it_shows_the_state_and_history_on_the_tenant_page(
    outage: None, owner: Party, auditor_client: Client
) -> None:
    assert owner.tenant is not None
    page = auditor_client.get(
        reverse("admin:accounts_tenant_change", args=[owner.tenant.pk])
    ).content.decode()

    assert "open: outage since" in page and "connection refused" in page
    assert "upstream breaker history" in page.lower()
    assert page.count("retryable failures in a row") == 2
    assert "Multitel answered again after" in page


def test_it_lists_each_tenants_breaker_in_the_tenant_list(
    outage: None, second: Party, auditor_client: Client
) -> None:
    page = auditor_client.get(reverse("admin:accounts_tenant_changelist")).content.decode()

    assert "upstream breaker" in page.lower()
    assert "open: outage since" in page  # the owner
    assert ">closed<" in page  # the second tenant, never opened


def test_it_puts_the_open_breakers_on_the_overview(
    outage: None, second: Party, auditor_client: Client
) -> None:
    page = auditor_client.get(reverse("admin:restores_overview")).content.decode()

    assert "Upstream breakers" in page
    assert ">owner</a>: open: outage since" in page
    assert ">second</a>" not in page


def test_it_shows_the_overview_calm_when_every_breaker_is_closed(
    owner: Party, auditor_client: Client
) -> None:
    page = auditor_client.get(reverse("admin:restores_overview")).content.decode()

    assert "Every tenant&#x27;s breaker is closed" in page or "Every tenant's breaker is closed" in page


def test_it_lets_auditors_read_the_history(outage: None, auditor_client: Client) -> None:
    listing = auditor_client.get(reverse("admin:restores_breakerevent_changelist"))

    assert listing.status_code == 200
    assert listing.content.decode().count("retryable failures in a row") == 2


def test_it_keeps_the_history_read_only_for_everyone(outage: None, superuser_client: Client) -> None:
    event = BreakerEvent.objects.first()
    assert event is not None

    listing = superuser_client.get(reverse("admin:restores_breakerevent_changelist"))
    assert listing.status_code == 200 and "retryable failures in a row" in listing.content.decode()
    assert superuser_client.get(reverse("admin:restores_breakerevent_add")).status_code == 403
    change = superuser_client.post(
        reverse("admin:restores_breakerevent_change", args=[event.pk]), {"reason": "edited"}
    )
    assert change.status_code == 403
    event.refresh_from_db()
    assert event.reason != "edited"
    assert (
        superuser_client.get(reverse("admin:restores_breakerevent_delete", args=[event.pk])).status_code
        == 403
    )
