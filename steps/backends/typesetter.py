"""Typeset text onto book pages with headless Chromium.

The browser sees only the text: one HTML document per page holds an absolutely positioned box
per :class:`TextBlock` over a transparent body the size of the page. We shrink each block's font
until its text fits its box, screenshot the text layer with a transparent background and
alpha-composite it onto the page (:func:`composite`). The page image itself never enters the browser.

Security: page scripts are disabled, every request is routed (the document and the book's
fonts are served from memory under a fake origin, everything else is aborted and logged in
:attr:`TextRenderer.blocked_requests`), text is HTML-escaped and CSS values come only from
validated fields. Measuring goes through the DevTools protocol (:mod:`steps.backends.chromium`), which
works with page scripts off.
"""

from __future__ import annotations

import hashlib
import html
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from PIL import Image

from steps.backends.browser import find_chromium  # noqa: F401 - re-exported for callers
from steps.backends.chromium import Browser, Tab
from steps.core.images import decode_rgba

ORIGIN = "https://book.invalid"
FALLBACK_FONTS = '"Noto Sans", "Noto Naskh Arabic", "Noto Sans Arabic", "DejaVu Sans", sans-serif'

_COLOR = re.compile(r"#(?:[0-9a-fA-F]{3,4}|[0-9a-fA-F]{6}|[0-9a-fA-F]{8})")
_JUSTIFY = {"top": "flex-start", "middle": "safe center", "bottom": "safe flex-end"}
_ALIGNS = ("left", "center", "right", "justify")
_WEIGHTS = ("normal", "bold")
_STYLES = ("normal", "italic")
# (magic bytes, CSS format(), MIME type, file extension)
_FONT_KINDS = [(b"\x00\x01\x00\x00", "truetype", "font/ttf", "ttf"),
               (b"true", "truetype", "font/ttf", "ttf"),
               (b"OTTO", "opentype", "font/otf", "otf"),
               (b"wOFF", "woff", "font/woff", "woff"),
               (b"wOF2", "woff2", "font/woff2", "woff2")]


def font_kind(data: bytes) -> tuple[str, str, str]:
    """(CSS format, MIME type, extension) of a font file, sniffed from its first bytes."""
    for magic, fmt, mime, ext in _FONT_KINDS:
        if data.startswith(magic):
            return fmt, mime, ext
    raise ValueError("Font data is not a TrueType, OpenType, WOFF or WOFF2 file.")


class FontLoadError(RuntimeError):
    """Chromium could not load a font file (its data is damaged or not a font it can read)."""


@dataclass(frozen=True)
class FontFile:
    """One face of a book font: the raw file bytes under a CSS family name."""

    family: str
    data: bytes
    weight: str = "normal"     # "normal" | "bold"
    style: str = "normal"      # "normal" | "italic"

    def __post_init__(self) -> None:
        if not self.family.strip():
            raise ValueError("A font needs a family name.")
        _check_choice("font weight", self.weight, _WEIGHTS)
        _check_choice("font style", self.style, _STYLES)
        font_kind(self.data)


@dataclass(frozen=True)
class TextBlock:
    """Final text for one box on a page, with the designer's typography."""

    text: str
    box: tuple[int, int, int, int]            # x, y, w, h in page pixels
    font_family: str
    font_size_px: int                         # shrunk (never grown) until the text fits the box
    color: str = "#000000"
    align: str = "left"                       # left | center | right | justify
    valign: str = "top"                       # top | middle | bottom
    line_height: float = 1.25
    font_weight: str = "normal"               # normal | bold
    font_style: str = "normal"                # normal | italic
    fallback_families: tuple[str, ...] = ()   # the book's fallback_fonts, tried after font_family

    def __post_init__(self) -> None:
        x, y, w, h = self.box
        if not all(isinstance(v, int) for v in self.box) or w <= 0 or h <= 0:
            raise ValueError(f"Text box {self.box!r} must be integers with a positive width and height.")
        if not isinstance(self.font_size_px, int) or self.font_size_px <= 0:
            raise ValueError(f"Font size {self.font_size_px!r} must be a positive integer.")
        if not _COLOR.fullmatch(self.color):
            raise ValueError(f"Colour {self.color!r} is not a CSS hex colour.")
        if not (math.isfinite(self.line_height) and 0 < self.line_height <= 10):
            raise ValueError(f"Line height {self.line_height!r} must be between 0 and 10.")
        _check_choice("alignment", self.align, _ALIGNS)
        _check_choice("vertical alignment", self.valign, tuple(_JUSTIFY))
        _check_choice("font weight", self.font_weight, _WEIGHTS)
        _check_choice("font style", self.font_style, _STYLES)

    @property
    def min_font_size(self) -> float:
        """The smallest size shrink-to-fit may use: 25% of the design size, at least 6px."""
        return min(float(self.font_size_px), max(6.0, self.font_size_px * 0.25))


def _check_choice(what: str, value: str, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise ValueError(f"Unknown {what} {value!r}: expected one of {', '.join(allowed)}.")


def css_string(value: str) -> str:
    """A double-quoted CSS string; anything but letters, digits, space, '-' and '_' is hex-escaped."""
    return '"' + "".join(c if c.isalnum() or c in " -_" else f"\\{ord(c):x} " for c in value) + '"'


def _font_url(index: int, font: FontFile) -> str:
    # named by its bytes too: a browser kept for another book's fonts never reuses a cached one
    return f"{ORIGIN}/fonts/{index}-{hashlib.sha256(font.data).hexdigest()[:16]}.{font_kind(font.data)[2]}"


def _font_face_css(index: int, font: FontFile) -> str:
    return (f"@font-face{{font-family:{css_string(font.family)};"
            f"src:url(\"{_font_url(index, font)}\") format(\"{font_kind(font.data)[0]}\");"
            f"font-weight:{font.weight};font-style:{font.style};font-display:block}}")


def _block_css(index: int, b: TextBlock) -> str:
    x, y, w, h = b.box
    # The book's fonts first (a job's characters are checked against them, steps.core.glyphs),
    # the system's only as a last resort.
    families = ",".join(css_string(f) for f in (b.font_family, *b.fallback_families))
    return (f"#b{index}{{left:{x}px;top:{y}px;width:{w}px;height:{h}px;"
            f"justify-content:{_JUSTIFY[b.valign]};font-family:{families},{FALLBACK_FONTS};"
            f"font-size:{b.font_size_px}px;line-height:{b.line_height:.6g};color:{b.color};"
            f"font-weight:{b.font_weight};font-style:{b.font_style};text-align:{b.align}}}")


def page_parts(blocks: Sequence[TextBlock], size: tuple[int, int]) -> tuple[str, str]:
    """One page's CSS and body HTML: one box per block, text escaped (never markup)."""
    w, h = size
    css = [f"html,body{{margin:0;padding:0;background:transparent;width:{w}px;height:{h}px;overflow:hidden}}"]
    css += [_block_css(i, b) for i, b in enumerate(blocks)]
    body = "".join(f'<div class="box" id="b{i}"><div class="t" dir="auto">{html.escape(b.text, quote=True)}</div></div>'
                   for i, b in enumerate(blocks))
    return "\n".join(css), body


def shell_document(fonts: Sequence[FontFile], page_css: str = "", body: str = "") -> str:
    """The document the renderer keeps open: the book's fonts and the shared CSS, with one
    page's CSS and boxes swapped in per page (so fonts load once per step, not per page)."""
    css = [_font_face_css(i, f) for i, f in enumerate(fonts)]
    css.append(".box{position:absolute;display:flex;flex-direction:column;overflow:hidden;box-sizing:border-box}")
    css.append(".t{flex:none;margin:0;white-space:pre-wrap;overflow-wrap:anywhere;unicode-bidi:plaintext}")
    return ('<!DOCTYPE html><html><head><meta charset="utf-8"><style>' + "\n".join(css)
            + f'</style><style id="page">{page_css}</style></head><body>{body}</body></html>')


def build_document(blocks: Sequence[TextBlock], size: tuple[int, int], fonts: Sequence[FontFile]) -> str:
    """The HTML of one page's text layer as a whole document."""
    return shell_document(fonts, *page_parts(blocks, size))


SHELL_URL = f"{ORIGIN}/page.html"
# Swaps one page's CSS and boxes into the open document (through the protocol, not a page script).
_SWAP_JS = """([css, body]) => {
  document.getElementById('page').textContent = css;
  document.body.innerHTML = body;
}"""


# Runs in the page through the protocol (not as a page script): waits for the fonts, then
# binary-searches each box's font size and leaves the box at the size found.
_FIT_JS = """async (limits) => {
  const boxes = [...document.querySelectorAll('.box')];
  document.body.getBoundingClientRect();
  await Promise.allSettled(boxes.map(box => {
    const cs = getComputedStyle(box.firstElementChild);
    return document.fonts.load(`${cs.fontStyle} ${cs.fontWeight} 16px ${cs.fontFamily}`,
                               box.firstElementChild.textContent || ' ');
  }));
  await document.fonts.ready;
  const failed = [...document.fonts].filter(f => f.status === 'error').map(f => f.family);
  const sizes = boxes.map((box, i) => {
    const t = box.firstElementChild, [size, floor] = limits[i];
    const fits = s => {
      box.style.fontSize = s + 'px';
      return t.getBoundingClientRect().height <= box.clientHeight + 0.01 && t.scrollWidth <= t.clientWidth;
    };
    if (fits(size)) return size;
    let lo = floor, hi = size;
    for (let k = 0; k < 10; k++) { const mid = (lo + hi) / 2; if (fits(mid)) lo = mid; else hi = mid; }
    fits(lo);
    return lo;
  });
  return {sizes, failed};
}"""


# One round trip a page: swap the page in, then fit its text.
_LAYOUT_JS = f"""async ([css, body, limits]) => {{
  ({_SWAP_JS})([css, body]);
  return await ({_FIT_JS})(limits);
}}"""


# Loads every font face the shell document declares (they load lazily, on first use, otherwise).
_LOAD_FONTS_JS = """async () => {
  await Promise.allSettled([...document.fonts].map(f => f.load()));
  return document.fonts.size;
}"""


def union_region(boxes: Sequence[tuple[int, int, int, int]], size: tuple[int, int]) -> tuple[int, int, int, int] | None:
    """The rectangle (x0, y0, x1, y1) around all boxes, clipped to the page; None if it is empty.

    One screenshot of the union is faster than one per box (each costs ~40 ms on its own) and
    composites every pixel exactly once, even where boxes overlap.
    """
    x0 = max(min(b[0] for b in boxes), 0)
    y0 = max(min(b[1] for b in boxes), 0)
    x1 = min(max(b[0] + b[2] for b in boxes), size[0])
    y1 = min(max(b[1] + b[3] for b in boxes), size[1])
    return (x0, y0, x1, y1) if x0 < x1 and y0 < y1 else None


def composite(page: np.ndarray, region: tuple[int, int, int, int], layer: np.ndarray) -> None:
    """Alpha-composite the RGBA ``layer`` (HxWx4) over ``region`` (x0, y0, x1, y1) of the RGB
    array ``page``, in place, where the layer is not transparent (text covers a small part of
    its region), with Pillow's integer arithmetic for an opaque page (``ImagingAlphaComposite``
    in libImaging/AlphaComposite.c: 7 bits of precision, rounded divisions by 255), so the
    pixels are those of ``Image.alpha_composite``; tests/test_text.py checks every value."""
    if not page.flags.c_contiguous:
        raise ValueError("composite() draws on a contiguous page array (np.ascontiguousarray).")
    x0, y0 = region[:2]
    width = layer.shape[1]
    drawn = np.flatnonzero(layer[:, :, 3])             # where the layer is not transparent
    text = layer.reshape(-1, 4).take(drawn, axis=0).astype(np.uint16)
    pixels = page.reshape(-1, 3)                        # a view: the page is one block
    at = drawn + (drawn // width) * (page.shape[1] - width) + y0 * page.shape[1] + x0
    alpha = text[:, 3:]
    # Pillow's ((m >> 8) + m) >> 15 with m = 128 * w is (w + (w >> 8)) >> 8: all in 16 bits
    mixed = text[:, :3] * alpha + pixels.take(at, axis=0) * (255 - alpha) + 128
    pixels[at] = ((mixed + (mixed >> 8)) >> 8).astype(np.uint8)


def _resources(fonts: Sequence[FontFile]) -> dict[str, tuple[str, bytes]]:
    """What the renderer's page may load, by URL: its shell document and the fonts."""
    return {SHELL_URL: ("text/html; charset=utf-8", shell_document(fonts).encode("utf-8", "replace")),
            **{_font_url(i, f): (font_kind(f.data)[1], f.data) for i, f in enumerate(fonts)}}


class TextRenderer:
    """One headless Chromium for many pages. Use as a context manager.

    Entering starts Chromium and returns at once: the browser boots while the caller decodes
    its first page, and the first page waits for it.
    """

    def __init__(self, fonts: Sequence[FontFile], executable_path: str | None = None) -> None:
        self.fonts = list(fonts)
        self.executable_path = executable_path
        self.served_requests: list[str] = []     # URLs answered from memory
        self.blocked_requests: list[str] = []    # URLs aborted: anything else the page asked for
        self._resources = _resources(self.fonts)
        self._pages_loaded = 0
        self._browser: Browser | None = None
        self._tab: Tab | None = None

    def __enter__(self) -> TextRenderer:
        if self._browser is None:  # (entering a renderer that is warm already keeps its browser)
            self._browser = Browser(self.executable_path, on_request=self._answer)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the browser (twice is harmless)."""
        if self._browser is not None:
            self._browser.close()
        self._browser = self._tab = None

    def use_fonts(self, fonts: Sequence[FontFile]) -> None:
        """Set text in ``fonts`` from now on (another book's), keeping the browser up: the
        next page loads the shell document afresh with them."""
        if list(fonts) != self.fonts:
            if self._browser is not None:
                self._browser.open_tab().url = "about:blank"   # (after a warm-up under way)
            self.fonts, self._resources = list(fonts), _resources(fonts)

    def warm_up(self, size: tuple[int, int]) -> None:
        """What the first page of ``size`` would wait for, done ahead, in the background: the
        browser up, the viewport set, the shell document loaded with every font face of the
        book, a first screenshot. Returns at once (enter the renderer first)."""
        self._browser.preload(SHELL_URL, size, _LOAD_FONTS_JS)

    @property
    def tab(self) -> Tab:
        """The browser's tab (opened on first use)."""
        if self._browser is None:
            raise RuntimeError("TextRenderer must be used as a context manager ('with TextRenderer(...) as r').")
        if self._tab is None:
            self._tab = self._browser.open_tab()
        return self._tab

    def _answer(self, url: str) -> tuple[int, str, bytes] | None:
        if url in self._resources:
            self.served_requests.append(url)
            mime, body = self._resources[url]
            return 200, mime, body
        self.blocked_requests.append(url)
        return None

    def _ready(self, size: tuple[int, int]) -> Tab:
        """The tab at ``size`` with the shell document loaded."""
        tab = self.tab
        if tab.viewport != size:
            tab.set_viewport(*size)
        if tab.url != SHELL_URL:  # first page (or the tab was taken elsewhere)
            tab.goto(SHELL_URL)
        return tab

    def _layout(self, blocks: Sequence[TextBlock], size: tuple[int, int]) -> list[float]:
        """Load the page's text layer at `size`, shrink every block to fit; the sizes used."""
        tab = self._ready(size)
        self._pages_loaded += 1
        # The body's HTML is built from escaped text only (page_parts): no markup, no URLs.
        result = tab.evaluate(_LAYOUT_JS, [*page_parts(blocks, size),
                                           [[b.font_size_px, b.min_font_size] for b in blocks]])
        if result["failed"]:
            raise FontLoadError(f"Chromium could not load the font(s) {sorted(set(result['failed']))}.")
        return [float(s) for s in result["sizes"]]

    def fit(self, blocks: Sequence[TextBlock]) -> list[float]:
        """The font size each block gets after shrink-to-fit."""
        if not blocks:
            return []
        size = (max(1, *(b.box[0] + b.box[2] for b in blocks)), max(1, *(b.box[1] + b.box[3] for b in blocks)))
        return self._layout(blocks, size)

    def render(self, page: Image.Image, blocks: Sequence[TextBlock]) -> Image.Image:
        """A new RGB image: `page` with the blocks' text composited on it."""
        pixels = np.array(page.convert("RGB"))
        drawn = self.text_layer(blocks, page.size)
        if drawn is not None:
            composite(pixels, *drawn)
        return Image.fromarray(pixels)

    def text_layer(self, blocks: Sequence[TextBlock], size: tuple[int, int]
                   ) -> tuple[tuple[int, int, int, int], np.ndarray] | None:
        """The blocks' text on a transparent RGBA layer (HxWx4 pixels) covering ``region`` (x0,
        y0, x1, y1) of a page of ``size``; None when there is nothing to draw."""
        return self.text_layers([blocks], size)[0]

    def text_layers(self, pages: Sequence[Sequence[TextBlock]], size: tuple[int, int]
                    ) -> list[tuple[tuple[int, int, int, int], np.ndarray] | None]:
        """:meth:`text_layer` for several pages of ``size`` at once: their text regions are
        stacked in one document (each page's boxes moved down by whole pixels, which sets the
        same pixels) and taken in one screenshot, which costs about a third less browser time
        a page than one each."""
        regions = [union_region([b.box for b in blocks], size) if blocks else None for blocks in pages]
        drawn: list[tuple[tuple[int, int, int, int], np.ndarray] | None] = [None] * len(pages)
        batch: list[int] = []
        top = 0
        for i, region in enumerate(regions):
            if region is None:
                continue
            if top + region[3] - region[1] > size[1]:  # stacked, they would pass the page's foot
                self._shoot(pages, regions, size, drawn, batch)
                batch, top = [], 0
            batch.append(i)
            top += region[3] - region[1]
        if batch:
            self._shoot(pages, regions, size, drawn, batch)
        return drawn

    def _shoot(self, pages: Sequence[Sequence[TextBlock]], regions: list, size: tuple[int, int],
               drawn: list, batch: list[int]) -> None:
        """Set the ``batch`` of ``pages`` stacked from the top of the viewport, take one
        screenshot, and put each page's region and layer into ``drawn``."""
        moved: list[TextBlock] = []
        tops, top = [], 0
        for i in batch:
            _, y0, _, y1 = regions[i]
            moved += [replace(b, box=(b.box[0], b.box[1] - y0 + top, b.box[2], b.box[3])) for b in pages[i]]
            tops.append(top)
            top += y1 - y0
        self._layout(moved, size)
        left, right = min(regions[i][0] for i in batch), max(regions[i][2] for i in batch)
        shot = decode_rgba(self.tab.screenshot((left, 0, right - left, top)))
        for i, y in zip(batch, tops, strict=True):
            x0, y0, x1, y1 = regions[i]
            drawn[i] = regions[i], np.ascontiguousarray(shot[y:y + y1 - y0, x0 - left:x1 - left])
