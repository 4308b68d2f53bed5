"""Can the book's fonts draw a job's text? fontTools reads each font's character map (cmap).

A layer's text is drawn with its font and then the book's ``fallback_fonts``, in that order —
the same chain the typesetter gives the browser — so a character is drawable when one font
of the chain maps it. Spaces, line breaks and invisible format characters (joiners, soft
hyphen, variation selectors) need no glyph of their own. Text is NFC-normalised first, as the
browser composes ``и`` + U+0306 into ``й``.

``fontTools`` is imported inside the functions.
"""

from __future__ import annotations

import hashlib
import unicodedata
from dataclasses import dataclass
from io import BytesIO
from typing import TYPE_CHECKING

from steps.core.errors import InputError

if TYPE_CHECKING:
    from steps.core.manifest import Book, LoadedBook, TextLayer
    from steps.core.messages import Child

_CMAPS: dict[str, frozenset[int]] = {}
# The first bytes of TrueType, OpenType, WOFF and WOFF2 files (as the typesetter sniffs them).
_FONT_MAGIC = (b"\x00\x01\x00\x00", b"true", b"OTTO", b"wOFF", b"wOF2")


@dataclass(frozen=True)
class FontFace:
    """One font file of a book, read: its family, face and the characters it maps."""

    family: str
    src: str
    weight: str
    style: str
    chars: frozenset[int]


class BadFont(ValueError):
    """The bytes are not a font fontTools can read."""


def font_chars(data: bytes) -> frozenset[int]:
    """The code points a font file (TTF, OTF, WOFF, WOFF2, first face of a TTC) maps."""
    from fontTools.ttLib import TTFont

    digest = hashlib.sha256(data).hexdigest()
    if digest not in _CMAPS:
        try:
            with TTFont(BytesIO(data), lazy=True, fontNumber=0) as font:
                cmap = font.getBestCmap()
        except Exception as e:  # noqa: BLE001 - fontTools raises many kinds for damaged data
            raise BadFont(f"{type(e).__name__}: {str(e)[:80]}") from None
        if cmap is None:
            raise BadFont("it has no Unicode character map")
        _CMAPS[digest] = frozenset(cmap)
    return _CMAPS[digest]


def needs_glyph(ch: str) -> bool:
    """False for whitespace and invisible format characters (no glyph is drawn for them)."""
    category = unicodedata.category(ch)
    return not (ch.isspace() or category in ("Cc", "Cf", "Zs", "Zl", "Zp")
                or "\ufe00" <= ch <= "\ufe0f")


def missing(text: str, chain: list[FontFace]) -> list[str]:
    """The distinct characters of ``text`` that no face of ``chain`` maps, in order."""
    text = unicodedata.normalize("NFC", text)
    return [ch for ch in dict.fromkeys(text)
            if needs_glyph(ch) and not any(ord(ch) in face.chars for face in chain)]


def describe(chars: list[str], limit: int = 8) -> str:
    """``'ل' U+0644, 'ي' U+064A`` (at most ``limit``, then how many more)."""
    shown = ", ".join(f"{c!r} U+{ord(c):04X}" for c in chars[:limit])
    return shown + (f" and {len(chars) - limit} more" if len(chars) > limit else "")


def read_faces(loaded: LoadedBook) -> list[FontFace]:
    """Every font of a :class:`~steps.core.manifest.LoadedBook`, read with fontTools."""
    faces = []
    for font in loaded.book.fonts:
        data = loaded.read(font.src)
        try:
            chars = font_chars(data)
        except BadFont as e:
            if not data.startswith(_FONT_MAGIC):
                raise InputError("bad_font", f"Font file {font.src} of book {loaded.book.id} is "
                                             "not a TrueType, OpenType, WOFF or WOFF2 font; "
                                             "replace it with one.") from None
            raise InputError("bad_font", f"Font file {font.src} of book {loaded.book.id}: "
                                         f"fontTools could not load it ({e}); replace it with a "
                                         "working TTF, OTF, WOFF or WOFF2 file.") from None
        faces.append(FontFace(font.family, font.src, font.weight, font.style, chars))
    return faces


def chain_for(book: Book, layer: TextLayer, faces: list[FontFace]) -> list[FontFace]:
    """The faces a layer's text can be drawn with: for each family of its chain the face of
    its weight and style if the book has it (else the family's others, which the browser
    would synthesise from)."""
    chain = []
    for family in book.font_chain(layer):
        of_family = [f for f in faces if f.family == family]
        exact = [f for f in of_family
                 if (f.weight, f.style) == (layer.style.font_weight, layer.style.font_style)]
        chain += exact or of_family
    return chain


def chain_name(chain: list[FontFace]) -> str:
    families = list(dict.fromkeys(f.family for f in chain))
    srcs = ", ".join(dict.fromkeys(f.src for f in chain))
    return " + ".join(families) + f" ({srcs})"


def check_job(loaded: LoadedBook, language: str, child: Child) -> None:
    """Refuse a job (exit 3, before any page is drawn) when a character it will typeset is in
    none of its fonts; the message names the characters, whose they are and the font."""
    from steps.core.messages import fill

    book = loaded.book
    faces = read_faces(loaded)
    for page in book.pages:
        for i, layer in enumerate(page.text_layers, 1):
            chain = chain_for(book, layer, faces)
            text = fill(layer.message(language), language, child)
            lacking = missing(text, chain)
            if not lacking:
                continue
            font = chain_name(chain)
            name_lacks = [c for c in lacking if c in unicodedata.normalize("NFC", child.name)]
            dedication_lacks = [c for c in lacking
                                if c in unicodedata.normalize("NFC", child.dedication)]
            if name_lacks:
                raise InputError("missing_glyphs", f"The name {child.name!r} has characters the "
                                                   f"book's font {font} cannot draw: "
                                                   f"{describe(name_lacks)}; give the name in "
                                                   "letters the book supports or add a font that "
                                                   "has them to the book's fallback_fonts.")
            if dedication_lacks:
                raise InputError("missing_glyphs", "The dedication has characters the book's "
                                                   f"font {font} cannot draw: "
                                                   f"{describe(dedication_lacks)}; remove them or "
                                                   "add a font that has them to the book's "
                                                   "fallback_fonts.")
            raise InputError("missing_glyphs", f"Page {page.num}, text layer {i} ({language}) of "
                                               f"book {book.id} uses characters its font {font} "
                                               f"cannot draw: {describe(lacking)}; add a font that "
                                               "has them to fallback_fonts in book.yaml.")
