"""End to end: the `bookjob` CLI runs real jobs on the embedded engine (real Chromium, real
PNG and PDF files, a local folder or S3 over HTTP)."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
from pathlib import Path

import boto3
import numpy as np
import pytest
from PIL import Image

from steps.core.store import LocalStore, S3Store
from tests.helpers import DEMO

pytestmark = pytest.mark.slow


def bookjob(*args: str, check_code: int | None = 0) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "pipeline.cli", *args], capture_output=True,
                          text=True, timeout=600)
    if check_code is not None:
        assert done.returncode == check_code, done.stderr + done.stdout
    return done


def record_of(done: subprocess.CompletedProcess) -> dict:
    return json.loads(done.stdout)  # --json: the record and nothing else on stdout


def statuses(record: dict) -> list[str]:
    return [change["status"] for change in record["status_history"]]


def check_artifacts(store, record: dict) -> None:
    for artifact in record["artifacts"]:
        data = store.read(artifact["key"])
        assert hashlib.sha256(data).hexdigest() == artifact["sha256"]
        assert len(data) == artifact["size"]
        assert artifact["key"].startswith((f"layout/{record['job_id']}/",))


def image(store, key: str) -> Image.Image:
    return Image.open(io.BytesIO(store.read(key)))


def run_prepay_then_postpay(book_uri: str, store_uri: str, store, photo: Path) -> None:
    job = "landscape-1"
    done = bookjob("run", book_uri, "--photo", str(photo), "--name", "Олена", "--age", "5",
                   "--gender", "girl", "--job-id", job, "--store", store_uri, "--json")
    prepay = record_of(done)
    assert prepay["status"] == "prepay_ready"
    assert statuses(prepay) == ["analyzing", "analyzing_completed", "prepay_generating", "prepay_ready"]
    assert prepay["book_id"] == "test-landscape"
    assert prepay["analysis"]["face_detected"] and prepay["analysis"]["source"] == "heuristic"
    assert sorted((a["kind"], a["page"]) for a in prepay["artifacts"]) == [
        ("page_bg_png", 1), ("page_bg_png", 2), ("page_png", 1), ("page_png", 2), ("preview_pdf", None)]
    check_artifacts(store, prepay)
    assert store.exists(f"jobs/{job}/analysis.json")

    # postpay: the photo and the child come from the record
    postpay = record_of(bookjob("run", book_uri, "--stage", "postpay", "--job-id", job,
                                "--store", store_uri, "--json"))
    assert postpay["status"] == "completed"
    assert statuses(postpay)[4:] == ["postpay_generating", "completed"]
    pages = sorted(a["page"] for a in postpay["artifacts"] if a["kind"] == "page_png")
    assert pages == [1, 2, 3, 4]
    assert {a["kind"] for a in postpay["artifacts"]} == {"page_bg_png", "page_png", "preview_pdf", "book_pdf"}
    check_artifacts(store, postpay)
    for n in pages:
        page = image(store, f"layout/{job}/pages/page_{n:02d}.png")
        assert page.size == (900, 600)
        assert tuple(round(v) for v in page.info["dpi"]) == (150, 150)
    check_pdfs(store, job)


def check_pdfs(store, job: str) -> None:
    from pypdf import PdfReader

    preview = PdfReader(io.BytesIO(store.read(f"layout/{job}/preview.pdf")))
    assert len(preview.pages) == 2
    book = PdfReader(io.BytesIO(store.read(f"layout/{job}/book.pdf")))
    assert len(book.pages) == 4
    for pdf in (preview, book):  # the physical page size: 900x600 px at 150 dpi = 432x288 pt
        box = pdf.pages[0].mediabox
        assert (round(float(box.width)), round(float(box.height))) == (432, 288)
    # the print is lossless: page 3 in the PDF has exactly the pixels of page_03.png
    embedded = book.pages[2].images[0].image.convert("RGB")
    page_3 = image(store, f"layout/{job}/pages/page_03.png").convert("RGB")
    assert np.array_equal(np.asarray(embedded), np.asarray(page_3))
    small = preview.pages[0].images[0].image
    assert small.width < 900 / 2  # the preview is low resolution


def test_prepay_then_postpay_local(book, portrait, tmp_path):
    store = LocalStore(tmp_path / "store")
    run_prepay_then_postpay(str(book), str(tmp_path / "store"), store, portrait)
    job = "landscape-1"
    # the face sits in its slot; pixels far from it are the base illustration, scaled
    bg = np.asarray(image(store, f"layout/{job}/pages/page_01_bg.png").convert("RGB"), dtype=int)
    base = np.asarray(Image.open(book / "pages/p1.png").convert("RGB").resize(
        (900, 600), Image.Resampling.LANCZOS), dtype=int)
    slot_x, slot_y = int(900 * 0.46), int(600 * 0.40)
    window = (slice(slot_y - 20, slot_y + 40), slice(slot_x - 20, slot_x + 20))
    assert np.abs(bg[window] - base[window]).mean() > 10
    assert np.abs(bg[500:, 700:] - base[500:, 700:]).max() == 0
    # text only inside its box
    final = np.asarray(image(store, f"layout/{job}/pages/page_02.png").convert("RGB"), dtype=int)
    plain = np.asarray(image(store, f"layout/{job}/pages/page_02_bg.png").convert("RGB"), dtype=int)
    changed = np.argwhere(np.abs(final - plain).sum(axis=2) > 0)
    assert len(changed) > 500
    x, y, w, h = 45, 30, 540, 132
    assert changed[:, 1].min() >= x and changed[:, 1].max() < x + w
    assert changed[:, 0].min() >= y and changed[:, 0].max() < y + h


def test_prepay_then_postpay_s3(book, portrait, bucket):
    s3 = boto3.client("s3")
    for path in book.rglob("*"):
        if path.is_file():
            s3.put_object(Bucket=bucket, Key=f"books/landscape/{path.relative_to(book).as_posix()}",
                          Body=path.read_bytes())
    store_uri = f"s3://{bucket}/bookjob"
    run_prepay_then_postpay(f"s3://{bucket}/books/landscape", store_uri, S3Store(store_uri), portrait)


def _all_keys(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()
                  and not p.name.startswith("."))


def test_photo_without_a_face_fails_clearly(book, tmp_path):
    no_face = tmp_path / "landscape.png"
    Image.open(book / "pages" / "p2.png").resize((640, 480)).save(no_face)
    store = tmp_path / "store"
    done = bookjob("run", str(book), "--photo", str(no_face), "--name", "Max", "--age", "4",
                   "--job-id", "noface", "--store", str(store), check_code=3)
    assert "Traceback" not in done.stderr + done.stdout
    assert "No face was found in the photo" in done.stderr
    record = json.loads((store / "jobs/noface/job.json").read_text())
    assert record["status"] == "analysis_failed"
    assert record["error"]["step"] == "analyze" and record["error"]["reason"] == "no_face"
    assert all(k.startswith(("uploads/noface/", "jobs/noface/", "outbox/noface"))
               for k in _all_keys(store))


@pytest.mark.parametrize("field,value,reason", [
    ("--name", "Mi\x07a", "bad_name"), ("--age", "five", "bad_age"), ("--age", "18", "bad_age"),
    ("--name", "x" * 41, "bad_name")])
def test_bad_child_fields_fail_the_job(book, portrait, tmp_path, field, value, reason):
    args = {"--name": "Mia", "--age": "5", field: value}
    store = tmp_path / "store"
    done = bookjob("run", str(book), "--photo", str(portrait), *[x for kv in args.items() for x in kv],
                   "--job-id", "bad", "--store", str(store), "--json", check_code=3)
    record = record_of(done)
    assert record["status"] == "analysis_failed" and record["error"]["reason"] == reason
    assert "Traceback" not in done.stderr


def test_a_machine_without_chromium_says_what_to_install(book, portrait, tmp_path, monkeypatch):
    monkeypatch.setenv("BOOKJOB_CHROMIUM", str(tmp_path / "no-chromium"))
    store = tmp_path / "store"
    done = bookjob("run", str(book), "--photo", str(portrait), "--name", "Mia", "--age", "5",
                   "--job-id", "nochrome", "--store", str(store), check_code=1)
    assert "Traceback" not in done.stderr + done.stdout
    assert "retrying (2/2)" in done.stderr  # exit 1 is retried: the machine may get fixed
    record = json.loads((store / "jobs/nochrome/job.json").read_text())
    assert record["status"] == "generation_failed" and record["error"]["step"] == "render"
    assert "BOOKJOB_CHROMIUM is set to" in record["error"]["message"]
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "BOOKJOB_CHROMIUM is set to" in errors[0], done.stderr
    logs = list((store / "jobs/nochrome/logs").glob("*/prepay-render*"))  # logs/{run_id}/
    assert logs and all("Traceback" not in p.read_text() for p in logs)


def test_bad_job_id_writes_nothing(book, portrait, tmp_path):
    store = tmp_path / "store"
    done = bookjob("run", str(book), "--photo", str(portrait), "--name", "Mia", "--age", "5",
                   "--job-id", "../evil", "--store", str(store), check_code=3)
    assert "Job id" in done.stderr and "Traceback" not in done.stderr
    assert not store.exists() or _all_keys(store) == []


def test_postpay_before_prepay_is_a_usage_error(book, tmp_path):
    done = bookjob("run", str(book), "--stage", "postpay", "--job-id", "nope",
                   "--store", str(tmp_path / "s"), check_code=2)
    assert "prepay" in done.stderr


def test_html_name_and_rerun_of_a_finished_stage(book, portrait, tmp_path):
    store = str(tmp_path / "store")
    first = record_of(bookjob("run", str(book), "--photo", str(portrait), "--name", "<b>Max</b>",
                              "--age", "7", "--job-id", "html", "--store", store, "--json"))
    again = record_of(bookjob("run", str(book), "--job-id", "html", "--store", store, "--json"))
    assert first["child_name"] == "<b>Max</b>"
    assert again["status"] == "prepay_ready"
    assert len(again["artifacts"]) == len(first["artifacts"]) == 5
    # same inputs, same pages: nothing depends on the time or the run
    assert [a["sha256"] for a in again["artifacts"] if a["kind"] == "page_png"] == \
           [a["sha256"] for a in first["artifacts"] if a["kind"] == "page_png"]
    mismatch = bookjob("run", str(book), "--job-id", "html", "--name", "Max", "--store", store,
                       check_code=2)
    assert "was made with name" in mismatch.stderr


def test_demo(tmp_path):
    done = bookjob("demo", "--store", str(tmp_path / "store"), "--json")
    record = record_of(done)
    assert record["status"] == "completed"
    book = DEMO / "book"
    n_pages = len(list((book / "pages").glob("*.png")))
    pages = [a for a in record["artifacts"] if a["kind"] == "page_png"]
    assert len(pages) == n_pages >= 8
    store = LocalStore(tmp_path / "store")
    assert image(store, pages[0]["key"]).size == (2480, 2480)
    assert "step durations" in done.stderr or "\u2713" in done.stderr


def test_a_page_without_a_face_keeps_the_books_own_file_as_its_background(small_book, tmp_path):
    """Page 2 has no face: its base image, a plain RGB PNG at the page size, is stored as its
    background byte for byte (nothing decoded or encoded); the face page is made and encoded;
    the final page is the base image's pixels with the text set over them."""
    import shutil

    import yaml

    book = tmp_path / "book"
    shutil.copytree(small_book, book)
    manifest = yaml.safe_load((book / "book.yaml").read_text())
    size = tuple(manifest["output"]["page_size_px"])
    base = Image.open(book / "pages" / "p2.png").convert("RGB").resize(size)
    base.save(book / "pages" / "p2.png")
    store = LocalStore(tmp_path / "store")
    bookjob("run", str(book), "--photo", str(DEMO / "photo.jpg"), "--name", "Mia", "--age", "5",
            "--gender", "girl", "--job-id", "asis-1", "--store", str(store.root))
    assert store.read("layout/asis-1/pages/page_02_bg.png") == (book / "pages" / "p2.png").read_bytes()
    face_bg = store.read("layout/asis-1/pages/page_01_bg.png")
    assert face_bg[12:16] == b"IHDR" and face_bg[37:41] == b"pHYs"  # made and encoded by bookjob
    final = np.asarray(image(store, "layout/asis-1/pages/page_02.png").convert("RGB"))
    text_bottom = int(size[1] * 0.27) + 1  # the text box ends at 5% + 22% of the height
    assert np.array_equal(final[text_bottom:], np.asarray(base)[text_bottom:])
    assert not np.array_equal(final[:text_bottom], np.asarray(base)[:text_bottom])  # text set
