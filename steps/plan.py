"""Step ``plan``: start a stage and split its pages into chunks.

The job becomes ``prepay_generating`` or ``postpay_generating``. The chunks (one per pod:
``"1,2,3"``) are written as a JSON list to ``--out``, which the local engine reads and Argo
fans out over (``withParam``). ``--pages-per-task 0`` means one chunk for the whole stage (a
pod each on a cluster); ``auto`` means one chunk per core of this machine (the local engine
runs chunks in parallel, up to the cores), but no chunk under :data:`AUTO_MIN_PAGES` pages:
each chunk pays for its own processes and browser (about 0.6 s of CPU here), which a chunk of
one to three pages does not win back by running beside another (`make bench`).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from steps import runner
from steps.core.errors import InputError
from steps.core.job import JobRecord, Status, read_job, update_job
from steps.core.manifest import load_book
from steps.core.store import open_store

GENERATING = {"prepay": Status.PREPAY_GENERATING, "postpay": Status.POSTPAY_GENERATING}
AUTO_MIN_PAGES = 4


def chunks(pages: list[int], pages_per_task: int | str) -> list[str]:
    if pages_per_task == "auto":
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        count = max(1, min(cores or 1, len(pages) // AUTO_MIN_PAGES))
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

    def begin(record: JobRecord) -> None:
        record.move_to(GENERATING[args.stage])
        record.generation_retry.randomize_seed = args.randomize_seed

    update_job(store, args.job_id, begin)
    planned = json.dumps(chunks(book.stage_pages(args.stage), args.pages_per_task))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(planned)
    else:
        print(planned)
    print(f"plan: {args.stage} pages in chunks {planned}", file=sys.stderr)


def main() -> None:
    p = runner.parser("plan", __doc__.splitlines()[0])
    p.add_argument("--book", required=True)
    p.add_argument("--stage", choices=sorted(GENERATING), required=True)
    p.add_argument("--pages-per-task", type=per_task, default=0,
                   help="pages per chunk; 0: one chunk; auto: one chunk per core, at least "
                        f"{AUTO_MIN_PAGES} pages each")
    p.add_argument("--randomize-seed", type=runner.boolean, default=False)
    p.add_argument("--out", help="file for the JSON list of chunks (default: stdout)")
    runner.run("plan", p.parse_args(), work)


if __name__ == "__main__":
    main()
