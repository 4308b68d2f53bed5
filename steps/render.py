"""Step ``render``: the text layers of each page of a chunk, set over its background.

One Chromium per step (driven by Playwright), the book's fonts via
``@font-face``, every value escaped, text shrunk to fit its box. The page's own scripts and the
network are off: only the book's fonts are served. Writes ``layout/{job_id}/pages/page_XX.png``
with the book's DPI. A page whose inputs are unchanged since it was made is kept (``page 3:
unchanged, skipped``), and Chromium only starts if some page still needs text set — unless the
local engine started the step early, when the browser starts and loads the book's fonts before
the go-ahead (see steps.runner). With ``--after`` (one machine) the go-ahead comes while the
backgrounds step is still making the chunk, and each page is set as soon as its background is
stored (:class:`steps.protocol.PagesAhead`).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import sys
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from steps import runner
from steps.core import artifacts
from steps.core.errors import InputError
from steps.core.images import decode_own_png, encode_png
from steps.core.job import JobRecord
from steps.core.manifest import Book, LoadedBook, Page, TextLayer, load_book
from steps.core.messages import Child, fill
from steps.core.records import read_job
from steps.core.store import Store, open_store, page_bg_key, page_key
from steps.protocol import PagesAhead, progress_line

TEXT_AHEAD = 3  # pages whose text the browser sets in one go (and before their backgrounds)


def child_values(record: JobRecord) -> Child:
    return Child(name=record.child_name, age=record.child_age or 0, gender=record.child_gender,
                 dedication=record.dedication)


def blocks_for(book: Book, page: Page, child: Child, language: str) -> list:
    """The page's text blocks, messages filled in the job's language; a layer whose message
    is empty once filled (``{dedication}`` without one) draws nothing."""
    texts = [(layer, fill(layer.message(language), language, child)) for layer in page.text_layers]
    return [block_for(book, layer, text) for layer, text in texts if text.strip()]


def block_for(book: Book, layer: TextLayer, text: str):
    """A layer's typography with its final text: the typesetter's TextBlock."""
    from steps.backends.typesetter import TextBlock

    return TextBlock(text=text, box=tuple(layer.box), font_family=layer.style.font_family,
                     font_size_px=layer.style.font_size_px, color=layer.style.color,
                     align=layer.style.align, valign=layer.style.valign,
                     line_height=layer.style.line_height, font_weight=layer.style.font_weight,
                     font_style=layer.style.font_style,
                     fallback_families=tuple(book.font_chain(layer)[1:]))


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


def font_ids(fonts: list) -> list:
    """What a page depends on of the book's fonts (once per chunk: hashing them is not free)."""
    return [[f.family, f.weight, f.style, hashlib.sha256(f.data).hexdigest()] for f in fonts]


def page_inputs(background: bytes, blocks: list, fonts: list, dpi: int) -> str:
    """What a final page depends on: its background, its text (the child's fields filled in),
    the book's fonts (:func:`font_ids`), the DPI and this code."""
    from dataclasses import asdict

    return artifacts.fingerprint(
        artifacts.code_version(__name__, "steps.backends.typesetter", "steps.core.images"), background,
        [asdict(b) for b in blocks], fonts, dpi)


class TextLayers:
    """The text layers of a chunk's pages, set on the browser's one thread (``text``): in
    batches of TEXT_AHEAD pages (one document and one screenshot each) and, once a browser is
    up, a batch ahead of the pages whose backgrounds are there (the text needs none). The
    browser starts (``start``) only when a page has text to set."""

    def __init__(self, pages: list[int], blocks_of: Callable[[int], list], size: tuple[int, int],
                 text: ThreadPoolExecutor, start: Callable[[], Any], renderer: Any = None) -> None:
        self.pages, self.blocks_of, self.size, self.text = pages, blocks_of, size, text
        self.start, self.renderer = start, renderer
        self.layers: dict[int, tuple[Future, int] | None] = {}  # page: (its batch's, its place)
        self.asked: set[int] = set()                             # pages whose text was started

    def ahead(self, i: int) -> None:
        """With a browser up: set the text of page ``pages[i]``'s batch and of the next."""
        if self.renderer is not None:
            first = i - i % TEXT_AHEAD
            self._ask(first)
            self._ask(first + TEXT_AHEAD)

    def take(self, i: int) -> tuple[Future, int] | None:
        """Page ``pages[i]``'s text layer: (its batch's future, its place in it), or None."""
        self._ask(i - i % TEXT_AHEAD)
        return self.layers.pop(self.pages[i])

    def drop(self, num: int) -> None:
        self.layers.pop(num, None)   # a page found unchanged: its text layer goes unused

    def _ask(self, first: int) -> None:
        todo = [(num, self.blocks_of(num)) for num in self.pages[first:first + TEXT_AHEAD]
                if num not in self.asked]
        self.asked.update(num for num, _ in todo)
        with_text = [(num, blocks) for num, blocks in todo if blocks]
        self.layers.update({num: None for num, blocks in todo if not blocks})
        if with_text:
            self.renderer = self.renderer or self.start()
            future = self.text.submit(self.renderer.text_layers, [b for _, b in with_text], self.size)
            self.layers.update({num: (future, k) for k, (num, _) in enumerate(with_text)})


def render_pages(store: Store, job_id: str, loaded: LoadedBook, pages: list[int],
                 warm=None, ready: Callable[[int], bool] = lambda num: True) -> list:
    """The chunk's final pages, in order. ``warm``: a TextRenderer already warmed up for this
    book (else one is started when a page needs text set); ``ready(num)`` waits until page
    ``num``'s background is stored (False: stop here, the backgrounds step failed)."""
    from steps.backends.typesetter import TextRenderer, composite

    record = read_job(store, job_id)
    child = child_values(record)
    book = loaded.book
    language = book.edition(record.language)
    fonts = book_fonts(loaded)
    fonts_used = font_ids(fonts)
    if warm is not None:
        warm.use_fonts(fonts)      # warmed up (or kept from a job before) for another book's
    made: list = []

    @functools.cache
    def blocks_of(num: int) -> list:  # a page's text, the child's fields filled in (once)
        return blocks_for(book, book.page(num), child, language)

    def stored(artifact) -> None:
        made.append(artifact)
        print(progress_line("render", artifact.page, len(made), len(pages)), file=sys.stderr,
              flush=True)

    # Each page is started (its background decoded on a helper thread, its text layer set by
    # the browser's thread: TextLayers) before the page started before it is composited,
    # encoded (helper thread) and stored: the browser sets text while this thread and the
    # helpers finish pages. The caller closes ``warm``: it may serve the next pass too.
    with contextlib.ExitStack() as stack, \
            ThreadPoolExecutor(max_workers=2, thread_name_prefix="page") as pool, \
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="text") as text:
        earlier = len(warm.blocked_requests) if warm is not None else 0  # a pass before's
        texts = TextLayers(pages, blocks_of,
                           book.output.page_size_px, text,
                           lambda: stack.enter_context(TextRenderer(fonts)), warm)
        started: deque = deque()  # (num, inputs, blocks, decoding, text layer) under way
        encoding = None  # (num, inputs, the encoding of its final page): the last composited

        def finish(num: int, inputs: str, blocks: list, decoding: Future,
                   layer: tuple[Future, int] | None) -> None:
            nonlocal encoding
            page = decoding.result()
            drawn = _text_layer(layer, book.id)
            if drawn is not None and (page.shape[1], page.shape[0]) != tuple(book.output.page_size_px):
                drawn = _text_layer(text.submit(texts.renderer.text_layer, blocks, (page.shape[1], page.shape[0])),
                                    book.id)  # an odd background
            if drawn is not None:
                composite(page, *drawn)
            if encoding is not None:
                stored(store_page(store, job_id, *encoding))
            encoding = (num, inputs, pool.submit(encode_png, page, book.output.dpi))

        for i, num in enumerate(pages):
            runner.report_progress(i, len(pages))
            texts.ahead(i)
            if not ready(num):
                break
            background = store.read(page_bg_key(job_id, num))
            blocks = blocks_of(num)
            inputs = page_inputs(background, blocks, fonts_used, book.output.dpi)
            kept = artifacts.reuse(store, record, "page_png", num, inputs)
            if kept is not None:
                texts.drop(num)
                stored(kept)
                continue
            started.append((num, inputs, blocks, pool.submit(decode_own_png, background), texts.take(i)))
            if len(started) > 1:
                finish(*started.popleft())
        while started:
            finish(*started.popleft())
        if encoding is not None:
            stored(store_page(store, job_id, *encoding))
        blocked = texts.renderer.blocked_requests[earlier:] if texts.renderer is not None else []
        if blocked:
            print(f"render: blocked {len(blocked)} request(s) that were not the book's: "
                  f"{', '.join(blocked[:5])}", file=sys.stderr)
    runner.report_progress(len(pages), len(pages))
    return made


def _text_layer(layer: tuple[Future, int] | Future | None, book_id: str):
    """A page's text layer: the ``k``-th of a batch's (``(future, k)``), or a future's; None:
    no text. A font Chromium could not load is the book's fault."""
    from steps.backends.typesetter import FontLoadError

    if layer is None:
        return None
    try:
        if isinstance(layer, tuple):
            future, k = layer
            return future.result()[k]
        return layer.result()
    except FontLoadError as e:
        raise InputError("bad_font", f"{str(e).rstrip('.')} for book {book_id}; replace the font "
                                     "files with working TTF, OTF, WOFF or WOFF2 files.") from None


def store_page(store: Store, job_id: str, num: int, inputs: str, encoded: Future):
    """Store a final page and add its record at once: the shop sees pages appear."""
    artifact = artifacts.put(store, page_key(job_id, num), encoded.result(), "page_png", num, inputs)
    artifacts.record(store, job_id, [artifact])
    return artifact


def warm_up(args):
    """When the local engine starts this step early: the browser started (Playwright and
    Chromium, 1–2 s), the page size set and the book's fonts loaded in the shell document
    while the chunk's backgrounds are still being made."""
    from steps.backends.typesetter import TextRenderer

    loaded = load_book(args.book)
    renderer = TextRenderer(book_fonts(loaded)).__enter__()
    renderer.warm_up(tuple(loaded.book.output.page_size_px))  # returns at once
    return renderer


def work(args, warm=None) -> None:
    store = open_store(args.store)
    loaded = load_book(args.book)
    pages = runner.parse_pages(args.pages)
    ahead = {}
    if args.after:
        print("render: pages ahead, each set as soon as its background is stored", file=sys.stderr)
        ahead["ready"] = PagesAhead(args.after, args.go_file, os.getppid()).wait
    made = render_pages(store, args.job_id, loaded, pages, warm, **ahead)
    artifacts.export(args.export, made, store)


def main() -> None:
    p = runner.parser("render", __doc__.splitlines()[0])
    p.add_argument("--book", required=True)
    p.add_argument("--pages", required=True, help="page numbers of the chunk, e.g. 1,2,3")
    p.add_argument("--export", default="", help="also copy the pages to this folder")
    p.add_argument("--after", default="", help="one machine: the stderr of the backgrounds "
                   "step still making the chunk; take each page once it says it is stored")
    runner.run("render", p.parse_args(), work, warm_up=warm_up, parse=p.parse_args)


if __name__ == "__main__":
    main()
