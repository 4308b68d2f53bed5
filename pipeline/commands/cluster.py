"""``bookjob submit | watch | logs``: book jobs on a cluster running Argo Workflows.

Settings come from flags or, like the argo CLI, from ``ARGO_SERVER``, ``ARGO_TOKEN``,
``ARGO_NAMESPACE`` (and ``ARGO_SECURE``, ``ARGO_INSECURE_SKIP_VERIFY``); without an Argo
Server, ``--transport kubernetes`` uses the kubeconfig or the in-cluster service account.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from pipeline.cluster import ClusterError, ClusterSettings, JobBusy, check_running, connect, phase, start_workflow, wait
from pipeline.commands.app import (
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
    app,
    backends,
    fail,
    prepare_job,
    records_at,
    say,
    store_at,
)
from pipeline.lease import EXIT_BUSY
from steps.protocol import EXIT_FAILURE, EXIT_USAGE

ServerOpt = Annotated[str | None, typer.Option(
    "--server", help="Argo Server, e.g. https://argo.example:2746 (env ARGO_SERVER).")]
TokenOpt = Annotated[str | None, typer.Option("--token", help="Bearer token (env ARGO_TOKEN).")]
NamespaceOpt = Annotated[str | None, typer.Option(
    "--namespace", "-n", help="Namespace of the workflows (env ARGO_NAMESPACE; default: default).")]
TransportOpt = Annotated[str | None, typer.Option(
    "--transport", help="argo (Argo Server API) or kubernetes (the Kubernetes API directly); "
                        "default: argo when a server is set.")]
InsecureOpt = Annotated[bool, typer.Option("--insecure", help="Skip TLS verification.")]
TimeoutOpt = Annotated[float, typer.Option("--timeout", help="Give up waiting after this many seconds.")]
PollOpt = Annotated[float, typer.Option("--poll", help="Seconds between status checks.")]


def _settings(server, token, namespace, transport, insecure) -> ClusterSettings:
    if transport not in (None, "argo", "kubernetes"):
        fail(EXIT_USAGE, f"--transport must be argo or kubernetes, not {transport!r}")
    return ClusterSettings.resolve(server, token, namespace, transport, insecure)


def _client(settings: ClusterSettings):
    try:
        return connect(settings)
    except ClusterError as e:
        fail(EXIT_FAILURE, str(e))


def _follow(client, settings: ClusterSettings, name: str, timeout: float, poll: float) -> None:
    try:
        workflow = wait(client, name, timeout, poll, report=say)
    except TimeoutError as e:
        fail(EXIT_FAILURE, f"{e}; it goes on running: `bookjob watch {name}` follows it again")
    except ClusterError as e:
        fail(EXIT_FAILURE, str(e))
    final = phase(workflow)
    typer.echo(f"{name}: {final}")
    if final != "Succeeded":
        message = (workflow.get("status") or {}).get("message") or "see `bookjob logs`"
        fail(EXIT_FAILURE, f"workflow {name} {final.lower()}: {message}")


@app.command()
def submit(
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
    pages_per_task: ChunkOpt = "0",
    analyzer: AnalyzerOpt = None,
    analyzer_model: AnalyzerModelOpt = None,
    face_backend: FaceBackendOpt = None,
    comfyui_url: ComfyOpt = None,
    notify_url: NotifyOpt = None,
    server: ServerOpt = None,
    token: TokenOpt = None,
    namespace: NamespaceOpt = None,
    transport: TransportOpt = None,
    insecure: InsecureOpt = False,
    replace: Annotated[bool, typer.Option(
        "--replace", help="Terminate the job's running workflow and start this one (without "
                          "it, a job with a running workflow is refused: exit 4).")] = False,
    wait_: Annotated[bool, typer.Option("--wait", help="Follow the workflow until it ends.")] = False,
    timeout: TimeoutOpt = 3 * 3600,
    poll: PollOpt = 5.0,
    as_json: JsonOpt = False,
) -> None:
    """Run a book job on a cluster: a Workflow from the installed `book-job` template.

    The photo is uploaded and the job's record made first; the Workflow has no child's details.
    """
    target = store_at(store)
    held = records_at(target, records)
    if not target.uri.startswith("s3://"):
        fail(EXIT_USAGE, "a cluster job needs a store it can reach: --store s3://bucket/prefix "
                          "(or BOOKJOB_STORE)")
    if book is not None and "://" not in book:
        fail(EXIT_USAGE, "a cluster job needs a book it can reach: an s3:// or https:// BOOK")
    settings = _settings(server, token, namespace, transport, insecure)
    client = _client(settings)
    if job_id:  # a job with a running workflow: refused before anything is written for it
        try:
            check_running(client, job_id, replace)
        except JobBusy as e:
            fail(EXIT_BUSY, str(e))
        except ClusterError as e:
            fail(EXIT_FAILURE, str(e))
    params = prepare_job(target, book, photo, name, age, gender, stage, job_id, randomize_seed,
                         pages_per_task, pages, language, dedication, records=held)
    # Backends left out keep the template's defaults (the GPU backends on a cluster).
    params |= backends(analyzer, analyzer_model, face_backend, comfyui_url, {})
    if notify_url:
        params["notify_url"] = notify_url
    try:
        created = start_workflow(client, params, settings.template, replace)
    except JobBusy as e:
        fail(EXIT_BUSY, str(e))
    except ClusterError as e:
        fail(EXIT_FAILURE, str(e))
    workflow = created["metadata"]["name"]
    if as_json:
        typer.echo(json.dumps({"workflow": workflow, "job_id": params["job_id"],
                               "namespace": settings.namespace, "ui": settings.ui_url(workflow)}))
    else:
        typer.echo(f"workflow {workflow} (job {params['job_id']}) in {settings.namespace}")
        if settings.ui_url(workflow):
            typer.echo(f"  {settings.ui_url(workflow)}")
    if wait_:
        _follow(client, settings, workflow, timeout, poll)


@app.command()
def watch(
    workflow: Annotated[str, typer.Argument(help="The workflow's name (as `submit` printed it).")],
    server: ServerOpt = None,
    token: TokenOpt = None,
    namespace: NamespaceOpt = None,
    transport: TransportOpt = None,
    insecure: InsecureOpt = False,
    timeout: TimeoutOpt = 3 * 3600,
    poll: PollOpt = 5.0,
) -> None:
    """Follow a workflow until it ends (Pending while it waits for a GPU is normal)."""
    settings = _settings(server, token, namespace, transport, insecure)
    _follow(_client(settings), settings, workflow, timeout, poll)


@app.command()
def logs(
    workflow: Annotated[str, typer.Argument(help="The workflow's name.")],
    server: ServerOpt = None,
    token: TokenOpt = None,
    namespace: NamespaceOpt = None,
    transport: TransportOpt = None,
    insecure: InsecureOpt = False,
) -> None:
    """Print the logs of a workflow's step pods."""
    settings = _settings(server, token, namespace, transport, insecure)
    try:
        for pod, line in _client(settings).logs(workflow):
            typer.echo(f"{pod}: {line}")
    except ClusterError as e:
        fail(EXIT_FAILURE, str(e))
