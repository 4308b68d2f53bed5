"""One job, one run at a time: a run's lease on its job, kept in the job records.

The lease (``jobs/{job_id}/lease.json`` in the store, a ``job_leases`` row on the SQL records
backends) says which run holds the job: its run id, host, pid, stage and a heartbeat the
holder renews every third of ``BOOKJOB_LEASE_S``. It is taken and given back with the
records' compare-and-swap, so two runs started together never both hold it.

Whether the holder lives is asked where it can be known: on the holder's own host, a lease
is held exactly while its process is alive (its pid, with the start time the lease recorded:
a pid the kernel gave to another process since does not count), whatever its heartbeat says
(a stopped or starved process is late, not dead); from another host only the heartbeat can
tell, and one older than ``BOOKJOB_LEASE_S`` is free. A free lease is taken over by the next
run, and ``bookjob status`` reads it as an interrupted run (see :func:`interrupted`).
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

from steps.core.records import Records, lease_key
from steps.core.settings import settings

EXIT_BUSY = 4   # the job is being run elsewhere; nothing was done and the job is untouched
__all__ = ["EXIT_BUSY", "Busy", "Holder", "Lease", "holder", "interrupted", "lease_key"]


def process_start(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks since boot), or None if it is gone or a
    zombie; None too where there is no /proc (then only its existence is known)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    except OSError:
        return None
    fields = text.rpartition(")")[2].split()   # after "(comm)": state is field 3, start 22
    return None if fields[0] in ("Z", "X") else int(fields[19])


def alive(pid: int, started: int | None = None) -> bool:
    """Process ``pid`` of this host lives (and, given its start time, is still that process)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass                                      # it exists; another user's
    if not Path("/proc").is_dir():
        return True
    now = process_start(pid)
    return now is not None and (started is None or now == started)


@dataclass
class Holder:
    run_id: str
    host: str
    pid: int
    stage: str
    started: float
    heartbeat: float
    released: bool = False
    pid_start: int | None = None   # the process's start time (older leases: unknown)

    def describe(self) -> str:
        since = time.strftime("%H:%M:%S", time.gmtime(self.started))
        return (f"run {self.run_id} ({self.stage}, pid {self.pid} on {self.host}, since "
                f"{since} UTC)")

    def dead(self, lease_s: float) -> bool:
        """Released; on this host, a process that is gone; elsewhere, silent for longer than
        a lease."""
        if self.released:
            return True
        if self.host == socket.gethostname():
            return not alive(self.pid, self.pid_start)
        return time.time() - self.heartbeat > lease_s


def holder(records: Records, job_id: str) -> Holder | None:
    found = records.read_lease(job_id)
    if found is None:
        return None
    try:
        return Holder(**json.loads(found[0]))
    except (ValueError, TypeError):
        return None


class Busy(Exception):
    def __init__(self, job_id: str, by: Holder) -> None:
        super().__init__(f"job {job_id} is being run by {by.describe()}")
        self.holder = by


class Lease:
    """The lease of one run on one job; a context manager that renews it while the run runs."""

    def __init__(self, records: Records, job_id: str, stage: str, run_id: str | None = None) -> None:
        self.records, self.job_id, self.stage = records, job_id, stage
        self.run_id = run_id or uuid.uuid4().hex[:12]
        self.lease_s = settings().lease_s
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None
        self.lost = False

    def _body(self, **change) -> bytes:
        now = time.time()
        me = Holder(self.run_id, socket.gethostname(), os.getpid(), self.stage,
                    getattr(self, "_started", now), now, pid_start=process_start(os.getpid()))
        return json.dumps({**asdict(me), **change}).encode()

    def try_acquire(self) -> None:
        """Take the lease, or raise :class:`Busy` naming the live holder."""
        current = self.records.read_lease(self.job_id)
        if current is not None:
            try:
                other = Holder(**json.loads(current[0]))
            except (ValueError, TypeError):
                other = None
            if other is not None and other.run_id != self.run_id and not other.dead(self.lease_s):
                raise Busy(self.job_id, other)
        self._started = time.time()
        if not self.records.write_lease_if(self.job_id, self._body(),
                                           current[1] if current else None):
            latest = holder(self.records, self.job_id)
            raise Busy(self.job_id, latest or Holder("?", "?", 0, "?", time.time(), time.time()))

    def acquire(self, wait_s: float = 0.0, poll_s: float = 1.0,
                waiting=lambda busy: None) -> None:
        """Take the lease, waiting up to ``wait_s`` for the holder to finish."""
        deadline = time.monotonic() + wait_s
        told = False
        while True:
            try:
                self.try_acquire()
                break
            except Busy as busy:
                if time.monotonic() >= deadline:
                    raise
                if not told:
                    waiting(busy)
                    told = True
                time.sleep(poll_s)
        self._beat = threading.Thread(target=self._renew, daemon=True)
        self._beat.start()

    def _swap(self, **change) -> bool:
        current = self.records.read_lease(self.job_id)
        if current is None or json.loads(current[0]).get("run_id") != self.run_id:
            return False
        return self.records.write_lease_if(self.job_id, self._body(**change), current[1])

    def _renew(self) -> None:
        while not self._stop.wait(self.lease_s / 3):
            try:
                if not self._swap():
                    self.lost = True
            except Exception:  # noqa: BLE001 - a store hiccup: the next beat tries again
                pass

    def release(self) -> None:
        self._stop.set()
        if self._beat is not None:
            self._beat.join()
        try:
            self._swap(released=True)
        except Exception:  # noqa: BLE001 - an unreleased lease expires on its own
            pass

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def interrupted(records: Records, job_id: str) -> Holder | None:
    """The last local run of the job if it is over (released, or killed: dead or silent);
    None while one runs, or if no local run ever held the job."""
    found = holder(records, job_id)
    if found is None or found.released:
        return found
    return found if found.dead(settings().lease_s) else None
