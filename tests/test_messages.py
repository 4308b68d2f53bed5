"""ICU messages in text layers (steps.core.messages): checks, CLDR plurals, literal values,
dedications, and the glyph check of a job (steps.core.glyphs).

Plural categories are ICU's own CLDR data (PyICU, ICU 77), not rules written here; the
expectations below are CLDR's published Ukrainian and English rules
(https://www.unicode.org/cldr/charts/47/supplemental/language_plural_rules.html).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from steps.core import glyphs
from steps.core.errors import InputError
from steps.core.manifest import load_book
from steps.core.messages import (
    MAX_DEDICATION,
    Child,
    age_categories,
    fill,
    letters_of,
    plural_categories,
    problems,
    validate_dedication,
    variables,
)
from tests.helpers import DEMO

GENDER_UK = ("{child_gender, select, girl {{child_name} пішла} boy {{child_name} пішов} "
             "other {{child_name} пішло}}")
AGE_UK = "{child_age, plural, one {# рік} few {# роки} many {# років} other {# року}}"
AGE_EN = "{child_age, plural, one {# year} other {# years}}"
NOTO = Path("/usr/share/fonts/truetype/noto")


def test_plural_categories_are_cldr():
    assert plural_categories("uk") == {"one", "few", "many", "other"}
    assert plural_categories("en") == {"one", "other"}
    uk = age_categories("uk")
    assert uk == {"many": [0, *range(5, 18)], "one": [1], "few": [2, 3, 4]}
    assert age_categories("en") == {"other": [0, *range(2, 18)], "one": [1]}


@pytest.mark.parametrize("age, words", [(1, "1 рік"), (2, "2 роки"), (4, "4 роки"), (5, "5 років"),
                                        (11, "11 років"), (12, "12 років"), (0, "0 років"),
                                        (21, "21 рік"), (22, "22 роки")])
def test_ukrainian_age_takes_the_plural_of_its_number(age, words):
    assert fill(AGE_UK, "uk", Child("Оля", age)) == words


@pytest.mark.parametrize("age, words", [(1, "1 year"), (0, "0 years"), (2, "2 years"), (17, "17 years")])
def test_english_age(age, words):
    assert fill(AGE_EN, "en", Child("Mia", age)) == words


@pytest.mark.parametrize("gender, words", [("girl", "Оля пішла"), ("boy", "Оля пішов"),
                                           ("unspecified", "Оля пішло"), ("other", "Оля пішло")])
def test_gender_selects_the_verb_and_unspecified_is_other(gender, words):
    assert fill(GENDER_UK, "uk", Child("Оля", 5, gender)) == words


@pytest.mark.parametrize("name", ["{child_age}", "Ol{ya}", "<b>Mia</b>", "O'Neil '{x}'", "# {0} }",
                                  "&lt;", "ليلى"])
def test_values_are_printed_literally(name):
    assert fill("{child_name}!", "en", Child(name, 5)) == f"{name}!"
    assert fill(GENDER_UK, "uk", Child(name, 5, "girl")) == f"{name} пішла"


def test_dedication_fills_and_empty_is_empty():
    assert fill("{dedication}", "uk", Child("Оля", 5, dedication="Для Олі\nвід мами")) == "Для Олі\nвід мами"
    assert fill("{dedication}", "uk", Child("Оля", 5)) == ""


def test_variables_of_a_message():
    assert variables(GENDER_UK + " " + AGE_UK) == {"child_gender", "child_name", "child_age"}
    assert variables("The End") == frozenset()


GOOD = [GENDER_UK, AGE_UK, "{child_name} {child_age}", "{child_age, number}",
        "{child_age, plural, =0 {newborn} one {# рік} few {# роки} many {# років} other {# року}}",
        "It's {child_name}", "Literal '{braces}'", "{dedication}",
        "{child_gender, select, girl {{child_age, plural, one {a} few {b} many {c} other {d}}} other {e}}"]


@pytest.mark.parametrize("message", GOOD)
def test_valid_messages_have_no_problems(message):
    assert problems(message, "uk") == []


BAD = {
    "unknown variable": ("Hi {chld_name}", "unknown variable {chld_name}"),
    "numbered argument": ("Hi {0}", "unknown variable {0}"),
    "unclosed brace": ("Hi {child_name", "braces that do not match"),
    "bad syntax": ("{child_age, plural, one {# рік} few {# роки}", "syntax error"),
    "select without other": ("{child_gender, select, girl {a} boy {b}}", "without an 'other' case"),
    "select with a case that never occurs": ("{child_gender, select, female {a} other {b}}",
                                             "female that never occur"),
    "plural without the language's categories": (AGE_EN, "lacks the uk categories few, many"),
    "plural with a category the language lacks": (
        "{child_age, plural, one {a} few {b} many {c} two {d} other {e}}", "two, which uk"),
    "key twice": ("{child_gender, select, girl {a} girl {b} other {c}}", "twice"),
    "gender printed as a word": ("{child_gender}", "use it as a select"),
    "name as a plural": ("{child_name, plural, one {a} other {b}}", "{child_name} is used as plural"),
    "misspelt type": ("{child_age, plurl, one {a}}", "{child_age} is used as plurl"),
    "age as a date": ("{child_age, date}", "used as date"),
    "choice format": ("{child_age, choice, 0#a|1#b}", "used as choice"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_messages_are_named(case):
    message, expected = BAD[case]
    found = problems(message, "uk")
    assert found and expected in found[0], found


def test_a_message_valid_in_english_may_be_wrong_in_ukrainian():
    assert problems(AGE_EN, "en") == []
    assert problems(AGE_EN, "uk")


def test_letters_of_a_language_are_its_cldr_exemplars():
    assert set("абвгґдеєжзиіїйклмнопрстуфхцчшщьюя") == set(letters_of("uk"))
    assert letters_of("en") == "abcdefghijklmnopqrstuvwxyz"


@pytest.mark.parametrize("text, kept", [("Для тебе,\nз любов’ю", "Для тебе,\nз любов’ю"),
                                        ("a\r\nb", "a\nb"), ("  x  ", "x"), ("", ""),
                                        ("ж" * MAX_DEDICATION, "ж" * MAX_DEDICATION),
                                        ("ليلى 🦊 你好", "ليلى 🦊 你好")])
def test_dedication_accepted(text, kept):
    assert validate_dedication(text) == kept


@pytest.mark.parametrize("text, says", [("ж" * (MAX_DEDICATION + 1), "301 characters"),
                                        ("bell\x07", "U+0007"), ("evil\u202e", "U+202E")])
def test_dedication_refused(text, says):
    with pytest.raises(InputError) as e:
        validate_dedication(text)
    assert e.value.reason == "bad_dedication" and says in e.value.message


# ---- glyphs ---------------------------------------------------------------------------------


def test_job_in_the_fonts_passes(tmp_path):
    loaded = load_book(str(DEMO / "book"))
    glyphs.check_job(loaded, "uk", Child("Ґаля-Їжачок", 5, "girl", "З любов’ю — «мама» №1…"))
    glyphs.check_job(loaded, "en", Child("Zoë O’Neil", 5, "boy", "For you\nwith love"))


@pytest.mark.parametrize("child, says", [
    (Child("ليلى", 5), "The name 'ليلى' has characters the book's font Andika"),
    (Child("Mia", 5, dedication="With love 🦊"), "The dedication has characters"),
])
def test_characters_outside_the_font_are_named(child, says):
    with pytest.raises(InputError) as e:
        glyphs.check_job(load_book(str(DEMO / "book")), "en", child)
    assert e.value.reason == "missing_glyphs"
    assert says in e.value.message
    assert ("'ل' U+0644" in e.value.message) or ("'🦊' U+1F98A" in e.value.message)


def test_a_message_outside_the_font_is_named(tmp_path):
    book = tmp_path / "book"
    shutil.copytree(DEMO / "book", book)
    data = yaml.safe_load((book / "book.yaml").read_text())
    data["pages"][5]["text_layers"][0]["text"]["en"] += " ★"
    (book / "book.yaml").write_text(yaml.safe_dump(data, allow_unicode=True))
    glyphs.check_job(load_book(str(book)), "uk", Child("Оля", 5))  # the uk edition is fine
    with pytest.raises(InputError) as e:
        glyphs.check_job(load_book(str(book)), "en", Child("Mia", 5))
    assert "Page 6, text layer 1 (en)" in e.value.message and "U+2605" in e.value.message


def test_fallback_fonts_extend_the_layer_font(tmp_path):
    """A name in Arabic is refused by the Andika-only book and accepted once a font that has
    Arabic is listed in fallback_fonts."""
    book = tmp_path / "book"
    shutil.copytree(DEMO / "book", book)
    arabic = NOTO / "NotoNaskhArabic-Regular.ttf"
    assert arabic.is_file(), "install fonts-noto-core (make setup) for this test"
    shutil.copy(arabic, book / "fonts" / "Arabic.ttf")
    data = yaml.safe_load((book / "book.yaml").read_text())
    data["fonts"].append({"family": "Book Arabic", "src": "fonts/Arabic.ttf"})
    (book / "book.yaml").write_text(yaml.safe_dump(data, allow_unicode=True))
    with pytest.raises(InputError):
        glyphs.check_job(load_book(str(book)), "en", Child("ليلى", 5))
    data["fallback_fonts"] = ["Book Arabic"]
    (book / "book.yaml").write_text(yaml.safe_dump(data, allow_unicode=True))
    glyphs.check_job(load_book(str(book)), "en", Child("ليلى", 5))


def test_ignorable_characters_need_no_glyph():
    assert not glyphs.needs_glyph(" ") and not glyphs.needs_glyph("\n")
    assert not glyphs.needs_glyph("\u200d") and not glyphs.needs_glyph("\u00ad")
    assert glyphs.needs_glyph("a") and glyphs.needs_glyph("ї")
    # a decomposed й (и + U+0306) is checked as the composed letter
    face = glyphs.FontFace("X", "x.ttf", "normal", "normal", frozenset(map(ord, "й")))
    assert glyphs.missing("и\u0306", [face]) == []
    assert glyphs.missing("иx", [face]) == ["и", "x"]
