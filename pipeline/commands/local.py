"""``bookjob run | status | demo | templates``: book jobs on this machine, and the compiled templates."""

from __future__ import annotations

import json
import os
import sys
import threading
import uuid
from pathlib import Path
from typing import Annotated

import typer

from pipeline.cluster import cluster_phases
from pipeline.commands.app import (
    DEMO,
    AgeOpt,
    AnalyzerModelOpt,
    AnalyzerOpt,
    BookArg,
    ChunkOpt,
    ComfyOpt,
    DedicationOpt,
    FaceBackendOpt,
    GenderOpt,
    JobIdOpt,
    JsonOpt,
    LanguageOpt,
    NameOpt,
    NotifyOpt,
    PagesOpt,
    PhotoOpt,
    RecordsOpt,
    SeedOpt,
    Stage,
    StageOpt,
    StoreOpt,
    UnsignedOpt,
    app,
    backends,
    fail,
    local_backends,
    prepare_job,
    records_at,
    say,
    store_at,
)
from pipeline.jobs import BookJobError
from pipeline.sender import Sender, check_signed
from pipeline.worker import ahead
from steps.core.errors import InputError
from steps.core.job import JobNotFound, JobRecord, validate_job_id
from steps.core.settings import settings
from steps.core.store import Store, StoreError
from steps.protocol import EXIT_FAILURE, EXIT_INPUT, EXIT_USAGE

FLUSH_S = 5.0     # how long `run` goes on delivering its job's events once the job has ended


class PageBars:
    """Pages done per chunk: one redrawn line of bars on a terminal, plain lines otherwise."""

    WIDTH = 12

    def __init__(self, stream) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.chunks: dict[str, tuple[str, int, int]] = {}
        self.lock = threading.Lock()

    def _draw(self) -> None:
        bars = []
        for chunk, (step, done, total) in self.chunks.items():
            filled = self.WIDTH * done // max(total, 1)
            bars.append(f"{step}[{chunk}] {'█' * filled}{'░' * (self.WIDTH - filled)} {done}/{total}")
        self.stream.write("\r\x1b[K" + "  ".join(bars))
        self.stream.flush()

    def page(self, chunk: str, step: str, done: int, total: int) -> None:
        with self.lock:
            if not self.tty:
                self.stream.write(f"    {step}[{chunk}]: {done}/{total} pages\n")
                self.stream.flush()
                return
            self.chunks[chunk] = (step, done, total)
            self._draw()

    def line(self, message: str) -> None:
        with self.lock:
            if self.tty and self.chunks:
                self.stream.write("\r\x1b[K")
            self.stream.write(message + "\n")
            if self.tty and self.chunks:
                self.chunks = {c: v for c, v in self.chunks.items() if v[1] < v[2]}
                if self.chunks:
                    self._draw()
            self.stream.flush()

    def close(self) -> None:
        with self.lock:
            if self.tty and self.chunks:
                self.stream.write("\r\x1b[K")
                self.stream.flush()
            self.chunks = {}


def print_summary(record: JobRecord, store: Store, runs: list) -> None:
    if runs:
        say("\nstep durations:")
        totals: dict[str, float] = {}
        for run in runs:
            totals[f"{run.stage}/{run.step}"] = totals.get(f"{run.stage}/{run.step}", 0) + run.wall_s
        for label, seconds in totals.items():
            say(f"  {label:<24} {seconds:7.2f} s")
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
    book: BookArg = None,
    photo: PhotoOpt = None,
    name: NameOpt = None,
    age: AgeOpt = None,
    gender: GenderOpt = None,
    language: LanguageOpt = None,
    dedication: DedicationOpt = None,
    stage: StageOpt = Stage.prepay,
    job_id: JobIdOpt = None,
    store: StoreOpt = None,
    records: RecordsOpt = None,
    randomize_seed: SeedOpt = False,
    pages: PagesOpt = None,
    pages_per_task: ChunkOpt = "auto",
    analyzer: AnalyzerOpt = None,
    analyzer_model: AnalyzerModelOpt = None,
    face_backend: FaceBackendOpt = None,
    comfyui_url: ComfyOpt = None,
    notify_url: NotifyOpt = None,
    allow_unsigned: UnsignedOpt = False,
    wait_for_lease: Annotated[float, typer.Option(
        "--wait-for-lease", help="If another run holds the job, wait up to this many seconds "
                                 "for it (default: exit 4 at once).")] = 0.0,
    as_json: JsonOpt = False,
) -> None:
    """Run a book job on this machine (the embedded engine).

    One run per job at a time: a run that finds the job held by another says so in one line
    and exits 4 (or waits, with --wait-for-lease); the job is left as it is."""
    from pipeline.launch import start_early
    from pipeline.lease import EXIT_BUSY, Busy, Lease

    if allow_unsigned:
        os.environ["BOOKJOB_ALLOW_UNSIGNED"] = "true"
    configured = settings()
    check_signed(notify_url or configured.notify_url, configured.notify_secret,
                 configured.allow_unsigned)      # before anything is written
    target = store_at(store)
    held = records_at(target, records)
    start_early(s3=target.uri.startswith("s3://"), sql=held.uri != "store")  # while we check the job
    if job_id is not None and not job_id.strip():
        fail(EXIT_USAGE, "--job-id is empty; give the job's id, or leave the option out for a "
                          "new job")
    job_id = job_id or str(uuid.uuid4())
    try:
        validate_job_id(job_id)
    except InputError as e:
        fail(EXIT_INPUT, e.message)
    lease = Lease(held, job_id, stage.value)
    try:
        lease.acquire(wait_for_lease, waiting=lambda busy: say(f"{busy}; waiting for it"))
    except Busy as busy:
        fail(EXIT_BUSY, f"{busy}; nothing was done. Wait for it (`--wait-for-lease SECONDS`) "
                        f"or follow it with `bookjob status {job_id}`.")
    with lease:
        _run_leased(target, held, lease, book, photo, name, age, gender, language, dedication, stage,
                    job_id, randomize_seed, pages, pages_per_task, analyzer, analyzer_model,
                    face_backend, comfyui_url, notify_url, as_json)


def _run_leased(target, held, lease, book, photo, name, age, gender, language, dedication, stage, job_id,
                randomize_seed, pages, pages_per_task, analyzer, analyzer_model, face_backend,
                comfyui_url, notify_url, as_json) -> None:
    from pipeline.local import LocalEngine, StepFailed

    configured = settings()
    url = notify_url or configured.notify_url
    try:
        params = prepare_job(target, book, photo, name, age, gender, stage, job_id,
                             randomize_seed, pages_per_task, pages, language, dedication,
                             records=held, notify_url=notify_url or "")
    except BookJobError:
        if as_json:   # a new job refused for bad input has its record, marked failed: shown
            try:
                typer.echo(held.read(job_id).model_dump_json(indent=2))
            except JobNotFound:
                pass
        raise
    params |= backends(analyzer, analyzer_model, face_backend, comfyui_url, local_backends())
    job_id = params["job_id"]
    sender = Sender(held, url, configured.notify_secret, configured.allow_unsigned, say=say)
    sending = sender.start() if url else None
    say(f"job {job_id}: {stage.value} of {params['book']} (store {target.uri})"
        + ("; analysed from this photo already" if params["skip_analysis"] == "true" else ""))
    bar = PageBars(sys.stderr)
    engine = LocalEngine(target, params, progress=bar.line, pages=bar.page, run_id=lease.run_id,
                         records=held, env={"BOOKJOB_NOTIFY_URL": ""})   # this process sends
    code = 0
    try:
        engine.run(stage.value)
    except StepFailed as failed:
        code = EXIT_INPUT if failed.run.exit_code == EXIT_INPUT else EXIT_FAILURE
        say(f"error: {failed.message}")
    finally:
        bar.close()
        if sending is not None:
            sending[1].set()
            if not sender.flush([job_id], FLUSH_S):
                say(f"warning: some events of job {job_id} are not delivered yet; `bookjob "
                    "worker` or `bookjob events --send` delivers them later")
    try:
        final = held.read(job_id)
    except JobNotFound:
        raise typer.Exit(code or EXIT_FAILURE) from None
    except StoreError:
        if not code:
            raise
        raise typer.Exit(code) from None  # the failure was said; the store is down as well
    if as_json:
        typer.echo(final.model_dump_json(indent=2))
    else:
        print_summary(final, target, engine.runs)
    raise typer.Exit(code)


@app.command()
def status(
    job_id: Annotated[str, typer.Argument(help="The job's id.")],
    store: StoreOpt = None,
    records: RecordsOpt = None,
    server: Annotated[str | None, typer.Option(
        "--server", help="Also show the job's workflows on this Argo Server (env ARGO_SERVER).")] = None,
    namespace: Annotated[str | None, typer.Option(
        "--namespace", "-n", help="Namespace of the workflows (env ARGO_NAMESPACE).")] = None,
    transport: Annotated[str | None, typer.Option(
        "--transport", help="argo or kubernetes: also show the job's workflows.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Show a job's status, error and artifacts (and its workflows, on a cluster).

    A job left in progress by a run that has ended without saying so (a killed local run, a
    terminated or deleted workflow) is marked failed with reason `interrupted` first."""
    target = store_at(store)
    held = records_at(target, records)
    try:
        validate_job_id(job_id)
        record = held.read(job_id)
    except InputError as e:
        fail(EXIT_USAGE, e.message)
    except JobNotFound as e:   # as `run` on a job that is not there: exit 2, saying what to do
        fail(EXIT_USAGE, f"{e}; check the id (bookjob jobs lists them) and the --store/--records "
                         "it was made with.")
    trouble: list[str] = []
    workflows = cluster_phases(job_id, server, None, namespace, transport, False,
                               warn=lambda line: (trouble.append(line), say(line)))
    from pipeline.api import reconcile

    # a run that ended without saying so (killed; workflow terminated or deleted): interrupted
    record = reconcile(held, record, None if trouble else workflows)
    if as_json:
        document = json.loads(record.model_dump_json())
        if record.queued is not None:
            document["queued_ahead"] = ahead(held, job_id)
        if workflows is not None:
            document["workflows"] = workflows
        typer.echo(json.dumps(document, indent=2, ensure_ascii=False))
        return
    print_summary(record, target, [])
    queued = record.queued
    if queued is not None:
        waiting = ahead(held, job_id) or 0
        place = f"{waiting} ahead" if waiting else "next in line"
        tries = f"; delivery {queued.attempts} of {queued.max_attempts}" if queued.attempts else ""
        typer.echo(f"  queued: {queued.stage}, {place}{tries}")
    for change in record.status_history:
        typer.echo(f"  {change.at}  {change.status.value}")
    for w in workflows or []:
        typer.echo(f"  workflow {w['workflow']}: {w['phase']}"
                   + (f" — {w['message']}" if w["message"] else "") + (f"  {w['ui']}" if w["ui"] else ""))


@app.command()
def demo(
    store: StoreOpt = None,
    language: LanguageOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Run the bundled demo book with the demo photo, stage full (--language uk: in Ukrainian)."""
    name = {"uk": "Марійка"}.get(language or "", "Mia")
    run(book=str(DEMO / "book"), photo=str(DEMO / "photo.jpg"), name=name, age="6",
        gender="girl", language=language, dedication=None, stage=Stage.full, job_id=None,
        store=store, records=None, randomize_seed=False, pages=None, pages_per_task="auto",
        wait_for_lease=0.0,
        analyzer=None, analyzer_model=None, face_backend=None, comfyui_url=None,
        notify_url=None, as_json=as_json)


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
            fail(EXIT_FAILURE, f"{path} is out of date: run `bookjob templates`")
        typer.echo(f"{path} is up to date")
        return
    for path in write_templates(out):
        typer.echo(f"wrote {path}")
