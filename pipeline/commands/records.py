"""``bookjob jobs`` and ``bookjob db upgrade | import``: the job records as a shop queries them.

``jobs`` lists jobs newest first, by status, book, age or staleness: an indexed query on the
SQL records backends, a read of every record on ``store``. ``db upgrade`` creates or migrates
the records database's schema (Alembic); ``db import`` copies a store's records into it.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer

from pipeline.commands.app import App, JsonOpt, RecordsOpt, StoreOpt, app, fail, records_at, say, store_at
from steps.core.errors import SetupError
from steps.core.job import JobNotFound
from steps.core.records import JobQuery, StoreRecords, check_url
from steps.core.store import open_store
from steps.protocol import EXIT_FAILURE, EXIT_USAGE

DURATION = re.compile(r"(\d+)\s*([smhdw])")
UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str, option: str) -> timedelta:
    """``90s``, ``30m``, ``1h``, ``2d``, ``1w`` or combined (``1h30m``)."""
    cleaned = text.strip().lower()
    parts = DURATION.findall(cleaned)
    if not parts or DURATION.sub("", cleaned).strip():
        fail(EXIT_USAGE, f"{option} takes a duration like 30m, 1h or 2d, not {text!r}")
    return timedelta(seconds=sum(int(n) * UNIT_S[unit] for n, unit in parts))


def parse_since(text: str) -> datetime:
    """A time (``2026-12-01``, ``2026-12-01T08:00Z``) or a duration ago (``1d``)."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        return datetime.now(UTC) - parse_duration(text, "--since")
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@app.command()
def jobs(
    status: Annotated[list[str] | None, typer.Option(
        "--status", help="Only jobs in this status (repeat for several).")] = None,
    book: Annotated[str | None, typer.Option("--book", help="Only jobs of this book id.")] = None,
    since: Annotated[str | None, typer.Option(
        "--since", help="Only jobs created since: a time (2026-12-01T08:00Z) or a duration "
                        "ago (1d).")] = None,
    stuck: Annotated[str | None, typer.Option(
        "--stuck", help="Only jobs in a generating status whose record has not changed for "
                        "this long (30m, 1h, 2d).")] = None,
    limit: Annotated[int | None, typer.Option("--limit", help="At most this many jobs.")] = None,
    store: StoreOpt = None,
    records: RecordsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List jobs, newest first: one line each (--json: a JSON list of objects)."""
    held = records_at(store_at(store), records)
    query = JobQuery(statuses=tuple(status or ()), book_id=book,
                     since=parse_since(since) if since else None,
                     stuck=parse_duration(stuck, "--stuck") if stuck else None, limit=limit)
    found = held.list(query)
    if as_json:
        typer.echo(json.dumps([s.as_dict() for s in found], indent=2, ensure_ascii=False))
        return
    if not found:
        say("no jobs")
        return
    rows = [("JOB", "STATUS", "BOOK", "CREATED", "UPDATED", "ERROR")] + [
        (s.job_id, s.status, s.book_id or "-", s.created_at, s.updated_at, s.error_reason or "")
        for s in found]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        typer.echo("  ".join(v.ljust(w) for v, w in zip(row, widths)) + "  " + row[-1])


db = App(help="The records database: create or migrate its schema, import records.",
                 no_args_is_help=True)
app.add_typer(db, name="db")


def _sql_url(records: str | None) -> str:
    from steps.core.settings import settings

    try:
        url = check_url(records or settings().records)
    except SetupError as e:
        fail(EXIT_USAGE, str(e))
    if url == "store":
        fail(EXIT_USAGE, "the store keeps its records as files and has no schema; give "
                         "--records sqlite:///… or postgresql://… (or BOOKJOB_RECORDS)")
    return url


@db.command()
def upgrade(records: RecordsOpt = None) -> None:
    """Create the records tables, or migrate them to this bookjob's schema (idempotent)."""
    from steps.core.migrations import upgrade as migrate
    from steps.core.records_sql import shown

    url = _sql_url(records)
    before, after = migrate(url)
    if before == after:
        typer.echo(f"{shown(url)}: schema at revision {after}, nothing to do")
    else:
        typer.echo(f"{shown(url)}: schema {'created' if before is None else 'migrated from ' + before} "
                   f"at revision {after}")


@db.command(name="import")
def import_(
    source: Annotated[str, typer.Option(
        "--from", help="The store whose records to copy: a folder or s3://bucket/prefix.")],
    records: RecordsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Copy every job record of a store into the records database (one there stays)."""
    url = _sql_url(records)
    target = records_at(open_store(source), url)
    origin = StoreRecords(open_store(source))
    counts = {"imported": 0, "already_there": 0, "unreadable": 0}
    unreadable: list[str] = []
    for job_id in origin.job_ids():
        try:
            record = origin.read(job_id)
        except JobNotFound:          # a folder of logs or uploads only: no job to copy
            continue
        except ValueError:
            counts["unreadable"] += 1
            unreadable.append(job_id)
            continue
        counts["imported" if target.restore(record) else "already_there"] += 1
    if as_json:
        typer.echo(json.dumps({**counts, "unreadable_jobs": unreadable, "records": target.uri}))
    else:
        typer.echo(f"{counts['imported']} imported, {counts['already_there']} already there, "
                   f"{counts['unreadable']} unreadable (from {origin.store.uri} into {target.uri})")
        for job_id in unreadable:
            say(f"  unreadable: jobs/{job_id}/job.json")
    if unreadable:
        raise typer.Exit(EXIT_FAILURE)
