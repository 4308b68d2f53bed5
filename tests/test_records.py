"""The job records on every backend (issue 24): the same contract on the store, SQLite and a
real PostgreSQL server (tests/postgres.py): create, read, compare-and-swap updates, artifacts
as rows, leases, versioned records (unknown fields kept, newer records shown, never changed)
and queries (both sides of every filter)."""

from __future__ import annotations

import json
import multiprocessing
from datetime import UTC, datetime, timedelta

import pytest

from steps.core.job import SCHEMA_VERSION, Artifact, JobError, JobNotFound, JobRecord, Status
from steps.core.records import JobQuery, NewerRecord, Records, StoreRecords, open_records
from steps.core.store import LocalStore, job_key
from tests.conftest import RECORDS_BACKENDS, records_database


def record(job_id: str = "j1", **fields) -> JobRecord:
    child = {"child_name": "Mia", "child_age": 5, "child_gender": "girl", **fields}
    return JobRecord(job_id=job_id, book_uri="/b", photo_key=f"uploads/{job_id}/photo.jpg", **child)


def page(num: int, kind: str = "page_png", sha: str = "0") -> Artifact:
    return Artifact(kind=kind, page=num, key=f"layout/j/pages/page_{num:02d}.png",
                    sha256=sha * 64, size=num)


@pytest.fixture(params=RECORDS_BACKENDS)
def records(request, tmp_path) -> Records:
    url = records_database(request.param, request, tmp_path)
    return open_records(LocalStore(tmp_path / "store"), url)


def sql_rows(records: Records, query: str) -> list[tuple]:
    """Plain SQL, as a shop's backend would ask (no bookjob code in between)."""
    from sqlalchemy import text

    with records.engine.connect() as connection:
        return [tuple(r) for r in connection.execute(text(query))]


# ---- create, read, update -------------------------------------------------------------------

def test_create_read_and_a_second_create(records):
    assert not records.exists("j1")
    with pytest.raises(JobNotFound, match="no job 'j1'"):
        records.read("j1")
    assert records.create(record())
    assert records.exists("j1") and not records.exists("j2")
    assert not records.create(record(child_name="Max"))       # the first one stays
    found = records.read("j1")
    assert found.child_name == "Mia" and found.schema_version == SCHEMA_VERSION
    assert [c.status for c in found.status_history] == [Status.ANALYZING]
    with pytest.raises(JobNotFound):
        records.update("nope", lambda r: None)


def test_an_update_changes_status_artifacts_and_error_together(records):
    records.create(record())

    def change(job: JobRecord) -> None:
        job.move_to(Status.ANALYZING_COMPLETED)
        job.add_artifact(page(2))
        job.add_artifact(page(1, "page_bg_png"))

    updated = records.update("j1", change)
    assert records.read("j1") == updated
    assert [(a.kind, a.page) for a in updated.artifacts] == [("page_bg_png", 1), ("page_png", 2)]
    # the same (kind, page) replaces the old artifact; a failure keeps the artifacts listed
    records.update("j1", lambda job: job.add_artifact(page(2, sha="1")))
    failed = records.mark_failed("j1", "render", "bad_font", "The font is broken; replace it.")
    assert failed.status is Status.GENERATION_FAILED
    assert failed.error == JobError(step="render", reason="bad_font",
                                    message="The font is broken; replace it.")
    again = records.read("j1")
    assert again == failed and again.artifact("page_png", 2).sha256 == "1" * 64
    assert len(again.artifacts) == 2


def test_the_record_round_trips_exactly(records):
    original = record(dedication="Для Петрика\nвід бабусі", language="uk", photo_source="s3://x/y")
    records.create(original)
    records.update("j1", lambda job: job.add_artifact(Artifact(
        kind="book_pdf", key="layout/j1/book.pdf", sha256="a" * 64, size=10,
        inputs_sha256="b" * 64)))
    first = records.read("j1")
    second = records.read("j1")
    assert first == second
    assert first.dedication == "Для Петрика\nвід бабусі" and first.language == "uk"
    assert first.artifact("book_pdf").inputs_sha256 == "b" * 64
    assert first.updated_at >= first.created_at


# ---- versioned records --------------------------------------------------------------------

def test_fields_this_version_does_not_know_are_kept_through_updates(records):
    future = record(shop_order_id=17, status_history=[])
    future.error = JobError.model_validate({"step": "x", "reason": "y", "message": "z",
                                            "trace_id": "t-1"})
    records.create(future)

    def with_future_fields(job: JobRecord) -> None:
        job.add_artifact(Artifact.model_validate({**page(1).model_dump(), "dpi": 300}))
        job.status_history[0] = type(job.status_history[0]).model_validate(
            {**job.status_history[0].model_dump(), "by": "worker-3"})

    records.update("j1", with_future_fields)
    records.update("j1", lambda job: job.add_artifact(page(2)))
    kept = records.read("j1")
    assert kept.model_extra == {"shop_order_id": 17}
    assert kept.error.model_extra == {"trace_id": "t-1"}
    assert kept.artifacts[0].model_extra == {"dpi": 300} and kept.artifacts[1].model_extra == {}
    assert kept.status_history[0].model_extra == {"by": "worker-3"}
    moved = records.update("j1", lambda job: job.move_to(Status.ANALYZING_COMPLETED))
    assert moved.model_extra == {"shop_order_id": 17} and len(moved.status_history) == 2


def test_a_record_of_a_newer_bookjob_is_read_but_never_changed(records):
    newer = record(status=Status("printing"))
    records.create(newer)
    shown = records.read("j1")
    assert shown.status.value == "printing" and shown.status not in list(Status)
    [listed] = records.list(JobQuery(statuses=("printing",)))
    assert listed.status == "printing"
    with pytest.raises(NewerRecord, match="written by a newer bookjob.*upgrade bookjob"):
        records.update("j1", lambda job: None)
    with pytest.raises(NewerRecord):
        records.mark_failed("j1", "plan", "x", "y")
    assert records.read("j1") == shown

    records.restore(record("j2", schema_version=SCHEMA_VERSION + 1))
    with pytest.raises(NewerRecord, match=f"schema {SCHEMA_VERSION + 1}"):
        records.update("j2", lambda r: None)


def test_a_record_of_this_version_and_an_older_one_are_changed(records):
    records.restore(record("old", schema_version=1))
    updated = records.update("old", lambda job: job.move_to(Status.ANALYZING_COMPLETED))
    assert updated.schema_version == SCHEMA_VERSION          # written back in this version
    records.restore(record("same", schema_version=SCHEMA_VERSION))
    assert records.update("same", lambda job: None).schema_version == SCHEMA_VERSION


def test_restore_keeps_the_record_as_it_was(records):
    old = record(status=Status.PREPAY_READY, created_at="2026-01-02T03:04:05.678Z",
                 updated_at="2026-01-02T03:05:00.000Z")
    old.status_history = []
    assert records.restore(old)
    assert not records.restore(old)
    assert records.read("j1") == old


# ---- queries ----------------------------------------------------------------------------------

def jobs_at(records: Records, *jobs: tuple[str, Status, str, datetime]) -> None:
    for job_id, status, book, at in jobs:
        stamp = at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        records.restore(record(job_id, status=status, book_id=book, created_at=stamp,
                               updated_at=stamp))


def ids(found) -> list[str]:
    return [s.job_id for s in found]


def test_queries_by_status_book_since_and_limit_newest_first(records):
    now = datetime.now(UTC).replace(microsecond=0)    # records keep milliseconds
    jobs_at(records, ("a", Status.PREPAY_READY, "forest", now - timedelta(hours=3)),
            ("b", Status.COMPLETED, "forest", now - timedelta(hours=2)),
            ("c", Status.PREPAY_READY, "sea", now - timedelta(hours=1)),
            ("d", Status.GENERATION_FAILED, "sea", now))
    assert ids(records.list(JobQuery())) == ["d", "c", "b", "a"]
    assert ids(records.list(JobQuery(statuses=("prepay_ready",)))) == ["c", "a"]
    assert ids(records.list(JobQuery(statuses=("prepay_ready", "completed")))) == ["c", "b", "a"]
    assert ids(records.list(JobQuery(statuses=("analyzing",)))) == []
    assert ids(records.list(JobQuery(book_id="forest"))) == ["b", "a"]
    assert ids(records.list(JobQuery(book_id="nope"))) == []
    # since: created at or after (the boundary itself is in)
    assert ids(records.list(JobQuery(since=now - timedelta(hours=2)))) == ["d", "c", "b"]
    assert ids(records.list(JobQuery(since=now + timedelta(seconds=1)))) == []
    assert ids(records.list(JobQuery(limit=2))) == ["d", "c"]
    assert ids(records.list(JobQuery(statuses=("prepay_ready",), book_id="sea"))) == ["c"]
    [failed] = records.list(JobQuery(statuses=("generation_failed",)))
    assert failed.book_id == "sea" and failed.error_reason is None


def test_stuck_is_a_generating_status_unchanged_for_that_long(records):
    now = datetime.now(UTC)
    jobs_at(records, ("old-gen", Status.PREPAY_GENERATING, "b", now - timedelta(hours=2)),
            ("new-gen", Status.PREPAY_GENERATING, "b", now - timedelta(minutes=30)),
            ("old-post", Status.POSTPAY_GENERATING, "b", now - timedelta(hours=5)),
            ("old-analyzing", Status.ANALYZING, "b", now - timedelta(hours=5)),
            ("old-ready", Status.PREPAY_READY, "b", now - timedelta(hours=9)))
    stuck = JobQuery(stuck=timedelta(hours=1))
    assert ids(records.list(stuck)) == ["old-gen", "old-post", "old-analyzing"]
    assert ids(records.list(JobQuery(stuck=timedelta(minutes=29)))) == [
        "new-gen", "old-gen", "old-post", "old-analyzing"]
    assert ids(records.list(JobQuery(stuck=timedelta(hours=6)))) == []
    narrowed = JobQuery(statuses=("prepay_generating", "prepay_ready"), stuck=timedelta(hours=1))
    assert ids(records.list(narrowed)) == ["old-gen"]
    assert ids(records.list(JobQuery(statuses=("prepay_ready",), stuck=timedelta(0)))) == []


def test_an_error_reason_is_listed(records):
    records.create(record())
    records.mark_failed("j1", "analyze", "no_face", "No face was found in the photo; use another.")
    [summary] = records.list(JobQuery(statuses=("analysis_failed",)))
    assert summary.error_reason == "no_face"
    assert set(summary.as_dict()) >= {"job_id", "status", "book_id", "updated_at", "error_reason"}


# ---- leases ---------------------------------------------------------------------------------

def test_the_lease_is_a_compare_and_swap(records):
    assert records.read_lease("j1") is None
    assert records.write_lease_if("j1", b'{"run_id": "a"}', None)
    assert not records.write_lease_if("j1", b'{"run_id": "b"}', None)
    body, version = records.read_lease("j1")
    assert body == b'{"run_id": "a"}'
    assert records.write_lease_if("j1", b'{"run_id": "b"}', version)
    assert not records.write_lease_if("j1", b'{"run_id": "c"}', version)   # stale version
    assert records.read_lease("j1")[0] == b'{"run_id": "b"}'


# ---- the SQL tables, as the shop reads them --------------------------------------------------

@pytest.fixture(params=["sqlite", "postgresql"])
def sql_records(request, tmp_path) -> Records:
    url = records_database(request.param, request, tmp_path)
    return open_records(LocalStore(tmp_path / "store"), url)


def test_the_jobs_and_job_artifacts_tables_hold_the_record(sql_records):
    sql_records.create(record(book_id="forest-friends", language="uk", shop_order_id=5))
    sql_records.update("j1", lambda job: (job.move_to(Status.ANALYZING_COMPLETED),
                                          job.add_artifact(page(1)), job.add_artifact(page(2))))
    [row] = sql_rows(sql_records, "SELECT id, status, book_id, language, error_reason, version, "
                                  "schema_version FROM jobs")
    assert row == ("j1", "analyzing_completed", "forest-friends", "uk", None, 2, SCHEMA_VERSION)
    rows = sql_rows(sql_records, "SELECT job_id, kind, page, key, size FROM job_artifacts "
                                 "ORDER BY page")
    assert rows == [("j1", "page_png", 1, "layout/j/pages/page_01.png", 1),
                    ("j1", "page_png", 2, "layout/j/pages/page_02.png", 2)]
    sql_records.update("j1", lambda job: setattr(job, "artifacts", job.artifacts[:1]))
    assert sql_rows(sql_records, "SELECT page FROM job_artifacts") == [(1,)]
    [(rest,)] = sql_rows(sql_records, "SELECT record_json FROM jobs")
    rest = json.loads(rest) if isinstance(rest, str) else rest
    assert rest["shop_order_id"] == 5 and rest["child_name"] == "Mia"
    assert "status" not in rest and "artifacts" not in rest


def test_the_shop_sets_the_regeneration_flag_in_analysis_json(sql_records):
    """The old clients set analysis.generation_retry.randomize_seed in the database."""
    from steps.core.analysis import Analysis

    analysis = Analysis(skin_tone="light", hair_color="brown", hair_style="wavy",
                        eye_color="blue", source="heuristic", photo_size=(10, 10),
                        face_box=(0, 0, 5, 5), left_eye=(1, 1), right_eye=(3, 1))
    sql_records.create(record(analysis=analysis, status=Status.PREPAY_READY))
    from sqlalchemy import update

    from steps.core.records_sql import jobs

    flagged = analysis.model_dump(mode="json")
    flagged["generation_retry"]["randomize_seed"] = True
    with sql_records.engine.begin() as connection:
        connection.execute(update(jobs).where(jobs.c.id == "j1").values(analysis_json=flagged))
    assert sql_records.read("j1").generation_retry.randomize_seed is True


def test_the_migrations_make_exactly_the_tables_the_code_uses(sql_records):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from steps.core.records_sql import HEAD, KNOWN, metadata, revision

    with sql_records.engine.connect() as connection:
        assert revision(connection) == HEAD == KNOWN[-1]
        differences = compare_metadata(MigrationContext.configure(connection), metadata)
    assert differences == []


def test_a_database_without_the_schema_or_a_newer_one_is_one_setup_line(tmp_path):
    from steps.core.errors import SetupError
    from steps.core.migrations import upgrade
    from steps.core.records_sql import SqlRecords

    url = f"sqlite:///{tmp_path / 'bare.db'}"
    bare = SqlRecords(url)
    with pytest.raises(SetupError, match=r"has no bookjob tables; run `bookjob db upgrade"):
        bare.read("j1")
    assert upgrade(url) == (None, "0003")
    assert upgrade(url) == ("0003", "0003")      # idempotent
    with bare.engine.begin() as connection:
        connection.exec_driver_sql("UPDATE alembic_version SET version_num = '9999'")
    with pytest.raises(SetupError, match=r"migrated by a newer bookjob \(revision 9999\)"):
        SqlRecords(url).read("j1")
    with pytest.raises(SetupError, match="newer bookjob"):
        upgrade(url)
    bare.engine.dispose()


def test_a_database_that_does_not_answer_is_transient():
    from steps.core.errors import TransientError
    from steps.core.records_sql import SqlRecords
    from tests.conftest import _free_port

    closed = SqlRecords(f"postgresql://bookjob:secret@127.0.0.1:{_free_port()}/none")
    with pytest.raises(TransientError, match="did not answer") as e:
        closed.read("j1")
    assert "secret" not in str(e.value) and "***" in str(e.value)


# ---- many writers ------------------------------------------------------------------------------

def _add_pages(url: str, store: str, first: int, count: int) -> None:
    records = open_records(LocalStore(store), url)
    for num in range(first, first + count):
        records.update("j1", lambda job, num=num: job.add_artifact(page(num)))


@pytest.mark.parametrize("backend", ["store", "sqlite", "postgresql"])
def test_200_concurrent_updates_keep_all_200(backend, request, tmp_path, count):
    url = records_database(backend, request, tmp_path)
    store = str(tmp_path / "store")
    open_records(LocalStore(store), url).create(record())
    context = multiprocessing.get_context("spawn")
    writers = [context.Process(target=_add_pages, args=(url, store, 1 + 25 * i, 25))
               for i in range(8)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(300)
        assert writer.exitcode == 0
    kept = open_records(LocalStore(store), url).read("j1")
    assert sorted(a.page for a in kept.artifacts) == list(range(1, 201))
    count("concurrent_updates_kept", len(kept.artifacts))
    if backend != "store":
        assert sql_rows(open_records(LocalStore(store), url),
                        "SELECT count(*), count(DISTINCT page) FROM job_artifacts") == [(200, 200)]
        [(version,)] = sql_rows(open_records(LocalStore(store), url), "SELECT version FROM jobs")
        assert version == 201


def test_the_store_backend_reads_the_store_keys(tmp_path):
    store = LocalStore(tmp_path)
    records = StoreRecords(store)
    records.create(record())
    assert json.loads(store.read(job_key("j1")))["child_name"] == "Mia"
    assert records.job_ids() == ["j1"]
    store.write("jobs/only-logs/logs/x.log", b"")
    assert records.job_ids() == ["j1", "only-logs"]
    assert ids(records.list(JobQuery())) == ["j1"]            # a folder without a record is no job


# ---- the worker's queue ------------------------------------------------------------------------

def test_the_queue_is_oldest_first_and_forgets_answered_requests(records):
    from steps.core.job import QueuedStage

    for job_id, at in (("late", "2026-12-07T10:00:02.000Z"), ("early", "2026-12-07T10:00:01.000Z"),
                       ("idle", None)):
        records.create(record(job_id))
        if at:
            records.update(job_id, lambda r, at=at: setattr(r, "queued", QueuedStage(
                stage="prepay", at=at)))
    assert records.queue() == [("2026-12-07T10:00:01.000Z", "early"),
                               ("2026-12-07T10:00:02.000Z", "late")]
    records.update("early", lambda r: setattr(r, "queued", None))
    assert [j for _, j in records.queue()] == ["late"]
    assert records.read("late").queued.at == "2026-12-07T10:00:02.000Z"


def test_a_store_queue_marker_without_its_request_goes_once_it_is_old(tmp_path):
    from steps.core.records_store import QUEUE

    store = LocalStore(tmp_path)
    records = StoreRecords(store)
    records.create(record("j1"))
    young = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%f")[:-3] + "Z"
    store.write(f"{QUEUE}{young}_j1", b"")          # a request whose record is being written
    store.write(f"{QUEUE}20260101T000000.000Z_j1", b"")   # a crash's leftover
    store.write(f"{QUEUE}20260101T000000.000Z_gone", b"")
    assert records.queue() == []
    assert store.list(QUEUE) == [f"{QUEUE}{young}_j1"]
