"""Step ``render``: the text layers of each page of a chunk, set over its background.

One Chromium per step (Playwright), the book's fonts via ``@font-face``, every value escaped,
text shrunk to fit its box. The page's own scripts and the network are off: only the book's
fonts are served. Writes ``layout/{job_id}/pages/page_XX.png`` with the book's DPI.
"""

from __future__ import annotations

import io

from PIL import Image

from steps import artifacts, runner
from steps.images import encode_png
from steps.job import JobRecord, read_job
from steps.manifest import LoadedBook, Page, fill, load_book
from steps.store import Store, open_store, page_bg_key, page_key


def child_values(record: JobRecord) -> dict[str, str]:
    return {"child_name": record.child_name, "child_age": str(record.child_age),
            "child_gender": record.child_gender}


def blocks_for(page: Page, child: dict[str, str]) -> list:
    from steps.text import TextBlock

    return [TextBlock(text=fill(layer.text, child), box=tuple(layer.box),
                      font_family=layer.style.font_family, font_size_px=layer.style.font_size_px,
                      color=layer.style.color, align=layer.style.align,
                      valign=layer.style.valign, line_height=layer.style.line_height,
                      font_weight=layer.style.font_weight, font_style=layer.style.font_style)
            for layer in page.text_layers]


def book_fonts(loaded: LoadedBook) -> list:
    from steps.text import FontFile

    return [FontFile(family=f.family, data=loaded.read(f.src), weight=f.weight, style=f.style)
            for f in loaded.book.fonts]


def render_pages(store: Store, job_id: str, loaded: LoadedBook, pages: list[int]) -> list:
    from steps.text import TextRenderer

    child = child_values(read_job(store, job_id))
    book = loaded.book
    made = []
    with TextRenderer(book_fonts(loaded)) as renderer:
        for num in pages:
            background = Image.open(io.BytesIO(store.read(page_bg_key(job_id, num))))
            final = renderer.render(background.convert("RGB"), blocks_for(book.page(num), child))
            made.append(artifacts.put(store, page_key(job_id, num),
                                      encode_png(final, book.output.dpi), "page_png", num))
    return made


def work(args) -> None:
    store = open_store(args.store)
    loaded = load_book(args.book)
    pages = runner.parse_pages(args.pages)
    made = render_pages(store, args.job_id, loaded, pages)
    artifacts.record(store, args.job_id, made)
    artifacts.export(args.export, made, store)


def main() -> None:
    p = runner.parser("render", __doc__.splitlines()[0])
    p.add_argument("--book", required=True)
    p.add_argument("--pages", required=True, help="page numbers of the chunk, e.g. 1,2,3")
    p.add_argument("--export", default="", help="also copy the pages to this folder")
    runner.run("render", p.parse_args(), work)


if __name__ == "__main__":
    main()
