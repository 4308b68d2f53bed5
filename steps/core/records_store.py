"""Job records as ``jobs/{job_id}/job.json`` in the store (the default records backend).

Each update is a compare-and-swap on the store (an S3 conditional write, an atomic rename under
a file lock locally), retried with capped, jittered backoff on conflict. A query reads every
record: there is no index (the README says what that costs at 100,000 jobs).

The worker's queue is the records' ``queued`` requests; so that finding them needs no read of
every record, each has a marker ``queue/{at}_{job_id}`` (its key sorts in queue order). A
marker is written before the record that asks, and removed after the record that no longer
does: a crash between leaves a marker too many, which a listing removes once it is a minute
old (a younger one may belong to a request whose record is being written), never a request
without one. Events not yet delivered are noted the same way, ``outbox/{job_id}`` written
before the record that adds them and removed once the sender has caught up.
"""

from __future__ import annotations

import builtins
import json
import random
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

from steps.core import faults
from steps.core.job import JobNotFound, JobRecord
from steps.core.records_base import Change, JobQuery, JobSummary, Records, dump, newest_first
from steps.core.store import S3Store, Store, job_key


class StoreRecords(Records):
    """``jobs/{job_id}/job.json`` in the store, changed by the store's compare-and-swap."""

    def __init__(self, store: Store, attempts: int = 200) -> None:
        self.store = store
        self.attempts = attempts     # conflicting writes before an update gives up
        self.uri = "store"

    def _create(self, record: JobRecord) -> bool:
        return self.store.write_if(job_key(record.job_id), dump(record), None)

    def read(self, job_id: str) -> JobRecord:
        try:
            return JobRecord.model_validate_json(self.store.read(job_key(job_id)))
        except FileNotFoundError:
            raise JobNotFound(f"no job {job_id!r} in {self.store.uri}") from None

    def exists(self, job_id: str) -> bool:
        return self.store.exists(job_key(job_id))

    def job_ids(self) -> list[str]:
        """Every job with a record: one listing of ``jobs/`` (its folders, not their files)."""
        return [p.rstrip("/").rpartition("/")[2] for p in self.store.folders("jobs/")]

    def _swap(self, job_id: str, change: Change) -> JobRecord:
        key = job_key(job_id)
        current = self.store.read_versioned(key)
        for attempt in range(self.attempts):
            if current is None:
                raise JobNotFound(f"no job {job_id!r} in {self.store.uri}")
            data, version = current
            record = JobRecord.model_validate_json(data)
            before, events = marker(record), len(record.events)
            change(record)
            after = marker(record)
            body = dump(record)
            if after is not None and after != before:
                self.store.write(after, b"")
            if len(record.events) > events:     # noted before the record: never an event
                self._events_added(job_id)       # without its note

            faults.point("update")
            written = self.store.write_if(key, body, version)
            if not written:
                current = self.store.read_versioned(key)
                # A conditional write whose answer was lost (a timeout, then the client's retry
                # met our own write) reads as a conflict, though the record holds this change.
                written = current is not None and current[0] == body
            if written:
                if before is not None and before != after:
                    self.store.delete(before)
                return record
            time.sleep(random.uniform(0, min(0.2, 0.002 * 2 ** min(attempt, 7))))
        raise RuntimeError(f"job {job_id}: gave up after {self.attempts} conflicting updates")

    def queue(self) -> list[tuple[str, str]]:
        found = []
        for key in self.store.list(QUEUE):
            at, _, job_id = key[len(QUEUE):].partition("_")
            try:
                record = self.read(job_id)
            except (JobNotFound, ValueError):
                record = None
            if record is not None and record.queued is not None and marker(record) == key:
                found.append((record.queued.at, job_id))
            elif _age_s(at) > STALE_S:   # answered, or asked again since (a young one may be
                self.store.delete(key)   # a request whose record is being written right now)
        return sorted(found)

    def list(self, query: JobQuery) -> list[JobSummary]:
        # No index: every record is read.
        def summary(job_id: str) -> JobSummary | None:
            try:
                return JobSummary.of(self.read(job_id))
            except (JobNotFound, ValueError):   # gone meanwhile, or not a record
                return None

        workers = 16 if isinstance(self.store, S3Store) else 1
        with ThreadPoolExecutor(max_workers=workers) as pool:
            found = [s for s in pool.map(summary, self.job_ids()) if s is not None]
        return newest_first((s for s in found if query.matches(s)), query.limit)

    def outbox(self) -> builtins.list[str]:
        return [key[len(OUTBOX):] for key in self.store.list(OUTBOX)]

    def sent(self, job_id: str) -> int:
        try:
            return int(json.loads(self.store.read(sent_key(job_id)))["seq"])
        except FileNotFoundError:
            return 0

    def mark_sent(self, job_id: str, seq: int, caught_up: bool) -> None:
        self.store.write(sent_key(job_id), json.dumps({"seq": seq}).encode())
        if caught_up:
            self.store.delete(f"{OUTBOX}{job_id}")
            # an event added meanwhile, whose note this removed, is noted again
            if len(self.read(job_id).events) > seq:
                self._events_added(job_id)

    def resend_from(self, job_id: str, seq: int) -> None:
        self._events_added(job_id)
        self.store.write(sent_key(job_id), json.dumps({"seq": max(0, seq - 1)}).encode())

    def _events_added(self, job_id: str) -> None:
        self.store.write(f"{OUTBOX}{job_id}", b"")

    def read_lease(self, job_id: str) -> tuple[bytes, str] | None:
        return self.store.read_versioned(lease_key(job_id))

    def write_lease_if(self, job_id: str, body: bytes, version: str | None) -> bool:
        return self.store.write_if(lease_key(job_id), body, version)


def lease_key(job_id: str) -> str:
    return f"jobs/{job_id}/lease.json"


def sent_key(job_id: str) -> str:
    """How far the job's events are delivered: ``{"seq": n}``."""
    return f"jobs/{job_id}/events-sent.json"


OUTBOX = "outbox/"   # one empty object per job whose events may not all be delivered


QUEUE = "queue/"
STALE_S = 60.0    # a marker without its request is removed once it is this old


def _age_s(at: str) -> float:
    """Seconds since a marker's time (its key's first part); a key that is no time: old."""
    try:
        moment = datetime.strptime(at, "%Y%m%dT%H%M%S.%fZ").replace(tzinfo=UTC)
    except ValueError:
        return float("inf")
    return (datetime.now(UTC) - moment).total_seconds()


def marker(record: JobRecord) -> str | None:
    """The queue marker of the record's request, or None if it asks for nothing."""
    if record.queued is None:
        return None
    at = record.queued.at.replace(":", "").replace("-", "")   # a key, sorting like the time
    return f"{QUEUE}{at}_{record.job_id}"
