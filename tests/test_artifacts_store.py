"""Artifacts: the fingerprint pinned byte for byte, storing and recording outputs, reuse of a
whole-book output, and the export folder Argo picks up."""

from __future__ import annotations

import hashlib
import json

import pytest

from steps.core import artifacts, faults
from steps.core.job import Artifact, JobRecord
from steps.core.manifest import Output
from steps.core.records import create_job, read_job
from steps.core.store import LocalStore


def by_hand(*blobs: bytes) -> str:
    """The fingerprint's framing, written out: each part is a tag byte and its payload, prefixed
    by its length as 8 big-endian bytes, all under one sha256."""
    digest = hashlib.sha256()
    for blob in blobs:
        digest.update(len(blob).to_bytes(8, "big") + blob)
    return digest.hexdigest()


def test_the_fingerprint_is_pinned():
    # Records keep fingerprints across versions: a different framing would redo every page.
    model = Output(page_size_px=(64, 64))
    parts = (b"png", bytearray(b"png"), {"z": "Олена", "a": [1, None]}, model, "x", 5, None)
    expected = by_hand(
        b"b" + hashlib.sha256(b"png").digest(),
        b"b" + hashlib.sha256(b"png").digest(),
        b"j" + '{"a":[1,null],"z":"Олена"}'.encode(),
        b"m" + model.model_dump_json().encode(),
        b'j"x"', b"j5", b"jnull")
    assert artifacts.fingerprint(*parts) == expected
    assert artifacts.fingerprint() == hashlib.sha256().hexdigest()


def test_a_model_and_its_dict_differ():
    model = Output(page_size_px=(64, 64))
    assert artifacts.fingerprint(model) != artifacts.fingerprint(json.loads(model.model_dump_json()))
    assert artifacts.fingerprint(b"5") != artifacts.fingerprint("5") != artifacts.fingerprint(5)


@pytest.fixture
def store(tmp_path):
    store = LocalStore(tmp_path)
    create_job(store, JobRecord(job_id="j", book_uri="/b", photo_key="uploads/j/p.jpg",
                                child_name="Mia", child_age=5, child_gender="girl"))
    return store


def test_put_stores_the_bytes_and_describes_them(store, monkeypatch):
    points = []
    monkeypatch.setattr(faults, "point", lambda name: points.append(
        (name, store.exists("layout/j/preview.pdf"))))
    made = artifacts.put(store, "layout/j/preview.pdf", b"%PDF-1.7 preview", "preview_pdf",
                         inputs_sha256="in")
    assert store.read("layout/j/preview.pdf") == b"%PDF-1.7 preview"
    assert made == Artifact(kind="preview_pdf", page=None, key="layout/j/preview.pdf",
                            sha256=hashlib.sha256(b"%PDF-1.7 preview").hexdigest(), size=16,
                            inputs_sha256="in")
    assert points == [("write", False), ("put", True)]     # the object is stored, not recorded
    page = artifacts.put(store, "layout/j/pages/page_03.png", b"png", "page_png", 3)
    assert (page.page, page.inputs_sha256, page.size) == (3, None, 3)


def test_record_adds_every_artifact_in_one_update(store, monkeypatch):
    made = [artifacts.put(store, f"layout/j/pages/page_0{n}.png", b"p%d" % n, "page_png", n)
            for n in (2, 1)]
    points = []
    monkeypatch.setattr(faults, "point", lambda name: points.append(name))
    record = artifacts.record(store, "j", made)
    assert points == ["record", "write", "update", "write"]   # the outbox note, the record
    assert record == read_job(store, "j")
    assert [(a.kind, a.page, a.key) for a in record.artifacts] == [
        ("page_png", 1, "layout/j/pages/page_01.png"), ("page_png", 2, "layout/j/pages/page_02.png")]


def test_a_whole_book_output_is_reused_and_named_by_its_file(store, capsys):
    made = artifacts.put(store, "layout/j/book.pdf", b"%PDF book", "book_pdf", inputs_sha256="in")
    artifacts.record(store, "j", [made])
    job = read_job(store, "j")
    assert artifacts.reuse(store, job, "book_pdf", None, "in") == made
    assert capsys.readouterr().err == "book.pdf: unchanged, skipped\n"
    assert artifacts.reuse(store, job, "preview_pdf", None, "in") is None   # another kind
    assert artifacts.reuse(store, job, "book_pdf", 1, "in") is None          # another page
    assert capsys.readouterr().err == ""


def test_export_copies_outputs_by_file_name(store, tmp_path):
    made = [artifacts.put(store, "layout/j/pages/page_01.png", b"one", "page_png", 1),
            artifacts.put(store, "layout/j/preview.pdf", b"pdf", "preview_pdf")]
    out = tmp_path / "out" / "deeper"
    artifacts.export(str(out), made, store)
    assert sorted(p.name for p in out.iterdir()) == ["page_01.png", "preview.pdf"]
    assert (out / "page_01.png").read_bytes() == b"one" and (out / "preview.pdf").read_bytes() == b"pdf"
    # a second export (the other chunk of a stage, a re-run) into the same folder adds to it
    store.write("layout/j/pages/page_01.png", b"one again")
    artifacts.export(str(out), [*made, artifacts.put(store, "layout/j/pages/page_02.png", b"two",
                                                     "page_png", 2)], store)
    assert sorted(p.name for p in out.iterdir()) == ["page_01.png", "page_02.png", "preview.pdf"]
    assert (out / "page_01.png").read_bytes() == b"one again"


def test_no_export_folder_means_no_export(store, tmp_path, monkeypatch):
    made = [artifacts.put(store, "layout/j/preview.pdf", b"pdf", "preview_pdf")]
    monkeypatch.chdir(tmp_path)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    artifacts.export("", made, store)
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


def test_code_version_hashes_names_and_sources(tmp_path, monkeypatch):
    (tmp_path / "probe_a.py").write_text("X = 1\n")
    (tmp_path / "probe_b.py").write_text("X = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    version = artifacts.code_version.__wrapped__
    a, b = version("probe_a"), version("probe_b")
    assert a != b                                         # same source, another module
    assert version("probe_a", "sys", "no_such_module_here") == a  # built-in and missing: no part
    assert version() == hashlib.sha256().hexdigest()
    expected = hashlib.sha256(b"probe_a\0X = 1\n").hexdigest()
    assert a == expected
