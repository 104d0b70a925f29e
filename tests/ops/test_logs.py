"""Logs: JSON lines that carry the job and tenant they concern, and never a secret."""

from __future__ import annotations

import base64
import json
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from portal.logs import JsonFormatter, PlainFormatter, in_current_context, log_context, redact
from restores import services
from restores.models import Job, WebhookDelivery
from tests.support.parties import Party, make_party

REPO = Path(__file__).resolve().parents[2]


class Capture(logging.Handler):
    """Keeps every record that reaches it, whatever its level."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def captured() -> Iterator[Capture]:
    """Every record logged anywhere, at DEBUG and up, while the test runs."""
    handler = Capture()
    manager = logging.root.manager
    loggers = [logging.root] + [
        lg for lg in manager.loggerDict.values() if isinstance(lg, logging.Logger) and not lg.propagate
    ]
    noisy = [logging.getLogger(n) for n in ("urllib3", "restores", "portal", "django", "django-q")]
    saved = {lg: lg.level for lg in set(loggers + noisy)}
    for lg in loggers:
        lg.addHandler(handler)
    for lg in saved:
        lg.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        for lg in loggers:
            lg.removeHandler(handler)
        for lg, level in saved.items():
            lg.setLevel(level)


def _json_line(record: logging.LogRecord) -> dict[str, Any]:
    return dict(json.loads(JsonFormatter().format(record)))


# --- The formatter and the context ----------------------------------------------------------


def test_it_writes_one_json_object_per_line_with_the_job_and_tenant(captured: Capture) -> None:
    logger = logging.getLogger("restores.test")
    with log_context(job_uuid="8f6c1f0e-23d2-4717-8c8e-1a518e5738f0", tenant="acme"):
        logger.info("job started: %s numbers", 25)
    logger.info("no job here")

    first, second = (_json_line(r) for r in captured.records if r.name == "restores.test")
    assert first["message"] == "job started: 25 numbers"
    assert first["level"] == "INFO"
    assert first["logger"] == "restores.test"
    assert first["job_uuid"] == "8f6c1f0e-23d2-4717-8c8e-1a518e5738f0"
    assert first["tenant"] == "acme"
    assert first["time"].endswith("+00:00")
    assert "job_uuid" not in second and "tenant" not in second
    assert "\n" not in JsonFormatter().format(captured.records[0])


def test_it_keeps_the_context_a_record_was_made_in_whoever_formats_it_later(captured: Capture) -> None:
    logger = logging.getLogger("restores.test")
    with log_context(tenant="acme"), log_context(job_uuid="j-1"):
        logger.warning("inside")
    record = next(r for r in captured.records if r.getMessage() == "inside")

    # Formatted after the block ended, by a formatter that was not there when it was logged.
    assert _json_line(record)["job_uuid"] == "j-1"
    assert PlainFormatter("%(message)s").format(record) == "inside job_uuid=j-1 tenant=acme"


def test_it_lets_a_value_given_with_the_record_win_over_the_context(captured: Capture) -> None:
    with log_context(job_uuid="from-context", tenant="acme"):
        logging.getLogger("restores.test").info("explicit", extra={"job_uuid": "explicit-job"})

    line = _json_line(next(r for r in captured.records if r.getMessage() == "explicit"))
    assert (line["job_uuid"], line["tenant"]) == ("explicit-job", "acme")


def test_it_carries_the_context_into_a_worker_thread_when_asked(captured: Capture) -> None:
    logger = logging.getLogger("restores.test")

    def work(n: int) -> None:
        logger.info("call %s", n)

    with log_context(job_uuid="j-2", tenant="acme"), ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(in_current_context(work), range(4)))

    lines = [_json_line(r) for r in captured.records if r.getMessage().startswith("call ")]
    assert len(lines) == 4
    assert all(line["job_uuid"] == "j-2" and line["tenant"] == "acme" for line in lines)


def test_it_redacts_anything_that_looks_like_a_credential() -> None:
    text = (
        "Authorization: Basic b3duZXItYXBpOm93bmVyLXNlY3JldA== "
        "headers={'Authorization': 'Bearer abcdefghijkl'} "
        "secret whsec_c2VjcmV0LXNpZ25pbmcta2V5 "
        "multitel_password=hunter2&user=x "
        "https://user:pass@api.example.com/v3 "
        "Multitel rejected this tenant's Multitel credentials (HTTP 401)"
    )

    out = redact(text)

    for leaked in ("b3duZXItYXBp", "abcdefghijkl", "c2VjcmV0", "hunter2", "user:pass"):
        assert leaked not in out
    assert "Multitel rejected this tenant's Multitel credentials (HTTP 401)" in out


def test_it_redacts_tracebacks_too(captured: Capture) -> None:
    try:
        raise RuntimeError("connect failed: Authorization: Basic b3duZXItYXBpOm93bmVy")
    except RuntimeError:
        logging.getLogger("restores.test").exception("boom")

    line = _json_line(next(r for r in captured.records if r.getMessage() == "boom"))
    assert "RuntimeError" in line["exception"]
    assert "b3duZXItYXBp" not in line["exception"]


@pytest.mark.parametrize("log_format", ["json", "plain"])
def test_it_writes_through_the_configured_console_handler(tmp_path: Path, log_format: str) -> None:
    code = (
        "import django, logging; django.setup()\n"
        "from portal.logs import log_context\n"
        "with log_context(job_uuid='j-9', tenant='acme'):\n"
        "    logging.getLogger('restores.services').info('job started: 3 numbers')\n"
    )
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PYTEST")},
        "DJANGO_SETTINGS_MODULE": "portal.settings",
        "LOG_FORMAT": log_format,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'unused.sqlite3'}",
    }
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )

    assert result.returncode == 0, result.stderr
    [line] = [ln for ln in result.stderr.splitlines() if "job started" in ln]
    if log_format == "json":
        entry = json.loads(line)
        assert (entry["job_uuid"], entry["tenant"], entry["logger"]) == ("j-9", "acme", "restores.services")
    else:
        assert line.endswith("job started: 3 numbers job_uuid=j-9 tenant=acme")


# --- A whole job, failing everywhere ---------------------------------------------------------


class FailingReceiver:
    """A webhook endpoint that answers 500 and echoes the request's headers back in its body."""

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                body = json.dumps(dict(self.headers.items())).encode()
                self.send_response(500)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# Numbers the simulated Multitel restores (see OUTCOME_RULES in restores/fake_multitel.py).
SUCCEEDING = [f"155512340{n:02d}" for n in (1, 6, 7, 8, 11, 16, 17, 18)]


def _secrets(party: Party) -> list[str]:
    assert party.tenant is not None
    tenant = party.tenant
    tenant.refresh_from_db()
    mt_user, mt_password = tenant.multitel_username, tenant.multitel_password
    webhook_secret = tenant.webhook_secret
    return [
        party.secret,
        base64.b64encode(f"{party.username}:{party.secret}".encode()).decode(),
        mt_password,
        base64.b64encode(f"{mt_user}:{mt_password}".encode()).decode(),
        webhook_secret,
        webhook_secret.removeprefix("whsec_"),
    ]


def _everything_logged(records: list[logging.LogRecord]) -> str:
    """Every way a record could be written out: raw message, arguments, both formatters."""
    plain = PlainFormatter("%(asctime)s %(levelname)s %(name)s %(message)s")
    parts = []
    for record in records:
        parts += [
            record.getMessage(),
            repr(record.args),
            JsonFormatter().format(record),
            plain.format(record),
        ]
        if record.exc_info:
            parts.append(logging.Formatter().formatException(record.exc_info))
    return "\n".join(parts)


@pytest.mark.django_db
@pytest.mark.usefixtures("enqueued")  # tasks are recorded, not sent: the test plays the worker
def test_it_tags_every_line_about_a_job_and_never_logs_a_secret(
    captured: Capture,
    owner: Party,
    fake_multitel: Any,
    settings: Any,
) -> None:
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = True
    settings.WEBHOOK_SYNC_TIMEOUT = 2
    rejected = make_party("third")  # Multitel does not know its credentials: every call is a 401
    receiver = FailingReceiver()
    failing_numbers = [
        "15551230190",  # 503 every time: retried, then failed
        "15551230197",  # 500 with an HTML page
        "15551230193",  # 200 with an HTML page
        "15551230112",  # envelope code "500"
        "15551230115",  # 404
    ]
    try:
        # A queued job (more than ten numbers), processed the way a worker does.
        queued = owner.client.post(
            "/v3/bulk_restore",
            {"numbers": [*failing_numbers, *SUCCEEDING], "webhook_url": receiver.url},
            format="json",
        )
        assert queued.status_code == 202, queued.content
        job = Job.objects.get(uuid=queued.json()["job_uuid"])
        services.job_process(job_id=job.pk)
        services.job_webhook_deliver(job_id=job.pk)  # the endpoint answers 500
        # A synchronous job whose upstream rejects the tenant's Multitel credentials.
        sync = rejected.client.post(
            "/v3/bulk_restore", {"numbers": failing_numbers[:3], "webhook_url": receiver.url}, format="json"
        )
        assert sync.status_code == 200, sync.content
        sync_job = Job.objects.get(uuid=sync.json()["job_uuid"])
    finally:
        receiver.close()
    # The retry finds nobody listening any more.
    Job.objects.filter(pk=job.pk).update(webhook_next_attempt_at=job.created_at)
    services.job_webhook_deliver(job_id=job.pk)
    # Callers who get it wrong.
    owner.client.credentials(HTTP_AUTHORIZATION="Basic " + base64.b64encode(b"owner-api:wrong").decode())
    assert owner.client.get("/v3/bulk_restore_status", {"job_uuid": str(job.uuid)}).status_code == 401

    job.refresh_from_db()
    assert job.status == Job.Status.COMPLETED and job.failure_count == len(failing_numbers)
    assert WebhookDelivery.objects.filter(job=job, delivered=False).count() == 2
    assert sync.json()["failure_count"] == 3 and "webhook_error" in sync.json()

    records = captured.records
    about_jobs = {str(job.uuid): "owner", str(sync_job.uuid): "third"}
    concerning = [
        r for r in records if r.name.startswith("restores") or any(u in r.getMessage() for u in about_jobs)
    ]
    assert len(concerning) >= 6  # accepted, started, completed, webhook attempts...
    for record in concerning:
        line = _json_line(record)
        assert line.get("job_uuid") in about_jobs, line
        assert line.get("tenant") == about_jobs[line["job_uuid"]], line

    everything = _everything_logged(records)
    for secret in _secrets(owner) + _secrets(rejected):
        assert secret not in everything


@pytest.mark.django_db
@pytest.mark.usefixtures("enqueued")
def test_it_tags_staff_actions_and_sweeps_with_the_job_and_tenant(owner: Party, captured: Capture) -> None:
    assert owner.tenant is not None
    numbers = [str(15551250001 + i * 100) for i in range(12)]
    job = services.job_create(tenant=owner.tenant, credential=None, numbers=numbers, webhook_url=None)

    services.jobs_sweep(now=job.heartbeat_at + timedelta(seconds=1), stale_after=0)
    services.job_cancel(job_id=job.pk)

    about_job = [
        r
        for r in captured.records
        if r.name.startswith("restores.services.") and "sweep:" not in r.getMessage()
    ]
    messages = [r.getMessage() for r in about_job]
    assert any("enqueued again" in m for m in messages), messages
    assert any("cancelled by staff" in m for m in messages), messages
    for record in about_job:
        line = _json_line(record)
        assert (line.get("job_uuid"), line.get("tenant")) == (str(job.uuid), "owner"), line
