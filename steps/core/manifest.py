"""The book manifest (v1): ``book.yaml`` at the root of a book folder or S3 prefix.

Everything a designer can get wrong is found here, at load time, with one sentence that says
where and how to fix it: syntax, unknown keys, page numbers, prepay pages, face slots, boxes
outside the page, messages (ICU MessageFormat, :mod:`steps.core.messages`) in every language
of the book, font files.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from steps.core import messages
from steps.core.errors import InputError
from steps.core.sources import check_http, fetch
from steps.core.store import Store, open_store

MANIFEST = "book.yaml"
# libyaml's safe loader where PyYAML has it (its wheels do): the same documents as the
# pure-Python one, about ten times faster (a manifest is read by every step and BookJobs call).
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
MAX_PAGES = 99
MAX_SIDE_PX = 10_000
MAX_TEXT = 2_000
MAX_TEXT_LAYERS = 20
MAX_PAGE_PIXELS = 50_000_000     # = steps.core.images.MAX_PIXELS: a page must decode like any image
MAX_MANIFEST_BYTES = 1_000_000

Slug = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")]
Color = Annotated[str, Field(pattern=r"^#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6}|[0-9a-fA-F]{8})$")]
Point = tuple[int, int]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Output(Strict):
    page_size_px: tuple[Annotated[int, Field(ge=64, le=MAX_SIDE_PX)],
                        Annotated[int, Field(ge=64, le=MAX_SIDE_PX)]]
    dpi: Annotated[int, Field(ge=72, le=1200)] = 300

    @model_validator(mode="after")
    def checked(self) -> Output:
        return self.not_too_many_pixels()

    # The checks are plain methods that the validators call: mutmut does not mutate decorated ones.
    def not_too_many_pixels(self) -> Output:
        width, height = self.page_size_px
        if width * height > MAX_PAGE_PIXELS:
            raise ValueError(f"page_size_px {width}x{height} is more than "
                             f"{MAX_PAGE_PIXELS // 1_000_000} million pixels; use a smaller page "
                             "size or a lower resolution")
        return self


class Font(Strict):
    family: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9 _-]{0,63}$")]
    src: str
    weight: Literal["normal", "bold"] = "normal"
    style: Literal["normal", "italic"] = "normal"


class TextStyle(Strict):
    font_family: str
    font_size_px: Annotated[int, Field(ge=6, le=800)]
    color: Color = "#000000"
    align: Literal["left", "center", "right", "justify"] = "left"
    valign: Literal["top", "middle", "bottom"] = "top"
    line_height: Annotated[float, Field(ge=0.8, le=3.0)] = 1.25
    font_weight: Literal["normal", "bold"] = "normal"
    font_style: Literal["normal", "italic"] = "normal"


Message = Annotated[str, Field(min_length=1, max_length=MAX_TEXT)]


class TextLayer(Strict):
    text: Message | dict[str, Message]   # one ICU message for every language, or one per language
    box: tuple[int, int, Annotated[int, Field(gt=0)], Annotated[int, Field(gt=0)]]
    style: TextStyle

    def message(self, language: str) -> str:
        """The layer's message in ``language`` (the book has checked that it exists)."""
        return self.text if isinstance(self.text, str) else self.text[language]


class FaceSlot(Strict):
    left_eye: Point
    right_eye: Point

    @model_validator(mode="after")
    def checked(self) -> FaceSlot:
        return self.eyes_apart()

    def eyes_apart(self) -> FaceSlot:
        if self.right_eye[0] - self.left_eye[0] < 8:
            raise ValueError("right_eye must be at least 8 px to the right of left_eye")
        return self


class Page(Strict):
    num: Annotated[int, Field(ge=1, le=MAX_PAGES)]
    base: Annotated[str, Field(min_length=1)]
    needs_face_swap: bool = False
    prompt: str = ""
    negative_prompt: str = ""
    face: FaceSlot | None = None
    text_layers: Annotated[list[TextLayer], Field(max_length=MAX_TEXT_LAYERS)] = []

    @model_validator(mode="after")
    def checked(self) -> Page:
        return self.slot_when_needed()

    def slot_when_needed(self) -> Page:
        if self.needs_face_swap and self.face is None:
            raise ValueError(f"page {self.num} has needs_face_swap but no face slot; add "
                             "face: {left_eye: [x, y], right_eye: [x, y]}")
        return self


class Book(Strict):
    id: Slug
    title: Annotated[str, Field(min_length=1, max_length=200)]
    output: Output
    languages: Annotated[list[str], Field(min_length=1, max_length=30)] = ["en"]
    prepay_pages: list[int]
    fonts: list[Font] = []
    fallback_fonts: Annotated[list[str], Field(max_length=10)] = []
    pages: Annotated[list[Page], Field(min_length=1, max_length=MAX_PAGES)]

    @field_validator("languages")
    @classmethod
    def known_languages(cls, languages: list[str]) -> list[str]:
        for code in languages:
            messages.check_language(code)
        if len(set(languages)) != len(languages):
            raise ValueError("a language is listed twice; list each edition once")
        return languages

    @model_validator(mode="after")
    def messages_are_valid(self, info: ValidationInfo) -> Book:
        """Every message parses, uses only the four variables and covers the language's
        plural categories (skipped with context ``{"check_messages": False}``: the proof
        collects all of them instead of stopping at the first)."""
        if (info.context or {}).get("check_messages", True):
            for where, problem in self.message_problems()[:1]:
                raise ValueError(f"{where}: {problem}")
        return self

    def message_problems(self) -> list[tuple[str, str]]:
        """(where, problem) for every message that is wrong: ``page 3, text layer 1 (uk)``."""
        found = []
        for page in self.pages:
            for i, layer in enumerate(page.text_layers, 1):
                where = f"page {page.num}, text layer {i}"
                if isinstance(layer.text, dict):
                    missing = [lang for lang in self.languages if lang not in layer.text]
                    extra = [lang for lang in layer.text if lang not in self.languages]
                    if missing:
                        found.append((where, f"no text in {', '.join(missing)}; add "
                                             f"{missing[0]}: … to its text"))
                    if extra:
                        found.append((where, f"text in {', '.join(extra)}, which is not among "
                                             "the book's languages; add it to languages or remove it"))
                for lang in self.languages:
                    if isinstance(layer.text, dict) and lang not in layer.text:
                        continue
                    for problem in messages.problems(layer.message(lang), lang):
                        found.append((f"{where} ({lang})", problem))
        return found

    def edition(self, language: str | None) -> str:
        """The language a job is made in: the one asked for, or the book's first."""
        if not language:
            return self.languages[0]
        if language not in self.languages:
            raise InputError("bad_language", f"Book {self.id} has no {language[:20]!r} edition; "
                                             f"use one of its languages: {', '.join(self.languages)}.")
        return language

    def font_chain(self, layer: TextLayer) -> list[str]:
        """The families a layer's text is drawn with: its own, then the fallback fonts."""
        return [layer.style.font_family] + [f for f in self.fallback_fonts
                                            if f != layer.style.font_family]

    @model_validator(mode="after")
    def checked(self) -> Book:
        return self.consistent()

    def consistent(self) -> Book:
        nums = [p.num for p in self.pages]
        dupes = sorted({n for n in nums if nums.count(n) > 1})
        if dupes:
            raise ValueError(f"page number {dupes[0]} appears more than once; number pages uniquely")
        missing = [n for n in self.prepay_pages if n not in nums]
        if missing:
            raise ValueError(f"prepay page {missing[0]} is not among the pages; "
                             "list only existing page numbers in prepay_pages")
        width, height = self.output.page_size_px
        families = {f.family for f in self.fonts}
        for family in self.fallback_fonts:
            if family not in families:
                raise ValueError(f"fallback font {family!r} is not one of the book's fonts; list "
                                 "it under fonts")
        for page in self.pages:
            if page.face:
                for eye in (page.face.left_eye, page.face.right_eye):
                    if not (0 <= eye[0] < width and 0 <= eye[1] < height):
                        raise ValueError(f"page {page.num}: face slot eye {list(eye)} is outside "
                                         f"the {width}x{height} page")
            for layer in page.text_layers:
                x, y, w, h = layer.box
                if x < 0 or y < 0 or x + w > width or y + h > height:
                    raise ValueError(f"page {page.num}: text box {list(layer.box)} reaches outside "
                                     f"the {width}x{height} page; move or shrink it")
                if layer.style.font_family not in families:
                    raise ValueError(f"page {page.num}: font_family {layer.style.font_family!r} "
                                     "is not one of the book's fonts; list it under fonts")
        return self

    def page(self, num: int) -> Page:
        return next(p for p in self.pages if p.num == num)

    def stage_pages(self, stage: str) -> list[int]:
        """Page numbers a stage makes: prepay pages, the others (postpay), or all."""
        prepay = set(self.prepay_pages)
        nums = sorted(p.num for p in self.pages)
        if stage == "prepay":
            return [n for n in nums if n in prepay]
        if stage == "postpay":
            return [n for n in nums if n not in prepay]
        return nums


# ---- loading ----------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadedBook:
    """A validated manifest and the store its files are read from."""

    book: Book
    uri: str
    files: Store

    def read(self, ref: str) -> bytes:
        """A file of the book: relative to its root, ``s3://…`` or ``https://…``."""
        return fetch(ref, self.files)


def _where(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _explain(error: ValidationError) -> str:
    first = error.errors()[0]
    where = _where(first["loc"])
    kind = first["type"]
    if kind == "extra_forbidden":
        return f"unknown key {where!r}; check its spelling against the manifest format"
    if kind == "missing":
        return f"{where} is missing; add it"
    msg = first["msg"].removeprefix("Value error, ")
    if kind != "value_error":  # pydantic's own words say what is wrong, not what to do
        msg += "; " + _HINTS.get(kind, "correct it as the manifest format in the README describes")
    return f"{where}: {msg}" if where else msg


_HINTS = {"string_too_long": "shorten it", "too_long": "use fewer", "string_too_short": "fill it in",
          "too_short": "add at least one"}


def load_book(uri: str, check_messages: bool = True) -> LoadedBook:
    """Load and fully validate ``book.yaml`` from a folder or an ``s3://`` prefix (without
    ``check_messages``, bad messages are left for :meth:`Book.message_problems`)."""
    files = open_store(uri)
    try:
        raw = files.read(MANIFEST)
    except (FileNotFoundError, NotADirectoryError):
        raise InputError("bad_manifest", f"No {MANIFEST} found in {uri}; "
                                         "point BOOK at a folder or s3:// prefix holding one.") from None
    if len(raw) > MAX_MANIFEST_BYTES:
        raise InputError("bad_manifest", f"{MANIFEST} is {len(raw):,} bytes, more than a manifest "
                                         f"may be ({MAX_MANIFEST_BYTES:,}); shorten it.")
    try:
        data = yaml.load(raw, Loader=SAFE_LOADER)  # noqa: S506 - a safe loader, libyaml's
    except yaml.YAMLError:
        data = None
    try:   # a broken manifest is read again by the pure-Python parser: its words for the error
        data = data if data is not None else yaml.safe_load(raw)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark else ""
        problem = getattr(e, "problem", None) or "invalid YAML"
        raise InputError("bad_manifest", f"{MANIFEST}{line}: {problem}; fix the YAML syntax.") from None
    if not isinstance(data, dict):
        raise InputError("bad_manifest", f"{MANIFEST} must be a mapping with id, title, output "
                                         "and pages; write it as the manifest format in the "
                                         "README shows.")
    try:
        book = Book.model_validate(data, context={"check_messages": check_messages})
    except ValidationError as e:
        raise InputError("bad_manifest", f"{MANIFEST}: {_explain(e)}.") from None
    for ref in [f.src for f in book.fonts] + [p.base for p in book.pages]:
        if "://" not in ref:
            _check_book_file(files, ref, uri)
        elif ref.startswith("http://"):
            check_http(ref, f"{MANIFEST}: file")
        elif not ref.startswith(("s3://", "https://")):
            raise InputError("bad_manifest", f"{MANIFEST}: file {ref[:100]!r} is neither in the book "
                                             "nor at an s3:// or https:// address; use one of those.")
    return LoadedBook(book=book, uri=uri, files=files)


def _check_book_file(files: Store, ref: str, uri: str) -> None:
    path = PurePosixPath(ref)
    if path.is_absolute() or ".." in path.parts or re.match(r"^[A-Za-z]:", ref):
        raise InputError("bad_manifest", f"{MANIFEST}: file {ref!r} must be a path inside the "
                                         "book folder; use a relative path without '..'.")
    if not files.exists(ref):
        raise InputError("bad_manifest", f"{MANIFEST}: file {ref!r} does not exist in {uri}; "
                                         "add it or fix the path.")
