"""The ``bookjob`` app: the typer application, the options commands share, and their helpers.

Command modules (:mod:`pipeline.commands.local`, :mod:`pipeline.commands.cluster`) import
from here and register on :data:`app`; they never import each other.

Exit codes: 0 done, 1 other failure, 2 usage, 3 bad input (photo, manifest, name, age, ids).
``--json`` prints the job record and nothing else on stdout; progress goes to stderr.
"""

from __future__ import annotations

import hashlib
import os
import sys
import uuid
from enum import Enum
from pathlib import Path, PurePosixPath
from typing import Annotated

import typer

from steps.core.errors import InputError, SetupError, TransientError
from steps.core.job import JobNotFound, JobRecord, Status, new_record, validate_job_id
from steps.core.records import Records, check_writable, open_records
from steps.core.settings import settings
from steps.core.store import Store, StoreError, open_store, upload_key
from steps.protocol import EXIT_FAILURE, EXIT_INPUT, EXIT_USAGE


class _App(typer.Typer):
    """The CLI; a store or records database that cannot be reached, or a setup error, is one
    line and exit 1, not a traceback."""

    def __call__(self, *args, **kwargs):
        try:
            return super().__call__(*args, **kwargs)
        except StoreError as e:
            typer.echo(f"error: temporary store failure ({e}); run the same command again "
                       "when the store is reachable.", err=True)
            sys.exit(EXIT_FAILURE)
        except TransientError as e:   # the records database, say
            typer.echo(f"error: {e}; run the same command again when it answers.", err=True)
            sys.exit(EXIT_FAILURE)
        except SetupError as e:       # a schema to upgrade, a record of a newer bookjob
            typer.echo(f"error: {e}", err=True)
            sys.exit(EXIT_FAILURE)


app = _App(help="Personalised children's books: photo in, print-ready book out.",
           no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)

DEMO = Path(__file__).parents[1] / "demo"


class Stage(str, Enum):
    analyze = "analyze"
    prepay = "prepay"
    postpay = "postpay"
    full = "full"


StoreOpt = Annotated[str | None, typer.Option(
    "--store", help="A folder or s3://bucket/prefix [env BOOKJOB_STORE; default ./bookjob-store]")]
RecordsOpt = Annotated[str | None, typer.Option(
    "--records", help="Where job records live: store (beside the pages), sqlite:///path/to/"
                      "bookjob.db or postgresql://user@host/db [env BOOKJOB_RECORDS; default store]")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the job record as JSON only.")]


def store_at(uri: str | None) -> Store:
    return open_store(uri or settings().store)


def records_at(store: Store, url: str | None) -> Records:
    """The job records (``--records``, else ``BOOKJOB_RECORDS``, else the store); the steps
    this process starts inherit the choice."""
    if url:
        os.environ["BOOKJOB_RECORDS"] = url
    try:
        return open_records(store, url)
    except SetupError as e:
        fail(EXIT_FAILURE, str(e))
        raise




def say(message: str) -> None:
    typer.echo(message, err=True)


class Failed(typer.Exit):
    """A command's refusal: its exit code and the sentence it said (the Python API raises it
    on as :class:`pipeline.api.BookJobError`)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(code)
        self.message = message


def fail(code: int, message: str) -> None:
    say(f"error: {message}")
    raise Failed(code, message)


def _book_uri(book: str) -> str:
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
        fail(EXIT_INPUT, f"there is no photo at {photo}; check the address")
    except InputError as e:
        fail(EXIT_INPUT, e.message)
    path = Path(photo)
    if not path.is_file():
        fail(EXIT_USAGE, f"--photo {photo!r} is not a file (give a file, s3:// or https:// address)")
    return path.read_bytes(), None


def _upload_photo(store: Store, job_id: str, photo: str) -> tuple[str, str | None]:
    """Copy the photo into ``uploads/<job>/``; its key and where it came from."""
    from steps.core.images import photo_ext

    photo = str(photo)
    data, source = read_photo(photo)
    suffix = PurePosixPath(photo.split("?")[0]).suffix.lower().lstrip(".")
    ext = photo_ext(data) or (suffix if suffix.isalnum() and len(suffix) <= 5 else "bin")
    key = upload_key(job_id, ext)
    store.write(key, data)
    return key, source


def _check_same(record: JobRecord, store: Store, photo: str | None, name: str | None,
                age: str | None, gender: str | None) -> None:
    """Given again for an existing job, the child's fields and photo must match its record."""
    given = {"name": (name, record.child_name), "gender": (gender, record.child_gender),
             "age": (age, None if record.child_age is None else str(record.child_age))}
    for field, (value, stored) in given.items():
        if value is not None and value.strip() != stored:
            fail(EXIT_USAGE, f"job {record.job_id} was made with {field} {stored!r}, not "
                              f"{value!r}; leave --{field} out or use a new job id")
    if photo is not None:
        same = hashlib.sha256(read_photo(photo)[0]).digest() == hashlib.sha256(
            store.read(record.photo_key)).digest()
        if not same:
            fail(EXIT_USAGE, f"job {record.job_id} was made with another photo; leave --photo "
                              "out or use a new job id")


BookArg = Annotated[str | None, typer.Argument(
    help="A book folder holding book.yaml, or an s3:// prefix (may be left out for an existing "
         "job: it is bound to its book).")]
PhotoOpt = Annotated[str | None, typer.Option(
    "--photo", help="The child's photo (JPEG, PNG, WebP, HEIC): a file, s3://bucket/key, "
                    "https://… (or http://… from a host in BOOKJOB_ALLOW_HTTP_HOSTS); copied "
                    "into the store's uploads/<job>/.")]
NameOpt = Annotated[str | None, typer.Option("--name", help="The child's name, 1-40 characters.")]
AgeOpt = Annotated[str | None, typer.Option("--age", help="The child's age in years, 0-17.")]
GenderOpt = Annotated[str | None, typer.Option("--gender", help="girl, boy or unspecified.")]
LanguageOpt = Annotated[str | None, typer.Option(
    "--language", help="The edition: one of the book's languages (default: its first).")]
DedicationOpt = Annotated[str | None, typer.Option(
    "--dedication", help="Fills the book's {dedication}: up to 300 characters, newlines kept.")]
StageOpt = Annotated[Stage, typer.Option(
    "--stage", help="analyze (photo only), prepay, postpay, or full (prepay and postpay).")]
JobIdOpt = Annotated[str | None, typer.Option(
    "--job-id", help="An existing job, or the id for a new one (default: a new UUID).")]
SeedOpt = Annotated[bool, typer.Option(
    "--randomize-seed", help="Regenerate: fresh seeds for the prepay pages (counted; at most "
                             "BOOKJOB_MAX_REGENERATIONS times).")]
PagesOpt = Annotated[str | None, typer.Option(
    "--pages", help="Regenerate only these prepay pages, e.g. 2,3 (implies --randomize-seed).")]
ChunkOpt = Annotated[str, typer.Option(
    "--pages-per-task", help="Pages per chunk (one process/pod each): a number, 0 (one chunk per "
                             "stage) or auto (one chunk per core, at least 4 pages each).")]
class Analyzer(str, Enum):
    heuristic = "heuristic"
    qwen2_vl = "qwen2-vl"


class FaceBackend(str, Enum):
    classic = "classic"
    comfyui = "comfyui"


AnalyzerOpt = Annotated[Analyzer | None, typer.Option(
    "--analyzer", help="heuristic (CPU) or qwen2-vl (GPU) [env BOOKJOB_ANALYZER].")]
AnalyzerModelOpt = Annotated[str | None, typer.Option(
    "--analyzer-model", help="Local folder of the Qwen2-VL weights [env BOOKJOB_ANALYZER_MODEL].")]
FaceBackendOpt = Annotated[FaceBackend | None, typer.Option(
    "--face-backend", help="classic (CPU) or comfyui (GPU) [env BOOKJOB_FACE_BACKEND].")]
ComfyOpt = Annotated[str | None, typer.Option(
    "--comfyui-url", help="The ComfyUI server for --face-backend comfyui [env BOOKJOB_COMFYUI_URL].")]
NotifyOpt = Annotated[str | None, typer.Option(
    "--notify-url", help="POST the job record here on each status change (signed with "
                         "$BOOKJOB_NOTIFY_SECRET) [env BOOKJOB_NOTIFY_URL].")]


def _regeneration_pages(text: str | None) -> list[int]:
    if text is None:
        return []
    try:
        pages = sorted({int(n) for n in text.split(",") if n.strip()})
    except ValueError:
        pages = []
    if not pages:
        fail(EXIT_USAGE, f"--pages must list page numbers like 2,3, not {text!r}")
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


def _check_child(name: str, age: str, gender: str | None, dedication: str | None) -> None:
    """A new job's child fields, as the analyze step checks them (InputError if bad)."""
    from steps.core.job import parse_age, validate_gender, validate_name
    from steps.core.messages import validate_dedication

    validate_name(name)
    parse_age(age)
    validate_gender(gender or "unspecified")
    validate_dedication(dedication or "")


def prepare_job(target: Store, book: str | None, photo: str | None, name: str | None,
                age: str | None, gender: str | None, stage: Stage, job_id: str | None,
                randomize_seed: bool, pages_per_task: str, pages: str | None = None,
                language: str | None = None, dedication: str | None = None,
                records: Records | None = None) -> dict[str, str]:
    """Check what the user asked for against the job's record, create a new job's record (its
    photo uploaded) and return the pipeline parameters: the job id, the stage and settings,
    never the child (every step reads the child from the record). Usage errors exit 2; a bad
    job id, bad child fields (the new job is then recorded as failed), another book for a
    bound job or a regeneration over the limit exit 3."""
    records = records or open_records(target)
    if pages_per_task != "auto" and not pages_per_task.isdigit():
        fail(EXIT_USAGE, f"--pages-per-task must be a number or auto, not {pages_per_task!r}")
    if job_id is not None and not job_id.strip():
        fail(EXIT_USAGE, "--job-id is empty; give the job's id, or leave the option out for a "
                          "new job")
    regenerate_pages = _regeneration_pages(pages)
    randomize_seed = randomize_seed or bool(regenerate_pages)
    if randomize_seed and stage in (Stage.analyze, Stage.postpay):
        fail(EXIT_USAGE, f"--randomize-seed and --pages regenerate prepay pages; use them with "
                          f"--stage prepay or full, not {stage.value}")
    job_id = job_id or str(uuid.uuid4())
    try:
        validate_job_id(job_id)
    except InputError as e:
        fail(EXIT_INPUT, e.message)
    try:
        record: JobRecord | None = records.read(job_id)
    except JobNotFound:
        record = None
    skip_analysis = False
    if record is not None:
        try:
            check_writable(record)
        except SetupError as e:   # a newer bookjob's record: shown, never changed
            fail(EXIT_FAILURE, str(e))
        _check_same(record, target, photo, name, age, gender)
        book = _bound_book(records, record, book)
        if stage is Stage.postpay and not record.reached(Status.PREPAY_READY):
            fail(EXIT_USAGE, f"job {job_id} never reached prepay_ready ({record.status.value}); "
                              "run --stage prepay first")
        for option, value, stored in (("--language", language, record.language),
                                      ("--dedication", dedication, record.dedication)):
            if value is not None and stored and value.strip() != stored:
                fail(EXIT_USAGE, f"job {job_id} was made with {option} {stored[:40]!r}; leave "
                                 f"{option} out or use a new job id")
        if randomize_seed:
            _check_regeneration(records, record, regenerate_pages)
        skip_analysis = stage in (Stage.prepay, Stage.full) and photo_unchanged(target, record)
    else:
        if stage is Stage.postpay:
            fail(EXIT_USAGE, f"job {job_id} does not exist; postpay needs a job that reached "
                              "prepay_ready (run --stage prepay or full)")
        if regenerate_pages:
            fail(EXIT_USAGE, f"job {job_id} does not exist; --pages regenerates pages of a job "
                              "that has them")
        missing = [opt for opt, v in (("BOOK", book), ("--photo", photo), ("--name", name),
                                      ("--age", age)) if v is None]
        if missing:
            fail(EXIT_USAGE, f"a new job needs {', '.join(missing)}")
        photo_key, source = _upload_photo(target, job_id, photo)
        records.create(new_record(job_id, _book_uri(book), photo_key, name, age,
                                  gender or "unspecified", photo_source=source,
                                  language=language or "", dedication=dedication or ""))
        try:
            _check_child(name, age, gender, dedication)
        except InputError as e:   # recorded as the job's failure, as the analyze step would
            records.mark_failed(job_id, "analyze", e.reason, e.message)
            fail(EXIT_INPUT, e.message)
    return {"job_id": job_id, "book": _book_uri(book), "stage": stage.value, "store": target.uri,
            "randomize_seed": str(randomize_seed).lower(),
            "skip_analysis": str(skip_analysis).lower(), "pages_per_task": str(pages_per_task)}


def _bound_book(records: Records, record: JobRecord, book: str | None) -> str:
    """The job's book: BOOK may be left out; given, it must be the job's book (the manifest's
    id), possibly moved (the record then follows it). Another book is exit 3."""
    if book is None or _book_uri(book) == record.book_uri:
        return record.book_uri
    from steps.core.manifest import load_book

    try:
        given = load_book(_book_uri(book)).book.id
    except InputError:
        return _book_uri(book)   # the steps say what is wrong with it, and record it
    if record.book_id and given != record.book_id:
        fail(EXIT_INPUT, f"job {record.job_id} is bound to book {record.book_id!r} "
                          f"({record.book_uri}), not {given!r}; leave BOOK out or use a new "
                          "job id")

    def moved(job: JobRecord) -> None:
        job.book_uri = _book_uri(book)

    records.update(record.job_id, moved)
    return _book_uri(book)


def _check_regeneration(records: Records, record: JobRecord, pages: list[int]) -> None:
    """Refuse a regeneration over the limit before anything runs; note the pages asked for."""
    from steps.core.job import ORDER

    limit = settings().max_regenerations
    if record.generation_retry.count >= limit:
        fail(EXIT_INPUT, f"job {record.job_id} has been regenerated {record.generation_retry.count} "
                          f"times, the limit (BOOKJOB_MAX_REGENERATIONS={limit}); keep these pages")
    if ORDER.get(record.status, -1) > ORDER[Status.PREPAY_READY]:
        fail(EXIT_INPUT, f"job {record.job_id} is {record.status.value}: its prepay pages can no "
                          "longer be regenerated")
    if pages:
        if record.analysis is None:
            fail(EXIT_USAGE, f"job {record.job_id} has no analysis yet; run --stage prepay first")

        def ask(job: JobRecord) -> None:
            if job.analysis is not None:
                job.analysis.generation_retry.pages = pages
                job.analysis.generation_retry.randomize_seed = True

        records.update(record.job_id, ask)


def backends(analyzer: str | None, analyzer_model: str | None, face_backend: str | None,
             comfyui_url: str | None, defaults: dict[str, str]) -> dict[str, str]:
    """The backend parameters that were given, over ``defaults``."""
    given = {"analyzer": analyzer and Analyzer(analyzer).value, "analyzer_model": analyzer_model,
             "face_backend": face_backend and FaceBackend(face_backend).value,
             "comfyui_url": comfyui_url}
    return {**defaults, **{k: v for k, v in given.items() if v}}


def local_backends() -> dict[str, str]:
    """The backends a local run uses unless told otherwise: the settings (environment)."""
    configured = settings()
    return {"analyzer": configured.analyzer, "analyzer_model": configured.analyzer_model,
            "face_backend": configured.face_backend, "comfyui_url": configured.comfyui_url}
