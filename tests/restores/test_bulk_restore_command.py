"""``manage.py bulk_restore``: a file of numbers submitted as a tenant, followed to the end."""

from __future__ import annotations

import io
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from restores import services
from restores.management.commands import bulk_restore
from restores.models import Job
from tests.support.parties import Party
from tests.support.queue import record_enqueued


def run(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("bulk_restore", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def numbers_file(tmp_path: Path, text: str) -> str:
    path = tmp_path / "numbers.txt"
    path.write_text(text, encoding="utf-8")
    return str(path)


# Numbers the simulated Multitel restores (see OUTCOME_RULES in restores/fake_multitel.py).
def restorable(count: int, start: int = 0) -> list[str]:
    candidates = (f"1555000{start + i:04d}" for i in range(count * 3))
    return [n for n in candidates if n[-1] in "016789" and not 90 <= int(n[-2:]) <= 97][:count]


@pytest.mark.django_db
def test_it_restores_a_small_file_synchronously_and_prints_a_summary(
    owner: Party, fake_multitel: Any, tmp_path: Path
) -> None:
    # One per line, comma and space separated, a blank line, a repeated number.
    text = "15551230111\n15551230112, 15551230113 15551230115\n\n15551230111\n"

    out, err = run("--tenant", "owner", numbers_file(tmp_path, text))

    job = Job.objects.get()
    assert job.tenant == owner.tenant and job.credential is None
    assert job.is_sync and job.status == Job.Status.COMPLETED
    assert list(job.results.order_by("position").values_list("number", flat=True)) == [
        "15551230111",
        "15551230112",
        "15551230113",
        "15551230115",
    ]
    assert f"Job {job.uuid}: 4 numbers for owner, restored synchronously." in out
    assert "1 repeated number was counted once." in out
    assert f"Job {job.uuid}: completed" in out
    assert "  restored:  2" in out and "  failed:    2" in out and "  pending:   0" in out
    assert "duration:" in out
    assert "Failures:\n  15551230112  500  Error: 'restore failed, please contact support'" in out
    assert "  15551230115  404  Error: 'number not found'" in out
    assert "4/4 numbers done (2 restored, 2 failed), completed" in err


@pytest.mark.django_db
def test_it_reads_standard_input_and_shows_a_bar_on_a_terminal(
    owner: Party, fake_multitel: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr("sys.stdin", io.StringIO("15551230111\n15551230113\n"))
    out, err = io.StringIO(), Terminal()

    call_command("bulk_restore", "--tenant", "owner", "-", stdout=out, stderr=err)

    assert Job.objects.get().total_numbers == 2
    assert "restored:  2" in out.getvalue()
    bar = err.getvalue()
    assert "2/2" in bar and "100%" in bar and "\r" in bar


@pytest.mark.django_db(transaction=True)
def test_it_waits_while_the_workers_process_a_queued_job(
    owner: Party, fake_multitel: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The queue is replaced by threads running the service the qcluster workers run."""
    workers: list[threading.Thread] = []
    seen_while_waiting: list[str] = []

    def work(job_id: int) -> None:
        try:
            time.sleep(0.3)  # the command is polling by now
            seen_while_waiting.append(Job.objects.get(pk=job_id).status)
            services.job_process(job_id=job_id)
        finally:
            connection.close()

    def enqueue(func: str, *args: Any) -> None:
        if func == "restores.tasks.process_job":
            thread = threading.Thread(target=work, args=args)
            workers.append(thread)
            thread.start()

    record_enqueued(monkeypatch, enqueue)
    monkeypatch.setattr(bulk_restore, "PLAIN_PROGRESS_EVERY", 0.0)
    numbers = [*restorable(22), "15551230190", "15551230197", "15551230115"]  # 25, three fail

    out, err = run("--tenant", "owner", "--poll-interval", "0.05", numbers_file(tmp_path, "\n".join(numbers)))
    for thread in workers:
        thread.join(timeout=30)

    job = Job.objects.get()
    assert not job.is_sync and job.status == Job.Status.COMPLETED
    assert seen_while_waiting and seen_while_waiting[0] == Job.Status.PENDING
    assert f"Job {job.uuid}: 25 numbers for owner, queued for the workers." in out
    assert "No qcluster reports itself running" in err  # the test's threads are no qcluster
    progress = [line for line in err.splitlines() if "numbers done" in line]
    assert progress[0].startswith("0/25 numbers done")
    assert progress[-1] == "25/25 numbers done (22 restored, 3 failed), completed"
    assert f"Job {job.uuid}: completed" in out
    assert "restored:  22" in out and "failed:    3" in out
    assert "15551230190  503" in out and "15551230197  500" in out and "15551230115  404" in out


@pytest.mark.django_db
@pytest.mark.usefixtures("enqueued")
def test_it_returns_at_once_with_no_wait(owner: Party, tmp_path: Path, settings: Any) -> None:
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = True

    out, err = run(
        "--tenant",
        "owner",
        "--no-wait",
        "--webhook-url",
        "http://127.0.0.1:9/hook",
        numbers_file(tmp_path, "\n".join(restorable(12))),
    )

    job = Job.objects.get()
    assert job.status == Job.Status.PENDING and job.webhook_url == "http://127.0.0.1:9/hook"
    assert f"job_uuid={job.uuid}" in out
    assert "Not waiting" in out and err == ""


@pytest.mark.django_db
@pytest.mark.usefixtures("enqueued")  # no worker ever comes
def test_it_stops_waiting_after_the_timeout_with_its_own_exit_status(owner: Party, tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="Stopped waiting") as refused:
        run(
            "--tenant",
            "owner",
            "--poll-interval",
            "0.05",
            "--timeout",
            "0.2",
            numbers_file(tmp_path, "\n".join(restorable(11))),
        )

    assert refused.value.returncode == 3
    assert Job.objects.get().status == Job.Status.PENDING


@pytest.mark.django_db
def test_it_refuses_an_unknown_tenant(owner: Party, second: Party, tmp_path: Path) -> None:
    with pytest.raises(CommandError) as refused:
        run("--tenant", "nobody", numbers_file(tmp_path, "15551230111\n"))

    assert str(refused.value) == "No tenant is named 'nobody'. Known tenants: owner, second."
    assert refused.value.returncode == 1
    assert not Job.objects.exists()


@pytest.mark.django_db
def test_it_refuses_a_disabled_tenant(owner: Party, tmp_path: Path) -> None:
    assert owner.tenant is not None
    owner.tenant.is_active = False
    owner.tenant.save()

    with pytest.raises(CommandError, match="disabled"):
        run("--tenant", "owner", numbers_file(tmp_path, "15551230111\n"))


@pytest.mark.django_db
def test_it_names_every_bad_number_by_line_and_stores_nothing(owner: Party, tmp_path: Path) -> None:
    text = "15551230111\n+15551230112, 555-0111\n15551230113 123\n"

    with pytest.raises(CommandError) as refused:
        run("--tenant", "owner", numbers_file(tmp_path, text))

    assert str(refused.value).splitlines() == [
        "3 entries are not a digit-only phone number of 7 to 15 digits; nothing was stored.",
        "  line 2: '+15551230112' must contain digits only (E.164 without '+')",
        "  line 2: '555-0111' must contain digits only (E.164 without '+')",
        "  line 3: '123' must have 7 to 15 digits, not 3",
    ]
    assert not Job.objects.exists()


@pytest.mark.django_db
def test_it_lists_the_first_bad_numbers_and_counts_the_rest(owner: Party, tmp_path: Path) -> None:
    with pytest.raises(CommandError) as refused:
        run("--tenant", "owner", numbers_file(tmp_path, "\n".join(["x"] * 50)))

    lines = str(refused.value).splitlines()
    assert len(lines) == 1 + bulk_restore.ERRORS_SHOWN + 1
    assert lines[-1] == f"  ... and {50 - bulk_restore.ERRORS_SHOWN} more"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("text", "extra", "message"),
    [
        ("\n \n", [], "No numbers found in the input."),
        (
            "15551230111\n",
            ["--webhook-url", "ftp://example.com/x"],
            "--webhook-url: webhook_url must be an absolute",
        ),
        (
            "15551230111\n",
            ["--webhook-url", "http://10.0.0.1/x"],
            "--webhook-url: webhook_url points to 10.0.0.1",
        ),
        ("15551230111\n", ["--poll-interval", "0"], "--poll-interval must be a positive number"),
    ],
)
def test_it_refuses_input_the_api_would_refuse(
    owner: Party, tmp_path: Path, text: str, extra: list[str], message: str
) -> None:
    with pytest.raises(CommandError, match=message.replace("+", r"\+")):
        run("--tenant", "owner", *extra, numbers_file(tmp_path, text))

    assert not Job.objects.exists()


@pytest.mark.django_db
def test_it_refuses_more_numbers_than_a_job_may_hold(owner: Party, tmp_path: Path, settings: Any) -> None:
    settings.MAX_NUMBERS_PER_JOB = 3

    with pytest.raises(CommandError, match="4 numbers were given; at most 3 are accepted per job"):
        run("--tenant", "owner", numbers_file(tmp_path, "\n".join(restorable(4))))


@pytest.mark.django_db
def test_it_refuses_a_missing_or_unreadable_file(owner: Party, tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="No such file"):
        run("--tenant", "owner", str(tmp_path / "missing.txt"))
    binary = tmp_path / "numbers.bin"
    binary.write_bytes(b"\xff\xfe\x00\x81")
    with pytest.raises(CommandError, match="is not UTF-8 text"):
        run("--tenant", "owner", str(binary))
