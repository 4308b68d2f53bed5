"""Text in the child's language, rendered and read back: the demo book's English and Ukrainian
editions for girls, boys and unspecified gender and an age of every plural category, the
dedication (present and absent), the fallback-font chain, and a name outside the fonts
refused before any page is drawn.

Words are read back with Tesseract OCR (the `tesseract` binary, `-l ukr` / `-l eng`, on the
crop of the layer's box, `--psm 6`: one block of text). Tesseract is required: without it
these tests fail with what to install; they never skip.
"""

from __future__ import annotations

import difflib
import io
import json
import os
import shutil
import subprocess
import sys
import unicodedata
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from steps.core.job import JobRecord
from steps.core.manifest import load_book
from steps.core.messages import Child, age_categories, fill
from steps.core.records import create_job
from steps.core.store import LocalStore, page_bg_key, page_key
from tests.helpers import DEMO, DEMO_PHOTO, ROOT, make_book

BOOK = DEMO / "book"
NOTO = Path("/usr/share/fonts/truetype/noto")
NAMES = {"uk": "Оля", "en": "Mia"}
# What page 2 of the demo book must say, by language and gender: the Ukrainian verb, the
# English pronoun and verb. (The Ukrainian pronoun opens a sentence: Tesseract's ukr model
# reads a capital Ї or Й of Andika as Т or И, so the verb is the word checked.)
GENDER_WORDS = {"uk": {"girl": ("побігла",), "boy": ("побіг",), "unspecified": ("побігло",)},
                "en": {"girl": ("she", "was"), "boy": ("he", "was"), "unspecified": ("they", "were")}}
AGE_WORDS = {"uk": {"one": "рік", "few": "роки", "many": "років"},
             "en": {"one": "year", "other": "years"}}


def tesseract() -> str:
    exe = shutil.which("tesseract")
    if exe is None:
        pytest.fail("install tesseract-ocr tesseract-ocr-eng tesseract-ocr-ukr (Debian packages; "
                    "`make setup` does) to read rendered words back")
    langs = subprocess.run([exe, "--list-langs"], capture_output=True, text=True).stdout.split()
    if not {"eng", "ukr"} <= set(langs):
        pytest.fail("install tesseract-ocr-eng tesseract-ocr-ukr: Tesseract lacks their data")
    return exe


def ocr(image: Image.Image, language: str) -> str:
    """The words Tesseract reads in ``image``, case-folded, NFC, apostrophes folded, spaced."""
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="PNG", dpi=(300, 300))  # grey reads Ї worse
    done = subprocess.run([tesseract(), "stdin", "stdout", "-l", {"uk": "ukr", "en": "eng"}[language],
                           "--psm", "6", "--dpi", "300"], input=buf.getvalue(), capture_output=True,
                          env={**os.environ, "OMP_THREAD_LIMIT": "1"}, timeout=120, check=True)
    return normal(done.stdout.decode("utf-8"))


def normal(text: str) -> str:
    text = unicodedata.normalize("NFC", text).casefold()
    for a in "’ʼ‘`":
        text = text.replace(a, "'")
    return " ".join(text.split())


def words(text: str) -> list[str]:
    return ["".join(c for c in w if c.isalnum() or c == "'") for w in text.split()]


def similar(read: str, expected: str) -> float:
    return difflib.SequenceMatcher(None, read, normal(expected)).ratio()


@pytest.fixture(scope="module")
def renderer():
    from steps.backends.typesetter import TextRenderer
    from steps.render import book_fonts

    with TextRenderer(book_fonts(load_book(str(BOOK)))) as r:
        yield r


@pytest.fixture(scope="module")
def book():
    return load_book(str(BOOK))


def page_with_text(renderer, loaded, num: int, child: Child, language: str) -> Image.Image:
    """Page ``num`` of the book, its base illustration with the job's text: what render does."""
    from steps.backends.typesetter import composite
    from steps.render import blocks_for

    with Image.open(io.BytesIO(loaded.read(loaded.book.page(num).base))) as im:
        pixels = np.array(im.convert("RGB"))
    blocks = blocks_for(loaded.book, loaded.book.page(num), child, language)
    drawn = renderer.text_layer(blocks, (pixels.shape[1], pixels.shape[0])) if blocks else None
    if drawn is not None:
        composite(pixels, *drawn)
    return Image.fromarray(pixels)


def box_of(loaded, num: int, layer: int = 0) -> tuple[int, int, int, int]:
    x, y, w, h = loaded.book.page(num).text_layers[layer].box
    return x, y, x + w, y + h


CASES = [(language, gender, category, ages[-1] if category != "one" else ages[0])
         for language in ("uk", "en") for gender in ("girl", "boy", "unspecified")
         for category, ages in sorted(age_categories(language).items())]


@pytest.mark.parametrize("language, gender, category, age", CASES)
def test_gender_and_age_read_back(renderer, book, language, gender, category, age):
    """Page 2 of the demo book: the verb or pronoun of the child's gender and the age's
    plural form of its language, read back from the rendered page."""
    child = Child(NAMES[language], age, gender)
    page = page_with_text(renderer, book, 2, child, language)
    read = ocr(page.crop(box_of(book, 2)), language)
    expected = fill(book.book.page(2).text_layers[0].message(language), language, child)
    assert similar(read, expected) >= 0.9, (read, expected)
    said = words(read)
    mine = GENDER_WORDS[language][gender]
    assert set(mine) <= set(said), (read, mine)
    others = {w for g, ws in GENDER_WORDS[language].items() if g != gender for w in ws} - set(mine)
    assert not others & set(said), (read, others)
    age_word = AGE_WORDS[language][category]
    assert age_word in said, (read, age_word)
    assert not {w for c, w in AGE_WORDS[language].items() if c != category} & set(said), read
    assert str(age) in read or age > 9, read   # (OCR may read a 7 as /)
    assert NAMES[language].casefold() in said


@pytest.mark.parametrize("language", ["uk", "en"])
def test_gendered_verb_on_the_last_page(renderer, book, language):
    for gender, verb in {"uk": [("girl", "помахала"), ("boy", "помахав")],
                         "en": [("girl", "waved"), ("boy", "waved")]}[language]:
        page = page_with_text(renderer, book, 10, Child(NAMES[language], 6, gender), language)
        assert verb in words(ocr(page.crop(box_of(book, 10)), language))


def test_look_at_a_ukrainian_page(renderer, book, tmp_path):
    """Writes the Ukrainian page 2 for a boy of 3 next to the test (open it to look)."""
    page = page_with_text(renderer, book, 2, Child("Петро", 3, "boy"), "uk")
    out = ROOT / "build" / "i18n"
    out.mkdir(parents=True, exist_ok=True)
    page.resize((1240, 1240)).save(out / "page_02_uk_boy_3.png")
    read = ocr(page.crop(box_of(book, 2)), "uk")
    assert "петро побіг садовою" in read and "роки" in words(read), read


# ---- through the render step: the job record's language and dedication ---------------------


def render_job(tmp_path: Path, language: str, dedication: str, pages=(2, 8)) -> LocalStore:
    """The render step's own code on a job whose backgrounds are the base pages."""
    from steps.core.images import encode_png
    from steps.render import render_pages

    store = LocalStore(tmp_path / "store")
    loaded = load_book(str(BOOK))
    create_job(store, JobRecord(job_id="j", book_uri=str(BOOK), photo_key="uploads/j/p.jpg",
                                child_name=NAMES[language], child_age=4, child_gender="girl",
                                language=language, dedication=dedication))
    for num in pages:
        with Image.open(io.BytesIO(loaded.read(loaded.book.page(num).base))) as im:
            store.write(page_bg_key("j", num), encode_png(np.array(im.convert("RGB")), 300))
    render_pages(store, "j", loaded, list(pages))
    return store


def test_dedication_appears_in_the_job_language(tmp_path, book):
    dedication = "Для Олі — з любов'ю\nвід бабусі Ганни"
    store = render_job(tmp_path, "uk", dedication)
    with Image.open(store.root / page_key("j", 8)) as im:
        read = ocr(im.convert("RGB").crop(box_of(book, 8)), "uk")
    assert similar(read, dedication) >= 0.85, read
    assert {"олі", "бабусі", "ганни"} <= set(words(read)), read
    with Image.open(store.root / page_key("j", 2)) as im:
        assert "побігла" in words(ocr(im.convert("RGB").crop(box_of(book, 2)), "uk"))


def test_no_dedication_leaves_no_trace(tmp_path):
    store = render_job(tmp_path, "en", "")
    with Image.open(store.root / page_key("j", 8)) as im, \
            Image.open(store.root / page_bg_key("j", 8)) as bg:
        assert np.array_equal(np.asarray(im.convert("RGB")), np.asarray(bg.convert("RGB")))
    with Image.open(store.root / page_key("j", 2)) as im, \
            Image.open(store.root / page_bg_key("j", 2)) as bg:  # the other page has its text
        assert not np.array_equal(np.asarray(im.convert("RGB")), np.asarray(bg.convert("RGB")))


# ---- the fallback chain in the browser -------------------------------------------------------


def test_fallback_fonts_are_the_browsers_fallback(tmp_path):
    """An Arabic name drawn with a Latin layer font: with the book's fallback font (Noto Kufi,
    served from the book) it is drawn in that font, not in the system's Noto Naskh."""
    from steps.backends.typesetter import FontFile, TextBlock, TextRenderer

    kufi = NOTO / "NotoKufiArabic-Regular.ttf"
    assert kufi.is_file(), "install fonts-noto-core (make setup) for this test"
    fonts = [FontFile("Andika", (BOOK / "fonts" / "Andika-Regular.ttf").read_bytes()),
             FontFile("BookKufi", kufi.read_bytes())]
    page = Image.new("RGB", (700, 200), "white")

    def draw(**kw) -> np.ndarray:
        block = TextBlock(text="ليلى", box=(20, 20, 660, 160), font_size_px=80, **kw)
        with TextRenderer(fonts) as r:
            return np.asarray(r.render(page, [block]))

    def ink(image: np.ndarray) -> np.ndarray:  # the glyphs' mask, cropped to their bounds
        mask = image.min(axis=2) < 128
        ys, xs = np.nonzero(mask)
        return mask[ys.min():ys.max() + 1, xs.min():xs.max() + 1]

    # (the line box follows the first font's metrics, so the glyphs sit a little lower or
    # higher: compare the glyphs, not their place)
    chained = ink(draw(font_family="Andika", fallback_families=("BookKufi",)))
    kufi = ink(draw(font_family="BookKufi"))
    assert chained.shape == kufi.shape and (chained == kufi).mean() > 0.97
    system = ink(draw(font_family="Andika"))                # the system's Noto Naskh Arabic
    assert system.shape != kufi.shape


# ---- a name the fonts cannot draw: refused before any page is drawn ---------------------------


def run_cli(tmp_path: Path, book: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "BOOKJOB_STORE"}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run([sys.executable, "-m", "pipeline.cli", "run", str(book), "--photo",
                           str(DEMO_PHOTO), "--age", "5", "--job-id", "j1", "--store",
                           str(tmp_path / "store"), *args], capture_output=True, text=True,
                          env=env, timeout=600, cwd=tmp_path)


def test_name_outside_the_font_is_refused_before_any_page(tmp_path):
    book = make_book(tmp_path / "book", size=(600, 400))
    done = run_cli(tmp_path, book, "--name", "Zoë 李")
    assert done.returncode == 3, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "'李' U+674E" in errors[0] and "Andika" in errors[0], done.stderr
    assert "ë" not in errors[0].split("draw:")[1]  # only what is missing is named
    record = json.loads((tmp_path / "store/jobs/j1/job.json").read_text())
    assert record["status"] == "analysis_failed" and record["error"]["reason"] == "missing_glyphs"
    assert record["analysis"] is None and record["artifacts"] == []
    assert not (tmp_path / "store" / "layout").exists()   # no page drawn, no background made


def test_language_the_book_lacks_is_refused(tmp_path):
    book = make_book(tmp_path / "book", size=(600, 400))
    done = run_cli(tmp_path, book, "--name", "Mia", "--language", "uk")
    assert done.returncode == 3, done.stderr
    assert "has no 'uk' edition; use one of its languages: en" in done.stderr
    assert not (tmp_path / "store" / "layout").exists()


@pytest.mark.slow
def test_ukrainian_job_end_to_end(tmp_path):
    """`bookjob run --language uk --dedication …` on a two-language copy of the small test
    book: the record keeps language and dedication, the pages read in Ukrainian."""
    book = make_book(tmp_path / "book", size=(900, 600))
    data = yaml.safe_load((book / "book.yaml").read_text())
    data["languages"] = ["en", "uk"]
    layer = data["pages"][1]["text_layers"][0]
    layer["text"] = {"en": "{child_name} is {child_age, plural, one {# year} other {# years}} old.",
                     "uk": "{child_gender, select, girl {Вона} boy {Він} other {Воно}} — "
                           "{child_name}. {child_age, plural, one {# рік} few {# роки} many "
                           "{# років} other {# року}}."}
    data["pages"][0]["text_layers"][0]["text"] = "{dedication}"
    (book / "book.yaml").write_text(yaml.safe_dump(data, allow_unicode=True))
    done = run_cli(tmp_path, book, "--name", "Петро", "--gender", "boy", "--age", "2",
                   "--language", "uk", "--dedication", "Для Петра\nвід тата", "--json")
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout)
    assert record["language"] == "uk" and record["dedication"] == "Для Петра\nвід тата"
    store = tmp_path / "store" / "layout" / "j1" / "pages"
    loaded = load_book(str(book))
    with Image.open(store / "page_02.png") as im:
        read = ocr(im.convert("RGB").crop(box_of(loaded, 2)).resize((1080, 264)), "uk")
    assert "він" in words(read) and "2 роки" in read and "петро" in words(read), read
    with Image.open(store / "page_01.png") as im:
        read = ocr(im.convert("RGB").crop(box_of(loaded, 1)).resize((1080, 264)), "uk")
    assert {"для", "петра", "від", "тата"} <= set(words(read)), read
