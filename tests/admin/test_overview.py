"""The overview: jobs by status, numbers, upstream error rate and p95, webhooks, busiest tenants."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from restores.models import Job, NumberResult, UpstreamAttempt, WebhookDelivery
from restores.selectors import overview, overview_window, upstream_latency_percentile
from tests.support.jobs import HOOK, make_job
from tests.support.parties import Party

pytestmark = pytest.mark.django_db


@pytest.fixture
def history(owner: Party, second: Party) -> None:
    assert owner.tenant is not None and second.tenant is not None
    now = timezone.now()
    make_job(owner.tenant, numbers=10, failed=2, created_at=now - timedelta(minutes=5))
    make_job(owner.tenant, numbers=4, pending=4, status="pending", first_number=15550200000)
    make_job(
        second.tenant,
        numbers=3,
        failed=3,
        webhook_url=HOOK,
        webhook_state="failing",
        deliveries=2,
        created_at=now - timedelta(days=3),
        first_number=15550300000,
    )
    make_job(second.tenant, numbers=50, created_at=now - timedelta(days=30), first_number=15550400000)


def test_it_sums_the_last_24_hours_and_the_last_7_days(history: None) -> None:
    day, week = overview(now=timezone.now())

    assert day.label == "Last 24 hours" and len(day.numbers) == 24 and day.unit == "hour"
    assert week.label == "Last 7 days" and len(week.numbers) == 7 and week.unit == "day"
    assert day.jobs_by_status == {"pending": 1, "processing": 0, "completed": 1, "cancelled": 0}
    assert week.jobs_by_status["completed"] == 2
    assert (day.numbers_restored, day.numbers_failed) == (8, 2)
    assert (week.numbers_restored, week.numbers_failed) == (8, 5)
    assert (day.upstream_calls, day.upstream_errors) == (10, 2)
    assert week.upstream_error_rate == pytest.approx(5 / 13)
    assert (day.webhook_deliveries_failed, week.webhook_deliveries_failed) == (0, 2)
    assert (day.webhooks_failing, week.webhooks_failing) == (0, 1)
    assert [(t.name, t.numbers, t.failed) for t in week.busiest_tenants] == [
        ("owner", 14, 2),
        ("second", 3, 3),
    ]


def test_it_takes_the_95th_percentile_of_upstream_latency_by_nearest_rank(owner: Party) -> None:
    assert owner.tenant is not None
    job = make_job(owner.tenant, numbers=100, attempts=False)
    now = timezone.now()
    UpstreamAttempt.objects.bulk_create(
        UpstreamAttempt(
            job=job,
            result=result,
            attempt_number=1,
            started_at=now - timedelta(minutes=1),
            duration_ms=(result.position + 1) * 10,  # 10, 20, … 1000 ms, shuffled by position
            outcome="success",
        )
        for result in NumberResult.objects.filter(job=job).order_by("-position")
    )
    since, until = now - timedelta(hours=1), now + timedelta(hours=1)

    assert upstream_latency_percentile(since=since, until=until, percentile=95, count=100) == 950
    assert upstream_latency_percentile(since=since, until=until, percentile=50, count=100) == 500
    assert upstream_latency_percentile(since=since, until=until, percentile=95, count=0) is None
    window = overview_window(label="x", now=now, unit="hour", buckets=24)
    assert window.upstream_p95_ms == 950


def test_it_draws_the_charts_as_inline_svg_with_no_script(auditor_client: Client, history: None) -> None:
    page = auditor_client.get(reverse("admin:restores_overview")).content.decode()

    assert page.count('<svg class="chart"') == 10
    for text in (
        "Last 24 hours",
        "Last 7 days",
        "upstream p95 latency",
        "upstream error rate",
        "Busiest tenants",
    ):
        assert text in page
    assert "<title>" in page and "owner: 14 numbers, 2 failed" in page
    assert "<script" not in page[page.index('id="content-main"') :]


def test_it_links_the_overview_from_the_admin_index(auditor_client: Client) -> None:
    page = auditor_client.get(reverse("admin:index")).content.decode()
    assert f'href="{reverse("admin:restores_overview")}"' in page


def test_it_renders_an_empty_overview(auditor_client: Client) -> None:
    page = auditor_client.get(reverse("admin:restores_overview")).content.decode()
    assert "nothing in this window" in page


def test_it_seeds_a_history_of_jobs_with_their_records(capsys: pytest.CaptureFixture[str]) -> None:
    call_command("seed_history", "--jobs", "60", "--tenants", "3", "--seed", "7", "--days", "30")

    assert Job.objects.count() == 60
    assert Job.objects.values("tenant").distinct().count() == 3
    results = NumberResult.objects.count()
    assert 300 <= results <= 1500  # about ten per job
    assert UpstreamAttempt.objects.count() >= NumberResult.objects.exclude(status="pending").count() * 0.5
    assert WebhookDelivery.objects.exists()
    assert NumberResult.objects.filter(status="failed").exists()
    oldest = Job.objects.order_by("created_at").first()
    assert oldest is not None and oldest.created_at < timezone.now() - timedelta(days=5)
    for job in Job.objects.all():
        counted = NumberResult.objects.filter(job=job)
        assert job.total_numbers == counted.count()
        assert job.failure_count == counted.filter(status="failed").count()
        assert job.success_count == counted.filter(status="success").count()
    assert "Wrote 60 jobs" in capsys.readouterr().out
