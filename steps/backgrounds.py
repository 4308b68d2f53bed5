"""Step ``backgrounds``: each page of a chunk as it will be printed, without its text.

Pages that need a face get the child's face in their face slot (CPU backend ``classic``:
eye-aligned similarity warp, feathered elliptical mask, colour matched to the illustration,
seamless blend); the others are the base illustration. Both are resized to the book's page
size and written as ``layout/{job_id}/pages/page_XX_bg.png`` with the book's DPI.
"""

from __future__ import annotations

import numpy as np

from steps import artifacts, runner
from steps.errors import InputError
from steps.images import encode_png, load_page, load_photo
from steps.job import read_job
from steps.manifest import LoadedBook, load_book
from steps.store import Store, open_store, page_bg_key


class ClassicFaceTransfer:
    """Eye-aligned face transfer on the CPU; the photo is decoded once per chunk."""

    def __init__(self, photo: np.ndarray, analysis: dict) -> None:
        self.photo = photo
        self.eyes = (tuple(analysis["left_eye"]), tuple(analysis["right_eye"]))

    def __call__(self, page: np.ndarray, slot: tuple) -> np.ndarray:
        from steps.faces import transfer_face

        return transfer_face(page, self.photo, self.eyes, slot)


BACKENDS = {"classic": ClassicFaceTransfer}


def make_backgrounds(store: Store, job_id: str, loaded: LoadedBook, pages: list[int],
                     backend: str = "classic") -> list:
    record = read_job(store, job_id)
    book = loaded.book
    transfer = None
    made = []
    for num in pages:
        page = book.page(num)
        image = load_page(loaded.read(page.base), book.output.page_size_px,
                          what=f"base image of page {num}")
        if page.needs_face_swap:
            if transfer is None:
                transfer = BACKENDS[backend](load_photo(store.read(record.photo_key)),
                                             record.analysis or {})
            slot = (page.face.left_eye, page.face.right_eye)
            image = transfer(np.asarray(image), slot)
        made.append(artifacts.put(store, page_bg_key(job_id, num),
                                  encode_png(image, book.output.dpi), "page_bg_png", num))
    return made


def work(args) -> None:
    store = open_store(args.store)
    loaded = load_book(args.book)
    pages = runner.parse_pages(args.pages)
    unknown = [n for n in pages if n not in {p.num for p in loaded.book.pages}]
    if unknown:
        raise InputError("bad_pages", f"Page {unknown[0]} is not in book {loaded.book.id}.")
    artifacts.record(store, args.job_id, make_backgrounds(store, args.job_id, loaded, pages,
                                                          args.face_backend))


def main() -> None:
    p = runner.parser("backgrounds", __doc__.splitlines()[0])
    p.add_argument("--book", required=True)
    p.add_argument("--pages", required=True, help="page numbers of the chunk, e.g. 1,2,3")
    p.add_argument("--face-backend", choices=sorted(BACKENDS), default="classic")
    runner.run("backgrounds", p.parse_args(), work)


if __name__ == "__main__":
    main()
