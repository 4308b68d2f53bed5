"""Step ``backgrounds``: each page of a chunk as it will be printed, without its text.

Pages that need a face get the child's face in their face slot (CPU backend ``classic``:
eye-aligned similarity warp, feathered elliptical mask, colour matched to the illustration,
seamless blend; production backend ``comfyui``: a ComfyUI server, see :mod:`steps.backends.comfyui`);
the others are the base illustration. Both are resized to the book's page size and written as
``layout/{job_id}/pages/page_XX_bg.png`` with the book's DPI, except that a page without a face
whose base image is a plain RGB PNG of that size already is stored as it is (nothing to decode
or encode; the final page carries the DPI). The face backend is made once
per chunk (one photo decode, one model or connection for all its pages). Each face page gets a
seed: the one recorded in the analysis's ``generation_retry.seeds`` (a regeneration's fresh
seeds are drawn there by ``plan``), else one fixed per job and page, which is then recorded.
Each page's artifact record is written as soon as the page is stored, so the job record (and
``bookjob status``, the webhook, the shop) shows pages appear one by one.
"""

from __future__ import annotations

import hashlib
import secrets
import sys

from steps import runner
from steps.backends.base import FACE_TRANSFERS, FaceRequest, face_transfer
from steps.core import artifacts
from steps.core.analysis import Analysis, child_prompt
from steps.core.errors import InputError
from steps.core.images import encode_png, load_page, load_photo, usable_as_is
from steps.core.job import JobRecord
from steps.core.manifest import LoadedBook, load_book
from steps.core.records import read_job, update_job
from steps.core.settings import settings
from steps.core.store import Store, open_store, page_bg_key
from steps.plan import faces_on_gpu
from steps.protocol import progress_line

BACKENDS = tuple(FACE_TRANSFERS)
SEED_LIMIT = 2 ** 48


def page_seed(job_id: str, num: int, randomize: bool) -> int:
    """The generation seed of a page: fixed per (job, page), or a fresh random one."""
    if randomize:
        return secrets.randbelow(SEED_LIMIT)
    return int.from_bytes(hashlib.sha256(f"{job_id}/page/{num}".encode()).digest()[:6], "big")


def page_prompt(page_prompt_text: str, analysis: Analysis | None) -> str:
    """The page's scene prompt followed by the child's common prompt from the analysis (its
    gender: the parent's, else the analysis's, else "child")."""
    parts = [page_prompt_text.strip(), child_prompt(analysis) if analysis else ""]
    return ", ".join(p for p in parts if p)


def make_backgrounds(store: Store, job_id: str, loaded: LoadedBook, pages: list[int],
                     backend: str = "classic", options: dict | None = None,
                     progress=lambda done, total: None) -> list:
    record = read_job(store, job_id)
    book = loaded.book
    recorded = record.generation_retry.seeds
    seeds = {n: recorded.get(str(n), page_seed(job_id, n, False))
             for n in pages if book.page(n).needs_face_swap}
    if any(str(n) not in recorded for n in seeds) and record.analysis is not None:
        def remember(job: JobRecord) -> None:
            if job.analysis is not None:
                for n, seed in seeds.items():
                    job.analysis.generation_retry.seeds.setdefault(str(n), seed)

        update_job(store, job_id, remember)
    transfer = None
    made = []
    photo: list[bytes] = []  # read once, for the first face page

    def photo_bytes() -> bytes:
        if not photo:
            photo.append(store.read(record.photo_key))
        return photo[0]

    code = artifacts.code_version(__name__, "steps.backends.faces", "steps.core.images",
                                  FACE_TRANSFERS[backend].partition(":")[0])
    try:
        for done, num in enumerate(pages):
            progress(done, len(pages))
            page = book.page(num)
            base = loaded.read(page.base)
            # what the face depends on: the photo, the analysis (not its regeneration state:
            # the page's seed stands for that) and the seed
            face = (photo_bytes(), record.analysis.model_dump(mode="json", exclude={
                "generation_retry"}) if record.analysis else None,
                seeds[num]) if page.needs_face_swap else ()
            inputs = artifacts.fingerprint(code, backend, base, book.output, page.model_dump(
                include={"needs_face_swap", "face", "prompt", "negative_prompt"}), *face)
            kept = artifacts.reuse(store, record, "page_bg_png", num, inputs)
            if kept is None:
                if page.needs_face_swap or not usable_as_is(base, book.output.page_size_px):
                    image = load_page(base, book.output.page_size_px, what=f"base image of page {num}")
                    if page.needs_face_swap:
                        if transfer is None:
                            if record.analysis is None:
                                raise InputError("not_analyzed", f"Job {job_id} has no analysis "
                                                                 "yet; run the prepay stage first.")
                            transfer = face_transfer(backend)(load_photo(photo_bytes()),
                                                              record.analysis, **(options or {}))
                        request = FaceRequest(num, (page.face.left_eye, page.face.right_eye),
                                              page_prompt(page.prompt, record.analysis),
                                              page.negative_prompt, seeds[num])
                        image = transfer(image, request)
                    base = encode_png(image, book.output.dpi)
                # else the book's own file is the background as it is: nothing to decode
                kept = artifacts.put(store, page_bg_key(job_id, num), base, "page_bg_png", num, inputs)
                artifacts.record(store, job_id, [kept])   # the page appears in the record now
            made.append(kept)
            print(progress_line("backgrounds", num, len(made), len(pages)), file=sys.stderr,
                  flush=True)
    finally:
        if transfer is not None:
            transfer.close()
    progress(len(pages), len(pages))
    return made


def backend_options(args) -> dict:
    """The chosen face backend's settings (arguments first, then the environment)."""
    if args.face_backend != "comfyui":
        return {}
    configured = settings()
    url = args.comfyui_url or configured.comfyui_url
    if not url:
        raise InputError("no_comfyui_url", "--face-backend comfyui needs the ComfyUI server's "
                                           "address: pass --comfyui-url or set BOOKJOB_COMFYUI_URL.")
    return {"url": url, "job_id": args.job_id, "timeout_s": args.comfyui_timeout,
            "workflow": configured.comfyui_workflow or None}


def work(args) -> None:
    store = open_store(args.store)
    loaded = load_book(args.book)
    pages = runner.parse_pages(args.pages)
    unknown = [n for n in pages if n not in {p.num for p in loaded.book.pages}]
    if unknown:
        raise InputError("bad_pages", f"Page {unknown[0]} is not in book {loaded.book.id}.")
    if args.only_faces or faces_on_gpu(args.face_backend, args.gpu_face_backends):
        # the face pages of a GPU backend are made by the step `faces`, on a GPU pod
        faces = {n for n in pages if loaded.book.page(n).needs_face_swap}
        pages = [n for n in pages if (n in faces) == args.only_faces]
    options = backend_options(args) if any(
        loaded.book.page(n).needs_face_swap for n in pages) else {}
    # each page's record is written as the page is stored (make_backgrounds)
    make_backgrounds(store, args.job_id, loaded, pages, args.face_backend, options,
                     runner.report_progress)


def main() -> None:
    p = runner.parser("backgrounds", __doc__.splitlines()[0])
    p.add_argument("--book", required=True)
    p.add_argument("--pages", required=True, help="page numbers of the chunk, e.g. 1,2,3")
    p.add_argument("--face-backend", choices=sorted(BACKENDS),
                   default=settings().face_backend)
    p.add_argument("--comfyui-url", default="",
                   help="ComfyUI server for --face-backend comfyui [env BOOKJOB_COMFYUI_URL]")
    p.add_argument("--comfyui-timeout", type=float,
                   default=settings().comfyui_timeout,
                   help="seconds ComfyUI may take for one page [env BOOKJOB_COMFYUI_TIMEOUT]")
    p.add_argument("--only-faces", type=runner.boolean, default=False,
                   help="only the pages that need a face (the GPU step `faces`)")
    p.add_argument("--gpu-face-backends", default="",
                   help="face backends whose face pages the step `faces` makes on a GPU; "
                        "the other pages are made here")
    args = p.parse_args()
    runner.run("faces" if args.only_faces else "backgrounds", args, work)


if __name__ == "__main__":
    main()
