"""The job record: statuses, transitions, validation, and updates that are never lost."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ThreadPoolExecutor

import pytest

from steps.core.errors import InputError
from steps.core.job import Artifact, InvalidTransition, JobRecord, Status, parse_age, validate_job_id, validate_name
from steps.core.records import create_job, mark_failed, read_job, update_job
from steps.core.store import LocalStore, open_store


def new_record(job_id="j1") -> JobRecord:
    return JobRecord(job_id=job_id, book_uri="/b", photo_key=f"uploads/{job_id}/photo.jpg",
                     child_name="Mia", child_age=5, child_gender="girl")


def test_happy_flow_and_history():
    r = new_record()
    for s in ["analyzing_completed", "prepay_generating", "prepay_ready", "postpay_generating",
              "completed"]:
        r.move_to(Status(s))
    assert [c.status.value for c in r.status_history] == [
        "analyzing_completed", "prepay_generating", "prepay_ready", "postpay_generating", "completed"]
    assert r.reached(Status.PREPAY_READY)
    assert not r.reached(Status.ANALYSIS_FAILED) and not r.reached(Status.GENERATION_FAILED)


@pytest.mark.parametrize("path", [
    ["completed"], ["prepay_ready"], ["analyzing_completed", "postpay_generating"],
    ["analysis_failed", "prepay_generating"], ["analyzing_completed", "completed"]])
def test_forbidden_transitions(path):
    r = new_record()
    with pytest.raises(InvalidTransition):
        for s in path:
            r.move_to(Status(s))


def test_failed_and_stale_statuses_can_be_resumed():
    r = new_record()
    r.move_to(Status.ANALYSIS_FAILED)
    r.move_to(Status.ANALYZING)
    r.move_to(Status.ANALYZING_COMPLETED)
    r.move_to(Status.PREPAY_GENERATING)
    r.move_to(Status.PREPAY_GENERATING)  # a run that died is resumed
    r.move_to(Status.GENERATION_FAILED)
    r.move_to(Status.PREPAY_GENERATING)
    assert r.status is Status.PREPAY_GENERATING


def test_artifacts_are_replaced_not_duplicated():
    r = new_record()
    for sha in ("a", "b"):
        r.add_artifact(Artifact(kind="page_png", page=1, key="k", sha256=sha, size=1))
    assert len(r.artifacts) == 1 and r.artifacts[0].sha256 == "b"


@pytest.mark.parametrize("bad", ["../x", "a/b", "x" * 300, "", "-lead", "trail-", "a..b", "a b"])
def test_bad_job_ids(bad):
    with pytest.raises(InputError) as e:
        validate_job_id(bad)
    assert e.value.reason == "bad_job_id"


@pytest.mark.parametrize("name,reason", [("", "bad_name"), ("   ", "bad_name"), ("x" * 41, "bad_name"),
                                         ("Mi\x00a", "bad_name"), ("Mi\u200ba", "bad_name")])
def test_bad_names(name, reason):
    with pytest.raises(InputError) as e:
        validate_name(name)
    assert e.value.reason == reason


@pytest.mark.parametrize("name", ["Олена", "<b>Max</b>", "ليلى", "  Zoë  ", "x" * 40])
def test_good_names(name):
    assert validate_name(name) == name.strip()


@pytest.mark.parametrize("age", ["-1", "18", "five", "4.5"])
def test_bad_ages(age):
    with pytest.raises(InputError) as e:
        parse_age(age)
    assert e.value.reason == "bad_age"


def test_mark_failed_chooses_the_status(tmp_path):
    store = LocalStore(tmp_path)
    create_job(store, new_record())
    assert mark_failed(store, "j1", "analyze", "no_face", "No face.").status is Status.ANALYSIS_FAILED
    update_job(store, "j1", lambda r: r.move_to(Status.ANALYZING))
    update_job(store, "j1", lambda r: r.move_to(Status.ANALYZING_COMPLETED))
    failed = mark_failed(store, "j1", "render", "exit_1", "Crashed.")
    assert failed.status is Status.GENERATION_FAILED
    assert failed.error.step == "render" and failed.error.reason == "exit_1"


def _add(store, job_id, i):
    update_job(store, job_id, lambda r: r.add_artifact(
        Artifact(kind="page_png", page=i, key=f"k{i}", sha256="0", size=i)))


def _counting(store):
    """The store, counting the compare-and-swap writes that lost to another writer."""
    conflicts = [0]
    write_if = store.write_if

    def counted(key, data, version):
        done = write_if(key, data, version)
        conflicts[0] += not done
        return done

    store.write_if = counted
    return conflicts


def _updates_in_process(uri: str, pages: list[int]) -> int:
    store = open_store(uri)
    conflicts = _counting(store)
    for i in pages:
        _add(store, "j1", i)
    return conflicts[0]


UPDATES = 50


@pytest.mark.parametrize("where", ["local", "s3"])
@pytest.mark.parametrize("how", ["threads", "processes"])
def test_50_concurrent_updates_lose_nothing(where, how, tmp_path, request, count):
    uri = str(tmp_path) if where == "local" else f"s3://{request.getfixturevalue('bucket')}/p"
    create_job(open_store(uri), new_record())
    if how == "threads":
        def one(i):  # a store (an S3 client) per thread, as per step process
            store = open_store(uri)
            conflicts = _counting(store)
            _add(store, "j1", i)
            return conflicts[0]

        with ThreadPoolExecutor(10) as pool:
            conflicts = sum(pool.map(one, range(1, UPDATES + 1)))
    else:
        with multiprocessing.get_context("spawn").Pool(5) as pool:
            conflicts = sum(pool.starmap(_updates_in_process,
                                         [(uri, [i, i + 1]) for i in range(1, UPDATES + 1, 2)]))
    kept = sorted(a.page for a in read_job(open_store(uri), "j1").artifacts)
    count("concurrent_updates_made", UPDATES)
    count("concurrent_updates_kept", len(kept))
    count("concurrent_update_conflicts_retried", conflicts)
    assert kept == list(range(1, UPDATES + 1)), f"{UPDATES} made, {len(kept)} kept"
    if how == "threads":  # ten at once always collide: the swap really was contended
        assert conflicts > 0
