"""``bookjob``: run book jobs on this machine and read them back.

Exit codes: 0 done, 1 other failure, 2 usage, 3 bad input (photo, manifest, name, age, ids).
``--json`` prints the job record and nothing else on stdout; progress goes to stderr.
"""

from __future__ import annotations

import hashlib
import os
import sys
import uuid
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from steps.errors import EXIT_FAILURE, EXIT_INPUT, EXIT_USAGE, InputError
from steps.job import JobNotFound, JobRecord, Status, read_job, validate_job_id
from steps.store import Store, open_store, upload_key

app = typer.Typer(help="Personalised children's books: photo in, print-ready book out.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)

DEMO = Path(__file__).parent / "demo"
DEFAULT_STORE = "./bookjob-store"


class Stage(str, Enum):
    prepay = "prepay"
    postpay = "postpay"
    full = "full"


StoreOpt = Annotated[Optional[str], typer.Option(
    "--store", help="A folder or s3://bucket/prefix [env BOOKJOB_STORE; default ./bookjob-store]")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the job record as JSON only.")]


def _store(uri: str | None) -> Store:
    return open_store(uri or os.environ.get("BOOKJOB_STORE") or DEFAULT_STORE)


def _say(message: str) -> None:
    typer.echo(message, err=True)


def _exit(code: int, message: str) -> None:
    _say(f"error: {message}")
    raise typer.Exit(code)


def _book_uri(book: str) -> str:
    return book if "://" in book else str(Path(book).absolute())


def _upload_photo(store: Store, job_id: str, photo: Path) -> str:
    from steps.images import photo_ext

    data = photo.read_bytes()
    suffix = photo.suffix.lower().lstrip(".")
    ext = photo_ext(data) or (suffix if suffix.isalnum() and len(suffix) <= 5 else "bin")
    key = upload_key(job_id, ext)
    store.write(key, data)
    return key


def _check_same(record: JobRecord, store: Store, photo: Path | None, name: str | None,
                age: str | None, gender: str | None) -> None:
    """Given again for an existing job, the child's fields and photo must match its record."""
    given = {"name": (name, record.child_name), "gender": (gender, record.child_gender),
             "age": (age, None if record.child_age is None else str(record.child_age))}
    for field, (value, stored) in given.items():
        if value is not None and value.strip() != stored:
            _exit(EXIT_USAGE, f"job {record.job_id} was made with {field} {stored!r}, not "
                              f"{value!r}; leave --{field} out or use a new job id")
    if photo is not None:
        same = hashlib.sha256(photo.read_bytes()).digest() == hashlib.sha256(
            store.read(record.photo_key)).digest()
        if not same:
            _exit(EXIT_USAGE, f"job {record.job_id} was made with another photo; leave --photo "
                              "out or use a new job id")


def _print_summary(record: JobRecord, store: Store, runs: list) -> None:
    if runs:
        _say("\nstep durations:")
        totals: dict[str, float] = {}
        for run in runs:
            totals[f"{run.stage}/{run.step}"] = totals.get(f"{run.stage}/{run.step}", 0) + run.wall_s
        for label, seconds in totals.items():
            _say(f"  {label:<24} {seconds:7.2f} s")
    typer.echo(f"job {record.job_id}: {record.status.value}")
    if record.error:
        typer.echo(f"  error in {record.error.step} ({record.error.reason}): {record.error.message}")
    where = getattr(store, "root", None)
    for artifact in record.artifacts:
        if artifact.kind in ("page_png", "preview_pdf", "book_pdf"):
            location = where / artifact.key if where else f"{store.uri}/{artifact.key}"
            page = f" page {artifact.page:02d}" if artifact.page else ""
            typer.echo(f"  {artifact.kind}{page}: {location}")


@app.command()
def run(
    book: Annotated[str, typer.Argument(help="A book folder holding book.yaml, or an s3:// prefix.")],
    photo: Annotated[Optional[Path], typer.Option(help="The child's photo (JPEG, PNG, WebP, HEIC).",
                                                  exists=True, dir_okay=False)] = None,
    name: Annotated[Optional[str], typer.Option(help="The child's name, 1-40 characters.")] = None,
    age: Annotated[Optional[str], typer.Option(help="The child's age in years, 0-17.")] = None,
    gender: Annotated[Optional[str], typer.Option(help="girl, boy or unspecified.")] = None,
    stage: Annotated[Stage, typer.Option(help="prepay, postpay, or full (both).")] = Stage.prepay,
    job_id: Annotated[Optional[str], typer.Option(help="An existing job, or the id for a new one.")] = None,
    store: StoreOpt = None,
    randomize_seed: Annotated[bool, typer.Option(help="New random seeds for generation.")] = False,
    pages_per_task: Annotated[int, typer.Option(min=0, help="Pages per chunk; 0: one chunk per stage.")] = 0,
    as_json: JsonOpt = False,
) -> None:
    """Run a book job on this machine (the embedded engine)."""
    from pipeline.local import LocalEngine, StepFailed

    target = _store(store)
    job_id = job_id or str(uuid.uuid4())
    try:
        validate_job_id(job_id)
    except InputError as e:
        _exit(EXIT_INPUT, e.message)
    try:
        record: JobRecord | None = read_job(target, job_id)
    except JobNotFound:
        record = None
    if record is not None:
        _check_same(record, target, photo, name, age, gender)
        if stage is Stage.postpay and not record.reached(Status.PREPAY_READY):
            _exit(EXIT_USAGE, f"job {job_id} never reached prepay_ready ({record.status.value}); "
                              "run --stage prepay first")
        photo_key, name, age, gender = (record.photo_key, record.child_name,
                                        str(record.child_age), record.child_gender)
    else:
        if stage is Stage.postpay:
            _exit(EXIT_USAGE, f"job {job_id} does not exist; postpay needs a job that reached "
                              "prepay_ready (run --stage prepay or full)")
        missing = [opt for opt, v in (("--photo", photo), ("--name", name), ("--age", age)) if v is None]
        if missing:
            _exit(EXIT_USAGE, f"a new job needs {', '.join(missing)}")
        photo_key = _upload_photo(target, job_id, photo)
    book_uri = _book_uri(book)
    params = {"job_id": job_id, "book": book_uri, "store": target.uri, "photo_key": photo_key,
              "child_name": name, "child_age": age, "child_gender": gender or "unspecified",
              "randomize_seed": str(randomize_seed).lower(), "pages_per_task": str(pages_per_task),
              "analyzer": "heuristic", "face_backend": "classic"}
    _say(f"job {job_id}: {stage.value} of {book_uri} (store {target.uri})")
    engine = LocalEngine(target, params, progress=_say)
    code = 0
    try:
        engine.run(stage.value)
    except StepFailed as failed:
        code = EXIT_INPUT if failed.run.exit_code == EXIT_INPUT else EXIT_FAILURE
        _say(f"error: {failed.message}")
    try:
        final = read_job(target, job_id)
    except JobNotFound:
        raise typer.Exit(code or EXIT_FAILURE) from None
    if as_json:
        typer.echo(final.model_dump_json(indent=2))
    else:
        _print_summary(final, target, engine.runs)
    raise typer.Exit(code)


@app.command()
def status(
    job_id: Annotated[str, typer.Argument(help="The job's id.")],
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show a job's status, error and artifacts."""
    target = _store(store)
    try:
        validate_job_id(job_id)
        record = read_job(target, job_id)
    except InputError as e:
        _exit(EXIT_USAGE, e.message)
    except JobNotFound as e:
        _exit(EXIT_FAILURE, str(e))
    if as_json:
        typer.echo(record.model_dump_json(indent=2))
        return
    _print_summary(record, target, [])
    for change in record.status_history:
        typer.echo(f"  {change.at}  {change.status.value}")


@app.command()
def demo(
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Run the bundled demo book with the demo photo, stage full."""
    run(book=str(DEMO / "book"), photo=DEMO / "photo.jpg", name="Mia", age="6", gender="girl",
        stage=Stage.full, job_id=None, store=store, randomize_seed=False, pages_per_task=0,
        as_json=as_json)


@app.command()
def templates(
    out: Annotated[Path, typer.Option(help="Folder for the WorkflowTemplate YAML.")] = Path("argo-templates"),
    check: Annotated[bool, typer.Option(help="Only report whether OUT is up to date (exit 1 if not).")] = False,
) -> None:
    """Compile the pipeline into Argo WorkflowTemplates (argo-templates/)."""
    from pipeline.argo import TEMPLATE_NAME, to_yaml, write_templates

    if check:
        path = out / f"{TEMPLATE_NAME}.yaml"
        if not path.is_file() or path.read_text() != to_yaml():
            _exit(EXIT_FAILURE, f"{path} is out of date: run `bookjob templates`")
        typer.echo(f"{path} is up to date")
        return
    for path in write_templates(out):
        typer.echo(f"wrote {path}")


def main() -> None:  # pragma: no cover - `python -m pipeline.cli`
    sys.exit(app())


if __name__ == "__main__":
    main()
