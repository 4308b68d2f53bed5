"""Step ``finalize``: check that a stage made everything it owes, then mark it done.

``prepay`` -> ``prepay_ready`` (needs each prepay page and the preview);
``postpay`` -> ``completed`` (needs every page and the book). A stage without pages owes no
PDF. A late duplicate that finds the job already there (or past it) changes nothing. A job
marked ``interrupted`` while this run was in fact alive (a status check from another host,
which only sees a late heartbeat) is put back and finished.
"""

from __future__ import annotations

import sys

from steps import runner
from steps.core.job import ORDER, JobRecord, Status
from steps.core.manifest import load_book
from steps.core.records import update_job
from steps.core.store import open_store

DONE = {"prepay": (Status.PREPAY_READY, "preview_pdf"), "postpay": (Status.COMPLETED, "book_pdf")}
GENERATING = {"prepay": Status.PREPAY_GENERATING, "postpay": Status.POSTPAY_GENERATING}


def missing_outputs(record: JobRecord, pages: list[int], pdf_kind: str) -> list[str]:
    missing = [f"page {n}" for n in pages
               if record.artifact("page_png", n) is None or record.artifact("page_bg_png", n) is None]
    owes_pdf = bool(pages) and record.artifact(pdf_kind) is None
    return missing + ([pdf_kind] if owes_pdf else [])


def work(args) -> None:
    store = open_store(args.store)
    book = load_book(args.book).book
    status, pdf_kind = DONE[args.stage]
    pages = book.stage_pages("prepay" if args.stage == "prepay" else "full")

    def finish(record: JobRecord) -> None:
        if ORDER.get(record.status, -1) >= ORDER[status]:
            print(f"finalize: job {args.job_id} is already {record.status.value}", file=sys.stderr)
            return
        missing = missing_outputs(record, pages, pdf_kind)
        if missing:
            raise RuntimeError(f"stage {args.stage} is missing {', '.join(missing)}")
        if record.status is Status.GENERATION_FAILED and record.error is not None \
                and record.error.reason == "interrupted":
            record.move_to(GENERATING[args.stage])   # alive after all: back, then done
        record.move_to(status)

    update_job(store, args.job_id, finish)


def main() -> None:
    p = runner.parser("finalize", __doc__.splitlines()[0])
    p.add_argument("--book", required=True)
    p.add_argument("--stage", choices=sorted(DONE), required=True)
    runner.run("finalize", p.parse_args(), work)


if __name__ == "__main__":
    main()
