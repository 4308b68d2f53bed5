"""The job-domain logic under the CLI, the Python API and the worker: preparing a stage of a
job (binding its book, reading and uploading the photo, checking the child's fields and the
regeneration rules) before any engine runs it.

Every refusal is a :class:`BookJobError` with the CLI's exit code (2 usage, 3 bad input, 4
busy, 1 other) and one sentence saying what to fix; nothing here prints or exits. A new job's
record is made here, before its workflow or queued request, so that no engine ever carries
the child's details; bad child fields are recorded as the new job's failure, as the analyze
step would record them.
"""

from __future__ import annotations

import hashlib
import uuid
from enum import Enum
from pathlib import Path, PurePosixPath
from typing import NoReturn

from steps.core.errors import InputError, SetupError
from steps.core.job import JobNotFound, JobRecord, Status, new_record, validate_job_id
from steps.core.records import Records, check_writable, open_records
from steps.core.settings import settings
from steps.core.store import Store, open_store, upload_key
from steps.protocol import EXIT_FAILURE, EXIT_INPUT, EXIT_USAGE


class BookJobError(Exception):
    """A request refused: ``code`` as the CLI's exit code, ``message`` one sentence."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Stage(str, Enum):
    analyze = "analyze"
    prepay = "prepay"
    postpay = "postpay"
    full = "full"


def refuse(code: int, message: str) -> NoReturn:
    raise BookJobError(code, message)


def book_uri(book: str) -> str:
    return book if "://" in book else str(Path(book).absolute())


def read_photo(photo: str) -> tuple[bytes, str | None]:
    """The photo's bytes and where they came from: a local file (no source), ``s3://bucket/key``,
    ``https://…`` or ``http://…`` from a host in ``BOOKJOB_ALLOW_HTTP_HOSTS`` (the book files'
    size limit and timeouts). A photo that cannot be read is exit 3."""
    from steps.core.sources import MAX_DOWNLOAD, download

    photo = str(photo)
    try:
        if photo.startswith("s3://"):
            parent, _, name = photo.removeprefix("s3://").rstrip("/").rpartition("/")
            if not parent or not name:
                raise InputError("bad_photo", f"--photo {photo!r} names no object; use "
                                              "s3://bucket/key.")
            data = open_store(f"s3://{parent}").read(name)
            if len(data) > MAX_DOWNLOAD:
                raise InputError("image_too_large", f"The photo {photo} is larger than "
                                                    f"{MAX_DOWNLOAD // 2**20} MiB.")
            return data, photo
        if "://" in photo:
            return download(photo, "The photo"), photo
    except FileNotFoundError:
        refuse(EXIT_INPUT, f"there is no photo at {photo}; check the address")
    except InputError as e:
        refuse(EXIT_INPUT, e.message)
    path = Path(photo)
    if not path.is_file():
        refuse(EXIT_USAGE, f"--photo {photo!r} is not a file (give a file, s3:// or https:// "
                           "address)")
    return path.read_bytes(), None


def upload_photo(store: Store, job_id: str, photo: str) -> tuple[str, str | None]:
    """Copy the photo into ``uploads/<job>/``; its key and where it came from."""
    from steps.core.images import photo_ext

    photo = str(photo)
    data, source = read_photo(photo)
    suffix = PurePosixPath(photo.split("?")[0]).suffix.lower().lstrip(".")
    ext = photo_ext(data) or (suffix if suffix.isalnum() and len(suffix) <= 5 else "bin")
    key = upload_key(job_id, ext)
    store.write(key, data)
    return key, source


def check_same(record: JobRecord, store: Store, photo: str | None, name: str | None,
               age: str | None, gender: str | None, language: str | None,
               dedication: str | None) -> None:
    """Given again for an existing job, the child's fields and photo must match its record:
    nothing given is dropped silently (a dedication for a job made without one is refused)."""
    given = {"name": (name, record.child_name), "gender": (gender, record.child_gender),
             "age": (age, None if record.child_age is None else str(record.child_age)),
             "dedication": (dedication, record.dedication)}
    for field, (value, stored) in given.items():
        if value is not None and value.strip() != (stored or "").strip():
            shown = repr(stored) if stored else "none"
            refuse(EXIT_USAGE, f"job {record.job_id} was made with {field} {shown[:40]}, not "
                               f"{value[:40]!r}; leave --{field} out or use a new job id")
    if language is not None and record.language and language.strip() != record.language:
        refuse(EXIT_USAGE, f"job {record.job_id} was made with --language "
                           f"{record.language!r}; leave --language out or use a new job id")
    if photo is not None:
        same = hashlib.sha256(read_photo(photo)[0]).digest() == hashlib.sha256(
            store.read(record.photo_key)).digest()
        if not same:
            refuse(EXIT_USAGE, f"job {record.job_id} was made with another photo; leave "
                               "--photo out or use a new job id")


def regeneration_pages(text: str | None) -> list[int]:
    if text is None:
        return []
    try:
        pages = sorted({int(n) for n in text.split(",") if n.strip()})
    except ValueError:
        pages = []
    if not pages:
        refuse(EXIT_USAGE, f"--pages must list page numbers like 2,3, not {text!r}")
    return pages


def photo_unchanged(store: Store, record: JobRecord) -> bool:
    """The job was analysed from the photo it has now (so a prepay run needs no analysis)."""
    if record.analysis is None or not record.photo_sha256 or record.status in (
            Status.ANALYZING, Status.ANALYSIS_FAILED):
        return False
    try:
        return hashlib.sha256(store.read(record.photo_key)).hexdigest() == record.photo_sha256
    except FileNotFoundError:
        return False


def check_new_job(store: Store, record: JobRecord, gender: str | None, age: str,
                  thorough: bool) -> None:
    """A new job's child fields, as the analyze step checks them (InputError if bad); with
    ``thorough``, also its book, edition, photo and the characters its fonts must draw (what
    the API and the worker refuse before anything is queued; ``bookjob run`` leaves those to
    the steps, which check them at once)."""
    from steps.core.job import parse_age, validate_gender, validate_name
    from steps.core.messages import Child, validate_dedication

    name = validate_name(record.child_name)
    years = parse_age(age)
    validate_gender(gender or "unspecified")
    dedication = validate_dedication(record.dedication)
    if not thorough:
        return
    from steps.core.glyphs import check_job
    from steps.core.images import load_photo
    from steps.core.manifest import load_book

    loaded = load_book(record.book_uri)
    language = loaded.book.edition(record.language)
    check_job(loaded, language, Child(name, years, record.child_gender, dedication))
    load_photo(store.read(record.photo_key))


def bound_book(records: Records, record: JobRecord, book: str | None) -> str:
    """The job's book: BOOK may be left out; given, it must be the job's book (the manifest's
    id), possibly moved (the record then follows it). Another book is exit 3."""
    if book is None or book_uri(book) == record.book_uri:
        return record.book_uri
    from steps.core.manifest import load_book

    try:
        given = load_book(book_uri(book)).book.id
    except InputError:
        return book_uri(book)   # the steps say what is wrong with it, and record it
    if record.book_id and given != record.book_id:
        refuse(EXIT_INPUT, f"job {record.job_id} is bound to book {record.book_id!r} "
                           f"({record.book_uri}), not {given!r}; leave BOOK out or use a new "
                           "job id")

    def moved(job: JobRecord) -> None:
        job.book_uri = book_uri(book)

    records.update(record.job_id, moved)
    return book_uri(book)


def check_regeneration(records: Records, record: JobRecord, pages: list[int]) -> None:
    """Refuse a regeneration over the limit before anything runs; note the pages asked for."""
    from steps.core.job import ORDER

    limit = settings().max_regenerations
    if record.generation_retry.count >= limit:
        refuse(EXIT_INPUT, f"job {record.job_id} has been regenerated "
                           f"{record.generation_retry.count} times, the limit "
                           f"(BOOKJOB_MAX_REGENERATIONS={limit}); keep these pages")
    if ORDER.get(record.status, -1) > ORDER[Status.PREPAY_READY]:
        refuse(EXIT_INPUT, f"job {record.job_id} is {record.status.value}: its prepay pages can "
                           "no longer be regenerated")
    if pages:
        if record.analysis is None:
            refuse(EXIT_USAGE, f"job {record.job_id} has no analysis yet; run --stage prepay "
                               "first")

        def ask(job: JobRecord) -> None:
            if job.analysis is not None:
                job.analysis.generation_retry.pages = pages
                job.analysis.generation_retry.randomize_seed = True

        records.update(record.job_id, ask)


def local_backends() -> dict[str, str]:
    """The backends a run on this machine uses unless told otherwise: the settings."""
    configured = settings()
    return {"analyzer": configured.analyzer, "analyzer_model": configured.analyzer_model,
            "face_backend": configured.face_backend, "comfyui_url": configured.comfyui_url}


def prepare_job(target: Store, book: str | None, photo: str | None, name: str | None,
                age: str | None, gender: str | None, stage: Stage | str, job_id: str | None,
                randomize_seed: bool, pages_per_task: str, pages: str | None = None,
                language: str | None = None, dedication: str | None = None,
                records: Records | None = None, thorough: bool = False,
                notify_url: str = "") -> dict[str, str]:
    """Check what the user asked for against the job's record, create a new job's record (its
    photo uploaded; ``notify_url``, the job's own webhook, kept in it from its first event on)
    and return the pipeline parameters: the job id, the stage and settings,
    never the child (every step reads the child from the record). Usage errors exit 2; a bad
    job id, bad child fields (the new job is then recorded as failed), another book for a
    bound job or a regeneration over the limit exit 3; a record a newer bookjob wrote exit 1.
    ``thorough``: see :func:`check_new_job`."""
    stage = Stage(stage)
    records = records or open_records(target)
    if pages_per_task != "auto" and not pages_per_task.isdigit():
        refuse(EXIT_USAGE, f"--pages-per-task must be a number or auto, not {pages_per_task!r}")
    if job_id is not None and not job_id.strip():
        refuse(EXIT_USAGE, "--job-id is empty; give the job's id, or leave the option out for "
                           "a new job")
    regenerate_pages = regeneration_pages(pages)
    randomize_seed = randomize_seed or bool(regenerate_pages)
    if randomize_seed and stage in (Stage.analyze, Stage.postpay):
        refuse(EXIT_USAGE, f"--randomize-seed and --pages regenerate prepay pages; use them with "
                           f"--stage prepay or full, not {stage.value}")
    job_id = job_id or str(uuid.uuid4())
    try:
        validate_job_id(job_id)
    except InputError as e:
        refuse(EXIT_INPUT, e.message)
    try:
        record: JobRecord | None = records.read(job_id)
    except JobNotFound:
        record = None
    skip_analysis = False
    if record is not None:
        try:
            check_writable(record)
        except SetupError as e:   # a newer bookjob's record: shown, never changed
            refuse(EXIT_FAILURE, str(e))
        check_same(record, target, photo, name, age, gender, language, dedication)
        book = bound_book(records, record, book)
        if stage is Stage.postpay and not record.reached(Status.PREPAY_READY):
            refuse(EXIT_USAGE, f"job {job_id} never reached prepay_ready "
                               f"({record.status.value}); run --stage prepay first")
        if randomize_seed:
            check_regeneration(records, record, regenerate_pages)
        skip_analysis = stage in (Stage.prepay, Stage.full) and photo_unchanged(target, record)
        if notify_url and record.notify_url != notify_url:
            records.update(job_id, lambda r: setattr(r, "notify_url", notify_url))
    else:
        if stage is Stage.postpay:
            refuse(EXIT_USAGE, f"job {job_id} does not exist; postpay needs a job that reached "
                               "prepay_ready (run --stage prepay or full)")
        if regenerate_pages:
            refuse(EXIT_USAGE, f"job {job_id} does not exist; --pages regenerates pages of a "
                               "job that has them")
        missing = [opt for opt, v in (("BOOK", book), ("--photo", photo), ("--name", name),
                                      ("--age", age)) if v is None]
        if missing or book is None or photo is None or age is None:
            refuse(EXIT_USAGE, f"a new job needs {', '.join(missing)}")
        photo_key, source = upload_photo(target, job_id, photo)
        record = new_record(job_id, book_uri(book), photo_key, name or "", age,
                            gender or "unspecified", photo_source=source,
                            language=language or "", dedication=dedication or "")
        record.notify_url = notify_url
        records.create(record)
        try:
            check_new_job(target, record, gender, age, thorough)
        except InputError as e:   # recorded as the job's failure, as the analyze step would
            records.mark_failed(job_id, "analyze", e.reason, e.message)
            refuse(EXIT_INPUT, e.message)
    return {"job_id": job_id, "book": book_uri(book), "stage": stage.value, "store": target.uri,
            "randomize_seed": str(randomize_seed).lower(),
            "skip_analysis": str(skip_analysis).lower(), "pages_per_task": str(pages_per_task)}
