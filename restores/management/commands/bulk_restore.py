"""``manage.py bulk_restore --tenant NAME FILE``: submit numbers as a tenant, from a shell.

The numbers go through the same validation and the same service as
``POST /v3/bulk_restore`` (no HTTP): ten or fewer are restored right away,
more are queued for the qcluster workers. The command then follows the job
until it is finished and prints a summary.

Progress is shown with ``tqdm`` on a terminal (it redraws one line, adapts
to the terminal's width and is well maintained); when the output is not a
terminal (a pipe, a log file, CI) it prints a plain line whenever progress
was made, at most every few seconds, instead of carriage-return redraws.
"""

from __future__ import annotations

import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser, OutputWrapper
from tqdm import tqdm  # type: ignore[import-untyped]

from accounts.models import Tenant
from restores import services
from restores.models import Job, NumberResult
from restores.validation import SubmissionError, numbers_parse, webhook_url_validate

SEPARATORS = re.compile(r"[\s,;]+")
FINAL_JOB_STATUSES = (Job.Status.COMPLETED, Job.Status.CANCELLED)
# Failed numbers listed in the summary; the rest are counted.
FAILURES_SHOWN = 20
# Bad entries listed when the input is refused; the rest are counted.
ERRORS_SHOWN = 20
# Without a terminal, a progress line at most this often (seconds).
PLAIN_PROGRESS_EVERY = 5.0


@dataclass(frozen=True)
class Token:
    value: str
    line: int


def tokens_read(text: str) -> list[Token]:
    """The entries of a file: one per line, or separated by commas, semicolons or spaces."""
    out: list[Token] = []
    for line_no, line in enumerate(text.removeprefix("\ufeff").split("\n"), start=1):
        out.extend(Token(value, line_no) for value in SEPARATORS.split(line) if value)
    return out


class _BarStream:
    """Hands tqdm's output to a command's stream without the newline OutputWrapper adds."""

    def __init__(self, out: OutputWrapper) -> None:
        self.out = out

    def write(self, text: str) -> None:
        self.out.write(text, ending="")

    def flush(self) -> None:
        self.out.flush()

    def isatty(self) -> bool:
        return self.out.isatty()

    @property
    def encoding(self) -> str | None:
        return getattr(self.out, "encoding", None)


class Command(BaseCommand):
    help = (
        "Submit a file of phone numbers as a tenant (one per line, or separated by commas or "
        "spaces; '-' reads standard input), follow the job and print a summary."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", metavar="FILE", help="File of numbers, or '-' for standard input.")
        parser.add_argument("--tenant", required=True, help="The tenant's name, as in the admin.")
        parser.add_argument("--webhook-url", default=None, help="POST the final result to this URL too.")
        parser.add_argument(
            "--poll-interval", type=float, default=1.0, help="Seconds between progress checks (default 1)."
        )
        parser.add_argument(
            "--no-wait", action="store_true", help="Print the job's UUID and return without waiting."
        )
        parser.add_argument(
            "--timeout",
            type=float,
            default=None,
            help="Stop waiting after this many seconds (the job goes on); exit status 3.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["poll_interval"] <= 0:
            raise CommandError("--poll-interval must be a positive number of seconds.")
        tenant = self._tenant(options["tenant"])
        tokens = tokens_read(self._read(options["file"]))
        numbers, webhook_url = self._validate(tokens, options["webhook_url"])

        started = time.monotonic()
        job = services.job_submit(tenant=tenant, credential=None, numbers=numbers, webhook_url=webhook_url)
        how = "restored synchronously" if job.is_sync else "queued for the workers"
        self.stdout.write(f"Job {job.uuid}: {job.total_numbers} numbers for {tenant.name}, {how}.")
        if options["no_wait"] and job.status not in FINAL_JOB_STATUSES:
            self.stdout.write(
                f"Not waiting. Follow it with GET /v3/bulk_restore_status?job_uuid={job.uuid} "
                "or in the admin."
            )
            return
        if not job.is_sync and not self._cluster_running():
            self.stderr.write(
                "No qcluster reports itself running: the job waits until one is started "
                "(python manage.py qcluster)."
            )
        job = self._follow(job, poll=options["poll_interval"], timeout=options["timeout"], started=started)
        self._summary(job, waited=time.monotonic() - started)
        if job.status not in FINAL_JOB_STATUSES:
            raise CommandError(
                f"Stopped waiting after {options['timeout']:g} s; job {job.uuid} goes on.", returncode=3
            )

    # --- Input ------------------------------------------------------------------------------

    def _tenant(self, name: str) -> Tenant:
        tenant = Tenant.objects.filter(name=name).first()
        if tenant is None:
            known = list(Tenant.objects.order_by("name").values_list("name", flat=True)[:10])
            hint = f" Known tenants: {', '.join(known)}." if known else " There are no tenants yet."
            raise CommandError(f"No tenant is named {name!r}.{hint}")
        if not tenant.is_active:
            raise CommandError(f"Tenant {name!r} is disabled; enable it in the admin first.")
        return tenant

    def _read(self, path: str) -> str:
        try:
            if path == "-":
                stdin: TextIO = sys.stdin
                return stdin.read()
            return Path(path).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise CommandError(f"No such file: {path}") from None
        except UnicodeDecodeError:
            raise CommandError(f"{path} is not UTF-8 text.") from None
        except OSError as exc:
            raise CommandError(f"Could not read {path}: {exc.strerror}") from None

    def _validate(self, tokens: list[Token], webhook_url: str | None) -> tuple[list[str], str | None]:
        """The API's own rules (restores.validation); errors name the file's lines."""
        try:
            numbers = numbers_parse(
                numbers=[t.value for t in tokens], numbers_text=None, max_numbers=settings.MAX_NUMBERS_PER_JOB
            )
            url = webhook_url_validate(webhook_url)
        except SubmissionError as exc:
            raise CommandError(self._explain(exc, tokens)) from None
        duplicates = len(tokens) - len(numbers)
        if duplicates:
            counted = "number was" if duplicates == 1 else "numbers were"
            self.stdout.write(f"{duplicates} repeated {counted} counted once.")
        return numbers, url

    @staticmethod
    def _explain(exc: SubmissionError, tokens: list[Token]) -> str:
        if exc.code == "no_numbers":
            return "No numbers found in the input."
        if exc.code == "invalid_webhook_url":
            return f"--webhook-url: {exc.message}"
        lines = [exc.message]
        invalid = exc.extra.get("invalid", [])
        for entry in invalid[:ERRORS_SHOWN]:
            token = tokens[entry["index"]]
            lines.append(f"  line {token.line}: {token.value!r} {entry['reason']}")
        hidden = exc.extra.get("invalid_count", len(invalid)) - min(len(invalid), ERRORS_SHOWN)
        if hidden > 0:
            lines.append(f"  ... and {hidden} more")
        return "\n".join(lines)

    @staticmethod
    def _cluster_running() -> bool:
        from portal.health import check_cluster, get_broker

        try:
            return bool(check_cluster(get_broker())["ok"])
        except Exception:  # the broker could not be built: the wait will tell
            return False

    # --- Following the job -------------------------------------------------------------------

    def _follow(self, job: Job, *, poll: float, timeout: float | None, started: float) -> Job:
        tty = self.stderr.isatty()
        bar = tqdm(
            total=job.total_numbers,
            unit="number",
            desc=str(job.uuid)[:8],
            file=_BarStream(self.stderr),
            disable=not tty,
            dynamic_ncols=True,
        )
        last_line, last_done = -PLAIN_PROGRESS_EVERY, -1
        try:
            while True:
                job.refresh_from_db(fields=["status", "success_count", "failure_count", "completed_at"])
                done = job.success_count + job.failure_count
                bar.update(done - bar.n)
                bar.set_postfix(restored=job.success_count, failed=job.failure_count, refresh=False)
                finished = job.status in FINAL_JOB_STATUSES
                now = time.monotonic()
                if not tty and (finished or (done != last_done and now - last_line >= PLAIN_PROGRESS_EVERY)):
                    self.stderr.write(
                        f"{done}/{job.total_numbers} numbers done "
                        f"({job.success_count} restored, {job.failure_count} failed), {job.status}"
                    )
                    last_line, last_done = now, done
                if finished or (timeout is not None and now - started >= timeout):
                    return job
                time.sleep(poll)
        except KeyboardInterrupt:
            raise CommandError(f"Interrupted; job {job.uuid} goes on.", returncode=130) from None
        finally:
            bar.close()

    def _summary(self, job: Job, *, waited: float) -> None:
        job.refresh_from_db()
        duration = (
            (job.completed_at - job.created_at).total_seconds() if job.completed_at is not None else waited
        )
        write = self.stdout.write
        write("")
        write(f"Job {job.uuid}: {job.status}")
        write(f"  numbers:   {job.total_numbers}")
        write(f"  restored:  {job.success_count}")
        write(f"  failed:    {job.failure_count}")
        write(f"  pending:   {job.total_numbers - job.success_count - job.failure_count}")
        write(f"  duration:  {duration:.1f} s")
        if job.webhook_url:
            state = job.get_webhook_state_display()
            write(f"  webhook:   {state}" + (f" ({job.webhook_error})" if job.webhook_error else ""))
        failures = list(
            NumberResult.objects.filter(job=job, status=NumberResult.Status.FAILED)
            .order_by("position")
            .values_list("number", "status_code", "message")[: FAILURES_SHOWN + 1]
        )
        if failures:
            write("Failures:")
            for number, status_code, message in failures[:FAILURES_SHOWN]:
                write(f"  {number}  {status_code if status_code is not None else '-':>3}  {message or ''}")
            if job.failure_count > FAILURES_SHOWN:
                write(
                    f"  ... and {job.failure_count - FAILURES_SHOWN} more (see the admin or the status API)"
                )
