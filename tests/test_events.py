"""What the shop is told (issue 26, first part): every status change and every artifact stored
is an event, written with the record change it describes, numbered per job from 1 without
gaps; the same on every records backend; a real job's pages each make exactly one event; no
event carries the child's details."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from steps.core.job import Artifact, JobRecord, Status
from steps.core.records import Records, open_records
from steps.core.store import LocalStore, job_key
from tests.conftest import RECORDS_BACKENDS, records_database
from tests.helpers import CHILD_ARGS, DEMO_PHOTO, ROOT


@pytest.fixture(params=RECORDS_BACKENDS)
def records(request, tmp_path) -> Records:
    url = records_database(request.param, request, tmp_path)
    return open_records(LocalStore(tmp_path / "store"), url)


def new_record(job_id: str = "e1") -> JobRecord:
    return JobRecord(job_id=job_id, book_uri="/b", photo_key=f"uploads/{job_id}/photo.jpg",
                     child_name="Mia", child_age=5, child_gender="girl")


def page(num: int, sha: str = "a") -> Artifact:
    return Artifact(kind="page_png", page=num, key=f"layout/e1/pages/page_{num:02d}.png",
                    sha256=sha * 64, size=num)


def shown(records: Records, job_id: str = "e1") -> list[tuple]:
    return [(e.seq, e.type, e.status or e.kind, e.page)
            for e in records.read(job_id).events]


def test_each_change_is_an_event_numbered_from_1_on_every_backend(records):
    assert records.create(new_record())
    records.update("e1", lambda r: r.move_to(Status.ANALYZING_COMPLETED))
    records.update("e1", lambda r: r.move_to(Status.PREPAY_GENERATING))
    records.update("e1", lambda r: r.add_artifact(page(1)))
    records.update("e1", lambda r: r.add_artifact(page(2)))
    records.update("e1", lambda r: r.add_artifact(page(1)))          # the same bytes again: nothing
    records.update("e1", lambda r: setattr(r, "dedication", "x"))     # no status, no artifact
    records.update("e1", lambda r: r.add_artifact(page(2, sha="b")))  # made again, other bytes

    def ready(r: JobRecord) -> None:
        r.add_artifact(Artifact(kind="preview_pdf", key="layout/e1/preview.pdf", sha256="c" * 64,
                                size=9))
        r.move_to(Status.PREPAY_READY)

    records.update("e1", ready)
    assert shown(records) == [
        (1, "status", "analyzing", None), (2, "status", "analyzing_completed", None),
        (3, "status", "prepay_generating", None), (4, "artifact", "page_png", 1),
        (5, "artifact", "page_png", 2), (6, "artifact", "page_png", 2),
        (7, "artifact", "preview_pdf", None), (8, "status", "prepay_ready", None)]
    events = records.read("e1").events
    assert events[5].sha256 == "b" * 64 and events[4].key == "layout/e1/pages/page_02.png"


def test_events_are_written_with_their_change_or_not_at_all(records):
    assert records.create(new_record())

    def half(r: JobRecord) -> None:
        r.move_to(Status.ANALYZING_COMPLETED)
        raise RuntimeError("the step died in the middle of its change")

    with pytest.raises(RuntimeError):
        records.update("e1", half)
    assert shown(records) == [(1, "status", "analyzing", None)]


def test_a_backend_keeps_events_where_a_shop_can_query_them(records):
    assert records.create(new_record())
    records.update("e1", lambda r: r.add_artifact(page(1)))
    if records.uri == "store":
        stored = json.loads(records.store.read(job_key("e1")))  # type: ignore[attr-defined]
        assert [e["seq"] for e in stored["events"]] == [1, 2]
        return
    from sqlalchemy import text

    with records.engine.connect() as connection:  # type: ignore[attr-defined]
        rows = connection.execute(text("SELECT seq, type FROM job_events WHERE job_id = 'e1' "
                                       "ORDER BY seq")).all()
        rest = connection.execute(text("SELECT record_json FROM jobs WHERE id = 'e1'")).scalar()
    assert [tuple(r) for r in rows] == [(1, "status"), (2, "artifact")]
    assert "events" not in (rest if isinstance(rest, dict) else json.loads(rest))


@pytest.mark.slow
def test_a_real_job_makes_one_event_per_page_and_none_carries_the_child(small_book, tmp_path):
    store = tmp_path / "store"
    done = subprocess.run([sys.executable, "-m", "pipeline.cli", "run", str(small_book),
                           "--photo", str(DEMO_PHOTO), *CHILD_ARGS, "--dedication", "For Олена",
                           "--job-id", "ev", "--store", str(store), "--stage", "full"],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    record = open_records(LocalStore(store)).read("ev")
    events = record.events
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    statuses = [e.status for e in events if e.type == "status"]
    assert statuses == ["analyzing", "analyzing_completed", "prepay_generating", "prepay_ready",
                        "postpay_generating", "completed"]
    pages = [(e.kind, e.page) for e in events if e.kind == "page_png"]
    assert sorted(pages) == [("page_png", n) for n in (1, 2, 3, 4)]          # one each
    assert {e.kind for e in events if e.type == "artifact"} == {
        "page_bg_png", "page_png", "preview_pdf", "book_pdf"}
    assert len([e for e in events if e.kind == "book_pdf"]) == 1
    text = json.dumps([e.model_dump(mode="json") for e in events], ensure_ascii=False)
    assert record.child_name not in text and "Олена" not in text and "For" not in text
