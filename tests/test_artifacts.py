"""The input fingerprint of artifacts and the reuse of unchanged ones (steps.core.artifacts)."""

from __future__ import annotations

import pytest

from steps.core import artifacts
from steps.core.job import JobRecord
from steps.core.manifest import Output
from steps.core.records import create_job, read_job
from steps.core.store import LocalStore


def test_fingerprint_is_stable_and_sees_every_part():
    base = artifacts.fingerprint(b"png", {"b": 1, "a": [1, 2]}, Output(page_size_px=(64, 64)), None)
    assert base == artifacts.fingerprint(b"png", {"a": [1, 2], "b": 1}, Output(page_size_px=(64, 64)), None)
    others = [artifacts.fingerprint(b"pnG", {"b": 1, "a": [1, 2]}, Output(page_size_px=(64, 64)), None),
              artifacts.fingerprint(b"png", {"b": 2, "a": [1, 2]}, Output(page_size_px=(64, 64)), None),
              artifacts.fingerprint(b"png", {"b": 1, "a": [1, 2]}, Output(page_size_px=(64, 65)), None),
              artifacts.fingerprint({"b": 1, "a": [1, 2]}, b"png", Output(page_size_px=(64, 64)), None),
              artifacts.fingerprint(b"png", {"b": 1, "a": [1, 2]}, Output(page_size_px=(64, 64)))]
    assert len({base, *others}) == 6
    assert artifacts.fingerprint("ab", "c") != artifacts.fingerprint("a", "bc")


def test_code_version_follows_the_source(tmp_path, monkeypatch):
    module = tmp_path / "bookjob_probe_mod.py"
    module.write_text("X = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    first = artifacts.code_version.__wrapped__("bookjob_probe_mod", "no.such.module")
    module.write_text("X = 2\n")
    assert artifacts.code_version.__wrapped__("bookjob_probe_mod") != first


@pytest.fixture
def job(tmp_path):
    store = LocalStore(tmp_path)
    create_job(store, JobRecord(job_id="j", book_uri="/b", photo_key="uploads/j/p.jpg",
                                child_name="Mia", child_age=5, child_gender="girl"))
    made = artifacts.put(store, "layout/j/pages/page_01.png", b"page one", "page_png", 1, "in-1")
    artifacts.record(store, "j", [made])
    return store


def test_unchanged_inputs_and_bytes_are_reused_and_said(job, capsys):
    kept = artifacts.reuse(job, read_job(job, "j"), "page_png", 1, "in-1")
    assert kept is not None and kept.inputs_sha256 == "in-1"
    assert capsys.readouterr().err == "page 1: unchanged, skipped\n"


@pytest.mark.parametrize("spoil", ["other inputs", "object gone", "object changed", "never made"])
def test_anything_else_is_made_again(job, capsys, spoil):
    inputs, page = "in-1", 1
    if spoil == "other inputs":
        inputs = "in-2"
    elif spoil == "object gone":
        (job.root / "layout/j/pages/page_01.png").unlink()
    elif spoil == "object changed":
        job.write("layout/j/pages/page_01.png", b"page one, edited")
    else:
        page = 2
    assert artifacts.reuse(job, read_job(job, "j"), "page_png", page, inputs) is None
    assert capsys.readouterr().err == ""
