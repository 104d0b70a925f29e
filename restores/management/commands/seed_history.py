"""Fill the database with a realistic history of restore jobs, to size and time the staff portal.

``python manage.py seed_history --jobs 100000`` writes 100,000 jobs over the last year with about
ten numbers each (about a million results), their upstream attempts and webhook deliveries,
spread over a handful of tenants (made if missing). Rows are written in batches of a thousand
jobs, one transaction each, so memory stays flat: jobs with ``bulk_create``, and the big audit
tables (results, attempts, deliveries) with a plain multi-row ``executemany`` on the columns of
their models, which is about ten times faster than building a model instance for each row.

It stays one module: a development tool whose one job is a generator of consistent rows (a
job, its numbers, their attempts and deliveries drawn together from one random stream), which
read best side by side; nothing else imports it but its own test.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection, transaction
from django.db.models import DateTimeField, Field, Model
from django.utils import timezone

from accounts.models import ApiCredential, Tenant
from accounts.services import api_secret_generate, tenant_create
from restores.models import Job, NumberResult, UpstreamAttempt, WebhookDelivery

TENANT_PREFIX = "seed-tenant"
# Numbers are drawn from a pool, so that the same number turns up in several jobs.
NUMBER_POOL_START = 15_550_000_000
NUMBER_POOL_SIZE = 250_000
# A big job once in a while, so that a job page with thousands of numbers can be timed.
BIG_JOB_NUMBERS = 10_000
# Jobs written per transaction (with their results, attempts and deliveries).
JOBS_PER_TRANSACTION = 1000
# Rows per executemany call / bulk_create batch.
INSERT_ROWS = 5000
# Failed webhook deliveries after which the portal gives up (WEBHOOK_RETRY_SCHEDULE + 1).
WEBHOOK_GIVE_UP = 6

FAILURES: tuple[tuple[int, str, str, str], ...] = (
    # (status code, message, envelope code, outcome of the last attempt)
    (404, "Error: 'number not found'", "404", UpstreamAttempt.Outcome.FAILED),
    (409, "Error: 'number already active'", "409", UpstreamAttempt.Outcome.FAILED),
    (422, "Error: 'number is ported out'", "422", UpstreamAttempt.Outcome.FAILED),
    (
        401,
        "Error: 'upstream refused the tenant's Multitel credentials'",
        "401",
        UpstreamAttempt.Outcome.FAILED,
    ),
    (502, "Error: 'could not connect to upstream'", "", UpstreamAttempt.Outcome.RETRYABLE),
    (503, "Error: 'service unavailable'", "503", UpstreamAttempt.Outcome.RETRYABLE),
    (504, "Error: 'upstream timed out after 30 seconds'", "", UpstreamAttempt.Outcome.RETRYABLE),
)
FAILURE_WEIGHTS = (40, 12, 8, 3, 15, 12, 10)
RETRYABLE_ERRORS = (
    (503, "503", "HTTP 503: service unavailable"),
    (429, "429", "HTTP 429: Too many requests"),
    (None, "", "could not connect to upstream"),
    (None, "", "upstream timed out after 30 seconds"),
)
WEBHOOK_ERRORS = (
    (500, "HTTP 500 from the webhook URL"),
    (502, "HTTP 502 from the webhook URL"),
    (None, "could not connect to the webhook URL"),
    (None, "the webhook URL did not answer within 10 seconds"),
    (410, "HTTP 410 from the webhook URL"),
)


@dataclass
class Totals:
    jobs: int = 0
    results: int = 0
    attempts: int = 0
    deliveries: int = 0


# Columns written by executemany; the job (and the result) of each row is filled in once known.
RESULT_COLUMNS = (
    "job",
    "position",
    "number",
    "status",
    "status_code",
    "message",
    "requires_identity_update",
    "needs_registration",
    "attempts",
    "started_at",
    "completed_at",
    "claimed_by",
)
ATTEMPT_COLUMNS = tuple(field.name for field in UpstreamAttempt._meta.concrete_fields if field.name != "id")
DELIVERY_COLUMNS = tuple(field.name for field in WebhookDelivery._meta.concrete_fields if field.name != "id")
PENDING, PROCESSING, SUCCESS, FAILED = (str(s) for s in NumberResult.Status)
CANCELLED_MESSAGE = "Error: 'not tried: the job was cancelled by staff'"


@dataclass
class _Batch:
    jobs: list[Job] = field(default_factory=list)
    # For each job (same order): rows of its results, of their attempts, of its deliveries.
    results: list[list[list[Any]]] = field(default_factory=list)
    attempts: list[list[list[list[Any]]]] = field(default_factory=list)
    deliveries: list[list[list[Any]]] = field(default_factory=list)


@contextmanager
def _given_timestamps() -> Iterator[None]:
    """Let bulk_create keep the historical ``created_at``/``heartbeat_at`` set on each job."""
    fields = [Job._meta.get_field(name) for name in ("created_at", "heartbeat_at")]
    saved = [f.auto_now_add for f in fields]  # type: ignore[union-attr]
    for f in fields:
        f.auto_now_add = False  # type: ignore[union-attr]
    try:
        yield
    finally:
        for f, value in zip(fields, saved, strict=True):
            f.auto_now_add = value  # type: ignore[union-attr]


class HistoryMaker:
    """Builds unsaved jobs with their results, attempts and deliveries (no database access)."""

    def __init__(
        self,
        *,
        rng: random.Random,
        tenants: list[Tenant],
        credentials: dict[int, int],
        now: datetime,
        days: int,
    ) -> None:
        self.rng = rng
        self.tenants = tenants
        # A few tenants are much busier than the others.
        self.tenant_weights = [1.0 / (rank + 1) for rank in range(len(tenants))]
        self.credentials = credentials
        self.now = now
        self.span = timedelta(days=days).total_seconds()

    def job_size(self) -> int:
        roll = self.rng.random()
        if roll < 0.90:
            return self.rng.randint(1, 12)
        return self.rng.randint(20, 60)

    def created_at(self) -> datetime:
        return self.now - timedelta(seconds=self.rng.random() * self.span)

    def job(self, *, size: int, created_at: datetime, batch: _Batch) -> None:
        rng = self.rng
        tenant = rng.choices(self.tenants, weights=self.tenant_weights)[0]
        age = (self.now - created_at).total_seconds()
        if age < 600 and rng.random() < 0.5:
            status = rng.choice([Job.Status.PENDING, Job.Status.PROCESSING])
        elif rng.random() < 0.015:
            status = Job.Status.CANCELLED
        else:
            status = Job.Status.COMPLETED
        is_sync = size <= 10 and rng.random() < 0.2
        has_webhook = not is_sync and rng.random() < 0.6
        started_at = (
            None if status == Job.Status.PENDING else created_at + timedelta(seconds=rng.uniform(0, 3))
        )
        job = Job(
            uuid=uuid.UUID(int=rng.getrandbits(128), version=4),
            tenant_id=tenant.pk,
            credential_id=self.credentials.get(tenant.pk),
            status=status,
            is_sync=is_sync,
            total_numbers=size,
            webhook_url=f"https://hooks.example.com/{tenant.name}/restores" if has_webhook else None,
            created_at=created_at,
            started_at=started_at,
            heartbeat_at=created_at,
        )
        results, attempts = self._results(job, size)
        job.success_count = sum(r[2] == SUCCESS for r in results)
        job.failure_count = sum(r[2] == FAILED for r in results)
        if status in (Job.Status.COMPLETED, Job.Status.CANCELLED):
            finished = [r[9] for r in results if r[9]]
            job.completed_at = max(finished, default=started_at or created_at) + timedelta(milliseconds=50)
            job.heartbeat_at = job.completed_at
        deliveries = self._deliveries(job) if has_webhook and job.completed_at else []
        batch.jobs.append(job)
        batch.results.append(results)
        batch.attempts.append(attempts)
        batch.deliveries.append(deliveries)

    def _results(self, job: Job, size: int) -> tuple[list[list[Any]], list[list[list[Any]]]]:
        """Rows of RESULT_COLUMNS and, for each, rows of ATTEMPT_COLUMNS (job and result left out)."""
        rng = self.rng
        numbers = rng.sample(range(NUMBER_POOL_SIZE), size)
        # Most tenants restore most numbers; a job now and then goes badly.
        failure_share = 0.5 if rng.random() < 0.05 else 0.1
        clock = job.started_at or job.created_at
        results: list[list[Any]] = []
        attempts: list[list[list[Any]]] = []
        for position, offset in enumerate(numbers):
            # position, number, status, status_code, message, requires_identity_update,
            # needs_registration, attempts, started_at, completed_at, claimed_by
            row: list[Any] = [
                position,
                str(NUMBER_POOL_START + offset),
                PENDING,
                None,
                None,
                False,
                False,
                0,
                None,
                None,
                "",
            ]
            tries: list[list[Any]] = []
            results.append(row)
            attempts.append(tries)
            if job.status == Job.Status.PENDING or (
                job.status in (Job.Status.PROCESSING, Job.Status.CANCELLED) and rng.random() < 0.5
            ):
                if job.status == Job.Status.CANCELLED:
                    row[2], row[4], row[9] = FAILED, CANCELLED_MESSAGE, clock
                continue
            row[8] = clock
            failure = (
                rng.choices(FAILURES, weights=FAILURE_WEIGHTS)[0] if rng.random() < failure_share else None
            )
            # Retryable trouble before the last attempt, now and then.
            retries = rng.choices((0, 1, 2), weights=(94, 5, 1))[0]
            if failure and failure[3] == UpstreamAttempt.Outcome.RETRYABLE:
                retries = 2
            for n in range(1, retries + 2):
                duration = self._latency()
                last = n == retries + 1
                outcome: str
                if not last:
                    http_status, code, error = rng.choice(RETRYABLE_ERRORS)
                    outcome = UpstreamAttempt.Outcome.RETRYABLE
                    body = self._body(code, error) if http_status else ""
                elif failure:
                    code = failure[2]
                    http_status = int(code) if code else None
                    outcome = failure[3]
                    error = failure[1].removeprefix("Error: ").strip("'")
                    body = self._body(code, failure[1]) if code else ""
                else:
                    http_status, code, error, outcome = 200, "200", "", UpstreamAttempt.Outcome.SUCCESS
                    body = self._body("200", "")
                # attempt_number, started_at, duration_ms, http_status, envelope_code, outcome, error,
                # body_excerpt
                tries.append([n, clock, duration, http_status, code, str(outcome), error, body])
                clock += timedelta(milliseconds=duration + (rng.randint(200, 2000) if not last else 5))
            if job.status == Job.Status.PROCESSING and rng.random() < 0.3:
                row[2], row[10] = PROCESSING, "worker-seed"  # in flight: its attempt is not recorded yet
                tries.clear()
                continue
            row[7], row[9] = len(tries), clock
            if failure:
                row[2], row[3], row[4] = FAILED, failure[0], failure[1]
            else:
                row[2], row[3], row[4] = SUCCESS, 200, "Number restored"
                row[5] = rng.random() < 0.03
                row[6] = rng.random() < 0.02
        return results, attempts

    def _latency(self) -> int:
        """Milliseconds of an upstream call: mostly fast, with a long tail."""
        if self.rng.random() < 0.04:
            return int(self.rng.uniform(2_000, 30_000))
        return int(self.rng.lognormvariate(5.5, 0.5))  # about 250 ms, a few seconds at most

    @staticmethod
    def _body(code: str, msg: str) -> str:
        return json.dumps({"status": {"code": code, "msg": msg}, "response": {"restored": not msg}})

    def _deliveries(self, job: Job) -> list[list[Any]]:
        """Rows of DELIVERY_COLUMNS (job left out); sets the job's webhook state to match."""
        rng = self.rng
        assert job.completed_at is not None and job.webhook_url
        job.webhook_id = f"msg_{uuid.UUID(int=rng.getrandbits(128)).hex}"
        roll = rng.random()
        # Delivered at once, delivered after failures, still failing, given up.
        if roll < 0.85:
            failures, delivered = 0, True
        elif roll < 0.95:
            failures, delivered = rng.randint(1, 4), True
        elif roll < 0.98:
            failures, delivered = rng.randint(1, WEBHOOK_GIVE_UP - 1), False
        else:
            failures, delivered = WEBHOOK_GIVE_UP, False
        if not delivered and self.now - job.completed_at > timedelta(days=1):
            failures = WEBHOOK_GIVE_UP  # an old webhook that still fails was given up long ago
        rows: list[list[Any]] = []
        when = job.completed_at + timedelta(milliseconds=20)
        error_status, error_text = rng.choice(WEBHOOK_ERRORS)
        excerpt = "" if error_status is None else "<html><body>Server error</body></html>"
        for n in range(1, failures + 1):
            duration = rng.randint(30, 10_000)
            rows.append(
                [n, job.webhook_id, job.webhook_url, when, duration, error_status, False, error_text, excerpt]
            )
            when += timedelta(seconds=min(3600, 5 * 3**n))
        if delivered:
            rows.append(
                [
                    failures + 1,
                    job.webhook_id,
                    job.webhook_url,
                    when,
                    rng.randint(30, 900),
                    200,
                    True,
                    "",
                    '{"ok": true}',
                ]
            )
        job.webhook_attempts = len(rows)
        if delivered:
            job.webhook_state = Job.WebhookState.DELIVERED
        elif failures >= WEBHOOK_GIVE_UP:
            job.webhook_state = Job.WebhookState.FAILED
            job.webhook_error = error_text
        else:
            job.webhook_state = Job.WebhookState.FAILING
            job.webhook_error = error_text
            job.webhook_next_attempt_at = when
        return rows


def seed_tenants(*, count: int) -> list[Tenant]:
    """The seed tenants, made (with an API credential each) where missing."""
    tenants = []
    for n in range(1, count + 1):
        name = f"{TENANT_PREFIX}-{n:02d}"
        tenant = Tenant.objects.filter(name=name).defer("multitel_password", "webhook_secret").first()
        if tenant is None:
            tenant = tenant_create(
                name=name,
                api_username=f"{name}-api",
                api_password=api_secret_generate(),
                multitel_username=f"mt-{name}",
                multitel_password=api_secret_generate(),
            ).tenant
        tenants.append(tenant)
    return tenants


def _insert(model: type[Model], columns: tuple[str, ...], rows: list[list[Any]]) -> None:
    """INSERT rows of ``columns`` (model field names) into the model's table, many rows at a time."""
    if not rows:
        return
    ops = connection.ops
    fields = [model._meta.get_field(name) for name in columns]
    names = ", ".join(ops.quote_name(f.column or f.name) for f in fields if isinstance(f, Field))
    values = ", ".join(["%s"] * len(fields))
    # Table and column names come from the model, never from input.
    sql = f"INSERT INTO {ops.quote_name(model._meta.db_table)} ({names}) VALUES ({values})"  # noqa: S608
    when = [i for i, f in enumerate(fields) if isinstance(f, DateTimeField)]
    for row in rows:
        for i in when:
            if row[i] is not None:
                row[i] = ops.adapt_datetimefield_value(row[i])
    with connection.cursor() as cursor:
        for start in range(0, len(rows), INSERT_ROWS):
            cursor.executemany(sql, rows[start : start + INSERT_ROWS])


def seed_batch(batch: _Batch) -> Totals:
    """Write one batch of jobs with everything that belongs to them, in one transaction."""
    with transaction.atomic(), _given_timestamps():
        Job.objects.bulk_create(batch.jobs, batch_size=INSERT_ROWS)
        results: list[list[Any]] = []
        for job, rows in zip(batch.jobs, batch.results, strict=True):
            results.extend([job.pk, *row] for row in rows)
        _insert(NumberResult, RESULT_COLUMNS, results)
        # The ids of the results just written, by (job, position), for their attempts.
        result_ids = {
            (job_id, position): pk
            for job_id, position, pk in NumberResult.objects.filter(
                job_id__in=[job.pk for job in batch.jobs]
            ).values_list("job_id", "position", "pk")
        }
        attempts: list[list[Any]] = []
        deliveries: list[list[Any]] = []
        for job, rows, tries, sent in zip(
            batch.jobs, batch.results, batch.attempts, batch.deliveries, strict=True
        ):
            for row, result_tries in zip(rows, tries, strict=True):
                result_id = result_ids[(job.pk, row[0])]
                attempts.extend([result_id, job.pk, *attempt] for attempt in result_tries)  # ATTEMPT_COLUMNS
            deliveries.extend([job.pk, *delivery] for delivery in sent)
        _insert(UpstreamAttempt, ATTEMPT_COLUMNS, attempts)
        _insert(WebhookDelivery, DELIVERY_COLUMNS, deliveries)
    return Totals(
        jobs=len(batch.jobs), results=len(results), attempts=len(attempts), deliveries=len(deliveries)
    )


def seed_history(
    *,
    jobs: int,
    tenants: int = 8,
    days: int = 365,
    seed: int | None = None,
    big_jobs: int | None = None,
    progress: Any = None,
) -> Totals:
    """Write ``jobs`` jobs of the last ``days`` days; see the module's docstring."""
    rng = random.Random(seed)  # noqa: S311 (test data, not secrets)
    tenant_list = seed_tenants(count=tenants)
    credentials = dict(
        ApiCredential.objects.filter(tenant__in=tenant_list, revoked_at__isnull=True)
        .order_by("created_at")
        .values_list("tenant_id", "pk")
    )
    now = timezone.now()
    maker = HistoryMaker(rng=rng, tenants=tenant_list, credentials=credentials, now=now, days=days)
    if big_jobs is None:
        big_jobs = 1 if jobs >= 1000 else 0
    # Oldest first, as the portal would have written them (ids grow with time).
    times = sorted(maker.created_at() for _ in range(jobs))
    big = set(rng.sample(range(jobs), min(big_jobs, jobs)))
    totals = Totals()
    for start in range(0, jobs, JOBS_PER_TRANSACTION):
        batch = _Batch()
        for index in range(start, min(jobs, start + JOBS_PER_TRANSACTION)):
            size = BIG_JOB_NUMBERS if index in big else maker.job_size()
            maker.job(size=size, created_at=times[index], batch=batch)
        done = seed_batch(batch)
        totals.jobs += done.jobs
        totals.results += done.results
        totals.attempts += done.attempts
        totals.deliveries += done.deliveries
        if progress is not None:
            progress(totals)
    return totals


class Command(BaseCommand):
    help = (
        "Write a realistic history of restore jobs (statuses, results, upstream attempts, webhook "
        "deliveries) over the last year, to size and time the staff portal. About ten numbers per job."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--jobs", type=int, required=True, help="how many jobs to write")
        parser.add_argument("--tenants", type=int, default=8, help="spread over this many seed tenants")
        parser.add_argument("--days", type=int, default=365, help="jobs are spread over this many days")
        parser.add_argument("--seed", type=int, default=None, help="random seed, for a repeatable history")
        parser.add_argument(
            "--big-jobs",
            type=int,
            default=None,
            help=f"jobs of {BIG_JOB_NUMBERS:,} numbers among them (default: 1 from 1,000 jobs on)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["jobs"] < 1 or options["tenants"] < 1 or options["days"] < 1:
            raise CommandError("--jobs, --tenants and --days must be at least 1.")
        started = time.monotonic()
        last_report = [started]
        verbosity = options["verbosity"]

        def progress(totals: Totals) -> None:
            if verbosity >= 1 and time.monotonic() - last_report[0] >= 5:
                last_report[0] = time.monotonic()
                self.stdout.write(f"  {totals.jobs:,} jobs, {totals.results:,} results so far…")

        totals = seed_history(
            jobs=options["jobs"],
            tenants=options["tenants"],
            days=options["days"],
            seed=options["seed"],
            big_jobs=options["big_jobs"],
            progress=progress,
        )
        elapsed = time.monotonic() - started
        self.stdout.write(
            f"Wrote {totals.jobs:,} jobs, {totals.results:,} results, {totals.attempts:,} upstream attempts "
            f"and {totals.deliveries:,} webhook deliveries in {elapsed:.1f} s."
        )
