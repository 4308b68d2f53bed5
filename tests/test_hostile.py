"""Hostile and malformed inputs, through the `bookjob` CLI as a user runs it.

Each case is an input and what must happen. A bad input ends with exit 3 and one sentence on
stderr that says what is wrong and how to fix it; the job (where a record can exist) is
marked failed with that reason; no traceback reaches the terminal (nor the steps' logs); and
nothing is written outside the job's own keys (`uploads/{job}/`, `jobs/{job}/`, `outbox/{job}`,
`layout/{job}/`), not in the book, not in the working directory. The inputs the issue says
must work (an EXIF-rotated, HEIC or WebP photo, several faces, a name with markup or in a
right-to-left script) make a finished prepay stage instead.

Photos are made from the demo photo, the one real face we have: scaled, rotated, converted,
pasted several times onto a canvas.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from steps.core.images import MAX_PIXELS
from tests.helpers import DEMO_PHOTO, ROOT, make_book

pytestmark = pytest.mark.slow

JOB = "case-1"
# Words a sentence that says how to fix something uses.
FIX = re.compile(r"\b(send|use|give|add|fix|type|remove|check|list|move|shrink|point|upload|run|"
                 r"pick|replace|correct|shorten|host|leave|number|write)\b", re.IGNORECASE)


# ---- photos -------------------------------------------------------------------------------


def demo() -> Image.Image:
    return Image.open(DEMO_PHOTO).convert("RGB")


def encode(image: Image.Image, fmt: str, **kw) -> bytes:
    if fmt == "HEIF":
        from pillow_heif import register_heif_opener

        register_heif_opener()
    out = io.BytesIO()
    image.save(out, format=fmt, **kw)
    return out.getvalue()


def exif_rotated() -> bytes:
    """The photo stored sideways with EXIF orientation 6 ("rotate 90° clockwise to show")."""
    exif = Image.Exif()
    exif[0x0112] = 6
    upright = demo().crop((0, 0, 512, 440))
    return encode(upright.transpose(Image.Transpose.ROTATE_90), "JPEG", quality=92,
                  exif=exif.tobytes())


# The several-faces photo: the demo face full size, three copies at 70 % around it.
BIG_COPY = (470, 10, 982, 522)


def several_faces() -> bytes:
    canvas = Image.new("RGB", (1000, 1000), (200, 210, 220))
    small = demo().resize((360, 360), Image.Resampling.LANCZOS)
    for xy in ((10, 40), (10, 560), (560, 560)):
        canvas.paste(small, xy)
    canvas.paste(demo(), BIG_COPY[:2])
    return encode(canvas, "PNG")


def face_on_canvas(scale: float, size=(1200, 900)) -> bytes:
    canvas = Image.new("RGB", size, (200, 210, 220))
    side = int(512 * scale)
    canvas.paste(demo().resize((side, side), Image.Resampling.LANCZOS), (500, 300))
    return encode(canvas, "JPEG", quality=90)


def sixteen_bit_gray() -> bytes:
    gray = np.asarray(demo().convert("L"), dtype=np.uint16) * 257
    return encode(Image.fromarray(gray), "PNG")


def decompression_bomb() -> bytes:
    side = int((MAX_PIXELS * 1.2) ** 0.5)
    return encode(Image.new("1", (side, side)), "PNG")  # a few KB, 60 MP when decoded


def transparent() -> bytes:
    image = demo().convert("RGBA")
    image.putalpha(0)
    return encode(image, "PNG")


def no_face() -> bytes:
    sky = np.linspace([120, 180, 240], [220, 240, 255], 480).astype(np.uint8)
    return encode(Image.fromarray(np.repeat(sky[:, None, :], 640, axis=1)), "PNG")


# ---- books ---------------------------------------------------------------------------------


def edit(change: Callable[[dict], None]) -> Callable[[Path], None]:
    """A change to a copy of the test book's manifest."""

    def apply(book: Path) -> None:
        data = yaml.safe_load((book / "book.yaml").read_text())
        change(data)
        (book / "book.yaml").write_text(yaml.safe_dump(data, allow_unicode=True))

    return apply


def write_file(name: str, data: bytes, change: Callable[[dict], None] | None = None):
    def apply(book: Path) -> None:
        (book / name).parent.mkdir(parents=True, exist_ok=True)
        (book / name).write_bytes(data)
        if change:
            edit(change)(book)

    return apply


def raw_manifest(text: str) -> Callable[[Path], None]:
    def apply(book: Path) -> None:
        (book / "book.yaml").write_text(text)

    return apply


def arabic_fallback(book: Path) -> None:
    """The book with an Arabic font (Debian's Noto Naskh Arabic) in its fallback_fonts."""
    shutil.copy("/usr/share/fonts/truetype/noto/NotoNaskhArabic-Regular.ttf",
                book / "fonts" / "Arabic.ttf")
    edit(lambda d: d.update(fonts=d["fonts"] + [{"family": "Book Arabic", "src": "fonts/Arabic.ttf"}],
                            fallback_fonts=["Book Arabic"]))(book)


def layer(d: dict, page: int = 0) -> dict:
    return d["pages"][page]["text_layers"][0]


def alias_bomb(book: Path) -> None:
    """The "billion laughs" as the title: nine levels of nine aliases, a billion strings if
    anything expanded it."""
    levels = ['&x0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    levels += [f"&x{i} [" + ", ".join([f"*x{i - 1}"] * 9) + "]" for i in range(1, 10)]
    data = yaml.safe_load((book / "book.yaml").read_text())
    data["title"] = "PLACEHOLDER"
    text = yaml.safe_dump(data).replace("PLACEHOLDER", "[" + ", ".join(levels) + "]")
    (book / "book.yaml").write_text(text)


def many_pages(d: dict) -> None:
    d["pages"] = [{**d["pages"][1], "num": n} for n in range(1, 101)]


def unreachable_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again: connections are refused


# ---- the corpus ----------------------------------------------------------------------------


@dataclass
class Case:
    expect: str                          # the error reason, or "ok"
    says: str = ""                       # a fragment the message must contain
    photo: Callable[[], bytes] | None = None
    photo_name: str = "photo.jpg"
    name: str = "Mia"
    age: str = "5"
    gender: str = "girl"
    language: str = ""
    dedication: str = ""
    job_id: str = JOB
    book: Callable[[Path], None] | None = None
    text: bool = False                   # needs the book whose prepay pages carry text
    check: Callable[[dict, Path], None] | None = field(default=None, repr=False)


def upright(record: dict, store: Path) -> None:
    from steps.backends.faces import find_faces

    expected = find_faces(np.asarray(demo().crop((0, 0, 512, 440))))[0].box
    analysis = record["analysis"]
    assert analysis["photo_size"] == [512, 440]  # the display size, not the stored 440x512
    assert np.allclose(analysis["face_box"], expected, atol=6), (analysis["face_box"], expected)


def largest_face_wins(record: dict, store: Path) -> None:
    analysis = record["analysis"]
    assert analysis["faces_found"] >= 3
    x, y, w, h = analysis["face_box"]
    x0, y0, x1, y1 = BIG_COPY
    assert x0 <= x and x + w <= x1 and y0 <= y and y + h <= y1, analysis["face_box"]


def rendered_literally(record: dict, store: Path) -> None:
    """The name is kept as typed, drawn as text, and the page asked for nothing (an <img> or a
    stylesheet read as markup would have asked, and been blocked and logged)."""
    logs = sorted((store / f"jobs/{JOB}/logs").glob("*/prepay-render-*.log"))  # logs/{run_id}/
    assert logs, "no render log"
    for log in (path.read_text() for path in logs):  # one per chunk
        assert "blocked" not in log and "Traceback" not in log
    page = np.asarray(Image.open(store / f"layout/{JOB}/pages/page_01.png").convert("RGB"), int)
    bg = np.asarray(Image.open(store / f"layout/{JOB}/pages/page_01_bg.png").convert("RGB"), int)
    assert (np.abs(page - bg).sum(axis=2) > 0).sum() > 500  # text was drawn


def name_is(expected: str):
    def check(record: dict, store: Path) -> None:
        assert record["child_name"] == expected
        rendered_literally(record, store)

    return check


def photo_works(record: dict, store: Path) -> None:
    assert record["analysis"]["face_detected"]


CASES: dict[str, Case] = {
    # photos
    "not an image": Case("bad_image", "not a readable image", lambda: b"hello, I am a text file\n"),
    "empty file": Case("bad_image", "not a readable image", lambda: b""),
    "truncated JPEG": Case("bad_image", "truncated", lambda: DEMO_PHOTO.read_bytes()[:20_000]),
    "1x1 image": Case("photo_too_small", "1x1", lambda: encode(Image.new("RGB", (1, 1)), "PNG")),
    "decompression bomb": Case("image_too_large", "million pixels", decompression_bomb),
    "GIF": Case("bad_image", "GIF", lambda: encode(demo(), "GIF")),
    "fully transparent PNG": Case("no_face", "No face", transparent),
    "photo without a face": Case("no_face", "No face", no_face),
    "tiny face (small photo)": Case("face_too_small", "too small",
                                    lambda: encode(demo().resize((160, 160)), "JPEG")),
    "tiny face (large photo)": Case("no_face", "No face", lambda: face_on_canvas(0.4)),
    "16-bit grayscale PNG": Case("ok", photo=sixteen_bit_gray, photo_name="p.png", check=photo_works),
    "CMYK JPEG": Case("ok", photo=lambda: encode(demo().convert("CMYK"), "JPEG"), check=photo_works),
    "grayscale photo": Case("ok", photo=lambda: encode(demo().convert("L"), "JPEG"), check=photo_works),
    "photo rotated by EXIF": Case("ok", photo=exif_rotated, check=upright),
    "HEIC photo": Case("ok", photo=lambda: encode(demo(), "HEIF", quality=90), photo_name="p.heic",
                       check=photo_works),
    "WebP photo": Case("ok", photo=lambda: encode(demo(), "WEBP", quality=90), photo_name="p.webp",
                       check=photo_works),
    "several faces": Case("ok", photo=several_faces, photo_name="group.png", check=largest_face_wins),
    # names
    "empty name": Case("bad_name", "1-40 characters", name=""),
    "41-character name": Case("bad_name", "1-40 characters", name="x" * 41),
    "name with a control character": Case("bad_name", "control", name="Mi\x07a"),
    "name with an ANSI escape": Case("bad_name", "control", name="\x1b[31mMia"),
    "name with a right-to-left override": Case("bad_name", "invisible", name="Mia\u202eevil"),
    "name with HTML": Case("ok", name="<img src=https://x.invalid/a.png>", text=True,
                           check=name_is("<img src=https://x.invalid/a.png>")),
    # (the renderer's own tests try many more: tests/test_safe_render.py)
    "name with HTML, CSS and JS": Case("ok", name="<style>*{}</style><script>alert(1)", text=True,
                                       check=name_is("<style>*{}</style><script>alert(1)")),
    "name with template braces": Case("ok", name="{child_age}{0.__class__}", text=True,
                                      check=name_is("{child_age}{0.__class__}")),
    "right-to-left name": Case("ok", name="ليلى", text=True, book=arabic_fallback,
                               check=name_is("ليلى")),
    "name outside the book's fonts": Case("missing_glyphs", "'ل' U+0644", name="ليلى", text=True),
    "dedication of 301 characters": Case("bad_dedication", "at most 300", dedication="x" * 301),
    "language the book lacks": Case("bad_language", "no 'uk' edition", language="uk"),
    # ages and gender
    "age -1": Case("bad_age", "outside 0-17", age="-1"),
    "age 18": Case("bad_age", "outside 0-17", age="18"),
    "age five": Case("bad_age", "not a whole number", age="five"),
    "unknown gender": Case("bad_gender", "not one of", gender="<b>other</b>"),
    # job ids (no record can exist)
    "job id with ../": Case("bad_job_id", "Job id", job_id="../evil"),
    "job id with a slash": Case("bad_job_id", "Job id", job_id="a/b"),
    "job id of 300 characters": Case("bad_job_id", "Job id", job_id="j" * 300),
    # manifests
    "manifest syntax error": Case("bad_manifest", "YAML",
                                  book=raw_manifest("id: x\ntitle: [unclosed\npages: 1\n")),
    "manifest that is a list": Case("bad_manifest", "mapping", book=raw_manifest("- 1\n- 2\n")),
    "manifest of 2 MB": Case("bad_manifest", "bytes",
                             book=raw_manifest("# " + "x" * 2_000_000 + "\nid: x\n")),
    "YAML alias bomb": Case("bad_manifest", "title", book=alias_bomb),
    "unknown key": Case("bad_manifest", "unknown key 'pages[0].colour'",
                        book=edit(lambda d: d["pages"][0].update(colour="red"))),
    "unknown template variable": Case("bad_manifest", "{child_nam}",
                                      book=edit(lambda d: layer(d).update(text="Hi {child_nam}"))),
    "template attribute access": Case("bad_manifest", "child_name.__class__", book=edit(
        lambda d: layer(d).update(text="{child_name.__class__.__init__.__globals__}"))),
    "duplicate pages": Case("bad_manifest", "more than once",
                            book=edit(lambda d: d["pages"][1].update(num=1))),
    "prepay page that does not exist": Case("bad_manifest", "prepay page 9",
                                            book=edit(lambda d: d.update(prepay_pages=[1, 9]))),
    "box outside the page": Case("bad_manifest", "outside",
                                 book=edit(lambda d: layer(d).update(box=[500, 10, 400, 50]))),
    "face page without a slot": Case("bad_manifest", "no face slot",
                                     book=edit(lambda d: d["pages"][0].pop("face"))),
    "missing base image": Case("bad_manifest", "does not exist",
                               book=edit(lambda d: d["pages"][1].update(base="pages/nope.png"))),
    "base path out of the book": Case("bad_manifest", "inside the book",
                                      book=edit(lambda d: d["pages"][1].update(base="../../etc/passwd"))),
    "file:// base": Case("bad_manifest", "https://",
                         book=edit(lambda d: d["pages"][1].update(base="file:///etc/passwd"))),
    "unreachable https:// base": Case("unreachable_file", "could not be fetched", book=edit(
        lambda d: d["pages"][1].update(base=f"https://127.0.0.1:{unreachable_port()}/p2.png"))),
    "base that is not an image": Case("bad_image", "base image of page 2",
                                      book=write_file("pages/p2.png", b"<html>not a png</html>")),
    "base that is a decompression bomb": Case("image_too_large", "base image of page 2",
                                              book=write_file("pages/p2.png", decompression_bomb())),
    "100 pages": Case("bad_manifest", "99", book=edit(many_pages)),
    "page of 9000x9000 px": Case("bad_manifest", "million pixels",
                                 book=edit(lambda d: d["output"].update(page_size_px=[9000, 9000]))),
    "page side over 10000 px": Case("bad_manifest", "page_size_px",
                                    book=edit(lambda d: d["output"].update(page_size_px=[20000, 600]))),
    "text of 2001 characters": Case("bad_manifest", "at most 2000 characters",
                                    book=edit(lambda d: layer(d).update(text="a" * 2001))),
    "21 text layers on a page": Case("bad_manifest", "at most 20",
                                     book=edit(lambda d: d["pages"][0].update(
                                         text_layers=[layer(d)] * 21))),
    "font that is not a font": Case("bad_font", "not a TrueType", text=True,
                                    book=write_file("fonts/Andika-Regular.ttf", b"hello")),
    "damaged font": Case("bad_font", "could not load", text=True, book=write_file(
        "fonts/Andika-Regular.ttf", b"\x00\x01\x00\x00" + bytes(range(256)) * 8)),
}


# ---- running a case ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def books(tmp_path_factory) -> dict[str, Path]:
    """The small test book (text on both prepay pages) and a photo book: prepay page 1 only,
    no text, so a photo case needs no browser."""
    root = tmp_path_factory.mktemp("books")
    text = make_book(root / "text", size=(600, 400))
    photo = make_book(root / "photo", size=(600, 400))
    data = yaml.safe_load((photo / "book.yaml").read_text())
    data["prepay_pages"] = [1]
    data["pages"][0].pop("text_layers")
    (photo / "book.yaml").write_text(yaml.safe_dump(data, allow_unicode=True))
    return {"text": text, "photo": photo}


def snapshot(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def one_sentence_with_a_fix(message: str) -> None:
    assert "\n" not in message and message.endswith("."), message
    assert not re.search(r"[.!?] +[A-Z]", message), f"more than one sentence: {message}"
    assert FIX.search(message), f"says what is wrong but not how to fix it: {message}"


@pytest.mark.parametrize("case_id", list(CASES))
def test_hostile_input(case_id, books, tmp_path, count):
    case = CASES[case_id]
    book = tmp_path / "book"
    shutil.copytree(books["text" if case.text or case.book else "photo"], book)
    if case.book:
        case.book(book)
    book_before = snapshot(book)
    photo = tmp_path / "in" / case.photo_name
    photo.parent.mkdir()
    photo.write_bytes(case.photo() if case.photo else DEMO_PHOTO.read_bytes())
    cwd, store = tmp_path / "cwd", tmp_path / "store"
    cwd.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "BOOKJOB_STORE"}
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "run", str(book), "--photo", str(photo),
         f"--name={case.name}", f"--age={case.age}", f"--gender={case.gender}",
         f"--job-id={case.job_id}", "--store", str(store)]
        + ([f"--language={case.language}"] if case.language else [])
        + ([f"--dedication={case.dedication}"] if case.dedication else []),
        cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    count("inputs_tried")
    terminal = done.stdout + done.stderr
    assert "Traceback" not in terminal, terminal
    # nothing outside the job's own keys, in the book or in the working directory
    written = sorted(snapshot(store)) if store.exists() else []
    ours = (f"uploads/{case.job_id}/", f"jobs/{case.job_id}/", f"layout/{case.job_id}/",
            f"outbox/{case.job_id}")    # (the note that the job has events to deliver)
    assert all(key.startswith(ours) for key in written), written
    assert snapshot(book) == book_before
    assert list(cwd.iterdir()) == []
    logs = [store / k for k in written if k.startswith(f"jobs/{case.job_id}/logs/")]
    assert all("Traceback" not in p.read_text() for p in logs)

    if case.expect == "ok":
        count("inputs_accepted")
        assert done.returncode == 0, terminal
        record = json.loads((store / f"jobs/{JOB}/job.json").read_text())
        assert record["status"] == "prepay_ready" and record["error"] is None
        assert {a["kind"] for a in record["artifacts"]} == {"page_bg_png", "page_png", "preview_pdf"}
        case.check(record, store)
        return

    assert done.returncode == 3, terminal
    errors = [line[len("error: "):] for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, done.stderr
    message = errors[0]
    assert case.says in message, message
    one_sentence_with_a_fix(message)
    if case.expect == "bad_job_id":  # no record can exist: nothing at all is written
        assert written == []
        return
    record = json.loads((store / f"jobs/{JOB}/job.json").read_text())
    assert record["status"] in ("analysis_failed", "generation_failed")
    assert record["error"]["reason"] == case.expect, record["error"]
    assert record["error"]["message"] == message
    assert not any(a["kind"] == "preview_pdf" for a in record["artifacts"])


def test_the_corpus_is_big_enough():
    bad = [c for c in CASES.values() if c.expect != "ok"]
    assert len(CASES) >= 30 and len(bad) >= 30
    assert len({c.expect for c in bad}) >= 10  # many different reasons, not one error thirty times
