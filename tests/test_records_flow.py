"""The records as a shop lives with them (issue 24), end to end through the `bookjob` CLI:
the shop's own SQL sees a running job move and its pages appear; fields a newer bookjob added
survive a whole job; a record of a newer bookjob is listed and shown, never changed; `bookjob
jobs` and `bookjob db import` as typed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from steps.core.job import Status
from steps.core.records import open_records, read_job
from steps.core.store import LocalStore
from tests.helpers import DEMO, DEMO_PHOTO, ROOT, make_book

pytestmark = pytest.mark.slow

OLD_FLOW = ["analyzing", "analyzing_completed", "prepay_generating", "prepay_ready",
            "postpay_generating", "completed"]


def bookjob(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *args], capture_output=True,
                          text=True, timeout=600, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})


def test_the_shops_sql_sees_a_full_job_move_and_its_pages_appear(postgres, request, tmp_path):
    """Plain SQL (psycopg, no bookjob code) polled while `bookjob run --stage full` runs on
    PostgreSQL: the old statuses in order and the job_artifacts rows page by page."""
    import psycopg

    from tests.conftest import records_database

    url = records_database("postgresql", request, tmp_path)
    run = subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "run", str(DEMO / "book"), "--photo",
         str(DEMO_PHOTO), "--name", "Mia", "--age", "5", "--job-id", "order-17", "--stage",
         "full", "--store", str(tmp_path / "store"), "--records", url],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    seen: list[tuple[str, int]] = []             # (status, artifact rows) as the shop saw them
    with psycopg.connect(url, autocommit=True) as shop:
        while run.poll() is None:
            row = shop.execute("SELECT status FROM jobs WHERE id = %s", ("order-17",)).fetchone()
            (rows,) = shop.execute("SELECT count(*) FROM job_artifacts WHERE job_id = %s",
                                   ("order-17",)).fetchone()
            if row and (not seen or seen[-1] != (row[0], rows)):
                seen.append((row[0], rows))
            time.sleep(0.01)
        assert run.wait() == 0, run.stderr.read()
        final = shop.execute("SELECT status, error_reason FROM jobs WHERE id = %s",
                             ("order-17",)).fetchone()
        kinds = shop.execute("SELECT kind, count(*) FROM job_artifacts WHERE job_id = %s "
                             "GROUP BY kind ORDER BY kind", ("order-17",)).fetchall()
    assert final == ("completed", None)
    assert kinds == [("book_pdf", 1), ("page_bg_png", 10), ("page_png", 10), ("preview_pdf", 1)]
    statuses = [s for s, _ in seen]
    order = [OLD_FLOW.index(s) for s in statuses]
    assert order == sorted(order), seen                        # never backwards
    assert {"prepay_generating", "postpay_generating", "completed"} <= set(statuses), seen
    counts = [n for _, n in seen]
    assert counts == sorted(counts), seen                       # rows only ever added
    # pages appeared one by one while the job was generating, not all at the end
    while_generating = {n for s, n in seen if s.endswith("_generating")}
    assert len(while_generating) >= 6 and max(while_generating) >= 10, seen
    history = [c.status.value for c in open_records(LocalStore(tmp_path), url).read(
        "order-17").status_history]
    assert history == OLD_FLOW


def test_unknown_fields_survive_a_whole_job_and_a_newer_record_is_shown(records_url, tmp_path):
    book = make_book(tmp_path / "book", size=(600, 400))
    store = tmp_path / "store"
    common = ["--job-id", "j1", "--store", str(store)]
    done = bookjob("run", str(book), "--photo", str(DEMO_PHOTO), "--name", "Mia", "--age", "5",
                   "--stage", "analyze", *common)
    assert done.returncode == 0, done.stderr
    records = open_records(LocalStore(store))

    def newer_fields(record) -> None:
        record.shop_order_id = 17                      # a field of a newer bookjob (or the shop)
        record.analysis.future_field = {"kept": True}

    records.update("j1", newer_fields)
    for stage in ("prepay", "postpay"):
        done = bookjob("run", "--stage", stage, *common, "--json")
        assert done.returncode == 0, done.stderr
    kept = read_job(LocalStore(store), "j1")
    assert kept.status is Status.COMPLETED
    assert kept.model_extra == {"shop_order_id": 17}
    assert kept.analysis.model_extra == {"future_field": {"kept": True}}
    assert json.loads(done.stdout)["shop_order_id"] == 17

    # a newer bookjob moved the job on to a status this one does not know
    printing = kept.model_copy(update={"job_id": "j2", "status": Status("printing"),
                                       "schema_version": kept.schema_version + 1})
    assert records.restore(printing)
    listed = bookjob("jobs", "--store", str(store), "--status", "printing", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [(j["job_id"], j["status"]) for j in json.loads(listed.stdout)] == [("j2", "printing")]
    table = bookjob("jobs", "--store", str(store))
    assert table.returncode == 0 and "printing" in table.stdout and "completed" in table.stdout
    shown = bookjob("status", "j2", "--store", str(store))
    assert shown.returncode == 0, shown.stderr
    assert "job j2: printing" in shown.stdout
    as_json = bookjob("status", "j2", "--store", str(store), "--json")
    assert as_json.returncode == 0 and json.loads(as_json.stdout)["status"] == "printing"
    # ... and never changed by this one: the CLI and a step say so in one line, exit 1
    refused = bookjob("run", "--job-id", "j2", "--store", str(store), "--stage", "postpay")
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert [line for line in refused.stderr.splitlines() if line.startswith("error:")] == [
        f"error: job j2 was written by a newer bookjob (record schema {printing.schema_version}, "
        f"status 'printing'; this bookjob knows schema {kept.schema_version}); upgrade bookjob "
        "to change it."]
    step = subprocess.run([sys.executable, "-m", "steps.finalize", "--store", str(store),
                           "--job-id", "j2", "--book", str(book), "--stage", "postpay"],
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert step.returncode == 1 and "newer bookjob" in step.stderr and "Traceback" not in step.stderr
    assert read_job(LocalStore(store), "j2") == printing


def test_jobs_lists_and_filters_as_typed(records_url, tmp_path):
    from datetime import UTC, datetime, timedelta

    from tests.test_records import record

    records = open_records(LocalStore(tmp_path / "store"))
    old = (datetime.now(UTC) - timedelta(hours=3)).isoformat().replace("+00:00", "Z")
    records.restore(record("stuck-1", status=Status.PREPAY_GENERATING, book_id="forest",
                           created_at=old, updated_at=old))
    records.create(record("fresh", book_id="sea"))
    records.mark_failed("fresh", "analyze", "no_face", "No face was found; use another photo.")
    store = ["--store", str(tmp_path / "store")]
    stuck = bookjob("jobs", "--stuck", "1h", *store, "--json")
    assert stuck.returncode == 0 and [j["job_id"] for j in json.loads(stuck.stdout)] == ["stuck-1"]
    assert json.loads(bookjob("jobs", "--stuck", "4h", *store, "--json").stdout) == []
    table = bookjob("jobs", *store).stdout.splitlines()
    assert table[0].split() == ["JOB", "STATUS", "BOOK", "CREATED", "UPDATED", "ERROR"]
    assert table[1].split()[:3] == ["fresh", "analysis_failed", "sea"] and table[1].endswith("no_face")
    assert table[2].split()[:3] == ["stuck-1", "prepay_generating", "forest"]
    since = bookjob("jobs", "--since", "1h", "--book", "sea", *store, "--json")
    assert [j["job_id"] for j in json.loads(since.stdout)] == ["fresh"]
    bad = bookjob("jobs", "--stuck", "soon", *store)
    assert bad.returncode == 2 and "duration like 30m" in bad.stderr and "Traceback" not in bad.stderr
    nothing = bookjob("jobs", "--status", "completed", *store)
    assert nothing.returncode == 0 and nothing.stdout == "" and "no jobs" in nothing.stderr


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_db_import_copies_a_stores_records_once(backend, request, tmp_path):
    from tests.conftest import records_database
    from tests.test_records import record

    source = tmp_path / "old-store"
    legacy = open_records(LocalStore(source), "store")
    for n in range(3):
        legacy.create(record(f"old-{n}", shop_order_id=n))
    (source / "jobs" / "broken").mkdir(parents=True)
    (source / "jobs" / "broken" / "job.json").write_text("{not json")
    url = records_database(backend, request, tmp_path)
    first = bookjob("db", "import", "--from", str(source), "--records", url, "--json")
    assert first.returncode == 1            # one record could not be read: said, not hidden
    assert json.loads(first.stdout) == {"imported": 3, "already_there": 0, "unreadable": 1,
                                        "unreadable_jobs": ["broken"],
                                        "records": json.loads(first.stdout)["records"]}
    (source / "jobs" / "broken" / "job.json").unlink()
    again = bookjob("db", "import", "--from", str(source), "--records", url)
    assert again.returncode == 0 and again.stdout.startswith("0 imported, 3 already there")
    copied = open_records(LocalStore(source), url)
    for n in range(3):
        assert copied.read(f"old-{n}") == legacy.read(f"old-{n}")
    refused = bookjob("db", "upgrade", "--records", "store")
    assert refused.returncode == 2 and "has no schema" in refused.stderr


def test_a_records_database_without_the_schema_says_to_upgrade(tmp_path):
    url = f"sqlite:///{tmp_path / 'new.db'}"
    done = bookjob("run", str(make_book(tmp_path / "book", size=(600, 400))), "--photo",
                   str(DEMO_PHOTO), "--name", "Mia", "--age", "5", "--store",
                   str(tmp_path / "store"), "--records", url)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "run `bookjob db upgrade" in errors[0]
    assert not Path(tmp_path / "store" / "uploads").exists()    # nothing done before that
    upgraded = bookjob("db", "upgrade", "--records", url)
    assert upgraded.returncode == 0 and "created at revision 0003" in upgraded.stdout
    unknown = bookjob("jobs", "--records", "mysql://x", "--store", str(tmp_path / "store"))
    assert unknown.returncode == 1 and "are not supported" in unknown.stderr
