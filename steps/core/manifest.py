"""The book manifest (v1): ``book.yaml`` at the root of a book folder or S3 prefix.

Everything a designer can get wrong is found here, at load time, with one sentence that says
where and how to fix it: syntax, unknown keys, page numbers, prepay pages, face slots, boxes
outside the page, template variables, font files.
"""

from __future__ import annotations

import re
import string
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from steps.core.errors import InputError
from steps.core.store import Store, StoreError, open_store, split_s3_uri

MANIFEST = "book.yaml"
TEMPLATE_VARIABLES = ("child_name", "child_age", "child_gender")
MAX_PAGES = 99
MAX_SIDE_PX = 10_000
MAX_TEXT = 2_000
MAX_TEXT_LAYERS = 20
MAX_PAGE_PIXELS = 50_000_000     # = steps.core.images.MAX_PIXELS: a page must decode like any image
MAX_MANIFEST_BYTES = 1_000_000
MAX_DOWNLOAD = 100 * 1024 * 1024

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


class TextLayer(Strict):
    text: Annotated[str, Field(min_length=1, max_length=MAX_TEXT)]
    box: tuple[int, int, Annotated[int, Field(gt=0)], Annotated[int, Field(gt=0)]]
    style: TextStyle

    @field_validator("text")
    @classmethod
    def known_variables(cls, text: str) -> str:
        for name in template_fields(text):
            if name not in TEMPLATE_VARIABLES:
                raise ValueError(f"unknown template variable {{{name}}}; the variables are "
                                 + ", ".join(f"{{{v}}}" for v in TEMPLATE_VARIABLES)
                                 + " (write {{ and }} for literal braces)")
        return text


class FaceSlot(Strict):
    left_eye: Point
    right_eye: Point

    @model_validator(mode="after")
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
    def slot_when_needed(self) -> Page:
        if self.needs_face_swap and self.face is None:
            raise ValueError(f"page {self.num} has needs_face_swap but no face slot; add "
                             "face: {left_eye: [x, y], right_eye: [x, y]}")
        return self


class Book(Strict):
    id: Slug
    title: Annotated[str, Field(min_length=1, max_length=200)]
    output: Output
    prepay_pages: list[int]
    fonts: list[Font] = []
    pages: Annotated[list[Page], Field(min_length=1, max_length=MAX_PAGES)]

    @model_validator(mode="after")
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
                                     "is not one of the book's fonts; add it under fonts:")
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


def template_fields(text: str) -> list[str]:
    """Field names used in a ``{child_name}``-style template (raises ValueError if malformed)."""
    fields = []
    for _, name, spec, conversion in string.Formatter().parse(text):
        if name is None:
            continue
        if spec or conversion:
            raise ValueError(f"template variable {{{name}}} must not carry a format or conversion")
        fields.append(name)
    return fields


def fill(text: str, child: dict[str, str]) -> str:
    """Substitute the template variables; validated at load time, so this cannot fail."""
    return text.format_map({k: child[k] for k in TEMPLATE_VARIABLES})


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


def _where(loc: tuple) -> str:
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


def load_book(uri: str) -> LoadedBook:
    """Load and fully validate ``book.yaml`` from a folder or an ``s3://`` prefix."""
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
        data = yaml.safe_load(raw)
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
        book = Book.model_validate(data)
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


# ---- book files ---------------------------------------------------------------------------


def fetch(ref: str, book_files: Store) -> bytes:
    """Bytes of a book file: a path relative to the book, ``s3://bucket/key`` or ``https://…``."""
    if ref.startswith("s3://"):
        bucket, key = split_s3_uri(ref)
        parent, _, name = key.rstrip("/").rpartition("/")
        try:
            return open_store(f"s3://{bucket}/{parent}").read(name)
        except FileNotFoundError:
            raise InputError("missing_file", f"Book file {ref} does not exist; "
                                             "upload it or fix the manifest.") from None
    if ref.startswith("https://"):
        return _download(ref)
    if ref.startswith("http://"):
        check_http(ref, "Book file")
        return _download(ref)
    if "://" in ref:
        raise InputError("bad_manifest", f"Book file {ref!r} must be a relative path, s3:// or "
                                         "https:// address.")
    try:
        return book_files.read(ref)
    except (FileNotFoundError, ValueError):
        raise InputError("missing_file", f"Book file {ref!r} does not exist in the book; "
                                         "add it or fix the manifest.") from None


def http_allowed(url: str) -> bool:
    """Plain ``http://`` only to the hosts the operator lists in ``BOOKJOB_ALLOW_HTTP_HOSTS``
    (``host[:port]``, comma-separated; an entry without a port means port 80)."""
    from urllib.parse import urlsplit

    from steps.core.settings import settings

    try:
        parts = urlsplit(url)
        host, port = (parts.hostname or "").lower(), parts.port or 80
    except ValueError:
        return False
    allowed = set()
    for entry in settings().allow_http_hosts.split(","):
        name, _, number = entry.strip().lower().rpartition(":") if ":" in entry else (
            entry.strip().lower(), "", "80")
        if name and number.isdigit():
            allowed.add((name.strip("[]"), int(number)))
    return bool(host) and (host, port) in allowed


def check_http(url: str, what: str) -> None:
    if not http_allowed(url):
        raise InputError("http_not_allowed", f"{what} {url[:100]!r} is plain http:// on a host "
                                             "not in BOOKJOB_ALLOW_HTTP_HOSTS; use https://, or "
                                             "ask the operator to list the host.")


def download(url: str, what: str = "Book file") -> bytes:
    """An ``https://`` (or allowed ``http://``) object, with the book files' size limit and
    timeout."""
    if url.startswith("http://"):
        check_http(url, what)
    elif not url.startswith("https://"):
        raise InputError("bad_address", f"{what} {url[:100]!r} is not an http(s):// address.")
    return _download(url, what)


def _download(url: str, what: str = "Book file") -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            data = response.read(MAX_DOWNLOAD + 1)
    except urllib.error.HTTPError as e:
        if 500 <= e.code < 600:
            raise StoreError(f"{url} answered {e.code}") from e
        raise InputError("missing_file", f"{what} {url} answered HTTP {e.code}; "
                                         "check the address.") from None
    except (urllib.error.URLError, TimeoutError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise InputError("unreachable_file", f"{what} {url} could not be fetched ({reason}); "
                                             "check the address or host the file with the book.") from None
    if len(data) > MAX_DOWNLOAD:
        raise InputError("image_too_large", f"{what} {url} is larger than "
                                            f"{MAX_DOWNLOAD // 2**20} MiB; use a smaller file.")
    return data
