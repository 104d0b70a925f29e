"""One task's upstream calls of one job: a pipeline within the tenant's call slots.

The task holds some of its tenant's call slots (``slots``), one calling thread
each. Every thread calls Multitel for one number after another from a queue
that this task keeps a few numbers ahead (claimed under a lease), and hands
each outcome back; this thread records them behind, in batches, and claims
more in the same transaction. So a slot goes on to its next number the moment
a call ends, and the database sees one transaction per batch, not one per
number. Threads do HTTP only; this thread does every query.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from portal.durability import commit_unflushed
from portal.outages import database_unreachable, database_wait
from restores.clients.multitel import MultitelClient, RestoreOutcome
from restores.clients.upstream_health import account_health
from restores.cluster import worker_stopping
from restores.models import Job, NumberResult
from restores.services.batches import UPSTREAM_AUTH_SKIPPED_MESSAGE, outcomes_record_and_claim
from restores.services.breaker import breaker_outage_fail
from restores.services.claims import leases_renew
from restores.services.completion import job_fail_pending
from restores.services.recovery import jobs_orphaned_wake
from restores.services.slots import (
    others_waiting_for_a_worker,
    slots_acquire,
    slots_renew,
    slots_set,
    tenant_cap_full,
    tenant_sync_waiting,
)

logger = logging.getLogger(__name__)

# How long a worker waits before asking again when its tenant's cap is full; the
# wait grows by this much on each further refusal, up to CAP_POLL_BACKOFF_MAX times it.
CAP_POLL_SECONDS = 0.02
CAP_POLL_BACKOFF_MAX = 10
# How often a task whose tenant's breaker is open looks again (for the probe's turn).
BREAKER_POLL_SECONDS = 0.25
# How long this thread waits for a call to finish before it looks at its other duties; a
# task with fewer slots than it wants asks for more, and a queued task looks for
# synchronous requests of its tenant waiting for a slot, this often.
COLLECT_WAIT_SECONDS = 0.1
# Finished calls are recorded together, at most this long after the first of them ended.
RECORD_BATCH_SECONDS = 0.01
SLOTS_RETRY_SECONDS = 0.25
SYNC_CHECK_SECONDS = 0.1
# A queued task looks this often for other tenants' jobs that wait for a worker, and
# hands over to them (ends its slice early) when it finds one.
FAIR_CHECK_SECONDS = 0.1
# A claim reads the tenant's breaker again after this long, or at once after a failure.
BREAKER_CHECK_SECONDS = 1.0
# Calling threads a process keeps at most (its windows' slots together).
CALLING_THREADS_MAX = 256
# Numbers claimed ahead of the calls: each slot has this many in line behind its call.
NUMBERS_AHEAD_PER_SLOT = 1
# A task starts calls on its slots until this long before their lease, as it last wrote it,
# runs out (by its own clock): what other hosts' clocks may differ by (at most a quarter
# of the lease, when leases are that short: a task renews every quarter).
SLOTS_VALIDITY_MARGIN = 2.0


@dataclass(frozen=True)
class WindowEnd:
    """How a window ended: ``stopped_early``, at the deadline or the slice's end, with numbers
    possibly left to claim; ``held_back``, the tenant's upstream breaker was open when it
    last asked; ``all_final``, it recorded a final outcome for every number of the job (a
    synchronous request's, which no other task works on)."""

    stopped_early: bool = False
    held_back: bool = False
    all_final: bool = False


def restore_window(
    *, job: Job, limit: int, deadline: float | None = None, slice_ends: float | None = None
) -> WindowEnd:
    """Keep up to ``limit`` upstream calls of one job in flight until none is left to claim.

    Stops claiming at ``deadline`` or ``slice_ends`` (both ``time.monotonic()``) and
    finishes what it holds. While the tenant's upstream breaker is open nothing is
    claimed: a queued job waits (for the probe's turn, or the end of its slice), a
    synchronous one stops.
    """
    return _Window(job=job, limit=limit, deadline=deadline, slice_ends=slice_ends).run()


class _Window:
    def __init__(self, *, job: Job, limit: int, deadline: float | None, slice_ends: float | None) -> None:
        self.job, self.tenant, self.limit = job, job.tenant, limit
        self.deadline, self.slice_ends = deadline, slice_ends
        self.client = MultitelClient()
        self.health = account_health(self.tenant.pk)
        self.slot_token = uuid.uuid4().hex
        self.feed: queue.SimpleQueue[NumberResult | None] = queue.SimpleQueue()  # None: wake up
        self.done: queue.SimpleQueue[tuple[NumberResult, RestoreOutcome] | None] = queue.SimpleQueue()
        self.lock = threading.Lock()
        self.quitting = 0  # calling threads asked to end after their current call
        self.slots = 0  # calling threads wanted (and their slots held)
        self.alive = 0  # calling threads running: the slots held in the database
        self.loops: list[Future[None]] = []  # one per calling thread
        self.outstanding: dict[int, NumberResult] = {}  # claimed by this task, not recorded yet
        self.finished: list[tuple[NumberResult, RestoreOutcome]] = []
        self.claiming = True
        self.exhausted = False  # the last claim found nothing left to claim
        self.stopped_early = self.held_back = self.breaker_seen = self.rejected = False
        self.refused = False  # a calling thread saw Multitel refuse the credentials (401)
        self.closing = False  # every calling thread ends after its current call
        self.asked = False  # a claim was made: a slice always makes one
        self.after = -1  # the highest position claimed so far: where the next claim looks first
        self.claimed = 0  # numbers this window has claimed
        self.final = 0  # numbers this window has recorded final
        self.capped_polls = 0
        self.breaker_read_at = -BREAKER_CHECK_SECONDS  # when a claim last found it closed
        now = time.monotonic()
        self.slots_at = self.sync_check_at = self.fair_check_at = now
        self.renew_at = now + settings.RESTORE_LEASE_SECONDS / 4
        # Calls finished and not yet recorded: a calling thread starts no new call while there
        # are as many as there are slots, so that the numbers a crash leaves to be called again
        # are at most those in flight and one finished call per slot.
        self.unrecorded = 0
        self.recorded = threading.Condition(self.lock)
        # Until when (time.monotonic()) the slots held are certainly this task's: a lease's
        # length from the moment before it was last written, less a margin. Past it no call
        # starts until a renewal says they still are (a task cut off from the database while
        # its lease ran out must not call on slots that others may hold by now).
        self.slots_valid_until = -1.0

    # --- the calling threads ------------------------------------------------------------

    def _call_loop(self) -> None:
        try:
            while self._may_go_on():
                try:
                    result = self.feed.get(timeout=0.05)
                except queue.Empty:
                    continue
                if result is None:
                    continue  # woken up to look again (the window is closing)
                if self.refused or self.closing or not self._may_call():
                    # No call now (or no more): it goes back with the others in line.
                    self.feed.put(result)
                    continue
                outcome = self.client.restore(
                    result.number,
                    username=self.tenant.multitel_username,
                    password=self.tenant.multitel_password,
                    deadline=self.deadline,
                    health=self.health,
                )
                if outcome.status_code == 401:
                    self.refused = True
                with self.lock:
                    self.unrecorded += 1
                self.done.put((result, outcome))
        finally:
            self.done.put(None)  # this thread has ended: its slot can go back

    def _may_go_on(self) -> bool:
        """Wait while a slot's worth of calls is unrecorded (or Multitel refused the
        credentials); False once this thread is to end."""
        with self.recorded:
            while True:
                if self.closing:
                    return False
                if self.quitting > 0:
                    self.quitting -= 1
                    return False
                if (
                    not self.refused
                    and self.unrecorded < max(1, self.slots)
                    and time.monotonic() < self.slots_valid_until
                ):
                    return True
                self.recorded.wait(timeout=0.05)

    def _may_call(self) -> bool:
        """Checked again once a number is taken from the line: the slots may have run out, or
        this thread been asked to end, while it waited for one."""
        with self.lock:
            return self.quitting == 0 and time.monotonic() < self.slots_valid_until

    def _slots_want(self, wanted: int) -> None:
        """Run ``wanted`` calling threads: fewer end after their current call and give their
        slots back as they end; more are started once their slots are held (as many as the
        cap allows). The slots held in the database are the threads alive."""
        if wanted <= self.slots:
            with self.lock:
                self.quitting += self.slots - wanted
            self.slots = wanted
            return
        need = wanted - self.slots
        with self.lock:
            revived = min(need, self.quitting)  # threads asked to end that have not yet
            self.quitting -= revived
        self.slots += revived
        need -= revived
        if not need:
            return
        asked_at = time.monotonic()
        held = slots_acquire(
            tenant=self.tenant,
            token=self.slot_token,
            job_id=self.job.pk,
            want=self.alive + need,
            for_sync=self.job.is_sync,
            held=self.alive,
        )
        if held > self.alive:
            self._slots_valid(since=asked_at)  # the lease was written: new, or longer
        for _ in range(max(0, held - self.alive)):
            self.loops.append(_calling_threads().submit(self._call_loop))
            self.alive += 1
            self.slots += 1
            self.capped_polls = 0

    def _slots_valid(self, *, since: float) -> None:
        with self.recorded:
            lease = settings.RESTORE_LEASE_SECONDS
            self.slots_valid_until = since + lease - min(SLOTS_VALIDITY_MARGIN, lease / 4)
            self.recorded.notify_all()

    def _slots_lost(self) -> None:
        """The slots ran out while this task could not renew them (it was cut off from the
        database): others may hold them now. No call starts until they are held again;
        the threads the cap has no room for end."""
        logger.warning("call slots ran out before they could be renewed; asking for them again")
        with self.recorded:
            self.slots_valid_until = -1.0
        slots_set(token=self.slot_token, slots=0)  # the lease row, if no one swept it yet
        asked_at = time.monotonic()
        held = slots_acquire(
            tenant=self.tenant,
            token=self.slot_token,
            job_id=self.job.pk,
            want=self.alive,
            for_sync=self.job.is_sync,
            held=0,
        )
        with self.recorded:
            self.quitting = max(0, self.alive - held)
            self.slots = held
        if held:
            self._slots_valid(since=asked_at)
        self.slots_at = time.monotonic() + SLOTS_RETRY_SECONDS

    # --- this thread ---------------------------------------------------------------------

    def run(self) -> WindowEnd:
        try:
            while True:
                try:
                    end = self._step()
                except Exception as exc:
                    if not self._database_waited_out(exc):
                        raise
                    self.renew_at = time.monotonic()  # renew what is still this task's at once
                    continue
                if end is not None:
                    return end
        finally:
            self._close()

    def _had_a_turn(self) -> bool:
        """A slice ends only after its first claim, or while it waits for a slot that the
        cap has no room for (doing nothing: it hands its worker over like any other)."""
        return self.asked or (not self.alive and self.capped_polls > 0)

    def _database_waited_out(self, exc: Exception) -> bool:
        """The database went out of reach (a restart, a failover): a queued task keeps its
        calls' outcomes, waits for it (at most half of ``Q_TASK_TIMEOUT``) and goes on, rather
        than leaving its numbers and slots to run out. A synchronous request does not wait:
        its client gets the 503 at once."""
        if self.job.is_sync or not database_unreachable(exc) or connection.in_atomic_block:
            return False
        logger.warning("database unavailable: %s; the window waits for it", type(exc).__name__)
        if not database_wait(until=time.monotonic() + settings.Q_TASK_TIMEOUT / 2):
            return False
        logger.info("database back: the window goes on")
        return True

    def _step(self) -> WindowEnd | None:
        """One turn of the loop: the window's end when it is over, else None."""
        now = time.monotonic()
        if now >= self.renew_at:
            self._renew()
            self.renew_at = now + settings.RESTORE_LEASE_SECONDS / 4
        if self.claiming and (
            (self.deadline is not None and now >= self.deadline)
            or (self.slice_ends is not None and self._had_a_turn() and now >= self.slice_ends)
        ):
            self.claiming, self.stopped_early = False, True
        if self.claiming and self.slice_ends is not None and worker_stopping():
            # The cluster is stopping: only the calls in flight finish (the numbers in line
            # go back), and the task re-enqueues the rest of its job.
            self.claiming, self.stopped_early = False, True
            self._unfeed()
        if (self.claiming or self.outstanding) and self.slots < self.limit and now >= self.slots_at:
            self._slots_want(self.limit)
            self.slots_at = now + (0 if self.slots == self.limit else SLOTS_RETRY_SECONDS)
        if not self.job.is_sync and self.slots and now >= self.sync_check_at:
            self._make_room_for_sync()
            self.sync_check_at = now + SYNC_CHECK_SECONDS
        if self.slice_ends is not None and self.claiming and self._had_a_turn() and now >= self.fair_check_at:
            idle = not self.alive and self.capped_polls > 0  # waits for a slot, holds none
            if others_waiting_for_a_worker(tenant_id=self.tenant.pk, idle=idle):
                # Another tenant's job waits for a worker: end this slice now, with only
                # the calls in flight to finish (the numbers in line go back).
                self.claiming, self.stopped_early = False, True
                self._unfeed()
            self.fair_check_at = now + FAIR_CHECK_SECONDS
        self._collect()
        self._record_and_claim()
        if not self.outstanding:
            if not self.claiming:
                return WindowEnd(
                    stopped_early=self.stopped_early,
                    held_back=self.held_back,
                    all_final=self.final >= self.job.total_numbers,
                )
            if self.held_back:
                self._wait_out_the_breaker()
                return None
            if self.exhausted:
                self._wait_for_the_others()
                return None
        if self.alive == 0 and (self.outstanding or not self.exhausted):
            self._wait_for_a_slot()
        return None

    def _wait_for_a_slot(self) -> None:
        """The tenant's cap is full: wait and ask again, less often the longer it lasts (a
        synchronous request keeps asking often: a client is waiting)."""
        if self.slots and not self.alive:
            # Every calling thread has ended without being asked to: start afresh.
            logger.warning("calling threads ended unexpectedly (%s wanted); starting them again", self.slots)
            self.slots = 0
        backoff = 1 if self.job.is_sync else min(self.capped_polls + 1, CAP_POLL_BACKOFF_MAX)
        time.sleep(CAP_POLL_SECONDS * backoff)
        self.capped_polls += 1
        self.slots_at = time.monotonic()
        if self.job.is_sync and self.deadline is not None and time.monotonic() >= self.deadline:
            self.claiming, self.stopped_early = False, True
            self._unfeed()

    def _wait_out_the_breaker(self) -> None:
        if self.job.is_sync:
            self.claiming = False  # a client is waiting: its numbers get 503 at once
            return
        if breaker_outage_fail(tenant_id=self.tenant.pk) and not _claimable_left(job_id=self.job.pk):
            self.claiming = False
            return
        time.sleep(max(0.0, min(BREAKER_POLL_SECONDS, _until(self.slice_ends))))

    def _wait_for_the_others(self) -> None:
        """Nothing left to claim. Done, unless the rest is leased by other tasks: then wait
        until they finish it, or a lease runs out (its holder died) and it can be claimed,
        with no slot held meanwhile."""
        if self._claimed_all():
            self.claiming = False  # a synchronous request's numbers: all had their call
            return
        if _claimable_left(job_id=self.job.pk):
            self.exhausted = False  # numbers came back (another task's line, a lease run out)
            return
        if self.job.is_sync or not _held_by_others(job_id=self.job.pk):
            self.claiming = False
            return
        self._slots_want(0)
        self._collect()
        time.sleep(max(0.0, min(1.0, _until(self.slice_ends))))
        self.exhausted = False

    def _claimed_all(self) -> bool:
        """A synchronous request claimed every number of its job: no other task claims them,
        and none goes back to pending but by ``_unfeed``, as the window closes."""
        return self.job.is_sync and self.claimed >= self.job.total_numbers

    def _make_room_for_sync(self) -> None:
        """A synchronous request of the tenant waits for a slot and the cap is full: give it
        this task's slots, as their calls end."""
        now = timezone.now()
        waiting = tenant_sync_waiting(tenant_id=self.tenant.pk, now=now)
        if not waiting:
            return
        if not tenant_cap_full(tenant=self.tenant, now=now):
            return
        self._slots_want(max(0, self.slots - waiting))
        self.slots_at = time.monotonic() + SLOTS_RETRY_SECONDS

    def _collect(self) -> None:
        """Take the calls that finished, to record them together: wait a little for the first
        while calls are out, then for more, until half the slots' worth has finished or the
        first has waited ``RECORD_BATCH_SECONDS`` (so the database sees a few transactions
        a second, not one per number), or a slot is about to run out of numbers."""
        calls_out = self.alive and len(self.outstanding) > len(self.finished)
        try:
            item = self.done.get(timeout=COLLECT_WAIT_SECONDS) if calls_out else self.done.get_nowait()
        except queue.Empty:
            return
        record_by = time.monotonic() + RECORD_BATCH_SECONDS
        # A synchronous request records its calls together: a client waits for all of them.
        batch = len(self.outstanding) if self.job.is_sync else max(1, self.slots // 2)
        while True:
            if item is None:
                self._thread_ended()
            else:
                self.finished.append(item)
            try:
                item = self.done.get_nowait()
                continue
            except queue.Empty:
                pass
            in_line = len(self.outstanding) - len(self.finished)
            timeout = record_by - time.monotonic()
            starving = not self.job.is_sync and in_line <= batch  # a slot is about to run dry
            if len(self.finished) >= batch or timeout <= 0 or starving or not self.alive:
                return
            try:
                item = self.done.get(timeout=timeout)
            except queue.Empty:
                return

    def _thread_ended(self) -> None:
        self.alive -= 1
        slots_set(token=self.slot_token, slots=self.alive)
        if self.alive == 0 and self.slots == 0:
            self._unfeed()

    def _unfeed(self) -> None:
        """No thread is left to call for the numbers in line: put them back to pending."""
        waiting: list[NumberResult] = []
        while True:
            try:
                item = self.feed.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                waiting.append(item)
        for result in waiting:
            NumberResult.objects.filter(pk=result.pk).held_by(result.lease_token or "").release(
                status=NumberResult.Status.PENDING
            )
            self.outstanding.pop(result.pk, None)

    def _record_and_claim(self) -> None:
        """Record what finished and claim enough to keep every slot busy with numbers in line
        behind it, in one transaction (nothing when neither is needed)."""
        in_line = len(self.outstanding) - len(self.finished)
        want = 0
        if self.claiming and not self.exhausted and not self.rejected and self.slots:
            want = max(0, (1 + NUMBERS_AHEAD_PER_SLOT) * self.slots - in_line)
            if in_line > self.slots and want < max(1, self.slots // 2):
                want = 0  # enough in line; claim a bigger batch later
            if self.job.is_sync:
                want = min(want, self.job.total_numbers - self.claimed)  # no other task claims them
        if not self.finished and not want:
            return
        finished, self.finished = self.finished, []
        checked = (
            not self.breaker_seen
            and not self.health.is_open
            and time.monotonic() - self.breaker_read_at < BREAKER_CHECK_SECONDS
        )
        claim_started = time.monotonic()
        try:
            claim, rejected, written = outcomes_record_and_claim(
                finished,
                job=self.job,
                health=self.health,
                limit=want,
                after=self.after,
                breaker_seen=self.breaker_seen,
                breaker_checked=checked,
            )
        except BaseException:
            self.finished = finished + self.finished  # not recorded: kept for the next try
            raise
        self.final += written
        for result, _ in finished:
            self.outstanding.pop(result.pk, None)
        with self.recorded:
            self.unrecorded -= len(finished)
            self.recorded.notify_all()
        if rejected:
            # The numbers in line would be refused too: they fail without a call.
            self.rejected, self.claiming = True, False
            self._unfeed()
            job_fail_pending(job_id=self.job.pk, status_code=401, message=UPSTREAM_AUTH_SKIPPED_MESSAGE)
        if claim is None:
            return
        self.asked = True
        if not checked and not claim.breaker.is_open:
            self.breaker_read_at = claim_started
        self.held_back = claim.held_back
        self.breaker_seen = claim.breaker.is_open
        self.claimed += len(claim.results)
        # Fewer than asked for: the job has no more to claim now (looked at again at the end).
        self.exhausted = not claim.held_back and (len(claim.results) < want or self._claimed_all())
        self.after = max([self.after, *(result.position for result in claim.results)])
        for result in claim.results:
            self.outstanding[result.pk] = result
            self.feed.put(result)

    def _renew(self) -> None:
        """One UPDATE for every number this task holds, however long its calls take; the slots too."""
        asked_at = time.monotonic()  # before the lease's new end is reckoned from ``now``
        now = timezone.now()
        leases_renew(
            tokens={r.lease_token or "" for r in self.outstanding.values()}, job_id=self.job.pk, now=now
        )
        if slots_renew(token=self.slot_token, now=now):
            self._slots_valid(since=asked_at)
        elif self.alive:
            self._slots_lost()
        if not self.job.is_sync:
            jobs_orphaned_wake()  # jobs whose every task died elsewhere

    def _close(self) -> None:
        with self.recorded:
            self.closing = True
            self.recorded.notify_all()
        for _ in self.loops:
            self.feed.put(None)
        if self.outstanding:
            wait(self.loops)  # calls may be in flight: their slots are given back once they end
        # Otherwise every claimed number is recorded, so no call is in flight: the threads
        # end on their own, and their slots go back now.
        with transaction.atomic():
            if self.job.is_sync:
                commit_unflushed()  # a client waits; the completion's commit flushes it
            slots_set(token=self.slot_token, slots=0)


_pool_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None
_pool_pid: int | None = None


def _calling_threads() -> ThreadPoolExecutor:
    """The process's calling threads, kept between windows (a thread started for every call
    slot of every window costs a request a few milliseconds); workers fork, so the pid is
    checked. Big enough for every window a process runs at once (a web process's threads
    each answering a synchronous request)."""
    global _pool, _pool_pid
    with _pool_lock:
        if _pool is None or _pool_pid != os.getpid():
            _pool = ThreadPoolExecutor(max_workers=CALLING_THREADS_MAX, thread_name_prefix="restore")
            _pool_pid = os.getpid()
        return _pool


def _until(moment: float | None) -> float:
    return float("inf") if moment is None else moment - time.monotonic()


def _held_by_others(*, job_id: int) -> bool:
    """Numbers of the job are leased right now, by some other task."""
    return NumberResult.objects.of_job(job_id).leased(timezone.now()).exists()


def _claimable_left(*, job_id: int) -> bool:
    return NumberResult.objects.of_job(job_id).pending().exists()
