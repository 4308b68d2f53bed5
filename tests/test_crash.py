"""Crash safety: SIGKILL at any point, run the same command again, get the same book.

A step is killed at a named point of its work (`BOOKJOB_KILL`, see steps/core/faults.py) or the
whole run (the CLI, its step and the browser: one process group, as when a machine dies) is
killed some milliseconds into a step. After each kill nothing half-written is visible and the
record never names an object it does not match; the same `bookjob run` again finishes the job
with outputs byte-identical to an uninterrupted run of another job id and exactly one
artifact record per output. A finished stage run again redoes nothing and says so. The kills
run on every job-records backend (the store, SQLite, a real PostgreSQL).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from PIL import Image

from steps.core.records import job_exists, read_job
from steps.core.store import LocalStore, S3Store
from tests.helpers import CHILD_ARGS, DEMO_PHOTO, ROOT

pytestmark = pytest.mark.slow


def command(book: Path, job: str, store: str) -> list[str]:
    return [sys.executable, "-m", "pipeline.cli", "run", str(book), "--photo", str(DEMO_PHOTO),
            *CHILD_ARGS, "--job-id", job, "--store", store]


def bookjob(args: list[str], env: dict | None = None, kill_after: tuple[str, float] | None = None):
    """Run the CLI in its own process group; ``kill_after=(line, seconds)`` SIGKILLs the whole
    group that long after a progress line containing ``line`` (``""``: after the start).
    Returns (exit code, stderr, killed)."""
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
                            start_new_session=True)
    lines: list[str] = []
    seen = threading.Event()

    def read() -> None:
        for line in proc.stderr:
            lines.append(line)
            if kill_after is not None and kill_after[0] in line:
                seen.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    killed = False
    if kill_after is not None:
        if kill_after[0] == "":
            seen.set()
        if seen.wait(120):
            time.sleep(kill_after[1])
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                    killed = True
                except ProcessLookupError:  # it finished just now
                    pass
    proc.stdout.read()
    code = proc.wait(300)
    reader.join(10)
    return code, "".join(lines), killed


def outputs(store, job: str) -> dict[str, bytes]:
    """The job's layout files by name (page_01.png, preview.pdf, …)."""
    keys = store.list(f"layout/{job}/")
    return {k[len(f"layout/{job}/"):]: store.read(k) for k in keys}


def record(store, job: str) -> dict:
    """The job's record as JSON, from the records backend the test runs on."""
    return read_job(store, job).model_dump(mode="json")


def artifact_set(rec: dict) -> list[tuple]:
    return sorted((a["kind"], a["page"], a["sha256"], a["size"]) for a in rec["artifacts"])


@pytest.fixture(scope="module")
def book(small_book) -> Path:
    return small_book


@pytest.fixture(scope="module")
def reference(prepay_reference) -> dict:
    """An uninterrupted prepay run of another job id: its outputs and record."""
    return prepay_reference


def check_visible_state(store, job: str) -> None:
    """After a kill: every visible object is whole, and every artifact record matches its object."""
    for key in store.list(""):
        data = store.read(key)
        if key.endswith(".png"):
            Image.open(io.BytesIO(data)).load()
        elif key.endswith(".pdf"):
            from pypdf import PdfReader

            assert len(PdfReader(io.BytesIO(data)).pages) > 0
        elif key.endswith(".json"):
            json.loads(data)
    if job_exists(store, job):
        for a in record(store, job)["artifacts"]:
            assert hashlib.sha256(store.read(a["key"])).hexdigest() == a["sha256"], a["key"]


def check_finished_like_reference(store, job: str, reference: dict) -> None:
    rec = record(store, job)
    assert rec["status"] == "prepay_ready" and rec["error"] is None
    pairs = [(a["kind"], a["page"]) for a in rec["artifacts"]]
    assert len(pairs) == len(set(pairs)) == 5  # none lost, none twice
    assert artifact_set(rec) == artifact_set(reference["record"])
    assert outputs(store, job) == reference["outputs"]  # byte-identical


# (step, point, occurrence): where a step dies, with the engine that ran it
KILLS = [
    ("analyze", "write", 1),       # the new record's temporary file is complete, not renamed
    ("analyze", "update", 1),      # analysis.json stored, record not yet analyzing_completed
    ("backgrounds", "write", 1),   # page 1's background half-way into place
    ("render", "write", 2),        # page 1 stored, its record half-way into place
    ("render", "record", 1),       # page 1 stored, not yet recorded (records are per page)
    ("assemble", "record", 1),     # the preview stored, not recorded
    ("finalize", "update", 1),     # everything done but the status
]


@pytest.mark.parametrize("step,point,nth", KILLS, ids=[f"{s}:{p}:{n}" for s, p, n in KILLS])
def test_kill_at_a_named_point_then_rerun(book, reference, tmp_path, count, step, point, nth,
                                          records_url):
    root, job = tmp_path / "store", f"kill-{step}-{point}"
    env = {"BOOKJOB_KILL": f"{step}:{point}:{nth}", "BOOKJOB_KILL_SCOPE": "group"}
    code, err, _ = bookjob(command(book, job, str(root)), env=env)
    assert code == -signal.SIGKILL, err
    survive(book, root, job, reference, count)


# (progress line, seconds after it): the whole run killed that far into the next step
# (prepay/render + 0.03 s lands in assemble, which now takes ~0.1 s for the small book)
TIMED = [("prepay/analyze", 0.15), ("prepay/backgrounds", 0.6), ("prepay/render", 0.03)]


@pytest.mark.parametrize("after,delay", TIMED, ids=[f"{a or 'start'}+{d}s" for a, d in TIMED])
def test_kill_the_whole_run_at_a_moment_then_rerun(book, reference, tmp_path, count, after, delay,
                                                   records_url):
    root, job = tmp_path / "store", "timed"
    code, err, killed = bookjob(command(book, job, str(root)), kill_after=(after, delay))
    assert killed and code == -signal.SIGKILL, err
    survive(book, root, job, reference, count)


def survive(book, root, job: str, reference, count) -> None:
    """After a kill: nothing half-written is visible, and a re-run finishes like the reference."""
    count("kills_injected")
    store = LocalStore(root)
    check_visible_state(store, job)
    code, err, _ = bookjob(command(book, job, str(root)))
    assert code == 0 and "Traceback" not in err, err
    check_finished_like_reference(store, job, reference)
    count("kills_survived")


@pytest.mark.parametrize("step,point,nth", [("render", "put", 1)])
def test_a_killed_step_is_retried_by_the_engine(book, reference, tmp_path, count, step, point, nth,
                                               records_url):
    """Only the step dies (a pod killed): the engine retries it and the run finishes."""
    root, job = tmp_path / "store", "retried"
    env = {"BOOKJOB_KILL": f"{step}:{point}:{nth}", "BOOKJOB_KILL_ONCE": str(tmp_path / "fired")}
    code, err, _ = bookjob(command(book, job, str(root)), env=env)
    assert (tmp_path / "fired").exists()
    count("kills_injected")
    assert code == 0, err
    assert f"! {step} exited -9, retrying" in err
    check_finished_like_reference(LocalStore(root), job, reference)
    count("kills_survived")


def test_kill_on_s3_then_rerun(book, reference, bucket, count):
    uri, job = f"s3://{bucket}/crash", "s3-kill"
    env = {"BOOKJOB_KILL": "render:put:1", "BOOKJOB_KILL_SCOPE": "group"}
    code, err, _ = bookjob(command(book, job, uri), env=env)
    assert code == -signal.SIGKILL, err
    count("kills_injected")
    store = S3Store(uri)
    check_visible_state(store, job)
    code, err, _ = bookjob(command(book, job, uri))
    assert code == 0, err
    check_finished_like_reference(store, job, reference)
    count("kills_survived")


def test_outputs_depend_on_no_job_id_time_or_machine(reference):
    """The crash tests compare other job ids' pages with the reference byte for byte; here the
    files themselves: no time in a PNG, no date or random id in a PDF."""
    for name, data in reference["outputs"].items():
        if name.endswith(".png"):
            chunks, pos = [], 8
            while pos < len(data):
                length = int.from_bytes(data[pos:pos + 4], "big")
                chunks.append(data[pos + 4:pos + 8].decode("ascii"))
                pos += 12 + length
            assert set(chunks) <= {"IHDR", "pHYs", "IDAT", "IEND"}, (name, chunks)
        else:
            assert b"CreationDate" not in data and b"ModDate" not in data and b"/ID" not in data


def test_a_finished_stage_run_again_redoes_nothing_and_says_so(book, reference, tmp_path):
    root = tmp_path / "store"
    shutil.copytree(reference["root"], root)
    moved = tmp_path / "book"  # another folder, same contents: nothing depends on the path
    shutil.copytree(book, moved)
    pages = root / "layout/ref/pages"
    stamps = {p.name: p.stat().st_mtime_ns for p in (root / "layout/ref").rglob("*") if p.is_file()}

    code, err, _ = bookjob(command(moved, "ref", str(root)))
    assert code == 0, err
    assert "prepay/analyze" not in err   # analysed from this photo already: not run again
    assert err.count("page 1: unchanged, skipped") == err.count("page 2: unchanged, skipped") == 2
    assert err.count("preview.pdf: unchanged, skipped") == 1
    assert {p.name: p.stat().st_mtime_ns for p in (root / "layout/ref").rglob("*") if p.is_file()} == stamps
    assert artifact_set(record(LocalStore(root), "ref")) == artifact_set(reference["record"])

    # new text on page 2: only page 2's text and the preview are made again
    manifest = (moved / "book.yaml").read_text()
    (moved / "book.yaml").write_text(manifest.replace("A page without a face", "A new page"))
    code, err, _ = bookjob(command(moved, "ref", str(root)))
    assert code == 0, err
    assert err.count("page 1: unchanged, skipped") == 2 and err.count("page 2: unchanged, skipped") == 1
    assert "preview.pdf: unchanged" not in err
    assert (pages / "page_02.png").read_bytes() != reference["outputs"]["pages/page_02.png"]
    assert (pages / "page_01.png").stat().st_mtime_ns == stamps["page_01.png"]

    # a lost output is made again, the same
    (pages / "page_01.png").unlink()
    code, err, _ = bookjob(command(moved, "ref", str(root)))
    assert code == 0, err
    assert err.count("page 1: unchanged, skipped") == 1  # its background only
    assert (pages / "page_01.png").read_bytes() == reference["outputs"]["pages/page_01.png"]
