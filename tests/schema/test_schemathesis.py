"""Schemathesis against the live stack: what the API answers matches its OpenAPI document.

The document is read from the running gunicorn at ``/api/schema/``; cases are
generated for both endpoints from it and sent with a tenant's Basic
credentials. Every answer must be free of server errors and conform to the
document (status code, content type, body schema). Examples are bounded so
the whole run stays well under a minute.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.support.harness import Stack, WebhookReceiver

pytestmark = pytest.mark.e2e

MAX_EXAMPLES = 40
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
SYNC_NUMBERS = ["15551230111", "15551230112", "15551230113"]
QUEUED_NUMBERS = [f"155512350{n:02d}" for n in range(12)]


@pytest.fixture(scope="module")
def stack(make_stack: Any) -> Stack:
    s: Stack = make_stack(latency_ms=5, workers=("schema-a",))
    s.create_tenant("schema", max_concurrency=10)
    return s


@pytest.fixture(scope="module")
def api_schema(stack: Stack) -> Any:
    return schemathesis.openapi.from_url(f"{stack.web_url}/api/schema/", timeout=10)


@pytest.fixture(scope="module")
def known_jobs(stack: Stack) -> dict[str, list[str]]:
    """Two real jobs of the tenant (one answered at once, one queued): job_uuid → its numbers."""
    session = stack.tenants["schema"].session()
    jobs = {}
    for numbers in (SYNC_NUMBERS, QUEUED_NUMBERS):
        response = session.post(f"{stack.web_url}/v3/bulk_restore", json={"numbers": numbers}, timeout=30)
        assert response.status_code in (200, 202), response.text
        jobs[response.json()["job_uuid"]] = numbers
    return jobs


def _operation(api_schema: Any, method: str, path: str) -> Any:
    for result in api_schema.get_all_operations():
        operation = result.ok()
        if operation.method.upper() == method and operation.path == path:
            return operation
    raise AssertionError(f"{method} {path} is not in the document")


def _prepare(case: Any, receiver: WebhookReceiver, known_jobs: dict[str, list[str]]) -> None:
    # The tenant's real credentials are sent instead of generated ones.
    if case.headers:
        case.headers.pop("Authorization", None)
    # A generated webhook_url could name any host: deliveries go to the loopback receiver instead.
    if isinstance(case.body, dict) and case.body.get("webhook_url") not in (None, ""):
        case.body["webhook_url"] = receiver.url("/schemathesis")
    # About half of the status queries ask for a real job (200), the rest for unknown ones (404).
    query = case.query or {}
    job_uuid = str(query.get("job_uuid", ""))
    if job_uuid[:1] in set("01234567"):
        uuids = sorted(known_jobs)
        real = uuids[int(job_uuid[0]) % len(uuids)]
        query["job_uuid"] = real
        number = str(query.get("number", ""))
        if number and int(number[-1]) % 2 == 0:
            numbers = known_jobs[real]
            query["number"] = numbers[int(number[-1]) % len(numbers)]


def _run(
    stack: Stack, receiver: WebhookReceiver, known_jobs: dict[str, list[str]], operation: Any
) -> Counter[int]:
    tenant = stack.tenants["schema"]
    statuses: Counter[int] = Counter()

    @given(case=operation.as_strategy())
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def check(case: Any) -> None:
        _prepare(case, receiver, known_jobs)
        response = case.call_and_validate(
            base_url=stack.web_url, auth=(tenant.api_username, tenant.api_password), timeout=30, checks=CHECKS
        )
        statuses[response.status_code] += 1

    check()
    return statuses


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("POST", "/v3/bulk_restore", (200, 400)),
        ("GET", "/v3/bulk_restore_status", (200, 404)),
        ("GET", "/v3/bulk_restore_jobs", (200, 400)),
    ],
)
def test_it_answers_as_documented(
    stack: Stack,
    receiver: WebhookReceiver,
    api_schema: Any,
    known_jobs: dict[str, list[str]],
    method: str,
    path: str,
    expected: tuple[int, ...],
) -> None:
    statuses = _run(stack, receiver, known_jobs, _operation(api_schema, method, path))

    assert sum(statuses.values()) >= 20
    assert all(statuses[status] for status in expected), statuses
    assert "Traceback" not in stack.log("web")
