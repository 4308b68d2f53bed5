"""The old system's flow, faithfully (issue 13): every failure recorded, analysis on its own,
regeneration as the shop knew it, the book bound to its job, empty stages, late duplicates.

End to end through the `bookjob` CLI on the embedded engine (real steps, real Chromium), on
every job-records backend: the store, SQLite and a real PostgreSQL (issue 24)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from steps.core.analysis import Analysis, prompt_gender
from steps.core.job import TRANSITIONS, JobRecord, Status
from steps.core.records import create_job, mark_failed, read_job, update_job
from steps.core.store import LocalStore
from tests.helpers import DEMO_PHOTO, ROOT, make_book

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("records_url")]


def bookjob(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *args], capture_output=True,
                          text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})


def run_ok(*args: str, env=None) -> dict:
    done = bookjob(*args, "--json", env=env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def history(record: dict) -> list[str]:
    return [c["status"] for c in record["status_history"]]


def new_job(book: Path, store: Path, job: str, stage: str = "prepay") -> dict:
    return run_ok("run", str(book), "--photo", str(DEMO_PHOTO), "--name", "Mia", "--age", "5",
                  "--job-id", job, "--store", str(store), "--stage", stage)


@pytest.fixture
def small(tmp_path) -> Path:
    return make_book(tmp_path / "book", size=(600, 400))


# ---- every failure is recorded ----------------------------------------------------------


@pytest.mark.parametrize("status", list(Status))
def test_a_failure_is_recorded_from_every_status(tmp_path, status):
    store = LocalStore(tmp_path)
    record = JobRecord(job_id="j", book_uri="/b", photo_key="uploads/j/photo.jpg",
                       child_name="Mia", child_age=5, child_gender="girl", status=status)
    create_job(store, record)
    failed = mark_failed(store, "j", "plan", "bad_manifest", "broken")
    expected = (Status.ANALYSIS_FAILED if status in (Status.ANALYZING, Status.ANALYSIS_FAILED)
                else Status.GENERATION_FAILED)
    assert failed.status is expected and failed.error.reason == "bad_manifest"
    assert expected in TRANSITIONS[status]


def test_postpay_meeting_a_broken_book_fails_once_keeps_prepay_and_resumes(small, tmp_path):
    store = tmp_path / "store"
    prepay = new_job(small, store, "late")
    assert prepay["status"] == "prepay_ready"
    good = (small / "book.yaml").read_text()
    (small / "book.yaml").write_text(good + "\n  - [unclosed\n")

    done = bookjob("run", "--job-id", "late", "--store", str(store), "--stage", "postpay", "--json")
    assert done.returncode == 3, done.stderr
    assert "retrying" not in done.stderr          # one attempt: bad input is never retried
    assert "Traceback" not in done.stderr
    failed = json.loads(done.stdout)
    assert failed["status"] == "generation_failed"
    assert failed["error"]["reason"] == "bad_manifest" and failed["error"]["step"] == "plan"
    assert "book.yaml" in failed["error"]["message"]
    kept = {(a["kind"], a["page"]) for a in failed["artifacts"]}
    assert kept == {(a["kind"], a["page"]) for a in prepay["artifacts"]}  # prepay still listed

    (small / "book.yaml").write_text(good)
    resumed = run_ok("run", "--job-id", "late", "--store", str(store), "--stage", "postpay")
    assert resumed["status"] == "completed" and resumed["error"] is None
    assert history(resumed)[-3:] == ["generation_failed", "postpay_generating", "completed"]


def test_a_step_without_a_job_record_is_bad_input_not_retried(small, tmp_path):
    done = subprocess.run([sys.executable, "-m", "steps.plan", "--store", str(tmp_path),
                           "--job-id", "ghost", "--book", str(small), "--stage", "prepay"],
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 3
    assert "no_job" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "jobs").exists()


# ---- analysis on its own ----------------------------------------------------------------


def test_analyze_stage_rests_then_prepay_does_not_analyse_again(small, tmp_path):
    store = tmp_path / "store"
    analysed = new_job(small, store, "a1", stage="analyze")
    assert analysed["status"] == "analyzing_completed"
    assert history(analysed) == ["analyzing", "analyzing_completed"]
    assert analysed["analysis"]["face_detected"] and analysed["artifacts"] == []
    assert not (store / "layout").exists()           # nothing drawn

    done = bookjob("run", "--job-id", "a1", "--store", str(store), "--json")
    assert done.returncode == 0, done.stderr
    assert "prepay/analyze" not in done.stderr       # the engine skipped the step
    prepay = json.loads(done.stdout)
    assert history(prepay) == ["analyzing", "analyzing_completed", "prepay_generating",
                               "prepay_ready"]
    same = {k: v for k, v in prepay["analysis"].items() if k != "generation_retry"}
    assert same == {k: v for k, v in analysed["analysis"].items() if k != "generation_retry"}


def test_the_analyze_step_on_an_unchanged_photo_leaves_the_status(small, portrait, tmp_path):
    store = tmp_path / "store"
    new_job(small, store, "a2")
    record = read_job(LocalStore(store), "a2").model_dump(mode="json")
    done = subprocess.run(
        [sys.executable, "-m", "steps.analyze", "--store", str(store), "--job-id", "a2",
         "--book", str(small.absolute()), "--name", "Mia", "--age", "5"],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    assert "analysis: unchanged, skipped" in done.stderr
    after = read_job(LocalStore(store), "a2").model_dump(mode="json")
    assert after["status"] == "prepay_ready" and history(after) == history(record)

    # a new photo under the same key is analysed again, and the status says so
    (store / record["photo_key"]).write_bytes(portrait.read_bytes())
    done = bookjob("run", "--job-id", "a2", "--store", str(store), "--json")
    assert "prepay/analyze" in done.stderr
    assert history(json.loads(done.stdout))[-4:-2] == ["analyzing", "analyzing_completed"]


# ---- regeneration -----------------------------------------------------------------------


def test_regeneration_counts_resets_the_flag_and_stops_at_the_limit(small, tmp_path):
    store = tmp_path / "store"
    first = new_job(small, store, "r1")
    seeds = first["analysis"]["generation_retry"]["seeds"]
    assert set(seeds) == {"1"} and first["analysis"]["generation_retry"]["count"] == 0

    again = run_ok("run", "--job-id", "r1", "--store", str(store), "--randomize-seed")
    retry = again["analysis"]["generation_retry"]
    assert retry["count"] == 1 and retry["randomize_seed"] is False
    assert retry["seeds"]["1"] != seeds["1"]
    assert history(again)[-2:] == ["prepay_generating", "prepay_ready"]
    assert "analyzing" not in history(again)[2:]   # no analysis on a regeneration

    # the shop sets the flag in the record, as the old clients did
    def shop(record: JobRecord) -> None:
        record.analysis.generation_retry.randomize_seed = True

    update_job(LocalStore(store), "r1", shop)
    by_shop = run_ok("run", "--job-id", "r1", "--store", str(store))
    assert by_shop["analysis"]["generation_retry"]["count"] == 2
    assert by_shop["analysis"]["generation_retry"]["randomize_seed"] is False
    assert by_shop["analysis"]["generation_retry"]["seeds"]["1"] != retry["seeds"]["1"]

    # beyond the limit: exit 3, and the job stays as it was
    over = bookjob("run", "--job-id", "r1", "--store", str(store), "--randomize-seed",
                   env={"BOOKJOB_MAX_REGENERATIONS": "2"})
    assert over.returncode == 3 and "limit" in over.stderr
    assert read_job(LocalStore(store), "r1").status is Status.PREPAY_READY
    # ... also when the shop's flag asks (the plan step refuses without failing the job)
    update_job(LocalStore(store), "r1", shop)
    over = bookjob("run", "--job-id", "r1", "--store", str(store),
                   env={"BOOKJOB_MAX_REGENERATIONS": "2"})
    assert over.returncode == 3 and "limit" in over.stderr
    record = read_job(LocalStore(store), "r1")
    assert record.status is Status.PREPAY_READY and record.error is None


def test_regenerating_named_pages_keeps_the_others(tmp_path):
    book = make_book(tmp_path / "book", size=(600, 400))
    manifest = yaml.safe_load((book / "book.yaml").read_text())
    manifest["prepay_pages"] = [1, 2, 3]
    (book / "book.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False))
    store = tmp_path / "store"
    first = new_job(book, store, "p1")
    seeds = first["analysis"]["generation_retry"]["seeds"]
    assert set(seeds) == {"1", "3"}
    again = run_ok("run", "--job-id", "p1", "--store", str(store), "--pages", "3")
    new_seeds = again["analysis"]["generation_retry"]["seeds"]
    assert new_seeds["1"] == seeds["1"] and new_seeds["3"] != seeds["3"]

    def made_from(record: dict) -> dict[int, str]:
        return {a["page"]: a["inputs_sha256"] for a in record["artifacts"] if a["kind"] == "page_bg_png"}

    before, after = made_from(first), made_from(again)
    assert after[1] == before[1] and after[2] == before[2]   # kept
    assert after[3] != before[3]                              # made again with its new seed
    assert again["analysis"]["generation_retry"]["count"] == 1

    wrong = bookjob("run", "--job-id", "p1", "--store", str(store), "--pages", "4")
    assert wrong.returncode == 3 and "not a prepay page" in wrong.stderr
    record = read_job(LocalStore(store), "p1")
    assert record.status is Status.PREPAY_READY and record.error is None
    assert record.generation_retry.randomize_seed is False and record.generation_retry.pages == []
    assert record.generation_retry.count == 1


def test_old_records_keep_their_generation_retry():
    old = {"job_id": "o", "book_uri": "/b", "photo_key": "uploads/o/photo.jpg",
           "child_name": "Mia", "child_age": 5, "child_gender": "girl",
           "generation_retry": {"randomize_seed": True, "seeds": {"1": 7}},
           "analysis": {"skin_tone": "light", "hair_color": "brown", "hair_style": "wavy",
                        "eye_color": "blue", "source": "heuristic", "photo_size": [10, 10],
                        "face_box": [0, 0, 5, 5], "left_eye": [1, 1], "right_eye": [3, 1]}}
    record = JobRecord.model_validate(old)
    assert record.generation_retry.randomize_seed and record.generation_retry.seeds == {"1": 7}
    assert "generation_retry" in json.loads(record.model_dump_json())["analysis"]


# ---- gender for the prompt ----------------------------------------------------------------


@pytest.mark.parametrize("parent, model, word", [
    ("girl", "boy", "girl"), ("boy", None, "boy"), ("unspecified", "girl", "girl"),
    ("unspecified", "boy", "boy"), ("unspecified", "unspecified", "child"),
    ("unspecified", None, "child")])
def test_the_prompt_takes_the_parents_gender_else_the_analysis(parent, model, word):
    from steps.backgrounds import page_prompt

    assert prompt_gender(parent, model) == word
    analysis = Analysis(skin_tone="light", hair_color="brown", hair_style="wavy",
                        eye_color="blue", source="qwen2-vl", photo_size=(10, 10),
                        face_box=(0, 0, 5, 5), left_eye=(1, 1), right_eye=(3, 1), gender=parent,
                        model_gender=model)
    assert page_prompt("forest", analysis) == (
        f"forest, child portrait, {word}, brown hair, wavy hairstyle, high quality")


# ---- loose ends ---------------------------------------------------------------------------


def test_the_book_is_bound_to_the_job(small, tmp_path):
    store = tmp_path / "store"
    new_job(small, store, "b1")
    other = make_book(tmp_path / "other", size=(600, 400))
    manifest = yaml.safe_load((other / "book.yaml").read_text())
    manifest["id"] = "another-book"
    (other / "book.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False))
    done = bookjob("run", str(other), "--job-id", "b1", "--store", str(store), "--stage", "postpay")
    assert done.returncode == 3 and "bound to book 'test-landscape'" in done.stderr
    assert read_job(LocalStore(store), "b1").status is Status.PREPAY_READY
    # the plan step refuses it too (a cluster run), without failing the job
    plan = subprocess.run([sys.executable, "-m", "steps.plan", "--store", str(store), "--job-id",
                           "b1", "--book", str(other), "--stage", "postpay"],
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert plan.returncode == 3 and "was started with book" in plan.stderr
    assert read_job(LocalStore(store), "b1").status is Status.PREPAY_READY
    # the same book moved elsewhere is still the job's book, and the record follows it
    moved = tmp_path / "moved"
    small.rename(moved)
    completed = run_ok("run", str(moved), "--job-id", "b1", "--store", str(store),
                       "--stage", "postpay")
    assert completed["status"] == "completed" and completed["book_uri"] == str(moved)


def test_an_empty_job_id_is_a_usage_error(small, tmp_path):
    done = bookjob("run", str(small), "--photo", str(DEMO_PHOTO), "--name", "Mia", "--age", "5",
                   "--job-id", "", "--store", str(tmp_path / "store"))
    assert done.returncode == 2 and "--job-id is empty" in done.stderr
    assert not (tmp_path / "store").exists()


def test_an_empty_stage_completes(tmp_path):
    book = make_book(tmp_path / "book", size=(600, 400))
    manifest = yaml.safe_load((book / "book.yaml").read_text())
    manifest["prepay_pages"] = []
    (book / "book.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False))
    record = new_job(book, tmp_path / "store", "e1", stage="full")
    assert record["status"] == "completed"
    kinds = {a["kind"] for a in record["artifacts"]}
    assert "book_pdf" in kinds and "preview_pdf" not in kinds


def test_a_late_duplicate_finalize_treats_its_work_as_done(small, tmp_path):
    store = tmp_path / "store"
    done = new_job(small, store, "d1", stage="full")
    assert done["status"] == "completed"
    late = subprocess.run([sys.executable, "-m", "steps.finalize", "--store", str(store),
                           "--job-id", "d1", "--book", str(small.absolute()), "--stage", "prepay"],
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert late.returncode == 0, late.stderr
    assert "already completed" in late.stderr
    assert read_job(LocalStore(store), "d1").status is Status.COMPLETED


# ---- progress ------------------------------------------------------------------------------


class _Stream:
    def __init__(self, tty: bool) -> None:
        self.tty, self.text = tty, ""

    def isatty(self) -> bool:
        return self.tty

    def write(self, text: str) -> None:
        self.text += text

    def flush(self) -> None:
        pass


def test_progress_is_a_bar_per_chunk_on_a_terminal_and_lines_otherwise():
    from pipeline.commands.local import PageBars

    plain = PageBars(_Stream(tty=False))
    plain.page("1,2", "render", 1, 2)
    plain.line("  done")
    assert plain.stream.text == "    render[1,2]: 1/2 pages\n  done\n"

    tty = PageBars(_Stream(tty=True))
    tty.page("1,2", "backgrounds", 1, 2)
    tty.page("3,4", "backgrounds", 2, 2)
    last = tty.stream.text.rsplit("\r", 1)[-1]
    assert "backgrounds[1,2] ██████░░░░░░ 1/2" in last and "backgrounds[3,4] ████████████ 2/2" in last
    tty.line("  ✓ step")            # a finished chunk's bar goes; the running one is redrawn
    assert tty.stream.text.endswith("  ✓ step\n\r\x1b[Kbackgrounds[1,2] ██████░░░░░░ 1/2")
    tty.close()
    assert tty.stream.text.endswith("\r\x1b[K")
