"""Step ``plan``: start a stage and split its pages into chunks.

The job becomes ``prepay_generating`` or ``postpay_generating``. The chunks (one per pod:
``"1,2,3"``) are written as a JSON list to ``--out``, which the local engine reads and Argo
fans out over (``withParam``). ``--pages-per-task 0`` means one chunk for the whole stage (a
pod each on a cluster); ``auto`` means one chunk per :data:`CORES_PER_CHUNK` cores of this
machine (in a pod, of its CPU limit), but no chunk under :data:`AUTO_MIN_PAGES` pages. One
chunk keeps two cores busy on its own: its render step starts the browser on one core while
its backgrounds step works on the other, then sets text in Chromium while its threads decode
and encode. Each further chunk pays for its own processes and browser (about 1.2 CPU-s here),
and on 2 cores one chunk per stage was faster than two for 16 and 24 pages (`make bench`).

Regeneration (the old clients' ``analysis.generation_retry``): a prepay pass with
``--randomize-seed``, or with the flag already set in the record (by the shop), draws fresh
seeds for the stage's face pages (only ``generation_retry.pages`` when the shop or ``--pages``
named some), counts the regeneration and resets the flag, all in the one update that starts
the stage. Beyond ``BOOKJOB_MAX_REGENERATIONS`` it is refused (exit 3, the job untouched).
A prepay pass that finds the job already past prepay (a late duplicate) changes nothing.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
from pathlib import Path

from steps import runner
from steps.core.errors import InputError, Refusal
from steps.core.job import ORDER, JobRecord, Status
from steps.core.manifest import Book, load_book
from steps.core.records import read_job, update_job
from steps.core.settings import settings
from steps.core.store import open_store

GENERATING = {"prepay": Status.PREPAY_GENERATING, "postpay": Status.POSTPAY_GENERATING}
AUTO_MIN_PAGES = 4
CORES_PER_CHUNK = 2
CGROUP = Path("/sys/fs/cgroup")


def usable_cpus(cgroup: Path = CGROUP) -> int:
    """The CPUs this process may use: its affinity, capped by its cgroup's CPU limit (a pod's
    ``limits.cpu`` is a CFS quota; the affinity alone counts the node's cores)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    quota = period = None
    try:
        fields = (cgroup / "cpu.max").read_text().split()  # cgroup v2: "<quota|max> <period>"
        if fields and fields[0] != "max":
            quota, period = int(fields[0]), int(fields[1])
    except (OSError, ValueError, IndexError):
        try:  # cgroup v1
            quota = int((cgroup / "cpu" / "cpu.cfs_quota_us").read_text())
            period = int((cgroup / "cpu" / "cpu.cfs_period_us").read_text())
        except (OSError, ValueError):
            pass
    if quota and period and quota > 0:
        cores = min(cores, max(1, -(-quota // period)))
    return max(1, cores)


def faces_on_gpu(face_backend: str, gpu_face_backends: str) -> bool:
    """Whether the face pages of ``face_backend`` go to the GPU step ``faces``: the engine
    names the backends that run on its GPU (the cluster with the ComfyUI sidecar: comfyui)."""
    return face_backend in {b.strip() for b in gpu_face_backends.split(",") if b.strip()}


SEED_LIMIT = 2 ** 48


def check_book(record: JobRecord, book: Book) -> None:
    """The job is bound to the book it was started with (by the manifest's id: the same book
    moved to another folder, or edited, is still its book)."""
    if record.book_id and book.id != record.book_id:
        raise Refusal("book_mismatch", f"Job {record.job_id} was started with book "
                                       f"{record.book_id!r}, not {book.id!r}; leave BOOK out or "
                                       "use a new job id.")


def regeneration_pages(record: JobRecord, book: Book, stage_pages: list[int]) -> list[int]:
    """The face pages a regeneration draws fresh seeds for."""
    asked = record.generation_retry.pages or stage_pages
    unknown = [n for n in asked if n not in stage_pages]
    if unknown:
        raise Refusal("bad_pages", f"Page {unknown[0]} is not a prepay page of book {book.id}; "
                                   f"regenerate some of {', '.join(map(str, stage_pages))}.")
    return [n for n in asked if book.page(n).needs_face_swap]


def draw_seeds(record: JobRecord, pages: list[int]) -> None:
    """A regeneration: fresh seeds for ``pages``, counted, the shop's flag reset."""
    if record.analysis is None:
        return
    state = record.analysis.generation_retry
    state.seeds.update({str(n): secrets.randbelow(SEED_LIMIT) for n in pages})
    state.count += 1
    state.randomize_seed = False
    state.pages = []


def drop_request(record: JobRecord) -> None:
    if record.analysis is not None:
        record.analysis.generation_retry.randomize_seed = False
        record.analysis.generation_retry.pages = []


def past(record: JobRecord, stage: str) -> bool:
    """The job is already beyond this stage (a late duplicate of it)."""
    return stage == "prepay" and ORDER.get(record.status, -1) > ORDER[Status.PREPAY_READY]


def chunks(pages: list[int], pages_per_task: int | str) -> list[str]:
    if not pages:
        return []
    if pages_per_task == "auto":
        cores = usable_cpus()
        count = max(1, min(cores // CORES_PER_CHUNK, len(pages) // AUTO_MIN_PAGES))
        pages_per_task = -(-len(pages) // count)
    size = int(pages_per_task) if int(pages_per_task) > 0 else max(len(pages), 1)
    return [",".join(map(str, pages[i:i + size])) for i in range(0, len(pages), size)]


def per_task(text: str) -> int | str:
    if text == "auto":
        return text
    value = int(text)
    if value < 0:
        raise ValueError(text)
    return value


def work(args) -> None:
    store = open_store(args.store)
    record = read_job(store, args.job_id)
    if record.analysis is None:
        raise InputError("not_analyzed", f"Job {args.job_id} has no analysis yet; "
                                         "run the prepay stage first.")
    if args.stage == "postpay" and not record.reached(Status.PREPAY_READY):
        raise InputError("not_prepaid", f"Job {args.job_id} never reached prepay_ready; "
                                        "run the prepay stage first.")
    book = load_book(args.book).book
    check_book(record, book)
    pages = book.stage_pages(args.stage)
    retry = record.generation_retry
    regenerate = args.stage == "prepay" and (args.randomize_seed or retry.randomize_seed)
    if regenerate:
        try:
            if past(record, "prepay"):
                raise Refusal("already_paid", f"Job {args.job_id} is {record.status.value}: "
                                              "its prepay pages can no longer be regenerated.")
            if retry.count >= settings().max_regenerations:
                raise Refusal("regeneration_limit", f"Job {args.job_id} has been regenerated "
                                                    f"{retry.count} times, the limit "
                                                    "(BOOKJOB_MAX_REGENERATIONS); keep these "
                                                    "pages.")
            fresh = regeneration_pages(record, book, pages)
        except Refusal:
            update_job(store, args.job_id, drop_request)  # answered: the flag does not linger
            raise

    def begin(record: JobRecord) -> None:
        if past(record, args.stage):
            return
        record.move_to(GENERATING[args.stage])
        if regenerate:
            draw_seeds(record, fresh)

    done = update_job(store, args.job_id, begin)
    if past(done, args.stage):
        print(f"plan: job {args.job_id} is already {done.status.value}, past {args.stage}; "
              "nothing to change", file=sys.stderr)
    if regenerate:
        print(f"plan: regeneration {done.generation_retry.count}: fresh seeds for pages "
              f"{', '.join(map(str, fresh)) or '(none with a face)'}", file=sys.stderr)
    planned = json.dumps(chunks(pages, args.pages_per_task))
    gpu = faces_on_gpu(args.face_backend, args.gpu_face_backends)
    face_pages = [n for n in pages if gpu and book.page(n).needs_face_swap]
    face_planned = json.dumps(chunks(face_pages, args.pages_per_task))
    for out, text in ((args.out, planned), (args.face_out, face_planned)):
        if out:
            Path(out).parent.mkdir(parents=True, exist_ok=True)
            Path(out).write_text(text)
    if not args.out:
        print(planned)
    print(f"plan: {args.stage} pages in chunks {planned}; face pages for the GPU {face_planned}",
          file=sys.stderr)


def main() -> None:
    p = runner.parser("plan", __doc__.splitlines()[0])
    p.add_argument("--book", required=True)
    p.add_argument("--stage", choices=sorted(GENERATING), required=True)
    p.add_argument("--pages-per-task", type=per_task, default=0,
                   help=f"pages per chunk; 0: one chunk; auto: one chunk per {CORES_PER_CHUNK} "
                        f"cores, at least {AUTO_MIN_PAGES} pages each")
    p.add_argument("--randomize-seed", type=runner.boolean, default=False)
    p.add_argument("--out", help="file for the JSON list of chunks (default: stdout)")
    p.add_argument("--face-out", default="", help="file for the JSON list of face-page chunks "
                                                   "for the GPU step `faces`")
    p.add_argument("--face-backend", default="")
    p.add_argument("--gpu-face-backends", default="",
                   help="face backends that run on the engine's GPU (comma-separated)")
    runner.run("plan", p.parse_args(), work)


if __name__ == "__main__":
    main()
