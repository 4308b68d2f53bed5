"""What a job-records backend is (:class:`Records`), and the queries it answers.

The backends: :mod:`steps.core.records_store` (the store's JSON objects) and
:mod:`steps.core.records_sql` (SQLite, PostgreSQL); :mod:`steps.core.records` picks one.
Records are versioned (:data:`~steps.core.job.SCHEMA_VERSION`): fields this version does not
know are kept through every update, and a record a newer bookjob wrote is read and shown but
never changed (:class:`NewerRecord`, exit 1).
"""

from __future__ import annotations

import builtins
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from steps.core import notify
from steps.core.errors import SetupError
from steps.core.job import (
    GENERATING,
    SCHEMA_VERSION,
    TRANSITIONS,
    Event,
    JobError,
    JobRecord,
    Status,
    StatusChange,
    now,
)

Change = Callable[[JobRecord], None]


class NewerRecord(SetupError):
    """A record written by a newer bookjob: shown as it is, never changed by this one."""


def check_writable(record: JobRecord) -> None:
    """Refuse to change a record this version cannot represent faithfully."""
    if record.schema_version > SCHEMA_VERSION or record.status not in TRANSITIONS:
        raise NewerRecord(
            f"job {record.job_id} was written by a newer bookjob (record schema "
            f"{record.schema_version}, status {record.status.value!r}; this bookjob knows schema "
            f"{SCHEMA_VERSION}); upgrade bookjob to change it.")


@dataclass(frozen=True)
class JobQuery:
    """What ``bookjob jobs`` and ``BookJobs.list`` ask for; every field narrows the answer."""

    statuses: tuple[str, ...] = ()
    book_id: str | None = None
    since: datetime | None = None      # created at or after
    stuck: timedelta | None = None     # in a generating status, unchanged for this long
    limit: int | None = None

    def cutoff(self) -> datetime | None:
        return datetime.now(UTC) - self.stuck if self.stuck is not None else None

    def wanted_statuses(self) -> tuple[str, ...]:
        """The statuses asked for, narrowed to the generating ones by ``stuck``."""
        if self.stuck is None:
            return self.statuses
        generating = tuple(s.value for s in GENERATING)
        return tuple(s for s in self.statuses if s in generating) if self.statuses else generating

    def matches(self, summary: JobSummary) -> bool:
        statuses = self.wanted_statuses()
        if (self.statuses or self.stuck is not None) and summary.status not in statuses:
            return False
        if self.book_id is not None and summary.book_id != self.book_id:
            return False
        if self.since is not None and parse_time(summary.created_at) < self.since:
            return False
        cutoff = self.cutoff()
        return cutoff is None or parse_time(summary.updated_at) < cutoff


@dataclass(frozen=True)
class JobSummary:
    """One line of ``bookjob jobs``."""

    job_id: str
    status: str
    book_id: str | None
    created_at: str
    updated_at: str
    error_reason: str | None = None
    schema_version: int = SCHEMA_VERSION
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @classmethod
    def of(cls, record: JobRecord) -> JobSummary:
        return cls(record.job_id, record.status.value, record.book_id, record.created_at,
                   record.updated_at, record.error.reason if record.error else None,
                   record.schema_version)

    def as_dict(self) -> dict[str, Any]:
        document = asdict(self)
        document.pop("extra")
        return document


def parse_time(text: str) -> datetime:
    """A record's ISO time (``…Z``) as an aware datetime; a naive one is taken as UTC."""
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def newest_first(summaries: Iterable[JobSummary], limit: int | None) -> list[JobSummary]:
    ordered = sorted(summaries, key=lambda s: (parse_time(s.created_at), s.job_id), reverse=True)
    return ordered[:limit] if limit else ordered


class Records(ABC):
    """Job records. ``update`` is a compare-and-swap: two writers never lose each other's change."""

    uri: str

    @abstractmethod
    def _create(self, record: JobRecord) -> bool:
        """Write a new record; False if one with its id exists."""

    @abstractmethod
    def read(self, job_id: str) -> JobRecord:
        """The record; :class:`JobNotFound` if there is none."""

    @abstractmethod
    def exists(self, job_id: str) -> bool: ...

    @abstractmethod
    def _swap(self, job_id: str, change: Change) -> JobRecord:
        """Apply ``change`` to the current record atomically (it may be called more than once)."""

    @abstractmethod
    def queue(self) -> list[tuple[str, str]]:
        """The jobs with a queued stage: (when it was asked for, job id), oldest first."""

    @abstractmethod
    def list(self, query: JobQuery) -> list[JobSummary]:
        """The jobs the query asks for, newest first."""

    @abstractmethod
    def outbox(self) -> builtins.list[str]:
        """The jobs that may have events not delivered yet (the sender reads each)."""

    @abstractmethod
    def sent(self, job_id: str) -> int:
        """The last of the job's events that is settled (delivered, or given up), in order;
        0 for none."""

    @abstractmethod
    def mark_sent(self, job_id: str, seq: int, caught_up: bool) -> None:
        """Events up to ``seq`` are settled; ``caught_up``: that was the job's last one."""

    @abstractmethod
    def resend_from(self, job_id: str, seq: int) -> None:
        """Events from ``seq`` on are to be delivered again."""

    @abstractmethod
    def _events_added(self, job_id: str) -> None:
        """A new job's events are about to be written (the store backend notes it)."""

    @abstractmethod
    def read_lease(self, job_id: str) -> tuple[bytes, str] | None:
        """The lease on the job (``pipeline.lease``) and its version, or None."""

    @abstractmethod
    def write_lease_if(self, job_id: str, body: bytes, version: str | None) -> bool:
        """Write the lease if it is still at ``version`` (None: only if there is none)."""

    def create(self, record: JobRecord) -> bool:
        """Write a new record with its first status; False if a record with that id exists."""
        record.schema_version = SCHEMA_VERSION
        record.status_history = [StatusChange(status=record.status, at=now())]
        record.events = []
        add_events(record, 0, set())
        self._events_added(record.job_id)
        created = self._create(record)
        if created:
            notify.events_added(record.job_id, record.events)
        return created

    def restore(self, record: JobRecord) -> bool:
        """Write a record as it is (``bookjob db import``); False if one with its id exists."""
        return self._create(record)

    def update(self, job_id: str, change: Change) -> JobRecord:
        """Apply ``change`` to the current record; a record of a newer bookjob is refused."""
        added: list[int] = []

        def apply(record: JobRecord) -> None:
            check_writable(record)
            statuses, stored = len(record.status_history), stored_artifacts(record)
            change(record)
            record.schema_version = SCHEMA_VERSION
            record.updated_at = now()
            events = len(record.events)
            add_events(record, statuses, stored)
            added[:] = [len(record.events) - events]

        record = self._swap(job_id, apply)
        if added and added[0]:
            notify.events_added(job_id, record.events[-added[0]:])
        return record

    def mark_failed(self, job_id: str, step: str, reason: str, message: str) -> JobRecord:
        """The job becomes ``analysis_failed`` (during analysis) or ``generation_failed``."""

        def fail(record: JobRecord) -> None:
            analysing = record.status in (Status.ANALYZING, Status.ANALYSIS_FAILED)
            target = Status.ANALYSIS_FAILED if analysing else Status.GENERATION_FAILED
            if record.status != target:
                record.move_to(target)
            record.error = JobError(step=step, reason=reason, message=message)

        return self.update(job_id, fail)


def stored_artifacts(record: JobRecord) -> set[tuple[str, int | None, str, str]]:
    return {(a.kind, a.page, a.key, a.sha256) for a in record.artifacts}


def add_events(record: JobRecord, statuses_before: int,
               stored_before: set[tuple[str, int | None, str, str]]) -> None:
    """Append to the record's events what a change did to it: each artifact it stored (new,
    or made again with other bytes), then each status it entered. Part of the same record
    write on every backend, so an event is there exactly when its change is."""
    at = now()
    new = [Event(seq=0, type="artifact", at=at, kind=a.kind, page=a.page, key=a.key,
                 sha256=a.sha256)
           for a in record.artifacts if (a.kind, a.page, a.key, a.sha256) not in stored_before]
    new += [Event(seq=0, type="status", at=c.at, status=c.status.value)
            for c in record.status_history[statuses_before:]]
    for event in new:
        event.seq = len(record.events) + 1
        record.events.append(event)


def dump(record: JobRecord) -> bytes:
    return record.model_dump_json(indent=2).encode()
