"""Job records as ``jobs/{job_id}/job.json`` in the store (the default records backend).

Each update is a compare-and-swap on the store (an S3 conditional write, an atomic rename under
a file lock locally), retried with capped, jittered backoff on conflict. A query reads every
record: there is no index (the README says what that costs at 100,000 jobs).
"""

from __future__ import annotations

import random
import time
from concurrent.futures import ThreadPoolExecutor

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
            change(record)
            body = dump(record)
            faults.point("update")
            written = self.store.write_if(key, body, version)
            if not written:
                current = self.store.read_versioned(key)
                # A conditional write whose answer was lost (a timeout, then the client's retry
                # met our own write) reads as a conflict, though the record holds this change.
                written = current is not None and current[0] == body
            if written:
                return record
            time.sleep(random.uniform(0, min(0.2, 0.002 * 2 ** min(attempt, 7))))
        raise RuntimeError(f"job {job_id}: gave up after {self.attempts} conflicting updates")

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

    def read_lease(self, job_id: str) -> tuple[bytes, str] | None:
        return self.store.read_versioned(lease_key(job_id))

    def write_lease_if(self, job_id: str, body: bytes, version: str | None) -> bool:
        return self.store.write_if(lease_key(job_id), body, version)


def lease_key(job_id: str) -> str:
    return f"jobs/{job_id}/lease.json"
