"""The book manifest: everything a designer can get wrong is found at load time."""

from __future__ import annotations

import pytest
import yaml

from steps.core.errors import InputError
from steps.core.manifest import load_book
from steps.core.messages import Child, fill
from tests.helpers import DEMO


def test_demo_book_is_valid():
    loaded = load_book(str(DEMO / "book"))
    book = loaded.book
    assert book.id == "forest-friends"
    assert len(book.pages) >= 8
    assert book.prepay_pages == [1, 2, 3]
    assert any(p.needs_face_swap for p in book.pages)
    assert any(not p.needs_face_swap for p in book.pages)
    assert sum(bool(p.text_layers) for p in book.pages) > len(book.pages) / 2


def test_stage_pages(book):
    b = load_book(str(book)).book
    assert b.stage_pages("prepay") == [1, 2]
    assert b.stage_pages("postpay") == [3, 4]
    assert b.stage_pages("full") == [1, 2, 3, 4]


def test_fill_prints_values_literally_and_quoted_braces_as_braces():
    child = Child("Ол{ena} <b>'x'</b> #", 5, "girl")
    assert fill("{child_name} ({child_age}) '{literal}'", "en", child) == \
        "Ол{ena} <b>'x'</b> # (5) {literal}"


def test_demo_book_has_two_editions():
    book = load_book(str(DEMO / "book")).book
    assert book.languages == ["en", "uk"]
    assert book.edition(None) == "en" and book.edition("uk") == "uk"
    with pytest.raises(InputError) as e:
        book.edition("de")
    assert e.value.reason == "bad_language"
    assert e.value.message == ("Book forest-friends has no 'de' edition; use one of its languages: "
                               "en, uk.")
    with pytest.raises(InputError) as e:
        book.edition("x" * 20 + "yz")                     # a language is named cut short
    assert e.value.message.startswith(f"Book forest-friends has no {'x' * 20!r} edition; ")


def test_a_layer_is_drawn_with_its_font_then_the_fallbacks_once_each(book):
    data = yaml.safe_load((book / "book.yaml").read_text())
    data["fonts"] += [{**data["fonts"][0], "family": family} for family in ("Noto", "Emoji")]
    data["fallback_fonts"] = ["Emoji", "Andika", "Noto"]
    (book / "book.yaml").write_text(yaml.safe_dump(data))
    loaded = load_book(str(book)).book
    assert loaded.font_chain(loaded.page(1).text_layers[0]) == ["Andika", "Emoji", "Noto"]


def test_messages_left_unchecked_are_reported_later_in_every_language(book):
    """The proof sheet loads a book with check_messages=False and lists every problem."""
    data = yaml.safe_load((book / "book.yaml").read_text())
    data["languages"] = ["en", "uk"]
    _layer(data)["text"] = {"uk": "{child_age, plural, one {# рік} other {# років}}"}
    (book / "book.yaml").write_text(yaml.safe_dump(data, allow_unicode=True))
    with pytest.raises(InputError):
        load_book(str(book))
    assert load_book(str(book), check_messages=False).book.message_problems() == [
        ("page 1, text layer 1", "no text in en; add en: … to its text"),
        ("page 1, text layer 1 (uk)", "the plural on {child_age} lacks the uk categories few, "
                                      "many; add them (the uk categories are few, many, one, other)")]


def _break(book, change) -> str:
    data = yaml.safe_load((book / "book.yaml").read_text())
    change(data)
    (book / "book.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(InputError) as e:
        load_book(str(book))
    assert e.value.reason == "bad_manifest"
    return e.value.message


def _layer(d, page=0):
    return d["pages"][page]["text_layers"][0]


BROKEN = {
    "unknown key": (lambda d: d["pages"][0].update(colour="red"), "unknown key 'pages[0].colour'"),
    "unknown template variable": (lambda d: _layer(d).update(text="Hi {child_nam}"), "{child_nam}"),
    "attribute access in template": (lambda d: _layer(d).update(text="{child_name.upper}"), "child_name.upper"),
    "format spec in template": (lambda d: _layer(d).update(text="{child_name:>40}"), "syntax error"),
    "unclosed brace": (lambda d: _layer(d).update(text="Hi {child_name"), "braces that do not match"),
    "select without other": (lambda d: _layer(d).update(
        text="{child_gender, select, girl {she} boy {he}}"), "page 1, text layer 1 (en)"),
    "select on an unknown case": (lambda d: _layer(d).update(
        text="{child_gender, select, female {she} other {they}}"), "female"),
    "plural without the language's categories": (lambda d: (d.update(languages=["uk"]), _layer(d).update(
        text="{child_age, plural, one {# рік} other {# років}}")), "lacks the uk categories few, many"),
    "plural with a category the language lacks": (lambda d: _layer(d).update(
        text="{child_age, plural, one {# year} few {# years} other {# years}}"), "few, which en"),
    "name used as a plural": (lambda d: _layer(d).update(
        text="{child_name, plural, one {x} other {y}}"), "{child_name} is used as plural"),
    "numbered argument": (lambda d: _layer(d).update(text="Hi {0}"), "unknown variable {0}"),
    "language missing from a layer": (lambda d: (d.update(languages=["en", "uk"]), _layer(d).update(
        text={"en": "Hi {child_name}"})), "page 1, text layer 1: no text in uk"),
    "languages missing from a layer": (lambda d: (d.update(languages=["en", "uk", "de"]), _layer(d).update(
        text={"en": "Hi"})), "book.yaml: page 1, text layer 1: no text in uk, de; add uk: … to its text."),
    "layer in a language the book lacks": (lambda d: _layer(d).update(
        text={"en": "Hi", "de": "Hallo"}), "de, which is not among"),
    "layer in languages the book lacks": (lambda d: _layer(d).update(
        text={"en": "Hi", "de": "Hallo", "fr": "Salut"}),
        "book.yaml: page 1, text layer 1: text in de, fr, which is not among the book's languages; "
        "add it to languages or remove it."),
    "unknown language": (lambda d: d.update(languages=["en", "klingon"]), "klingon"),
    "language listed twice": (lambda d: d.update(languages=["en", "en"]), "twice"),
    "fallback font not in the book": (lambda d: d.update(fallback_fonts=["Noto Sans"]),
                                      "book.yaml: fallback font 'Noto Sans' is not one of the book's "
                                      "fonts; list it under fonts."),
    "duplicate pages": (lambda d: d["pages"][1].update(num=1), "page number 1 appears more than once"),
    "prepay page that does not exist": (lambda d: d.update(prepay_pages=[1, 9]), "prepay page 9"),
    "box outside the page": (lambda d: _layer(d).update(box=[800, 10, 200, 50]), "reaches outside"),
    "face page without slot": (lambda d: d["pages"][0].pop("face"), "no face slot"),
    "slot outside the page": (lambda d: d["pages"][0]["face"].update(right_eye=[5000, 10]),
                              "page 1: face slot eye [5000, 10] is outside the 900x600 page"),
    "bad slug": (lambda d: d.update(id="Forest Friends"), "id: String should match pattern"),
    "missing title": (lambda d: d.pop("title"), "title is missing"),
    "font not in the book": (lambda d: _layer(d)["style"].update(font_family="Comic"),
                             "book.yaml: page 1: font_family 'Comic' is not one of the book's fonts; "
                             "list it under fonts."),
    "bad colour": (lambda d: _layer(d)["style"].update(color="red; background: url(x)"),
                   "style.color: String should match pattern"),
    "missing base image": (lambda d: d["pages"][1].update(base="pages/nope.png"),
                           "file 'pages/nope.png' does not exist in"),
    "missing font file": (lambda d: d["fonts"][0].update(src="fonts/nope.ttf"),
                          "file 'fonts/nope.ttf' does not exist in"),
    "path escaping the book": (lambda d: d["pages"][1].update(base="../secret.png"), "inside the book"),
    "no pages": (lambda d: d.update(pages=[]), "pages: List should have at least 1 item"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_manifest_is_one_clear_sentence(book, case):
    change, expected = BROKEN[case]
    message = _break(book, change)
    assert expected in message
    assert message.count("\n") == 0 and message.endswith(".")


def test_yaml_syntax_error_names_the_line(book):
    (book / "book.yaml").write_text("id: x\ntitle: [unclosed\npages: 1\n")
    with pytest.raises(InputError) as e:
        load_book(str(book))
    assert e.value.reason == "bad_manifest"
    assert e.value.message == "book.yaml line 3: expected ',' or ']', but got ':'; fix the YAML syntax."


def test_missing_manifest(tmp_path):
    with pytest.raises(InputError) as e:
        load_book(str(tmp_path))
    assert e.value.reason == "bad_manifest"
    assert e.value.message == (f"No book.yaml found in {tmp_path}; point BOOK at a folder or s3:// "
                               "prefix holding one.")


def test_book_from_s3_prefix(book, bucket):
    import boto3

    s3 = boto3.client("s3")
    for path in book.rglob("*"):
        if path.is_file():
            s3.put_object(Bucket=bucket, Key=f"books/test/{path.relative_to(book).as_posix()}",
                          Body=path.read_bytes())
    loaded = load_book(f"s3://{bucket}/books/test")
    assert loaded.book.id == "test-landscape"
    assert loaded.read("pages/p1.png")[:8] == b"\x89PNG\r\n\x1a\n"
    assert loaded.read(f"s3://{bucket}/books/test/pages/p2.png")[:4] == b"\x89PNG"
