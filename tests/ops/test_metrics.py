"""/metrics: who may read it, what it reports, and that a scrape stays cheap on a big database."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from restores import services
from restores.models import Job, NumberResult, UpstreamAttempt, UpstreamBreaker, WebhookDelivery
from tests.support.parties import Party, make_party

pytestmark = pytest.mark.django_db

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(**extra: Any) -> Any:
    return Client().get("/metrics", **extra)


def samples(text: str) -> Samples:
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(parsed: Samples, name: str, **labels: str) -> float | None:
    return parsed.get((name, tuple(sorted(labels.items()))))


def families(text: str) -> dict[str, str]:
    return {f.name: f.type for f in text_string_to_metric_families(text)}


# --- Access ------------------------------------------------------------------------------


def test_it_serves_metrics_to_an_allowed_address(settings: Any) -> None:
    settings.METRICS_ALLOWED_IPS = ["10.1.0.0/16"]

    response = scrape(REMOTE_ADDR="10.1.2.3")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    assert "portal_jobs" in families(response.content.decode())


def test_it_refuses_an_address_not_allowed_in_the_api_error_shape(settings: Any) -> None:
    settings.METRICS_ALLOWED_IPS = ["127.0.0.1/32"]
    settings.METRICS_TOKEN = ""

    response = scrape(REMOTE_ADDR="203.0.113.9")

    assert response.status_code == 403
    body = response.json()
    assert set(body) == {"error", "message"}
    assert body["error"] == "permission_denied"


def test_it_serves_metrics_anywhere_with_the_bearer_token(settings: Any) -> None:
    settings.METRICS_ALLOWED_IPS = []
    settings.METRICS_TOKEN = "metrics-token-0123456789"

    assert (
        scrape(REMOTE_ADDR="203.0.113.9", HTTP_AUTHORIZATION="Bearer metrics-token-0123456789").status_code
        == 200
    )
    assert (
        scrape(REMOTE_ADDR="203.0.113.9", HTTP_AUTHORIZATION="bearer metrics-token-0123456789").status_code
        == 200
    )


@pytest.mark.parametrize(
    "authorization",
    [
        "",
        "Bearer wrong-token",
        "Bearer ",
        "Basic metrics-token-0123456789",
        "metrics-token-0123456789",
        "Bearer metrics-token-0123456789x",
        "Bearer mötrics-tökén",  # not ASCII: refused, not a 500
    ],
)
def test_it_refuses_a_missing_or_wrong_token(settings: Any, authorization: str) -> None:
    settings.METRICS_ALLOWED_IPS = []
    settings.METRICS_TOKEN = "metrics-token-0123456789"

    response = scrape(REMOTE_ADDR="203.0.113.9", HTTP_AUTHORIZATION=authorization)

    assert response.status_code == 403
    assert response.json()["error"] == "permission_denied"


def test_it_accepts_no_token_at_all_when_none_is_configured(settings: Any) -> None:
    settings.METRICS_ALLOWED_IPS = []
    settings.METRICS_TOKEN = ""

    assert scrape(REMOTE_ADDR="203.0.113.9", HTTP_AUTHORIZATION="Bearer ").status_code == 403
    assert scrape(REMOTE_ADDR="203.0.113.9", HTTP_AUTHORIZATION="Bearer  x").status_code == 403


def test_it_does_not_trust_the_address_of_a_request_forwarded_by_a_proxy(settings: Any) -> None:
    settings.METRICS_ALLOWED_IPS = ["127.0.0.1/32"]

    assert scrape(REMOTE_ADDR="127.0.0.1").status_code == 200
    assert scrape(REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="203.0.113.9").status_code == 403
    assert scrape(REMOTE_ADDR="127.0.0.1", HTTP_FORWARDED="for=203.0.113.9").status_code == 403


def test_it_matches_ipv4_mapped_addresses_and_ignores_a_bad_network(settings: Any) -> None:
    settings.METRICS_ALLOWED_IPS = ["not-a-network", "127.0.0.0/8"]

    assert scrape(REMOTE_ADDR="::ffff:127.0.0.1").status_code == 200
    assert scrape(REMOTE_ADDR="::ffff:203.0.113.9").status_code == 403
    assert scrape(REMOTE_ADDR="garbage").status_code == 403


def test_it_needs_no_api_credentials_and_refuses_writes() -> None:
    assert scrape().status_code == 200
    assert Client().post("/metrics").status_code == 405


# --- Values --------------------------------------------------------------------------------


def _job(
    party: Party,
    *,
    status: str,
    total: int,
    ok: int = 0,
    failed: int = 0,
    webhook_state: str = Job.WebhookState.NONE,
    created: datetime | None = None,
) -> Job:
    assert party.tenant is not None
    job = Job.objects.create(
        tenant=party.tenant,
        status=status,
        total_numbers=total,
        success_count=ok,
        failure_count=failed,
        webhook_state=webhook_state,
        webhook_url="https://hooks.example.com/x" if webhook_state != Job.WebhookState.NONE else None,
    )
    if created is not None:
        Job.objects.filter(pk=job.pk).update(created_at=created)
    return job


def _results(
    job: Job, count: int, *, status: str, lease_for: timedelta | None = None, start: int = 0
) -> list[NumberResult]:
    now = timezone.now()
    return NumberResult.objects.bulk_create(
        NumberResult(
            job=job,
            position=start + i,
            number=f"1555{job.pk:03d}{start + i:04d}",
            status=status,
            lease_expires_at=now + lease_for if lease_for is not None else None,
        )
        for i in range(count)
    )


def _attempt(result: NumberResult, *, ms: int, outcome: str, http_status: int | None, ago: timedelta) -> None:
    UpstreamAttempt.objects.create(
        result=result,
        job_id=result.job_id,
        attempt_number=UpstreamAttempt.objects.filter(result=result).count() + 1,
        started_at=timezone.now() - ago,
        duration_ms=ms,
        http_status=http_status,
        outcome=outcome,
    )


def _delivery(job: Job, *, delivered: bool, ago: timedelta = timedelta(minutes=5)) -> None:
    WebhookDelivery.objects.create(
        job=job,
        attempt_number=WebhookDelivery.objects.filter(job=job).count() + 1,
        webhook_id="msg_x",
        url="https://hooks.example.com/x",
        started_at=timezone.now() - ago,
        duration_ms=30,
        http_status=204 if delivered else 500,
        delivered=delivered,
    )


@pytest.fixture
def activity(owner: Party, second: Party) -> None:
    """Known jobs, numbers, upstream attempts and webhook deliveries of two tenants."""
    S, W = Job.Status, Job.WebhookState
    two_days_ago = timezone.now() - timedelta(days=2)
    j1 = _job(owner, status=S.COMPLETED, total=5, ok=4, failed=1, webhook_state=W.DELIVERED)
    j2 = _job(owner, status=S.COMPLETED, total=3, ok=1, failed=2, webhook_state=W.FAILING)
    j3 = _job(owner, status=S.PROCESSING, total=20, ok=5, failed=1)
    _job(owner, status=S.PENDING, total=15)
    _job(second, status=S.COMPLETED, total=2, ok=2, webhook_state=W.FAILED)
    j6 = _job(second, status=S.CANCELLED, total=4, ok=1, failed=3, webhook_state=W.PENDING)
    # Older than the 24-hour window: only live state counts them.
    j7 = _job(owner, status=S.COMPLETED, total=100, ok=100, webhook_state=W.DELIVERED, created=two_days_ago)
    j8 = _job(second, status=S.PROCESSING, total=50, ok=10, created=two_days_ago)
    _job(second, status=S.COMPLETED, total=1, failed=1, webhook_state=W.FAILED, created=two_days_ago)

    leased = _results(j3, 3, status=NumberResult.Status.PROCESSING, lease_for=timedelta(minutes=5))
    _results(j3, 1, status=NumberResult.Status.PROCESSING, lease_for=timedelta(minutes=-1), start=3)
    _results(j3, 10, status=NumberResult.Status.PENDING, start=4)
    second_leased = _results(j8, 2, status=NumberResult.Status.PROCESSING, lease_for=timedelta(minutes=5))

    recent = timedelta(minutes=2)
    _attempt(leased[0], ms=40, outcome="success", http_status=200, ago=recent)
    _attempt(leased[1], ms=120, outcome="success", http_status=200, ago=recent)
    _attempt(leased[2], ms=600, outcome="retryable", http_status=503, ago=recent)
    _attempt(leased[2], ms=3000, outcome="failed", http_status=None, ago=recent)
    _attempt(leased[0], ms=40000, outcome="failed", http_status=500, ago=recent)
    _attempt(leased[1], ms=10, outcome="failed", http_status=500, ago=timedelta(minutes=20))  # too old
    _attempt(second_leased[0], ms=80, outcome="success", http_status=200, ago=recent)

    _delivery(j1, delivered=False)
    _delivery(j1, delivered=True)
    _delivery(j2, delivered=False)
    _delivery(j2, delivered=False)
    _delivery(j6, delivered=False)
    _delivery(j7, delivered=True, ago=timedelta(days=2))  # too old


def test_it_reports_every_family_with_the_right_types(activity: None) -> None:
    found = families(scrape().content.decode())

    assert found == {
        "portal_jobs": "gauge",
        "portal_numbers": "gauge",
        "portal_webhooks_failed": "gauge",
        "portal_jobs_active": "gauge",
        "portal_numbers_remaining": "gauge",
        "portal_numbers_in_flight": "gauge",
        "portal_queue_tasks": "gauge",
        "portal_webhooks_outstanding": "gauge",
        "portal_upstream_latency_seconds": "histogram",
        "portal_upstream_attempts": "gauge",
        "portal_upstream_errors": "gauge",
        "portal_webhook_deliveries": "gauge",
        "portal_upstream_breaker_open": "gauge",
        "portal_upstream_outage_seconds": "gauge",
        "portal_metrics_scrape_duration_seconds": "gauge",
    }


def test_it_reports_the_tenants_whose_upstream_breaker_is_open(activity: None, owner: Party) -> None:
    assert owner.tenant is not None
    services.breaker_outcomes_record(tenant_id=owner.tenant.pk, outcomes=[], tripped_at=timezone.now())
    UpstreamBreaker.objects.filter(tenant=owner.tenant).update(
        outage_started_at=timezone.now() - timedelta(seconds=90)
    )

    m = samples(scrape().content.decode())

    assert value(m, "portal_upstream_breaker_open", tenant="owner", state="open") == 1
    assert 90 <= (value(m, "portal_upstream_outage_seconds", tenant="owner") or 0) < 120
    listed = [dict(labels)["tenant"] for name, labels in m if name == "portal_upstream_breaker_open"]
    assert listed == ["owner"]


def test_it_counts_jobs_and_numbers_of_the_last_24_hours_by_tenant(activity: None) -> None:
    m = samples(scrape().content.decode())

    jobs = {
        (tenant, status): value(m, "portal_jobs", tenant=tenant, status=status)
        for tenant in ("owner", "second")
        for status in ("pending", "processing", "completed", "cancelled")
    }
    assert jobs == {
        ("owner", "pending"): 1,
        ("owner", "processing"): 1,
        ("owner", "completed"): 2,
        ("owner", "cancelled"): 0,
        ("second", "pending"): 0,
        ("second", "processing"): 0,
        ("second", "completed"): 1,
        ("second", "cancelled"): 1,
    }
    assert value(m, "portal_numbers", tenant="owner", outcome="restored") == 10
    assert value(m, "portal_numbers", tenant="owner", outcome="failed") == 4
    assert value(m, "portal_numbers", tenant="second", outcome="restored") == 3
    assert value(m, "portal_numbers", tenant="second", outcome="failed") == 3
    assert value(m, "portal_webhooks_failed", tenant="owner") == 0
    assert value(m, "portal_webhooks_failed", tenant="second") == 1


def test_it_reports_live_work_whatever_its_age(activity: None) -> None:
    m = samples(scrape().content.decode())

    assert value(m, "portal_jobs_active", tenant="owner", status="processing") == 1
    assert value(m, "portal_jobs_active", tenant="owner", status="pending") == 1
    assert value(m, "portal_jobs_active", tenant="second", status="processing") == 1
    assert value(m, "portal_jobs_active", tenant="second", status="pending") is None
    assert value(m, "portal_numbers_remaining", tenant="owner") == 14 + 15
    assert value(m, "portal_numbers_remaining", tenant="second") == 40
    # An expired lease is not a call in flight.
    assert value(m, "portal_numbers_in_flight", tenant="owner") == 3
    assert value(m, "portal_numbers_in_flight", tenant="second") == 2
    assert value(m, "portal_webhooks_outstanding", tenant="owner", state="failing") == 1
    assert value(m, "portal_webhooks_outstanding", tenant="second", state="pending") == 1
    assert (value(m, "portal_queue_tasks") or 0) >= 0


def test_it_reports_upstream_latency_and_errors_of_the_last_15_minutes(activity: None) -> None:
    m = samples(scrape().content.decode())

    buckets = {
        le: value(m, "portal_upstream_latency_seconds_bucket", le=le)
        for le in ("0.05", "0.1", "0.25", "0.5", "1.0", "2.5", "5.0", "10.0", "30.0", "+Inf")
    }
    assert buckets == {
        "0.05": 1,
        "0.1": 2,
        "0.25": 3,
        "0.5": 3,
        "1.0": 4,
        "2.5": 4,
        "5.0": 5,
        "10.0": 5,
        "30.0": 5,
        "+Inf": 6,
    }
    assert value(m, "portal_upstream_latency_seconds_count") == 6
    assert value(m, "portal_upstream_latency_seconds_sum") == pytest.approx(43.84)
    assert value(m, "portal_upstream_attempts", tenant="owner", outcome="success") == 2
    assert value(m, "portal_upstream_attempts", tenant="owner", outcome="retryable") == 1
    assert value(m, "portal_upstream_attempts", tenant="owner", outcome="failed") == 2
    assert value(m, "portal_upstream_attempts", tenant="second", outcome="success") == 1
    assert value(m, "portal_upstream_errors", tenant="owner", http_status="503") == 1
    assert value(m, "portal_upstream_errors", tenant="owner", http_status="500") == 1
    assert value(m, "portal_upstream_errors", tenant="owner", http_status="none") == 1
    assert value(m, "portal_upstream_errors", tenant="second", http_status="none") is None


def test_it_reports_webhook_deliveries_of_the_last_24_hours(activity: None) -> None:
    m = samples(scrape().content.decode())

    assert value(m, "portal_webhook_deliveries", tenant="owner", result="delivered") == 1
    assert value(m, "portal_webhook_deliveries", tenant="owner", result="failed") == 3
    assert value(m, "portal_webhook_deliveries", tenant="second", result="delivered") == 0
    assert value(m, "portal_webhook_deliveries", tenant="second", result="failed") == 1


def test_it_stays_up_and_says_so_when_the_broker_cannot_be_read(
    activity: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_broker() -> Any:
        raise ConnectionError("broker down")

    monkeypatch.setattr("django_q.brokers.get_broker", no_broker)

    response = scrape()

    assert response.status_code == 200
    assert value(samples(response.content.decode()), "portal_queue_tasks") == -1


# --- Cost ------------------------------------------------------------------------------------


def _scrape_queries() -> list[str]:
    with CaptureQueriesContext(connection) as queries:
        assert scrape().status_code == 200
    return [q["sql"] for q in queries.captured_queries]


def _grow(tenants: int, jobs_each: int) -> None:
    """Many more tenants, jobs, numbers, attempts and deliveries, old and new."""
    now = timezone.now()
    for t in range(tenants):
        party = make_party(f"bulk{t}")
        for j in range(jobs_each):
            status = [Job.Status.COMPLETED, Job.Status.PROCESSING, Job.Status.PENDING][j % 3]
            job = _job(
                party,
                status=status,
                total=8,
                ok=2,
                webhook_state=Job.WebhookState.FAILING if j % 2 else Job.WebhookState.DELIVERED,
                created=now - timedelta(hours=j),
            )
            results = _results(job, 8, status=NumberResult.Status.PROCESSING, lease_for=timedelta(minutes=5))
            UpstreamAttempt.objects.bulk_create(
                UpstreamAttempt(
                    result=r,
                    job=job,
                    attempt_number=1,
                    started_at=now - timedelta(minutes=i),
                    duration_ms=100 * i,
                    outcome="success",
                    http_status=200,
                )
                for i, r in enumerate(results)
            )
            _delivery(job, delivered=bool(j % 2))


def test_it_makes_the_same_few_queries_however_many_rows_there_are(activity: None) -> None:
    before = _scrape_queries()
    _grow(tenants=4, jobs_each=12)
    after = _scrape_queries()

    assert len(after) == len(before)
    assert len(after) <= 10


def test_it_reads_the_portal_tables_through_indexes(activity: None) -> None:
    """No query of a scrape has to read a whole jobs, numbers, attempts or deliveries table."""
    queries = [q for q in _scrape_queries() if "restores_" in q]
    assert queries
    full_scans: list[tuple[str, str]] = []
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # With sequential scans priced out, a plan still shows one only if no index can serve it.
            cursor.execute("SET enable_seqscan = off")
            try:
                for sql in queries:
                    cursor.execute("EXPLAIN " + sql)
                    plan = "\n".join(row[0] for row in cursor.fetchall())
                    full_scans += [
                        (sql, line) for line in plan.splitlines() if "Seq Scan on restores_" in line
                    ]
            finally:
                cursor.execute("SET enable_seqscan = on")
        else:
            for sql in queries:
                cursor.execute("EXPLAIN QUERY PLAN " + sql)
                for row in cursor.fetchall():
                    detail = str(row[-1])
                    if detail.startswith("SCAN restores_") and "USING" not in detail:
                        full_scans.append((sql, detail))

    assert full_scans == []
