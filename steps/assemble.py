"""Step ``assemble``: the PDFs.

``prepay``: ``layout/{job_id}/preview.pdf``, the prepay pages at low resolution with a
watermark, at the book's physical page size. ``postpay``: ``layout/{job_id}/book.pdf``, every
page at print size; the page PNGs are embedded as they are (img2pdf), so the print is lossless.
"""

from __future__ import annotations

import io
import sys

from PIL import Image, ImageDraw, ImageFont

from steps import runner
from steps.core import artifacts
from steps.core.errors import InputError
from steps.core.images import decode_own_png
from steps.core.manifest import Book, load_book
from steps.core.records import read_job
from steps.core.store import Store, book_key, open_store, page_key, preview_key

PREVIEW_DPI = 72
WATERMARK = "PREVIEW"


def watermark(page: Image.Image) -> Image.Image:
    """A large translucent diagonal word across the page."""
    side = min(page.size)
    layer = Image.new("RGBA", (side, side // 3), (0, 0, 0, 0))
    font = ImageFont.load_default(size=side // 6)
    draw = ImageDraw.Draw(layer)
    draw.text((side // 2, side // 6), WATERMARK, font=font, anchor="mm",
              fill=(255, 255, 255, 120), stroke_width=max(2, side // 200), stroke_fill=(0, 0, 0, 70))
    layer = layer.rotate(35, expand=True, resample=Image.Resampling.BICUBIC)
    out = page.convert("RGBA")
    out.alpha_composite(layer, ((page.width - layer.width) // 2, (page.height - layer.height) // 2))
    return out.convert("RGB")


def preview_page(png: bytes, book: Book) -> bytes:
    page = Image.fromarray(decode_own_png(png))   # our own PNG: faster than Pillow's decoder
    width, height = book.output.page_size_px
    scale = PREVIEW_DPI / book.output.dpi
    # reducing_gap: shrink by a whole factor first (cheap), then Lanczos for the rest, at least
    # 2x (Pillow's docs: indistinguishable from Lanczos alone). At 3.0 a 300 dpi page has no
    # whole factor left (4.2 < 2 x 3) and costs ~75 ms more.
    small = page.resize((max(1, round(width * scale)), max(1, round(height * scale))),
                        Image.Resampling.LANCZOS, reducing_gap=2.0)
    out = io.BytesIO()
    watermark(small).save(out, format="JPEG", quality=70, dpi=(PREVIEW_DPI, PREVIEW_DPI))
    return out.getvalue()


def page_pngs(store: Store, job_id: str, pages: list[int]) -> list[bytes]:
    try:
        return [store.read(page_key(job_id, n)) for n in pages]
    except FileNotFoundError as e:
        raise InputError("missing_page", f"Page {e} has not been rendered; run the stage that "
                                         "makes it first.") from None


def make_pdf(images: list[bytes], book: Book) -> bytes:
    import img2pdf

    width, height = book.output.page_size_px
    size = (img2pdf.in_to_pt(width / book.output.dpi), img2pdf.in_to_pt(height / book.output.dpi))
    # No dates and img2pdf's own writer (no random /ID): the same pages give the same bytes.
    # Rotation.none: our PNGs carry no EXIF orientation, and looking for one makes Pillow
    # decode the whole page (PngImageFile.getexif loads the image to reach chunks after IDAT),
    # ~25 ms a print page for nothing.
    return img2pdf.convert(images, layout_fun=img2pdf.get_layout_fun(size), nodate=True,
                           engine=img2pdf.Engine.internal, rotation=img2pdf.Rotation.none)


def work(args) -> None:
    store = open_store(args.store)
    book = load_book(args.book).book
    preview = args.stage == "prepay"
    pages = book.stage_pages("prepay" if preview else "full")
    kind = "preview_pdf" if preview else "book_pdf"
    key = preview_key(args.job_id) if preview else book_key(args.job_id)
    if not pages:  # an empty stage: nothing to assemble, and finalize owes no PDF
        print(f"assemble: the {args.stage} stage has no pages; no PDF", file=sys.stderr)
        return
    pngs = page_pngs(store, args.job_id, pages)
    inputs = artifacts.fingerprint(artifacts.code_version(__name__), kind, book.output, *pngs)
    made = artifacts.reuse(store, read_job(store, args.job_id), kind, None, inputs)
    if made is None:
        pdf = make_pdf([preview_page(p, book) for p in pngs] if preview else pngs, book)
        made = artifacts.put(store, key, pdf, kind, inputs_sha256=inputs)
    artifacts.record(store, args.job_id, [made])
    artifacts.export(args.export, [made], store)


def main() -> None:
    p = runner.parser("assemble", __doc__.splitlines()[0])
    p.add_argument("--book", required=True)
    p.add_argument("--stage", choices=["prepay", "postpay"], required=True)
    p.add_argument("--export", default="", help="also copy the PDF to this folder")
    runner.run("assemble", p.parse_args(), work)


if __name__ == "__main__":
    main()
