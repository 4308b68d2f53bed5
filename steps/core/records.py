"""Where job records live: one :class:`Records` interface, chosen by a URL.

Every read and write of a job record goes through :class:`Records`: create, read, a
compare-and-swap update, the artifacts as pages are stored (an update), a run's lease on its
job, and queries. Steps never know which backend they talk to: :func:`open_records` picks it
from ``--records`` / ``BOOKJOB_RECORDS``:

- ``store`` (the default): ``jobs/{job_id}/job.json`` beside the pages
  (:class:`~steps.core.records_store.StoreRecords`); nothing else to install;
- ``sqlite:///path/bookjob.db`` and ``postgresql://…``: tables ``jobs`` and ``job_artifacts``
  as the old system had them (:mod:`steps.core.records_sql`, imported only then).

The functions below (:func:`read_job`, :func:`update_job`, …) take the records, or a store
whose configured records they open.
"""

from __future__ import annotations

import re

from steps.core.errors import SetupError
from steps.core.job import JobRecord
from steps.core.records_base import (
    Change,
    JobQuery,
    JobSummary,
    NewerRecord,
    Records,
    check_writable,
    parse_time,
)
from steps.core.records_store import StoreRecords, lease_key
from steps.core.settings import settings
from steps.core.store import Store

# ---- choosing a backend -------------------------------------------------------------------

SQL_URL = re.compile(r"^(sqlite|postgresql|postgres)(\+\w+)?://")


def check_url(url: str) -> str:
    """``store``, ``sqlite:///…`` or ``postgresql://…``; anything else is a setup error."""
    url = url.strip()
    if url == "store" or SQL_URL.match(url):
        return url
    raise SetupError(f"records {url[:60]!r} are not supported: use store, "
                     "sqlite:///path/to/bookjob.db or postgresql://user@host/db "
                     "(--records or BOOKJOB_RECORDS).")


def open_records(store: Store, url: str | None = None) -> Records:
    """The job records next to ``store``: ``url``, else ``BOOKJOB_RECORDS``, else the store."""
    url = check_url(url or settings().records)
    if url == "store":
        return StoreRecords(store)
    from steps.core.records_sql import SqlRecords

    return SqlRecords.at(url)


def records_of(where: Records | Store) -> Records:
    return where if isinstance(where, Records) else open_records(where)


# ---- the record's life, as the steps call it ---------------------------------------------


def read_job(where: Records | Store, job_id: str) -> JobRecord:
    return records_of(where).read(job_id)


def job_exists(where: Records | Store, job_id: str) -> bool:
    return records_of(where).exists(job_id)


def create_job(where: Records | Store, record: JobRecord) -> bool:
    """Write a new record; False if a record with that id already exists."""
    return records_of(where).create(record)


def update_job(where: Records | Store, job_id: str, change: Change) -> JobRecord:
    """Apply ``change`` to the current record with compare-and-swap, retrying on conflict."""
    return records_of(where).update(job_id, change)


def mark_failed(where: Records | Store, job_id: str, step: str, reason: str,
                message: str) -> JobRecord:
    """The job becomes ``analysis_failed`` (during analysis) or ``generation_failed``."""
    return records_of(where).mark_failed(job_id, step, reason, message)


__all__ = [
    "Records", "StoreRecords", "JobQuery", "JobSummary", "NewerRecord", "Change", "open_records",
    "records_of", "read_job", "job_exists", "create_job", "update_job", "mark_failed",
    "lease_key", "check_url", "check_writable", "parse_time",
]
