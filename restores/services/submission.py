"""Accepting a submission: store the job and its numbers, then restore or queue it."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from accounts.models import ApiCredential, Tenant
from portal.durability import commit_unflushed
from portal.logs import log_context
from restores.models import Job, NumberResult
from restores.services.processing import _fanout, job_run_sync
from restores.services.queue import enqueue_on_commit

logger = logging.getLogger(__name__)


def job_is_sync(*, total_numbers: int) -> bool:
    """A job of at most ``SYNC_MAX_NUMBERS`` is restored inside the request that makes it."""
    return total_numbers <= settings.SYNC_MAX_NUMBERS


@transaction.atomic
def job_create(
    *,
    tenant: Tenant,
    credential: ApiCredential | None,
    numbers: Sequence[str],
    webhook_url: str | None,
) -> Job:
    """Store a job and its numbers in one transaction.

    A job of at most ``SYNC_MAX_NUMBERS`` is restored by the request that
    created it; a larger one is queued once committed, fanned out over several
    tasks so that it spreads over worker processes and hosts.
    """
    now = timezone.now()
    is_sync = job_is_sync(total_numbers=len(numbers))
    if is_sync:
        commit_unflushed()  # the request answers only once the job is completed, on disk
    job = Job.objects.create(
        tenant=tenant,
        credential=credential,
        is_sync=is_sync,
        total_numbers=len(numbers),
        webhook_url=webhook_url,
        status=Job.Status.PROCESSING if is_sync else Job.Status.PENDING,
        started_at=now if is_sync else None,
    )
    _results_insert(job_id=job.pk, numbers=numbers)
    if not is_sync:
        enqueue_on_commit("restores.tasks.process_job", job.pk, times=_fanout(tenant, len(numbers)))
    return job


def _results_insert(*, job_id: int, numbers: Sequence[str]) -> None:
    """Insert a new job's numbers, ``pending``, in submission order.

    Only the position and the number differ between the rows, so they are sent
    as data and every other column as one value: a single ``INSERT … SELECT FROM
    unnest()`` on PostgreSQL, one ``executemany`` elsewhere. ``bulk_create`` would
    build a model instance and prepare 14 fields per number in Python, more than
    half the time of a 10,000-number POST.
    """
    meta = NumberResult._meta
    varying = ("id", "job", "position", "number")
    fields = {field.name: field for field in meta.concrete_fields}
    fixed = [
        (str(field.column), field.get_db_prep_save(field.get_default(), connection))
        for field in fields.values()
        if field.name not in varying and not (field.null and field.get_default() is None)
    ]
    quote = connection.ops.quote_name
    columns = ", ".join(
        quote(column)
        for column in [*(str(fields[name].column) for name in varying[1:]), *(c for c, _ in fixed)]
    )
    table = quote(meta.db_table)
    values = [value for _, value in fixed]
    # The SQL holds only quoted identifiers from the model's metadata; every value is a parameter.
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            sql = (
                f"INSERT INTO {table} ({columns}) "  # noqa: S608
                f"SELECT %s, t.position - 1, t.number{', %s' * len(fixed)} "
                "FROM unnest(%s::varchar[]) WITH ORDINALITY AS t(number, position)"
            )
            cursor.execute(sql, [job_id, *values, list(numbers)])
        else:
            placeholders = ", ".join(["%s"] * (3 + len(fixed)))
            sql = f"INSERT INTO {table} ({columns}) VALUES ({placeholders})"  # noqa: S608
            cursor.executemany(
                sql, [(job_id, position, number, *values) for position, number in enumerate(numbers)]
            )


def job_submit(
    *,
    tenant: Tenant,
    credential: ApiCredential | None,
    numbers: Sequence[str],
    webhook_url: str | None,
) -> Job:
    """Accept a submission: restore it now (small jobs) or queue it (large ones)."""
    started = time.monotonic()
    job = job_create(tenant=tenant, credential=credential, numbers=numbers, webhook_url=webhook_url)
    with log_context(job_uuid=job.uuid, tenant=tenant.name):
        logger.info("job accepted: %s numbers, %s", len(numbers), "synchronous" if job.is_sync else "queued")
        if job.is_sync:
            job_run_sync(job=job, started=started)
            job.refresh_from_db()
    return job
