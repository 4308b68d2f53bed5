"""Step ``render``: the text layers of each page of a chunk, set over its background.

One Chromium per step (driven over the DevTools protocol), the book's fonts via
``@font-face``, every value escaped, text shrunk to fit its box. The page's own scripts and the
network are off: only the book's fonts are served. Writes ``layout/{job_id}/pages/page_XX.png``
with the book's DPI. A page whose inputs are unchanged since it was made is kept (``page 3:
unchanged, skipped``), and Chromium only starts if some page still needs text set — unless the
local engine started the step early, when it boots before the go-ahead (see steps.runner).
"""

from __future__ import annotations

import contextlib
import hashlib
import sys


from steps import runner
from steps.core import artifacts
from steps.core.errors import InputError
from steps.core.images import decode_own_png, encode_png
from steps.core.job import JobRecord, read_job
from steps.core.manifest import LoadedBook, Page, fill, load_book
from steps.core.store import Store, open_store, page_bg_key, page_key
from steps.protocol import progress_line


def child_values(record: JobRecord) -> dict[str, str]:
    return {"child_name": record.child_name, "child_age": str(record.child_age),
            "child_gender": record.child_gender}


def blocks_for(page: Page, child: dict[str, str]) -> list:
    from steps.backends.typesetter import TextBlock

    return [TextBlock(text=fill(layer.text, child), box=tuple(layer.box),
                      font_family=layer.style.font_family, font_size_px=layer.style.font_size_px,
                      color=layer.style.color, align=layer.style.align,
                      valign=layer.style.valign, line_height=layer.style.line_height,
                      font_weight=layer.style.font_weight, font_style=layer.style.font_style)
            for layer in page.text_layers]


def book_fonts(loaded: LoadedBook) -> list:
    from steps.backends.typesetter import FontFile

    fonts = []
    for f in loaded.book.fonts:
        try:
            fonts.append(FontFile(family=f.family, data=loaded.read(f.src), weight=f.weight,
                                  style=f.style))
        except ValueError:
            raise InputError("bad_font", f"Font file {f.src} of book {loaded.book.id} is not a "
                                         "TrueType, OpenType, WOFF or WOFF2 font; replace it "
                                         "with one.") from None
    return fonts


def page_inputs(background: bytes, blocks: list, fonts: list, dpi: int) -> str:
    """What a final page depends on: its background, its text (the child's fields filled in),
    the book's fonts, the DPI and this code."""
    from dataclasses import asdict

    return artifacts.fingerprint(
        artifacts.code_version(__name__, "steps.backends.typesetter", "steps.core.images"), background,
        [asdict(b) for b in blocks],
        [[f.family, f.weight, f.style, hashlib.sha256(f.data).hexdigest()] for f in fonts], dpi)


def render_pages(store: Store, job_id: str, loaded: LoadedBook, pages: list[int],
                 browser=None) -> list:
    """The chunk's final pages; ``browser``: a Chromium already started (else one is started
    when a page needs text set)."""
    from steps.backends.typesetter import FontLoadError, TextRenderer, composite

    record = read_job(store, job_id)
    child = child_values(record)
    book = loaded.book
    fonts = book_fonts(loaded)
    made, todo = [], []
    for num in pages:
        background = store.read(page_bg_key(job_id, num))
        blocks = blocks_for(book.page(num), child)
        inputs = page_inputs(background, blocks, fonts, book.output.dpi)
        kept = artifacts.reuse(store, record, "page_png", num, inputs)
        if kept is not None:
            made.append(kept)
            print(progress_line("render", num, len(made), len(pages)), file=sys.stderr, flush=True)
        else:
            todo.append((num, background, blocks, inputs))
    # Chromium only starts when a page has text to set.
    needed = any(t[2] for t in todo)
    with (TextRenderer(fonts, browser=browser) if needed else contextlib.nullcontext()) as renderer:
        for num, background, blocks, inputs in todo:
            # OpenCV's BGR array: decoded and encoded without Pillow's repacking of whole pages
            page = decode_own_png(background)
            try:
                drawn = renderer.text_layer(blocks, (page.shape[1], page.shape[0])) if blocks else None
            except FontLoadError as e:
                raise InputError("bad_font", f"{str(e).rstrip('.')} for book {book.id}; replace "
                                             "the font files with working TTF, OTF, WOFF or WOFF2 "
                                             "files.") from None
            if drawn is not None:
                composite(page, *drawn, bgr=True)
            made.append(artifacts.put(store, page_key(job_id, num),
                                      encode_png(page, book.output.dpi, bgr=True), "page_png", num,
                                      inputs))
            artifacts.record(store, job_id, made[-1:])   # each page's record as it is stored
            print(progress_line("render", num, len(made), len(pages)), file=sys.stderr, flush=True)
        if renderer is not None and renderer.blocked_requests:
            print(f"render: blocked {len(renderer.blocked_requests)} request(s) that were not the "
                  f"book's: {', '.join(renderer.blocked_requests[:5])}", file=sys.stderr)
    return made


def start_browser():
    """Warm-up when the local engine starts this step early: Chromium boots (about half a
    second) while the chunk's backgrounds are still being made."""
    from steps.backends.chromium import Browser

    browser = Browser()
    try:
        browser.open_tab()
    except BaseException:
        browser.close()
        raise
    return browser


def work(args, browser=None) -> None:
    store = open_store(args.store)
    loaded = load_book(args.book)
    pages = runner.parse_pages(args.pages)
    made = render_pages(store, args.job_id, loaded, pages, browser)
    artifacts.export(args.export, made, store)


def main() -> None:
    p = runner.parser("render", __doc__.splitlines()[0])
    p.add_argument("--book", required=True)
    p.add_argument("--pages", required=True, help="page numbers of the chunk, e.g. 1,2,3")
    p.add_argument("--export", default="", help="also copy the pages to this folder")
    runner.run("render", p.parse_args(), work, warm_up=start_browser)


if __name__ == "__main__":
    main()
