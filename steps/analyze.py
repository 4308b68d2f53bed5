"""Step ``analyze``: create or resume the job record, check the child's fields and photo, and
measure the child's features.

CPU backend ``heuristic``: the largest face and its eyes with OpenCV's shipped cascades,
hair, eye and skin colour from measured pixels, gender as given by the parent. The result is
``jobs/{job_id}/analysis.json`` and the record's ``analysis``; the job becomes
``analyzing_completed``. No face in the photo: ``analysis_failed``, exit 3. A job already
analysed from the same photo (and analyzer) is left as it is: its status never goes back to
``analyzing`` (stage ``prepay`` after ``analyze``, a late duplicate of this step).

Production backend ``qwen2-vl`` (:mod:`steps.backends.qwen`): the same face check first, then Qwen2-VL
from a local model directory (``--analyzer-model`` or ``$BOOKJOB_ANALYZER_MODEL``), falling
back to the measured features when the model's answer is unusable.
"""

from __future__ import annotations

import hashlib

from steps import runner
from steps.backends.base import ANALYZERS, analyzer
from steps.core import artifacts
from steps.core.analysis import Analysis
from steps.core.errors import InputError, Refusal
from steps.core.glyphs import check_job
from steps.core.images import load_photo
from steps.core.job import (
    JobNotFound,
    JobRecord,
    Status,
    new_record,
    parse_age,
    validate_gender,
    validate_job_id,
    validate_name,
)
from steps.core.manifest import load_book
from steps.core.messages import Child, validate_dedication
from steps.core.records import Records, open_records
from steps.core.settings import settings
from steps.core.store import Store, analysis_key, open_store

BACKENDS = tuple(ANALYZERS)


def analyzer_model(args) -> str:
    """The model directory for ``qwen2-vl`` (argument first, then the environment)."""
    path = args.analyzer_model or settings().analyzer_model
    if not path:
        raise InputError("no_analyzer_model", "--analyzer qwen2-vl needs the model's directory: "
                                              "pass --analyzer-model or set BOOKJOB_ANALYZER_MODEL.")
    return path


def start_job(records: Records, store: Store, args) -> JobRecord:
    """The job's record: created from the arguments for a new job (``argo submit`` with the
    child's parameters), else found, the child's fields read from it into ``args``. Fields
    given again must match it."""
    try:
        existing: JobRecord | None = records.read(args.job_id)
    except JobNotFound:
        existing = None
    if existing is None:
        try:
            dedication = validate_dedication(args.dedication)
        except InputError:  # recorded as given, then refused with the job marked failed
            dedication = str(args.dedication)[:1000]
        args.photo_key = args.photo_key or find_photo(store, args.job_id)
        fresh = new_record(args.job_id, args.book, args.photo_key, args.name, args.age,
                           args.gender or "unspecified", language=args.language,
                           dedication=dedication)
        if records.create(fresh):
            args.gender = fresh.child_gender
            return fresh
        existing = records.read(args.job_id)   # made meanwhile by a twin of this step
    given = {"name": (args.name.strip(), existing.child_name),
             "age": (_age(args.age), existing.child_age),
             "gender": (args.gender, existing.child_gender),
             "photo": (args.photo_key, existing.photo_key),
             "dedication": (args.dedication, existing.dedication),
             "language": (args.language, existing.language)}
    if any(value not in ("", None) and stored and value != stored
           for value, stored in given.values()):
        raise InputError("job_mismatch", f"Job {args.job_id} already exists for other child "
                                         "details or another photo; use a new job id.")
    args.name, args.gender = existing.child_name, existing.child_gender
    args.age = "" if existing.child_age is None else str(existing.child_age)
    args.photo_key, args.dedication = existing.photo_key, existing.dedication
    args.language = args.language or existing.language
    return existing


def _age(text: str) -> int | str:
    try:
        return parse_age(text)
    except InputError:
        return text.strip()


def find_photo(store: Store, job_id: str) -> str:
    """The uploaded photo's key when none was given (``argo submit -p job-id=…`` alone)."""
    found = store.list(f"uploads/{job_id}/")
    if len(found) != 1:
        raise InputError("missing_photo", f"Expected one photo under uploads/{job_id}/ in the store, "
                                          f"found {len(found)}; upload the photo or pass photo-key.")
    return found[0]


def work(args) -> None:
    validate_job_id(args.job_id)
    store = open_store(args.store)
    records = open_records(store)
    record = start_job(records, store, args)
    validate_name(args.name)
    parse_age(args.age)
    gender = validate_gender(args.gender)
    dedication = validate_dedication(args.dedication)
    loaded = load_book(args.book)
    book = loaded.book
    if record.book_id and book.id != record.book_id:
        raise Refusal("book_mismatch", f"Job {args.job_id} was started with book "
                                       f"{record.book_id!r}, not {book.id!r}; leave BOOK out or "
                                       "use a new job id.")
    language = book.edition(args.language)
    # Every character the job will typeset, against its fonts: before any GPU or page work.
    check_job(loaded, language, Child(validate_name(args.name), parse_age(args.age), gender,
                                      dedication))
    try:
        photo_bytes = store.read(args.photo_key)
    except FileNotFoundError:
        raise InputError("missing_photo", f"No photo at {args.photo_key} in the store; "
                                          "upload the photo before running the job.") from None
    model = analyzer_model(args) if args.analyzer == "qwen2-vl" else ""
    inputs = artifacts.fingerprint(
        artifacts.code_version(__name__, "steps.backends.faces", "steps.backends.classic",
                               "steps.core.images", "steps.backends.qwen"),
        args.analyzer, model, photo_bytes, gender)
    analysis = record.analysis
    if (analysis is not None and analysis.inputs_sha256 == inputs
            and store.exists(analysis_key(args.job_id))):
        # Already analysed from this photo: a later status stays as it is (a prepay run or a
        # late duplicate never sends the job back to analysing).
        artifacts.unchanged("analysis")
        if record.status in (Status.ANALYZING, Status.ANALYSIS_FAILED):
            records.update(args.job_id,
                           lambda r: _complete(r, book.id, analysis, photo_bytes, language, dedication))
        return
    if record.status is not Status.ANALYZING:
        records.update(args.job_id, lambda r: r.move_to(Status.ANALYZING))
    made = analyzer(args.analyzer)(load_photo(photo_bytes), gender, model_dir=model)
    made.inputs_sha256 = inputs
    if analysis is not None:  # regenerations so far belong to the job, not to one analysis
        made.generation_retry = analysis.generation_retry
    store.write(analysis_key(args.job_id), made.model_dump_json(indent=2).encode())
    records.update(args.job_id,
                   lambda r: _complete(r, book.id, made, photo_bytes, language, dedication))


def _complete(record: JobRecord, book_id: str, analysis: Analysis, photo: bytes, language: str,
              dedication: str) -> None:
    record.book_id = book_id
    record.language = language
    record.dedication = dedication
    if record.analysis is not None:  # a flag the shop set meanwhile is kept
        analysis.generation_retry = record.analysis.generation_retry
    record.analysis = analysis
    record.photo_sha256 = hashlib.sha256(photo).hexdigest()
    if record.status is Status.ANALYSIS_FAILED:
        record.move_to(Status.ANALYZING)
    record.move_to(Status.ANALYZING_COMPLETED)


def main() -> None:
    p = runner.parser("analyze", __doc__.splitlines()[0])
    p.add_argument("--book", required=True)
    p.add_argument("--photo-key", default="",
                   help="store key of the photo (default: the one under uploads/{job_id}/)")
    # The child: given for a new job made by `argo submit -p child-name=…`; else "" and read
    # from the job's record (a workflow carries no child's details).
    p.add_argument("--name", default="")
    p.add_argument("--age", default="")
    p.add_argument("--gender", default="", help="girl, boy or unspecified (default)")
    p.add_argument("--language", default="", help="the edition (default: the book's first language)")
    p.add_argument("--dedication", default="", help="fills {dedication}: up to 300 characters")
    p.add_argument("--analyzer", choices=sorted(BACKENDS),
                   default=settings().analyzer)
    p.add_argument("--analyzer-model", default="",
                   help="local Qwen2-VL directory for --analyzer qwen2-vl [env BOOKJOB_ANALYZER_MODEL]")
    runner.run("analyze", p.parse_args(), work)


if __name__ == "__main__":
    main()
