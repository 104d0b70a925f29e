"""GET /v3/bulk_restore_status?format=csv (docs/api.md#status-csv): the results as CSV,
streamed, in submission order, cells safe to open in a spreadsheet."""

from __future__ import annotations

import csv
import io
from typing import Any

from restores.models import NumberResult
from tests.api.test_bulk_restore import assert_error
from tests.support.jobs import make_job
from tests.support.parties import Party

URL = "/v3/bulk_restore_status"
HEADER = [
    "number",
    "status",
    "status_code",
    "message",
    "attempts",
    "started_at",
    "completed_at",
    "requires_identity_update",
    "needs_registration",
]


def csv_rows(response: Any) -> list[list[str]]:
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response.streaming
    text = b"".join(response.streaming_content).decode()
    return list(csv.reader(io.StringIO(text)))


def test_it_answers_the_results_as_csv_in_submission_order(owner: Party) -> None:
    assert owner.tenant is not None
    job = make_job(owner.tenant, numbers=3, failed=1)
    results = list(NumberResult.objects.filter(job=job).order_by("position"))

    rows = csv_rows(owner.client.get(URL, {"job_uuid": str(job.uuid), "format": "csv"}))

    assert rows[0] == HEADER
    assert [row[0] for row in rows[1:]] == [r.number for r in results]
    first = dict(zip(HEADER, rows[1], strict=True))
    assert first["status"] == results[0].status == "failed"
    assert first["status_code"] == str(results[0].status_code)
    assert first["attempts"] == str(results[0].attempts)
    assert first["requires_identity_update"] in ("0", "1") and first["needs_registration"] in ("0", "1")
    assert len(first["completed_at"]) == len("2026-01-01 00:00:00")


def test_it_narrows_the_csv_to_one_number(owner: Party) -> None:
    assert owner.tenant is not None
    job = make_job(owner.tenant, numbers=3)
    wanted = NumberResult.objects.filter(job=job).order_by("position")[1].number

    rows = csv_rows(owner.client.get(URL, {"job_uuid": str(job.uuid), "format": "csv", "number": wanted}))

    assert rows[0] == HEADER and [row[0] for row in rows[1:]] == [wanted]


def test_it_quotes_a_cell_a_spreadsheet_would_run_as_a_formula(owner: Party) -> None:
    assert owner.tenant is not None
    job = make_job(owner.tenant, numbers=1)
    NumberResult.objects.filter(job=job).update(message='=HYPERLINK("http://evil.example")')

    rows = csv_rows(owner.client.get(URL, {"job_uuid": str(job.uuid), "format": "csv"}))

    assert rows[1][HEADER.index("message")] == '\'=HYPERLINK("http://evil.example")'


def test_it_answers_csv_whatever_the_accept_header_and_errors_as_json(owner: Party) -> None:
    assert owner.tenant is not None
    job = make_job(owner.tenant, numbers=1)

    assert csv_rows(
        owner.client.get(URL, {"job_uuid": str(job.uuid), "format": "csv"}, HTTP_ACCEPT="text/csv")
    )
    missing = owner.client.get(URL, {"job_uuid": str(job.uuid), "format": "csv", "number": "15550000000"})
    assert_error(missing, 404, "not_found")


def test_it_refuses_a_format_it_does_not_know(owner: Party) -> None:
    assert owner.tenant is not None
    job = make_job(owner.tenant, numbers=1)

    body = assert_error(
        owner.client.get(URL, {"job_uuid": str(job.uuid), "format": "xml"}), 400, "invalid_format"
    )

    assert "format" in body["message"]


def test_it_answers_json_with_format_json(owner: Party) -> None:
    assert owner.tenant is not None
    job = make_job(owner.tenant, numbers=2)

    response = owner.client.get(URL, {"job_uuid": str(job.uuid), "format": "json"})

    assert response.status_code == 200 and response["Content-Type"] == "application/json"
    assert [r["number"] for r in response.json()["results"]] == list(
        NumberResult.objects.filter(job=job).order_by("position").values_list("number", flat=True)
    )


def test_it_answers_404_for_another_tenants_job_in_csv_as_in_json(owner: Party, second: Party) -> None:
    assert second.tenant is not None
    theirs = make_job(second.tenant, numbers=2)

    as_csv = assert_error(
        owner.client.get(URL, {"job_uuid": str(theirs.uuid), "format": "csv"}), 404, "not_found"
    )
    as_json = assert_error(owner.client.get(URL, {"job_uuid": str(theirs.uuid)}), 404, "not_found")

    assert as_csv == as_json
