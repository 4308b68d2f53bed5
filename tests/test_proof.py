"""`bookjob proof BOOK`: the demo book is clean; a broken copy reports each planted problem,
one line each naming page, layer and case, and exits 3."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from pypdf import PdfReader

from steps.core.messages import Child, fill
from steps.proof import NAME_LENGTHS, cases, sample_dedication, sample_names
from tests.helpers import DEMO, ROOT

pytestmark = pytest.mark.slow


def proof(book: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "pipeline.cli", "proof", str(book), "--sheet",
                           str(tmp_path / "sheet.pdf")], capture_output=True, text=True, env=env,
                          timeout=600, cwd=tmp_path)


def test_cases_cover_languages_genders_plural_categories_and_names():
    all_cases = cases(["en", "uk"])
    uk = [c for c in all_cases if c.language == "uk"]
    assert {c.gender for c in uk} == {"girl", "boy", "unspecified"}
    assert {c.category for c in uk} == {"one", "few", "many"}   # "other": no whole age 0-17
    assert {c.category for c in all_cases if c.language == "en"} == {"one", "other"}
    assert {c.name_label for c in uk} == {f"{n} {s} letters" for n in NAME_LENGTHS
                                          for s in ("Latn", "Cyrl")}
    names = sample_names(["en", "uk"])
    assert [len(names["Cyrl"][n]) for n in NAME_LENGTHS] == list(NAME_LENGTHS)
    assert names["Cyrl"][12] == "Абвгдежзийкл" and names["Latn"][1] == "A"
    dedication = sample_dedication("абвгґдеєжзиіїйклмнопрстуфхцчшщьюя")
    assert len(dedication) == 300 and "\n" in dedication
    # each case's age is in its category
    for c in all_cases:
        assert fill("{child_age, plural, one {one} few {few} many {many} other {other}}",
                    c.language, Child("x", c.age)) == c.category


def test_demo_book_is_clean(tmp_path):
    done = proof(DEMO / "book", tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout == ""
    assert "0 problem(s)" in done.stderr and "en, uk" in done.stderr
    pdf = PdfReader(tmp_path / "sheet.pdf")
    assert len(pdf.pages) == 6  # per language: names of 1, 12 and 40 letters


def test_broken_copy_reports_each_planted_problem(tmp_path):
    book = tmp_path / "book"
    shutil.copytree(DEMO / "book", book)
    data = yaml.safe_load((book / "book.yaml").read_text())
    pages = {p["num"]: p for p in data["pages"]}
    # 1. an unknown variable in one edition, and a plural without the Ukrainian categories
    pages[3]["text_layers"][0]["text"]["uk"] = "Привіт, {chld_name}!"
    pages[9]["text_layers"][0]["text"]["uk"] = "{child_age, plural, one {# рік} other {# років}}"
    # 2. a character no font of the book has
    pages[6]["text_layers"][0]["text"]["en"] += " ★"
    # 3. a box that holds a 1-letter name but not a 40-letter one, even at the smallest size
    pages[5]["text_layers"][1]["box"] = [160, 440, 450, 70]
    # 4. a layer font without Latin or Cyrillic letters (Noto Sans Armenian)
    shutil.copy("/usr/share/fonts/truetype/noto/NotoSansArmenian-Regular.ttf",
                book / "fonts" / "Armenian.ttf")
    data["fonts"].append({"family": "Armenian", "src": "fonts/Armenian.ttf"})
    pages[4]["text_layers"][0]["style"]["font_family"] = "Armenian"
    # 5. a select without other (ICU's own syntax rule)
    pages[10]["text_layers"][0]["text"]["en"] = "{child_gender, select, girl {Bye} boy {Bye}}"
    (book / "book.yaml").write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False))

    done = proof(book, tmp_path)
    assert done.returncode == 3, done.stdout + done.stderr
    lines = done.stdout.splitlines()

    def having(*parts: str) -> list[str]:
        return [line for line in lines if all(p in line for p in parts)]

    assert len(having("page 3, text layer 1 (uk): unknown variable {chld_name}")) == 1, lines
    assert len(having("page 9, text layer 1 (uk)", "lacks the uk categories few, many")) == 1
    assert len(having("page 10, text layer 1 (en)", "without an 'other' case")) == 1
    assert len(having("page 6, text layer 1 (en", "'★' U+2605", "Andika")) == 1, lines
    for language, script in (("en", "Latn"), ("en", "Cyrl"), ("uk", "Latn"), ("uk", "Cyrl")):
        assert len(having(f"page 4, text layer 1 ({language}, names in {script}): font Armenian")) == 1
    assert len(having("page 4, text layer 1 (uk): font Armenian", "'В' U+0412")) == 1, lines
    overflow = having("page 5, text layer 2", "does not fit its box [160, 440, 450, 70]")
    assert overflow and all("name of 40" in line or "name of 12" in line for line in overflow)
    assert not having("page 5, text layer 2", "name of 1 ")
    assert {"en", "uk"} <= {line.split("(")[1].split(",")[0] for line in overflow}
    # nothing else is reported
    planted = ("page 3, text layer 1 (uk)", "page 9, text layer 1 (uk)",
               "page 10, text layer 1 (en)", "page 6, text layer 1 (en", "page 5, text layer 2",
               "page 4, text layer 1")
    assert all(line.startswith(planted) for line in lines), lines
    # The ★ is reported once for the layer's message, not once per case.
    assert f"{len(lines)} problem(s)" in done.stderr
    assert (tmp_path / "sheet.pdf").is_file()


def test_a_manifest_error_that_is_not_a_message_is_one_error(tmp_path):
    book = tmp_path / "book"
    shutil.copytree(DEMO / "book", book)
    data = yaml.safe_load((book / "book.yaml").read_text())
    data["languages"] = ["en", "xx"]
    (book / "book.yaml").write_text(yaml.safe_dump(data, allow_unicode=True))
    done = proof(book, tmp_path)
    assert done.returncode == 3 and done.stdout == ""
    assert "error: book.yaml: languages: language 'xx' is not a language ICU knows" in done.stderr
