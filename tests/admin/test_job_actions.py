"""The job actions: each calls its service, tells the operator, and leaves an admin log entry."""

from __future__ import annotations

import csv
import io
from typing import Any
from unittest import mock

import pytest
from django.contrib.admin.models import LogEntry
from django.http import StreamingHttpResponse
from django.test import Client
from django.urls import reverse

from restores import admin as restores_admin
from restores import services
from restores.management.commands.seed_history import RESULT_COLUMNS, _insert
from restores.models import Job, NumberResult
from tests.support.jobs import HOOK, make_job
from tests.support.parties import Party

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:restores_job_changelist"
# status, status_code, message, flags, attempts, times, claimed_by (RESULT_COLUMNS after the number)
SUCCESS_ROW = ("success", 200, "Number restored", False, False, 1, None, None, "")


def _run(client: Client, action: str, jobs: list[Job], **extra: Any) -> Any:
    return client.post(
        reverse(CHANGELIST), {"action": action, "_selected_action": [job.pk for job in jobs]}, **extra
    )


def _log_messages(job: Job) -> list[str]:
    return list(
        LogEntry.objects.filter(object_id=str(job.pk), content_type__model="job")
        .order_by("pk")
        .values_list("change_message", flat=True)
    )


def _messages(response: Any) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def test_it_retries_the_failed_numbers_of_selected_jobs(
    operator_client: Client,
    operator: Any,
    owner: Party,
    enqueued: list[Any],
    django_capture_on_commit_callbacks: Any,
) -> None:
    assert owner.tenant is not None
    job = make_job(owner.tenant, numbers=5, failed=2)
    clean = make_job(owner.tenant, numbers=3, first_number=15550900000)

    with (
        mock.patch.object(services, "job_retry_failed", wraps=services.job_retry_failed) as service,
        django_capture_on_commit_callbacks(execute=True),
    ):
        response = _run(operator_client, "retry_failed", [job, clean], follow=True)

    assert sorted(call.kwargs["job_id"] for call in service.call_args_list) == sorted([job.pk, clean.pk])
    assert _messages(response) == ["Put 2 failed numbers of 1 job(s) back in the queue."]
    job.refresh_from_db()
    assert job.status == "processing" and job.failure_count == 0
    assert NumberResult.objects.filter(job=job, status="pending").count() == 2
    assert ("restores.tasks.process_job", (job.pk,)) in enqueued
    entry = LogEntry.objects.get(object_id=str(job.pk))
    assert entry.user_id == operator.pk and entry.get_change_message() == "Retried 2 failed numbers."
    assert entry.action_time is not None
    assert _log_messages(clean) == []


def test_it_says_so_when_there_is_nothing_to_retry(operator_client: Client, owner: Party) -> None:
    assert owner.tenant is not None
    job = make_job(owner.tenant, numbers=2)

    response = _run(operator_client, "retry_failed", [job], follow=True)

    assert _messages(response) == ["No failed numbers to retry in the selected jobs."]
    assert _log_messages(job) == []


def test_it_resends_the_webhook_of_finished_jobs_with_one(
    operator_client: Client, owner: Party, enqueued: list[Any], django_capture_on_commit_callbacks: Any
) -> None:
    assert owner.tenant is not None
    hooked = make_job(owner.tenant, numbers=2, webhook_url=HOOK, webhook_state="failed", deliveries=2)
    plain = make_job(owner.tenant, numbers=2, first_number=15550900000)

    with (
        mock.patch.object(services, "job_webhook_resend", wraps=services.job_webhook_resend) as service,
        django_capture_on_commit_callbacks(execute=True),
    ):
        response = _run(operator_client, "resend_webhook", [hooked, plain], follow=True)

    assert service.call_count == 2
    assert _messages(response) == [
        "Webhook resend queued for 1 job(s). 1 skipped: no webhook URL, or not finished."
    ]
    hooked.refresh_from_db()
    assert hooked.webhook_state == "pending" and hooked.webhook_attempts == 0
    assert enqueued == [("restores.tasks.deliver_webhook", (hooked.pk,))]
    assert _log_messages(hooked) == ["Resent the webhook."]
    assert _log_messages(plain) == []


def test_it_cancels_selected_jobs_failing_the_untried_numbers_and_firing_the_webhook(
    operator_client: Client, owner: Party, enqueued: list[Any], django_capture_on_commit_callbacks: Any
) -> None:
    assert owner.tenant is not None
    job = make_job(owner.tenant, numbers=6, failed=1, pending=3, status="processing", webhook_url=HOOK)
    done = make_job(owner.tenant, numbers=2, first_number=15550900000)

    with (
        mock.patch.object(services, "job_cancel", wraps=services.job_cancel) as service,
        django_capture_on_commit_callbacks(execute=True),
    ):
        response = _run(operator_client, "cancel", [job, done], follow=True)

    service.assert_called_once_with(job_id=job.pk)
    assert _messages(response) == ["Cancelled 1 job(s); 3 numbers were not tried."]
    job.refresh_from_db()
    assert job.status == "cancelled" and job.completed_at is not None
    assert job.failure_count == 4 and job.webhook_state == "pending"
    untried = NumberResult.objects.filter(job=job, position__in=[1, 2, 3])
    assert {r.status for r in untried} == {"failed"}
    assert all("not tried" in (r.message or "") and "cancelled" in (r.message or "") for r in untried)
    assert enqueued == [("restores.tasks.deliver_webhook", (job.pk,))]
    assert _log_messages(job) == ["Cancelled; 3 numbers not tried."]
    done.refresh_from_db()
    assert done.status == "completed"


def test_it_says_so_when_no_selected_job_can_be_cancelled(operator_client: Client, owner: Party) -> None:
    assert owner.tenant is not None
    job = make_job(owner.tenant, numbers=2)

    response = _run(operator_client, "cancel", [job], follow=True)

    assert _messages(response) == ["None of the selected jobs was pending or processing."]


def _csv_rows(response: StreamingHttpResponse) -> list[list[str]]:
    body = b"".join(response.streaming_content).decode()  # type: ignore[arg-type]
    return list(csv.reader(io.StringIO(body)))


def test_it_exports_the_selected_jobs_results_as_a_streamed_csv_and_logs_it(
    operator_client: Client, operator: Any, owner: Party
) -> None:
    assert owner.tenant is not None
    job = make_job(owner.tenant, numbers=3, failed=1)
    other = make_job(owner.tenant, numbers=2, first_number=15550900000)
    NumberResult.objects.filter(job=job, position=2).update(message="=HYPERLINK(evil)")

    with mock.patch.object(
        restores_admin.export, "results_export_rows", wraps=restores_admin.export.results_export_rows
    ) as rows:
        response = _run(operator_client, "export_results_csv", [job])
        assert isinstance(response, StreamingHttpResponse)
        table = _csv_rows(response)

    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="restore-results-')
    assert rows.call_count == 1
    assert table[0][:4] == ["job_uuid", "tenant", "position", "number"]
    assert [row[3] for row in table[1:]] == ["15550100000", "15550100001", "15550100002"]
    assert {row[0] for row in table[1:]} == {str(job.uuid)}
    assert table[1][4:7] == ["failed", "404", "Error: 'number not found'"]
    assert table[3][6] == "'=HYPERLINK(evil)"
    assert str(other.uuid) not in "".join(",".join(r) for r in table)
    assert _log_messages(job) == ["Exported its results as CSV."]
    page = operator_client.get(reverse(CHANGELIST))
    assert "Exported the results of 1 job(s) as CSV." in _messages(page)


def test_it_streams_an_export_of_a_hundred_thousand_rows_in_chunks(
    operator_client: Client, owner: Party
) -> None:
    assert owner.tenant is not None
    jobs = [make_job(owner.tenant, numbers=0) for _ in range(10)]
    rows = [
        [job.pk, position, str(10_000_000_000 + n * 10_000 + position), *SUCCESS_ROW]
        for n, job in enumerate(jobs)
        for position in range(10_000)
    ]
    _insert(NumberResult, RESULT_COLUMNS, rows)

    response = _run(operator_client, "export_results_csv", jobs)

    assert isinstance(response, StreamingHttpResponse)
    lines = chunks = biggest = 0
    for chunk in response.streaming_content:
        chunks += 1
        biggest = max(biggest, len(chunk))
        lines += chunk.count(b"\n")
    assert lines == 100_001  # the header and every number
    assert chunks > 50 and biggest < 256 * 1024  # sent as it is read, never built whole
