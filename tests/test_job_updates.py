"""The job record in the store: creating it, compare-and-swap updates (a lost reply, a lost race,
giving up), the webhook on real status changes only, and the record's own helpers."""

from __future__ import annotations

import itertools
import json
import re

import pytest

from steps.core import faults, job, records_base, records_store
from steps.core.job import Artifact, JobError, JobNotFound, JobRecord, Status
from steps.core.records import StoreRecords, create_job, job_exists, read_job, update_job
from steps.core.store import LocalStore, job_key


def new_record(job_id="j1", **fields) -> JobRecord:
    child = {"child_name": "Mia", "child_age": 5, "child_gender": "girl", **fields}
    return JobRecord(job_id=job_id, book_uri="/b", photo_key=f"uploads/{job_id}/photo.jpg", **child)


@pytest.fixture
def posted(monkeypatch) -> list[dict]:
    """The status events each change handed to the webhook, as JSON (the store writes are
    real)."""
    sent: list[dict] = []
    monkeypatch.setattr(records_base.notify, "events_added", lambda job_id, events: sent.extend(
        e.model_dump(mode="json") for e in events if e.type == "status"))
    return sent


@pytest.fixture
def store(tmp_path) -> LocalStore:
    return LocalStore(tmp_path / "store")


# ---- creating ----------------------------------------------------------------------------

def test_create_writes_the_record_with_its_first_status(store, posted):
    assert not job_exists(store, "j1")
    assert create_job(store, new_record())
    assert job_exists(store, "j1")
    stored = store.read(job_key("j1"))
    record = read_job(store, "j1")
    assert stored == record.model_dump_json(indent=2).encode()
    assert [c.status for c in record.status_history] == [Status.ANALYZING]
    assert record.reached(Status.ANALYZING) and not record.reached(Status.ANALYZING_COMPLETED)
    assert [p["status"] for p in posted] == ["analyzing"]
    assert posted[0] == json.loads(stored)["events"][0]


def test_a_second_create_with_the_same_id_changes_nothing(store, posted):
    assert create_job(store, new_record())
    before = store.read(job_key("j1"))
    assert not create_job(store, new_record(child_name="Max"))
    assert store.read(job_key("j1")) == before
    assert len(posted) == 1


def test_reading_a_job_that_is_not_there(store):
    with pytest.raises(JobNotFound, match=r"^no job 'nope' in .*store$"):
        read_job(store, "nope")
    with pytest.raises(JobNotFound, match=r"^no job 'nope' in .*store$"):
        update_job(store, "nope", lambda r: None)


def test_times_are_utc_with_milliseconds():
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", job.now())


# ---- updates -----------------------------------------------------------------------------

def test_an_update_is_stored_and_returned(store, posted):
    create_job(store, new_record())
    created = read_job(store, "j1")
    updated = update_job(store, "j1", lambda r: r.move_to(Status.ANALYZING_COMPLETED))
    assert updated == read_job(store, "j1")
    assert updated.status is Status.ANALYZING_COMPLETED
    assert updated.updated_at >= created.updated_at
    assert store.read(job_key("j1")) == updated.model_dump_json(indent=2).encode()


class LostReply(LocalStore):
    """A store whose next ``lose`` conditional writes are done, but answer False: the request
    timed out after the write, and the client's retry then met the record it had just written."""

    def __init__(self, root, lose=1):
        super().__init__(root)
        self.lose = lose
        self.tries = 0

    def write_if(self, key, data, version):
        self.tries += 1
        written = super().write_if(key, data, version)
        if written and self.lose:
            self.lose -= 1
            return False
        return written


def test_a_lost_reply_is_seen_as_written_and_not_applied_twice(tmp_path, posted):
    store = LostReply(tmp_path, lose=0)
    create_job(store, new_record())
    store.lose = 1
    calls = []

    def change(record):
        calls.append(1)
        record.move_to(Status.ANALYZING)   # not idempotent: each call adds a history entry

    updated = update_job(store, "j1", change)
    assert len(calls) == 1 and store.tries == 2    # the create, then one conditional write
    assert [c.status for c in read_job(store, "j1").status_history] == [Status.ANALYZING] * 2
    assert updated == read_job(store, "j1")
    assert [p["status"] for p in posted] == ["analyzing", "analyzing"]


class Rival(LocalStore):
    """A store where another writer updates the record just before each of our first ``races``
    conditional writes."""

    def __init__(self, root, races=1):
        super().__init__(root)
        self.races = races

    def write_if(self, key, data, version):
        if self.races:
            self.races -= 1
            current, current_version = self.read_versioned(key)
            record = JobRecord.model_validate_json(current)
            record.add_artifact(Artifact(kind="book_pdf", key=f"rival{self.races}", sha256="r", size=1))
            assert super().write_if(key, records_base.dump(record), current_version)
        return super().write_if(key, data, version)


def test_a_lost_race_is_retried_on_the_new_record(tmp_path, posted):
    store = Rival(tmp_path, races=0)
    create_job(store, new_record())
    store.races = 3
    calls = []

    def change(record):
        calls.append(1)
        record.add_artifact(Artifact(kind="page_png", page=1, key="mine", sha256="m", size=1))

    updated = update_job(store, "j1", change)
    assert len(calls) == 4
    kept = read_job(store, "j1")
    assert {a.key for a in kept.artifacts} == {"rival0", "mine"}   # both writers' changes kept
    assert updated == kept
    assert len(posted) == 1     # artifacts alone are no status change


class Busy(LocalStore):
    """A store whose conditional writes always lose to someone else's."""

    def __init__(self, root):
        super().__init__(root)
        self.tries = 0

    def write_if(self, key, data, version):
        self.tries += 1
        if version is None:
            return super().write_if(key, data, version)
        return False


def a_new_dedication():
    """A change that differs on every attempt: a change that leaves the record as stored (in
    the same millisecond) would read as the lost-reply case, a write that already happened."""
    count = itertools.count()
    return lambda r: setattr(r, "dedication", f"try {next(count)}")


def test_updates_give_up_after_the_attempts(tmp_path, monkeypatch):
    monkeypatch.setattr(records_store.time, "sleep", lambda s: None)
    store = Busy(tmp_path)
    create_job(store, new_record())
    with pytest.raises(RuntimeError, match=r"^job j1: gave up after 3 conflicting updates$"):
        update_job(StoreRecords(store, attempts=3), "j1", lambda r: r.move_to(Status.ANALYZING))
    assert store.tries == 1 + 3
    with pytest.raises(RuntimeError, match="gave up after 200 "):
        update_job(store, "j1", a_new_dedication())
    assert store.tries == 1 + 3 + 200


def test_the_backoff_between_attempts_grows_and_is_capped(tmp_path, monkeypatch):
    waits = []
    monkeypatch.setattr(records_store.random, "uniform", lambda low, high: (low, high))
    monkeypatch.setattr(records_store.time, "sleep", waits.append)
    store = Busy(tmp_path)
    create_job(store, new_record())
    with pytest.raises(RuntimeError):
        update_job(StoreRecords(store, attempts=12), "j1", a_new_dedication())
    assert waits == [(0, 0.002), (0, 0.004), (0, 0.008), (0, 0.016), (0, 0.032), (0, 0.064),
                     (0, 0.128), (0, 0.2), (0, 0.2), (0, 0.2), (0, 0.2), (0, 0.2)]


def test_the_webhook_fires_only_on_a_status_change(store, posted):
    create_job(store, new_record())
    update_job(store, "j1", lambda r: r.add_artifact(
        Artifact(kind="page_png", page=1, key="k", sha256="s", size=1)))
    update_job(store, "j1", lambda r: setattr(r, "error", JobError(step="s", reason="r", message="m")))
    assert [p["status"] for p in posted] == ["analyzing"]
    update_job(store, "j1", lambda r: r.move_to(Status.ANALYZING_COMPLETED))
    assert [p["status"] for p in posted] == ["analyzing", "analyzing_completed"]
    assert posted[-1] == json.loads(store.read(job_key("j1")))["events"][-1]
    update_job(store, "j1", lambda r: r.move_to(Status.ANALYZING))
    update_job(store, "j1", lambda r: r.move_to(Status.ANALYZING))   # the same status, resumed
    assert [p["status"] for p in posted][2:] == ["analyzing", "analyzing"]


def test_the_update_fault_point_is_reached_before_the_write(store, monkeypatch):
    create_job(store, new_record())
    seen = []
    monkeypatch.setattr(faults, "point", lambda name: seen.append((name, store.read(job_key("j1")))))
    before = store.read(job_key("j1"))
    update_job(store, "j1", lambda r: r.move_to(Status.ANALYZING_COMPLETED))
    # the outbox note (the change adds an event), then the store's write: not yet in place
    assert [(name, body) for name, body in seen] == [("write", before), ("update", before),
                                                    ("write", before)]


# ---- the record's helpers ----------------------------------------------------------------

def test_reached_is_true_only_for_statuses_in_the_history():
    r = new_record()
    for status in (Status.ANALYZING, Status.ANALYZING_COMPLETED, Status.PREPAY_GENERATING):
        r.move_to(status)
    assert r.reached(Status.ANALYZING_COMPLETED) and r.reached(Status.PREPAY_GENERATING)
    assert not r.reached(Status.PREPAY_READY) and not r.reached(Status.COMPLETED)
    assert not new_record().reached(Status.ANALYZING)   # nothing recorded yet


def test_an_error_is_kept_while_failed_and_cleared_on_resume():
    r = new_record()
    r.move_to(Status.ANALYSIS_FAILED)
    r.error = JobError(step="analyze", reason="no_face", message="No face.")
    r.move_to(Status.ANALYSIS_FAILED)
    assert r.error is not None
    r.move_to(Status.ANALYZING)
    assert r.error is None
    r.move_to(Status.ANALYZING_COMPLETED)
    r.error = JobError(step="render", reason="exit_1", message="Crashed.")
    r.move_to(Status.GENERATION_FAILED)
    assert r.error is not None


def test_artifacts_are_found_by_kind_and_page_and_kept_in_order():
    r = new_record()
    for kind, page in [("page_png", 2), ("preview_pdf", None), ("page_bg_png", 1), ("page_png", 1),
                       ("book_pdf", None)]:
        r.add_artifact(Artifact(kind=kind, page=page, key=f"{kind}-{page}", sha256="0", size=1))
    assert [(a.kind, a.page) for a in r.artifacts] == [
        ("book_pdf", None), ("preview_pdf", None), ("page_bg_png", 1), ("page_png", 1), ("page_png", 2)]
    assert r.artifact("page_png", 1).key == "page_png-1"
    assert r.artifact("page_bg_png", 1).key == "page_bg_png-1"
    assert r.artifact("preview_pdf").key == "preview_pdf-None"
    assert r.artifact("page_png") is None and r.artifact("page_bg_png", 2) is None


def test_a_refused_status_change_says_from_what_to_what():
    from steps.core.job import InvalidTransition

    with pytest.raises(InvalidTransition) as e:
        new_record().move_to(Status.COMPLETED)
    assert str(e.value) == "job j1 is analyzing; it cannot become completed"
