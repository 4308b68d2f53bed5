"""Job records in a SQL database: SQLite on one machine, PostgreSQL for a shop (psycopg 3),
through SQLAlchemy 2 Core. Imported only when ``--records`` / ``BOOKJOB_RECORDS`` names one.

The tables are the old system's ``Job`` and ``JobArtifact``, so a shop's backend reads (and,
as the old clients did with ``analysis_json``'s ``generation_retry``, sets) them directly:

- ``jobs``: one row per job; the columns ``id``, ``status``, ``book_id``, ``language``,
  ``analysis_json``, ``error_reason``, ``created_at``, ``updated_at`` and ``schema_version``
  are the record's own fields, ``record_json`` the rest of it, ``version`` counts updates,
  ``queued_at`` says when a stage waiting for a worker was asked for (the queue's index);
- ``job_artifacts``: one row per artifact (``kind``, ``page``, ``key``, ``sha256``, ``size``,
  ``inputs_sha256``, ``created_at``), written with the record change that adds it, so a query
  made while a job runs sees its pages appear;
- ``job_events``: what the shop is told (``job_id``, ``seq``, ``type``, the ``event`` as JSON),
  one row per status change and artifact stored, written with the change it describes;
- ``job_leases``: which run holds a job (``pipeline.lease``).

An update locks the job's row (``SELECT … FOR UPDATE`` on PostgreSQL; ``BEGIN IMMEDIATE`` on
SQLite, one writer at a time), applies the change, writes the row with ``version + 1`` and
brings the job's artifact rows in line, in one transaction: two writers never lose each
other's update. The schema is Alembic's (:mod:`steps.core.migrations`): ``bookjob db upgrade``
creates or migrates it, and a database at another revision is a one-line setup error.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    create_engine,
    delete,
    event,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.engine import RowMapping, make_url
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError
from sqlalchemy.exc import InterfaceError as SqlInterfaceError

from steps.core import faults
from steps.core.errors import SetupError, TransientError
from steps.core.job import Artifact, JobNotFound, JobRecord
from steps.core.records_base import Change, JobQuery, JobSummary, Records
from steps.core.records_tables import COLUMNS, job_artifacts, job_events, job_leases, jobs, metadata

__all__ = ["HEAD", "KNOWN", "SqlRecords", "job_artifacts", "job_events", "job_leases", "jobs",
           "metadata", "revision", "shown"]

MIGRATIONS = Path(__file__).with_name("migrations")
HEAD = "0003"                     # the newest revision in steps/core/migrations/versions/
KNOWN = ("0001", "0002", "0003")  # every revision this code knows, oldest first


def engine_url(url: str) -> str:
    """``postgresql://`` means psycopg 3 here (SQLAlchemy's own default is psycopg2)."""
    for plain in ("postgresql://", "postgres://"):
        if url.startswith(plain):
            return "postgresql+psycopg://" + url[len(plain):]
    return url


def make_engine(url: str) -> Engine:
    parsed = make_url(engine_url(url))
    if parsed.get_backend_name() != "sqlite":
        return create_engine(parsed, pool_pre_ping=True)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(parsed, connect_args={"timeout": 60})

    @event.listens_for(engine, "connect")
    def _connect(connection: Any, _record: Any) -> None:
        connection.isolation_level = None          # transactions are ours (below), not pysqlite's
        connection.execute("PRAGMA journal_mode=WAL")   # readers never wait for the writer
        connection.execute("PRAGMA foreign_keys=ON")
        connection.execute("PRAGMA busy_timeout=60000")

    @event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        # A writer takes the write lock when it begins: the read it changes is the latest.
        write = connection.get_execution_options().get("write", False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


def shown(url: str) -> str:
    """The URL without its password, for messages."""
    return make_url(engine_url(url)).render_as_string(hide_password=True)


def aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def iso(moment: datetime) -> str:
    text = aware(moment).astimezone(UTC).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


def from_iso(text: str) -> datetime:
    return aware(datetime.fromisoformat(text))


def did_not_answer(where: str, error: OperationalError | SqlInterfaceError) -> TransientError:
    """A database away (refused, reset, locked too long): transient, one line."""
    reason = str(error.orig if error.orig is not None else error).strip().splitlines()[0]
    return TransientError(f"the records database {where} did not answer ({reason})")


def revision(connection: Connection) -> str | None:
    """The schema's Alembic revision, or None where bookjob never made its tables."""
    from sqlalchemy import inspect

    if not inspect(connection).has_table("alembic_version"):
        return None
    found = connection.exec_driver_sql("SELECT version_num FROM alembic_version").first()
    return str(found[0]) if found else None


class SqlRecords(Records):
    _open: dict[str, SqlRecords] = {}

    def __init__(self, url: str) -> None:
        self.url = url
        self.uri = shown(url)
        self.engine = make_engine(url)
        self._checked = False

    @classmethod
    def at(cls, url: str) -> SqlRecords:
        """One backend (one connection pool) per URL and process."""
        if url not in cls._open:
            cls._open[url] = cls(url)
        return cls._open[url]

    def close(self) -> None:
        self.engine.dispose()
        self._open.pop(self.url, None)

    # ---- transactions ------------------------------------------------------------------

    @contextmanager
    def _transaction(self, write: bool = False) -> Iterator[Connection]:
        try:
            with self.engine.connect() as connection:
                if not self._checked:
                    self._check_schema(connection)
                with connection.execution_options(write=write).begin():
                    yield connection
        except (OperationalError, SqlInterfaceError) as e:
            raise did_not_answer(self.uri, e) from e
        except ProgrammingError as e:
            raise SetupError(f"the records database {self.uri} refused a query ({e.orig}); "
                             "run `bookjob db upgrade`.") from e

    def _check_schema(self, connection: Connection) -> None:
        with connection.begin():
            found = revision(connection)
        if found == HEAD:
            self._checked = True
            return
        if found is not None and found not in KNOWN:
            raise SetupError(f"the records database {self.uri} was migrated by a newer bookjob "
                             f"(revision {found}); upgrade bookjob.")
        what = "has no bookjob tables" if found is None else f"is at schema revision {found}"
        raise SetupError(f"the records database {self.uri} {what}; run `bookjob db upgrade "
                         f"--records URL` first.")

    # ---- rows and records --------------------------------------------------------------

    @staticmethod
    def _row(record: JobRecord) -> dict[str, Any]:
        rest = record.model_dump(mode="json", exclude={"job_id", "artifacts", "events", *COLUMNS})
        return {"schema_version": record.schema_version, "status": record.status.value,
                "book_id": record.book_id, "language": record.language,
                "analysis_json": record.analysis.model_dump(mode="json") if record.analysis else None,
                "error_reason": record.error.reason if record.error else None,
                "record_json": rest, "created_at": from_iso(record.created_at),
                "updated_at": from_iso(record.updated_at),
                "queued_at": from_iso(record.queued.at) if record.queued else None}

    @staticmethod
    def _record(row: RowMapping, artifacts: Sequence[RowMapping],
                events: Sequence[RowMapping] = ()) -> JobRecord:
        data = {**row["record_json"], "job_id": row["id"], "schema_version": row["schema_version"],
                "status": row["status"], "book_id": row["book_id"], "language": row["language"],
                "analysis": row["analysis_json"], "created_at": iso(row["created_at"]),
                "updated_at": iso(row["updated_at"])}
        made = [{**(a["extra"] or {}), "kind": a["kind"], "page": a["page"], "key": a["key"],
                 "sha256": a["sha256"], "size": a["size"], "inputs_sha256": a["inputs_sha256"]}
                for a in artifacts]
        data["artifacts"] = sorted(made, key=lambda a: (a["page"] or 0, a["kind"]))
        data["events"] = [e["event"] for e in events]
        return JobRecord.model_validate(data)

    @staticmethod
    def _artifact_row(job_id: str, artifact: Artifact, at: datetime) -> dict[str, Any]:
        return {"job_id": job_id, "kind": artifact.kind, "page": artifact.page,
                "key": artifact.key, "sha256": artifact.sha256, "size": artifact.size,
                "inputs_sha256": artifact.inputs_sha256, "extra": artifact.model_extra or None,
                "created_at": at}

    def _sync_artifacts(self, connection: Connection, job_id: str,
                        rows: Sequence[RowMapping], artifacts: list[Artifact]) -> None:
        """Make the job's artifact rows say what the record says: one row per (kind, page)."""
        old = {(r["kind"], r["page"]): r for r in rows}
        at = datetime.now(UTC)
        wanted = {(a.kind, a.page): self._artifact_row(job_id, a, at) for a in artifacts}
        fields = ("key", "sha256", "size", "inputs_sha256", "extra")
        for place, row in wanted.items():
            before = old.get(place)
            if before is None:
                connection.execute(insert(job_artifacts).values(**row))
            elif any(before[f] != row[f] for f in fields):
                connection.execute(update(job_artifacts).where(job_artifacts.c.id == before["id"])
                                   .values(**row))
        gone = [r["id"] for place, r in old.items() if place not in wanted]
        if gone:
            connection.execute(delete(job_artifacts).where(job_artifacts.c.id.in_(gone)))

    @staticmethod
    def _add_events(connection: Connection, record: JobRecord, written: int) -> None:
        """The record's events after the ``written`` ones already in the table (events are
        only ever appended)."""
        rows = [{"job_id": record.job_id, "seq": e.seq, "type": e.type,
                 "event": e.model_dump(mode="json"), "created_at": from_iso(e.at)}
                for e in record.events[written:]]
        if rows:
            connection.execute(insert(job_events), rows)

    # ---- the interface ----------------------------------------------------------------

    def _create(self, record: JobRecord) -> bool:
        try:
            with self._transaction(write=True) as connection:
                connection.execute(insert(jobs).values(id=record.job_id, version=1,
                                                       **self._row(record)))
                self._sync_artifacts(connection, record.job_id, [], record.artifacts)
                self._add_events(connection, record, 0)
        except IntegrityError:
            return False
        return True

    def _rows(self, connection: Connection, job_id: str, lock: bool = False
              ) -> tuple[RowMapping, Sequence[RowMapping], Sequence[RowMapping]]:
        query = select(jobs).where(jobs.c.id == job_id)
        row = connection.execute(query.with_for_update() if lock else query).mappings().first()
        if row is None:
            raise JobNotFound(f"no job {job_id!r} in {self.uri}")
        artifacts = connection.execute(select(job_artifacts).where(
            job_artifacts.c.job_id == job_id).order_by(job_artifacts.c.id)).mappings().all()
        events = connection.execute(select(job_events.c.event).where(
            job_events.c.job_id == job_id).order_by(job_events.c.seq)).mappings().all()
        return row, artifacts, events

    def read(self, job_id: str) -> JobRecord:
        with self._transaction() as connection:
            return self._record(*self._rows(connection, job_id))

    def exists(self, job_id: str) -> bool:
        with self._transaction() as connection:
            found = connection.execute(select(jobs.c.id).where(jobs.c.id == job_id)).first()
        return found is not None

    def _swap(self, job_id: str, change: Change) -> JobRecord:
        with self._transaction(write=True) as connection:
            row, artifacts, events = self._rows(connection, job_id, lock=True)
            record = self._record(row, artifacts, events)
            change(record)
            faults.point("update")
            connection.execute(update(jobs).where(jobs.c.id == job_id).values(
                version=row["version"] + 1, **self._row(record)))
            self._sync_artifacts(connection, job_id, artifacts, record.artifacts)
            self._add_events(connection, record, len(events))
        return record

    def queue(self) -> list[tuple[str, str]]:
        chosen = select(jobs.c.queued_at, jobs.c.id).where(jobs.c.queued_at.is_not(None)) \
            .order_by(jobs.c.queued_at, jobs.c.id)
        with self._transaction() as connection:
            return [(iso(at), job_id) for at, job_id in connection.execute(chosen)]

    def list(self, query: JobQuery) -> list[JobSummary]:
        chosen = select(jobs.c.id, jobs.c.status, jobs.c.book_id, jobs.c.created_at,
                        jobs.c.updated_at, jobs.c.error_reason, jobs.c.schema_version)
        if query.statuses or query.stuck is not None:
            chosen = chosen.where(jobs.c.status.in_(query.wanted_statuses()))
        if query.book_id is not None:
            chosen = chosen.where(jobs.c.book_id == query.book_id)
        if query.since is not None:
            chosen = chosen.where(jobs.c.created_at >= query.since)
        cutoff = query.cutoff()
        if cutoff is not None:
            chosen = chosen.where(jobs.c.updated_at < cutoff)
        chosen = chosen.order_by(jobs.c.created_at.desc(), jobs.c.id.desc())
        if query.limit:
            chosen = chosen.limit(query.limit)
        with self._transaction() as connection:
            rows = connection.execute(chosen).all()
        return [JobSummary(r.id, r.status, r.book_id, iso(r.created_at), iso(r.updated_at),
                           r.error_reason, r.schema_version) for r in rows]

    def outbox(self) -> builtins.list[str]:
        with self._transaction() as connection:
            return list(connection.execute(select(job_events.c.job_id).where(
                job_events.c.delivered_at.is_(None)).distinct()).scalars())

    def sent(self, job_id: str) -> int:
        with self._transaction() as connection:
            return int(connection.execute(select(func.coalesce(func.max(job_events.c.seq), 0))
                       .where(job_events.c.job_id == job_id,
                              job_events.c.delivered_at.is_not(None))).scalar_one())

    def resend_from(self, job_id: str, seq: int) -> None:
        with self._transaction(write=True) as connection:
            connection.execute(update(job_events).where(
                job_events.c.job_id == job_id, job_events.c.seq >= seq).values(delivered_at=None))

    def _events_added(self, job_id: str) -> None:
        """Nothing to note: the outbox is a query (events not delivered yet)."""

    def mark_sent(self, job_id: str, seq: int, caught_up: bool) -> None:
        with self._transaction(write=True) as connection:
            connection.execute(update(job_events).where(
                job_events.c.job_id == job_id, job_events.c.seq <= seq,
                job_events.c.delivered_at.is_(None)).values(delivered_at=datetime.now(UTC)))

    def read_lease(self, job_id: str) -> tuple[bytes, str] | None:
        with self._transaction() as connection:
            found = connection.execute(select(job_leases.c.holder, job_leases.c.version).where(
                job_leases.c.job_id == job_id)).first()
        return (found.holder.encode(), str(found.version)) if found else None

    def write_lease_if(self, job_id: str, body: bytes, version: str | None) -> bool:
        try:
            with self._transaction(write=True) as connection:
                if version is None:
                    connection.execute(insert(job_leases).values(
                        job_id=job_id, holder=body.decode(), version=1))
                    return True
                done = connection.execute(update(job_leases).where(
                    job_leases.c.job_id == job_id, job_leases.c.version == int(version)).values(
                    holder=body.decode(), version=job_leases.c.version + 1))
                return done.rowcount == 1
        except IntegrityError:
            return False
