"""The book manifest's rules on both sides of each edge (everything but the texts): page sizes and
pixels, page numbers, prepay pages, face slots, boxes against the page edges, the size and
syntax of book.yaml, and where book files may live (tests/test_sources.py: how they are
fetched).

The test book (tests/helpers.make_book) is 900x600 with four pages; page 1 has a face slot and
a text box, page 2 a text box."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from steps.core.errors import InputError
from steps.core.manifest import FaceSlot, Output, load_book
from tests.helpers import make_book


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    return make_book(tmp_path_factory.mktemp("pristine") / "book")


@pytest.fixture
def book(pristine, tmp_path):
    """The test book, copied (drawing it anew for every test takes 30 times longer)."""
    return Path(shutil.copytree(pristine, tmp_path / "book"))


def write(book, data) -> None:
    (book / "book.yaml").write_text(yaml.safe_dump(data, allow_unicode=True))


def changed(book, change):
    """Load the test book after ``change(data)``: the book, or the InputError's message."""
    data = yaml.safe_load((book / "book.yaml").read_text())
    change(data)
    write(book, data)
    try:
        return load_book(str(book)).book
    except InputError as e:
        assert e.reason == "bad_manifest"
        return e.message


def accepted(result) -> bool:
    return not isinstance(result, str)


# ---- the output --------------------------------------------------------------------------

@pytest.mark.parametrize("size,dpi,ok", [
    ((64, 64), 72, True), ((10_000, 5_000), 1200, True), ((63, 64), 300, False),
    ((64, 63), 300, False), ((10_001, 64), 300, False), ((64, 10_001), 300, False),
    ((900, 600), 71, False), ((900, 600), 1201, False)])
def test_page_size_and_dpi_limits(size, dpi, ok):
    if ok:
        assert Output(page_size_px=size, dpi=dpi).page_size_px == size
    else:
        with pytest.raises(ValidationError):
            Output(page_size_px=size, dpi=dpi)


@pytest.mark.parametrize("size", [(5_000, 10_000), (10_000, 5_000), (7_071, 7_071)])
def test_up_to_50_megapixels_is_a_page(size):
    assert Output(page_size_px=size).page_size_px == size


@pytest.mark.parametrize("size", [(5_001, 10_000), (10_000, 5_001), (7_072, 7_071)])
def test_over_50_megapixels_is_refused(book, size):
    message = changed(book, lambda d: d["output"].update(page_size_px=list(size)))
    assert message == (f"book.yaml: output: page_size_px {size[0]}x{size[1]} is more than 50 million "
                       "pixels; use a smaller page size or a lower resolution.")


# ---- page numbers and prepay pages -------------------------------------------------------

@pytest.mark.parametrize("num,ok", [(5, True), (99, True), (0, False), (100, False)])
def test_page_numbers_are_1_to_99(book, num, ok):
    result = changed(book, lambda d: (d["pages"][3].update(num=num), d.update(prepay_pages=[1])))
    assert accepted(result) is ok
    if ok:
        assert [p.num for p in result.pages] == [1, 2, 3, num]


def test_the_lowest_duplicate_page_number_is_named(book):
    def dupes(d):
        for page, num in zip(d["pages"], (4, 4, 2, 2)):
            page["num"] = num
        d["prepay_pages"] = [2]

    assert changed(book, dupes) == ("book.yaml: page number 2 appears more than once; "
                                    "number pages uniquely.")


@pytest.mark.parametrize("prepay,missing", [([], None), ([4], None), ([1, 2, 3, 4], None),
                                            ([5], 5), ([1, 7, 9], 7), ([0], 0)])
def test_prepay_pages_must_exist(book, prepay, missing):
    result = changed(book, lambda d: d.update(prepay_pages=prepay))
    if missing is None:
        assert result.prepay_pages == prepay
    else:
        assert result == (f"book.yaml: prepay page {missing} is not among the pages; list only "
                          "existing page numbers in prepay_pages.")


def test_stage_pages_are_sorted_whatever_the_manifest_order(book):
    b = changed(book, lambda d: (d["pages"].reverse(), d.update(prepay_pages=[3, 1])))
    assert [p.num for p in b.pages] == [4, 3, 2, 1]
    assert b.stage_pages("prepay") == [1, 3]
    assert b.stage_pages("postpay") == [2, 4]
    assert b.stage_pages("full") == [1, 2, 3, 4]
    assert b.page(3).num == 3 and b.page(3).face is not None and b.page(2).face is None


# ---- face slots --------------------------------------------------------------------------

@pytest.mark.parametrize("apart,ok", [(8, True), (9, True), (7, False), (0, False), (-20, False)])
def test_eyes_at_least_8_px_apart(apart, ok):
    slot = {"left_eye": (100, 50), "right_eye": (100 + apart, 50)}
    if ok:
        assert FaceSlot(**slot).right_eye == (100 + apart, 50)
    else:
        with pytest.raises(ValidationError, match="right_eye must be at least 8 px to the right of left_eye"):
            FaceSlot(**slot)


def test_eyes_too_close_name_the_page(book):
    message = changed(book, lambda d: d["pages"][0]["face"].update(right_eye=[385, 240]))
    assert message == "book.yaml: pages[0].face: right_eye must be at least 8 px to the right of left_eye."


@pytest.mark.parametrize("left,right,ok", [
    ((0, 0), (8, 0), True), ((891, 599), (899, 599), True), ((0, 599), (899, 0), True),
    ((-1, 10), (8, 10), False), ((0, -1), (8, 10), False), ((10, 10), (900, 10), False),
    ((10, 10), (20, 600), False), ((10, 600), (20, 10), False), ((10, 10), (20, -1), False)])
def test_both_eyes_on_the_page(book, left, right, ok):
    result = changed(book, lambda d: d["pages"][2].update(face={"left_eye": list(left),
                                                                "right_eye": list(right)}))
    if ok:
        assert result.page(3).face == FaceSlot(left_eye=left, right_eye=right)
    else:
        outside = next(eye for eye in (left, right)
                       if not (0 <= eye[0] < 900 and 0 <= eye[1] < 600))
        assert result == (f"book.yaml: page 3: face slot eye {list(outside)} is outside the 900x600 "
                          "page.")


@pytest.mark.parametrize("swap,face,ok", [(True, True, True), (False, True, True), (False, False, True),
                                          (True, False, False)])
def test_a_face_page_needs_a_slot(book, swap, face, ok):
    def change(d):
        d["pages"][1]["needs_face_swap"] = swap
        if face:
            d["pages"][1]["face"] = {"left_eye": [100, 100], "right_eye": [200, 100]}

    result = changed(book, change)
    if ok:
        assert result.page(2).needs_face_swap is swap and (result.page(2).face is not None) is face
    else:
        assert result == ("book.yaml: pages[1]: page 2 has needs_face_swap but no face slot; add "
                          "face: {left_eye: [x, y], right_eye: [x, y]}.")


# ---- text boxes against the page edges ---------------------------------------------------

@pytest.mark.parametrize("box,ok", [
    ([0, 0, 900, 600], True), ([890, 590, 10, 10], True), ([0, 0, 1, 1], True),
    ([1, 0, 900, 600], False), ([0, 1, 900, 600], False), ([0, 0, 901, 10], False),
    ([0, 0, 10, 601], False), ([-1, 0, 10, 10], False), ([0, -1, 10, 10], False),
    ([891, 0, 10, 10], False), ([0, 591, 10, 10], False)])
def test_text_boxes_stay_on_the_page(book, box, ok):
    result = changed(book, lambda d: d["pages"][1]["text_layers"][0].update(box=box))
    if ok:
        assert list(result.page(2).text_layers[0].box) == box
    else:
        assert result == (f"book.yaml: page 2: text box {box} reaches outside the 900x600 page; "
                          "move or shrink it.")


@pytest.mark.parametrize("w,h,index", [(0, 10, 2), (10, 0, 3), (-5, 10, 2)])
def test_text_boxes_have_an_area(book, w, h, index):
    message = changed(book, lambda d: d["pages"][1]["text_layers"][0].update(box=[0, 0, w, h]))
    assert message == (f"book.yaml: pages[1].text_layers[0].box[{index}]: Input should be greater "
                       "than 0; correct it as the manifest format in the README describes.")


# ---- book.yaml itself --------------------------------------------------------------------

def test_a_manifest_of_1_mb_is_read_and_one_byte_more_is_refused(book):
    text = (book / "book.yaml").read_text()
    padded = text + "#" * (1_000_000 - len(text.encode()) - 1) + "\n"
    (book / "book.yaml").write_text(padded)
    assert len(padded.encode()) == 1_000_000
    assert load_book(str(book)).book.id == "test-landscape"
    (book / "book.yaml").write_text(padded + "\n")
    with pytest.raises(InputError) as e:
        load_book(str(book))
    assert e.value.reason == "bad_manifest"
    assert e.value.message == ("book.yaml is 1,000,001 bytes, more than a manifest may be "
                               "(1,000,000); shorten it.")


@pytest.mark.parametrize("text,line,problem", [
    ("id: x\ntitle: [unclosed\npages: 1\n", 3, "expected ',' or ']', but got ':'"),
    ("id: x\ntitle: ok\n  bad: indent\n", 3, "mapping values are not allowed here"),
    ("a: 1\n\tb: 2\n", 2, "found character '\\t' that cannot start any token"),
    ("a: [1\n", 2, "expected ',' or ']', but got '<stream end>'")])
def test_yaml_syntax_errors_name_the_line_and_the_problem(book, text, line, problem):
    (book / "book.yaml").write_text(text)
    with pytest.raises(InputError) as e:
        load_book(str(book))
    assert e.value.reason == "bad_manifest"
    assert e.value.message == f"book.yaml line {line}: {problem}; fix the YAML syntax."


def test_bytes_that_are_not_text_are_invalid_yaml(book):
    (book / "book.yaml").write_bytes(b"id: \xff\xfe\n")
    with pytest.raises(InputError) as e:
        load_book(str(book))
    assert e.value.message == "book.yaml: invalid YAML; fix the YAML syntax."


@pytest.mark.parametrize("text", ["", "- a\n- b\n", "just a string\n", "42\n"])
def test_a_manifest_must_be_a_mapping(book, text):
    (book / "book.yaml").write_text(text)
    with pytest.raises(InputError) as e:
        load_book(str(book))
    assert e.value.reason == "bad_manifest"
    assert e.value.message == ("book.yaml must be a mapping with id, title, output and pages; write "
                               "it as the manifest format in the README shows.")


@pytest.mark.parametrize("where", ["empty folder", "no folder", "a file"])
def test_no_manifest_says_where_it_looked(tmp_path, where):
    target = tmp_path / "book"
    if where == "empty folder":
        target.mkdir()
    elif where == "a file":
        target.write_text("id: x\n")
    with pytest.raises(InputError) as e:
        load_book(str(target))
    assert e.value.reason == "bad_manifest"
    assert e.value.message == (f"No book.yaml found in {target}; point BOOK at a folder or s3:// "
                               "prefix holding one.")


@pytest.mark.parametrize("change,message", [
    (lambda d: d.pop("title"), "title is missing; add it"),
    (lambda d: d["pages"][1].pop("base"), "pages[1].base is missing; add it"),
    (lambda d: d["pages"][1]["text_layers"][0].update(size=3),
     "unknown key 'pages[1].text_layers[0].size'; check its spelling against the manifest format"),
    (lambda d: d.update(title="t" * 201),
     "title: String should have at most 200 characters; shorten it"),
    (lambda d: d.update(title=""), "title: String should have at least 1 character; fill it in"),
    (lambda d: d.update(pages=[]), ("pages: List should have at least 1 item after validation, "
                                    "not 0; add at least one")),
    (lambda d: d.update(pages=[{"num": n, "base": "pages/p2.png"} for n in range(1, 101)]),
     "pages: List should have at most 99 items after validation, not 100; use fewer"),
    (lambda d: d["output"].update(dpi="high"),
     ("output.dpi: Input should be a valid integer, unable to parse string as an integer; correct "
      "it as the manifest format in the README describes")),
])
def test_schema_errors_say_where_and_what_to_do(book, change, message):
    assert changed(book, change) == f"book.yaml: {message}."


# ---- where book files may live -----------------------------------------------------------

@pytest.mark.parametrize("ref", ["https://books.example/p2.png", "s3://some-bucket/books/p2.png"])
def test_page_images_may_live_at_s3_or_https_addresses(book, ref):
    result = changed(book, lambda d: d["pages"][1].update(base=ref))
    assert result.page(2).base == ref


@pytest.mark.parametrize("ref", ["ftp://books.example/p2.png", "file:///etc/passwd", "gs://b/p.png"])
def test_other_addresses_are_refused(book, ref):
    assert changed(book, lambda d: d["pages"][1].update(base=ref)) == (
        f"book.yaml: file {ref!r} is neither in the book nor at an s3:// or https:// address; use "
        "one of those.")


def test_plain_http_is_refused_unless_the_operator_lists_the_host(book, monkeypatch):
    ref = "http://books.example/p2.png"
    data = yaml.safe_load((book / "book.yaml").read_text())
    data["pages"][1]["base"] = ref
    write(book, data)
    with pytest.raises(InputError) as e:
        load_book(str(book))
    assert e.value.reason == "http_not_allowed"
    assert e.value.message == (f"book.yaml: file {ref!r} is plain http:// on a host not in "
                               "BOOKJOB_ALLOW_HTTP_HOSTS; use https://, or ask the operator to "
                               "list the host.")
    monkeypatch.setenv("BOOKJOB_ALLOW_HTTP_HOSTS", "books.example")
    assert load_book(str(book)).book.page(2).base == ref


def test_a_long_address_is_quoted_cut_short(book):
    ref = "ftp://x/" + "a" * 200
    message = changed(book, lambda d: d["pages"][1].update(base=ref))
    assert message.startswith(f"book.yaml: file {ref[:100]!r} is neither")


@pytest.mark.parametrize("ref,ok", [("https://fonts.example/Andika.ttf", True),
                                    ("s3://some-bucket/fonts/Andika.ttf", True),
                                    ("fonts/Andika-Regular.ttf", True),
                                    ("ftp://fonts.example/Andika.ttf", False)])
def test_font_files_follow_the_same_rules(book, ref, ok):
    result = changed(book, lambda d: d["fonts"][0].update(src=ref))
    assert accepted(result) is ok
    if not ok:
        assert "is neither in the book nor at an s3:// or https:// address" in result


@pytest.mark.parametrize("ref", ["/etc/passwd", "../secret.png", "pages/../../x.png", "C:/x.png",
                                 "c:x.png"])
def test_book_paths_stay_inside_the_book(book, ref):
    assert changed(book, lambda d: d["pages"][1].update(base=ref)) == (
        f"book.yaml: file {ref!r} must be a path inside the book folder; use a relative path "
        "without '..'.")


def test_missing_files_are_named_fonts_first(book):
    def change(d):
        d["pages"][1]["base"] = "pages/nope.png"
        d["fonts"][0]["src"] = "fonts/nope.ttf"

    assert changed(book, change) == (f"book.yaml: file 'fonts/nope.ttf' does not exist in {book}; "
                                     "add it or fix the path.")
    assert changed(book, lambda d: d["fonts"][0].update(src="fonts/Andika-Regular.ttf")) == (
        f"book.yaml: file 'pages/nope.png' does not exist in {book}; add it or fix the path.")


# ---- fetching book files -----------------------------------------------------------------

def test_fetch_reads_relative_files_from_the_book(book):
    loaded = load_book(str(book))
    assert loaded.read("pages/p2.png") == (book / "pages/p2.png").read_bytes()
    assert loaded.uri == str(book) and loaded.files.uri == str(book)
