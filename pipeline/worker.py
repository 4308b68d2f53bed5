"""``bookjob worker``: the stages queued in the job records, run on this machine, a few at a time.

The queue is the records' own: a queued stage is a request in the job's record
(:class:`~steps.core.job.QueuedStage`, put there by :func:`enqueue`), and the job keeps the
status the old clients know until a worker starts it. A worker takes requests oldest first
and runs at most ``slots`` at once (Celery's ``worker_prefetch_multiplier=1``), each through
the embedded engine in this process, so the fork server and its imports serve every job, and
each slot keeps its render step, browser up, from one job to the next
(:class:`pipeline.handoff.Slot`).

Delivery is Celery's ``acks_late``: taking a request means taking the job's lease and counting
one delivery; the request leaves the record only once its run has ended (done, or failed and
marked). A worker that dies (kill -9, power loss) leaves the request and a lease whose holder
is gone: the next worker to look (a restarted one included) takes it again, and the engine
resumes where the dead run stopped (stored pages are kept). After ``max_attempts``
deliveries (analysis 4, other stages 3: one plus Celery's ``max_retries`` 3/2) the job is
failed with the reason. SIGTERM: nothing new is taken; running stages get ``grace_s`` to
finish, then are stopped and handed back (their delivery not counted).

The worker says it is alive in the store (``workers/{host}-{pid}.json``, every few seconds),
so that :class:`pipeline.api.BookJobs` can warn when orders are queued and no worker is seen.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.handoff import Slot
from pipeline.lease import Busy, Lease
from pipeline.local import Cancelled, LocalEngine, StepFailed
from pipeline.sender import Sender
from steps.core.errors import SetupError, TransientError
from steps.core.job import JobNotFound, JobRecord, QueuedStage, now
from steps.core.records import Records
from steps.core.store import Store, StoreError

# Deliveries of a stage before its job is failed: one, plus Celery's max_retries (3/2).
DELIVERIES = {"analyze": 4}
DEFAULT_DELIVERIES = 3
BEAT_S = 5.0            # how often a worker says it is alive (and counts its queue)
SEEN_S = 30.0           # a worker silent for longer is not counted as seen
WORKERS = "workers/"


class AlreadyQueued(Exception):
    """The job already has a stage waiting for (or running on) a worker."""

    def __init__(self, queued: QueuedStage) -> None:
        super().__init__(queued.stage)
        self.queued = queued


def enqueue(records: Records, params: dict[str, str], stage: str) -> JobRecord:
    """Ask for ``stage`` of the job in ``params``: a worker runs it. A job has one request at a
    time (:class:`AlreadyQueued` while one waits or runs)."""

    def ask(record: JobRecord) -> None:
        if record.queued is not None:
            raise AlreadyQueued(record.queued)
        record.queued = QueuedStage(stage=stage, at=now(), params=params,
                                    max_attempts=DELIVERIES.get(stage, DEFAULT_DELIVERIES))

    return records.update(params["job_id"], ask)


def ahead(records: Records, job_id: str) -> int | None:
    """How many queued requests are before this job's (None: it asks for nothing)."""
    queue = [j for _, j in records.queue()]
    return queue.index(job_id) if job_id in queue else None


def workers_seen(store: Store, within_s: float = SEEN_S) -> list[dict]:
    """The workers that said they were alive within the last ``within_s`` seconds."""
    seen = []
    for key in store.list(WORKERS):
        try:
            beat = json.loads(store.read(key))
        except (FileNotFoundError, ValueError):
            continue
        if isinstance(beat, dict) and time.time() - float(beat.get("beat", 0)) <= within_s:
            seen.append(beat)
    return seen


def cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def default_slots() -> int:
    """One slot per core, at most one per 1.5 GiB of memory: a slot's job keeps two cores
    busy at times (its render step's browser beside its backgrounds), and holds a browser and
    a few print pages."""
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        memory = 0
    by_memory = int(memory // (1.5 * 2**30)) if memory else cores()
    return max(1, min(cores(), by_memory))


@dataclass
class Running:
    job_id: str
    stage: str
    lease: Lease
    queued: QueuedStage
    started: float = field(default_factory=time.monotonic)
    engine: LocalEngine | None = None
    future: Future | None = None


class Worker:
    def __init__(self, store: Store, records: Records, slots: int, *, poll_s: float = 0.2,
                 grace_s: float = 60.0, say: Callable[[str], None] = lambda _: None,
                 metrics: object | None = None, sender: Sender | None = None) -> None:
        self.store, self.records, self.slots = store, records, slots
        self.poll_s, self.grace_s, self.say = poll_s, grace_s, say
        self.metrics = metrics
        self.sender = sender or Sender(records, say=say)   # the jobs' events, apart from the work
        self.stopping = threading.Event()
        self.running: dict[str, Running] = {}
        self.lock = threading.Lock()
        self.name = f"{socket.gethostname()}-{os.getpid()}"
        self.finished = 0
        self.free: queue.SimpleQueue[Slot] = queue.SimpleQueue()   # slots no job runs in
        self.chunks = max(1, cores() // slots)   # a job's chunks side by side: its share of the cores

    # ---- the loop ----------------------------------------------------------------------

    def run(self) -> None:
        """Take and run queued stages until :meth:`stop` (SIGTERM, SIGINT)."""
        beat = threading.Thread(target=self._beat, daemon=True)
        beat.start()
        _, stop_sending = self.sender.start()
        with tempfile.TemporaryDirectory(prefix="bookjob-worker-") as folder, \
                ThreadPoolExecutor(max_workers=self.slots, thread_name_prefix="slot") as pool:
            kept = [Slot(Path(folder)) for _ in range(self.slots)]
            for slot in kept:
                self.free.put(slot)
            try:
                while not self.stopping.is_set():
                    try:
                        self._fill(pool)
                    except (TransientError, StoreError) as e:   # the records or the store away
                        self.say(f"worker: {e}; trying again")
                    self.stopping.wait(self.poll_s)
                self._drain()
            finally:
                for slot in kept:
                    slot.close()
                stop_sending.set()
        self._say_gone()

    def stop(self, *_: object) -> None:
        self.stopping.set()

    def install_signals(self) -> None:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)

    def _fill(self, pool: ThreadPoolExecutor) -> None:
        with self.lock:
            free = self.slots - len(self.running)
        if free <= 0:
            return
        for _, job_id in self.records.queue():
            if self.stopping.is_set() or free <= 0:
                return
            with self.lock:
                if job_id in self.running:
                    continue
            taken = self._take(job_id)
            if taken is None:
                continue
            with self.lock:
                self.running[job_id] = taken
            taken.future = pool.submit(self._run, taken)
            free -= 1

    def _take(self, job_id: str) -> Running | None:
        """The job's lease and one more delivery of its request; None if another run holds
        it or it asks for nothing now."""
        try:
            asked = self.records.read(job_id).queued
        except JobNotFound:
            return None
        if asked is None:
            return None
        lease = Lease(self.records, job_id, asked.stage)
        try:
            lease.acquire()
        except Busy:
            return None
        try:
            record = self.records.update(job_id, _delivered(asked.at))
        except (JobNotFound, SetupError):
            lease.release()
            return None
        queued = record.queued
        if queued is None or queued.at != asked.at:   # answered or replaced meanwhile
            lease.release()
            return None
        if queued.attempts > queued.max_attempts:
            message = (f"The {queued.stage} stage was started {queued.attempts - 1} times and "
                       "its run never finished (the worker stopped each time); run the stage "
                       "again to resume it.")
            self.records.mark_failed(job_id, "worker", "attempts_exhausted", message)
            self.records.update(job_id, _answered(queued.at))
            lease.release()
            self._count("failed", queued.stage, "attempts_exhausted")
            return None
        self.say(f"worker: {job_id} {queued.stage}: delivery {queued.attempts} of "
                 f"{queued.max_attempts}")
        return Running(job_id, queued.stage, lease, queued)

    def _run(self, run: Running) -> None:
        slot = self.free.get()
        engine = LocalEngine(self.store, run.queued.params, records=self.records,
                             run_id=run.lease.run_id, progress=lambda line: None,
                             env={"BOOKJOB_NOTIFY_URL": ""},   # the worker's sender sends
                             workers=self.chunks, slot=slot)
        run.engine = engine
        outcome, reason = "completed", ""
        handed_back = False
        try:
            engine.run(run.stage)
        except Cancelled:
            handed_back = True
        except StepFailed as failed:
            outcome = "failed"
            record = self._record(run.job_id)
            reason = record.error.reason if record and record.error else f"exit_{failed.run.exit_code}"
        except Exception as e:  # noqa: BLE001 - the store or records away: delivered again later
            outcome, reason = "error", type(e).__name__
            self.say(f"worker: {run.job_id} {run.stage}: {e}; it stays queued")
            handed_back = True
        try:
            if handed_back:
                self.records.update(run.job_id, _handed_back(run.queued.at))
            else:
                self.records.update(run.job_id, _answered(run.queued.at))
        except Exception as e:  # noqa: BLE001 - the request stays; the next delivery answers it
            self.say(f"worker: {run.job_id}: could not update its request ({e})")
        finally:
            self.free.put(slot)
            run.lease.release()
            with self.lock:
                self.running.pop(run.job_id, None)
                self.finished += 1
        self._observe()
        self.sender.wake()
        if not handed_back:
            self._count(outcome, run.stage, reason, time.monotonic() - run.started)
            self.say(f"worker: {run.job_id} {run.stage}: {outcome}"
                     + (f" ({reason})" if reason else ""))

    def _drain(self) -> None:
        """Stopping: let the running stages finish for ``grace_s``, then hand them back."""
        deadline = time.monotonic() + self.grace_s
        while time.monotonic() < deadline:
            with self.lock:
                if not self.running:
                    return
            time.sleep(0.1)
        with self.lock:
            left = list(self.running.values())
        for run in left:
            self.say(f"worker: handing {run.job_id} {run.stage} back")
            if run.engine is not None:
                run.engine.cancel()
        for run in left:
            if run.future is not None:
                run.future.result()

    # ---- saying it is alive, and counting --------------------------------------------------

    def _beat(self) -> None:
        key = f"{WORKERS}{self.name}.json"
        while not self.stopping.is_set():
            with self.lock:
                running = sorted(self.running)
            body = {"worker": self.name, "host": socket.gethostname(), "pid": os.getpid(),
                    "slots": self.slots, "running": running, "beat": time.time()}
            try:
                self.store.write(key, json.dumps(body).encode())
            except Exception:  # noqa: BLE001 - the next beat tries again
                pass
            self._observe()      # (the queue's depth reads every queued record on the store)
            self.stopping.wait(BEAT_S)

    def _say_gone(self) -> None:
        try:
            self.store.delete(f"{WORKERS}{self.name}.json")
        except Exception:  # noqa: BLE001 - it goes stale on its own
            pass

    def _record(self, job_id: str) -> JobRecord | None:
        try:
            return self.records.read(job_id)
        except Exception:  # noqa: BLE001
            return None

    def _observe(self) -> None:
        if self.metrics is not None:
            with self.lock:
                running = len(self.running)
            try:
                depth = len(self.records.queue()) - running
            except Exception:  # noqa: BLE001
                return
            self.metrics.gauges(max(depth, 0), running)  # type: ignore[attr-defined]

    def _count(self, outcome: str, stage: str, reason: str, seconds: float | None = None) -> None:
        if self.metrics is not None:
            self.metrics.finished(stage, outcome, reason, seconds)  # type: ignore[attr-defined]


def _delivered(at: str) -> Callable[[JobRecord], None]:
    def change(record: JobRecord) -> None:
        if record.queued is not None and record.queued.at == at:
            record.queued.attempts += 1
    return change


def _handed_back(at: str) -> Callable[[JobRecord], None]:
    def change(record: JobRecord) -> None:
        if record.queued is not None and record.queued.at == at:
            record.queued.attempts = max(0, record.queued.attempts - 1)
    return change


def _answered(at: str) -> Callable[[JobRecord], None]:
    def change(record: JobRecord) -> None:
        if record.queued is not None and record.queued.at == at:
            record.queued = None
    return change
