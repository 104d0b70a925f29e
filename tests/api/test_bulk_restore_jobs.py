"""GET /v3/bulk_restore_jobs (docs/api.md#bulk-restore-jobs): the tenant's own jobs, newest
first, a page at a time, in a constant number of queries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from restores.models import Job
from tests.api.test_bulk_restore import assert_error
from tests.support.contract import JOB_SUMMARY_KEYS
from tests.support.jobs import make_job
from tests.support.parties import Party

URL = "/v3/bulk_restore_jobs"
START = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


def jobs_of(
    party: Party, count: int, *, status: str = Job.Status.COMPLETED, start: datetime = START
) -> list[Job]:
    """``count`` jobs of the party, one a minute from ``start`` on."""
    assert party.tenant is not None
    return [
        make_job(party.tenant, numbers=2, status=status, created_at=start + timedelta(minutes=i))
        for i in range(count)
    ]


def page(party: Party, **params: Any) -> dict[str, Any]:
    response = party.client.get(URL, params)
    assert response.status_code == 200, response.content
    body = response.json()
    assert list(body) == ["jobs", "next_cursor"]
    return dict(body)


def test_it_lists_the_tenants_jobs_newest_first_as_summaries(owner: Party) -> None:
    made = jobs_of(owner, 3)

    body = page(owner)

    assert [j["job_uuid"] for j in body["jobs"]] == [str(job.uuid) for job in reversed(made)]
    assert all(list(j) == JOB_SUMMARY_KEYS for j in body["jobs"])
    assert body["jobs"][0]["created_at"] == "2026-03-01 12:02:00"
    assert body["next_cursor"] is None


def test_it_walks_every_job_once_page_by_page(owner: Party) -> None:
    made = jobs_of(owner, 7)
    # Two jobs of the same second: the cursor keeps them apart.
    assert owner.tenant is not None
    made.append(make_job(owner.tenant, numbers=1, created_at=START + timedelta(minutes=6)))

    seen: list[str] = []
    cursor = None
    for _ in range(10):
        body = page(owner, limit=3, **({"cursor": cursor} if cursor else {}))
        seen += [j["job_uuid"] for j in body["jobs"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break

    assert sorted(seen) == sorted(str(job.uuid) for job in made)
    assert len(seen) == len(set(seen)) == 8


def test_it_filters_on_status_and_creation_time(owner: Party) -> None:
    done = jobs_of(owner, 3)
    running = jobs_of(owner, 2, status=Job.Status.PROCESSING, start=START + timedelta(hours=1))

    assert [j["job_uuid"] for j in page(owner, status="processing")["jobs"]] == [
        str(job.uuid) for job in reversed(running)
    ]
    window = page(owner, created_after="2026-03-01 12:01:00", created_before="2026-03-01 12:02:00")
    assert [j["job_uuid"] for j in window["jobs"]] == [str(done[1].uuid)]


def test_it_never_lists_another_tenants_jobs(owner: Party, second: Party) -> None:
    jobs_of(second, 4)
    mine = jobs_of(owner, 1)

    assert [j["job_uuid"] for j in page(owner)["jobs"]] == [str(mine[0].uuid)]
    # Nor through a cursor made from another tenant's page: it is only a position.
    theirs = page(second, limit=1)
    assert [j["job_uuid"] for j in page(owner, cursor=theirs["next_cursor"])["jobs"]] == [str(mine[0].uuid)]


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"status": "done"}, "invalid_status"),
        ({"limit": "0"}, "invalid_limit"),
        ({"limit": "501"}, "invalid_limit"),
        ({"limit": "ten"}, "invalid_limit"),
        ({"created_after": "2026-03-01"}, "invalid_created_after"),
        ({"created_before": "yesterday"}, "invalid_created_before"),
        ({"cursor": "not-a-cursor"}, "invalid_cursor"),
    ],
)
def test_it_refuses_a_bad_parameter_with_400_naming_it(
    owner: Party, params: dict[str, str], code: str
) -> None:
    body = assert_error(owner.client.get(URL, params), 400, code)

    assert next(iter(params)) in body["message"]


def test_it_answers_a_page_in_a_constant_number_of_queries(owner: Party) -> None:
    jobs_of(owner, 3)
    page(owner)  # authenticated once
    counts = []
    for limit in (2, 50):
        with CaptureQueriesContext(connection) as ctx:
            page(owner, limit=limit)
        counts.append(len(ctx.captured_queries))
    jobs_of(owner, 60, start=START + timedelta(days=1))
    with CaptureQueriesContext(connection) as ctx:
        page(owner, limit=50)
    counts.append(len(ctx.captured_queries))

    assert len(set(counts)) == 1, counts


def test_it_requires_credentials(client: Any) -> None:
    assert_error(client.get(URL), 401, "authentication_failed")
