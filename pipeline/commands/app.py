"""The ``bookjob`` app: the typer application, the options commands share, and their helpers.

Command modules (:mod:`pipeline.commands.local`, :mod:`pipeline.commands.cluster`) import
from here and register on :data:`app`; they never import each other. The job-domain logic
they call is :mod:`pipeline.jobs`: its refusals (:class:`~pipeline.jobs.BookJobError`) are
printed here as one ``error:`` line and become the exit code.

Exit codes: 0 done, 1 other failure, 2 usage, 3 bad input (photo, manifest, name, age, ids).
``--json`` prints the job record and nothing else on stdout; progress goes to stderr.
"""

from __future__ import annotations

import os
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from typer.core import TyperCommand, TyperGroup, TyperOption

from pipeline.jobs import BookJobError, Stage, local_backends, prepare_job
from pipeline.jobs import refuse as fail  # the app prints the sentence and exits with the code
from steps.core.errors import SetupError, TransientError
from steps.core.records import Records, open_records
from steps.core.settings import settings
from steps.core.store import Store, StoreError, open_store
from steps.protocol import EXIT_FAILURE

__all__ = ["App", "app", "fail", "say", "prepare_job", "Stage", "backends", "local_backends"]


PLAIN = {"<str>": "TEXT", "<int>": "INTEGER", "<float>": "NUMBER", "<path>": "PATH"}


def _plain_help(ctx, params: list) -> None:
    """What the help shows beside each option: nothing for a switch, TEXT for text (typer
    writes ``<bool>`` and ``<str>``); an option's own metavar stays."""
    for param in params:
        if getattr(param, "is_flag", False) or param.name == "help":
            param.metavar = ""
        elif isinstance(param, TyperOption) and param.metavar is None:
            param.metavar = PLAIN.get(param.display_type(ctx) or "")


class _Command(TyperCommand):
    def get_params(self, ctx):
        params = super().get_params(ctx)
        _plain_help(ctx, params)
        return params


class _Group(TyperGroup):
    def get_params(self, ctx):
        params = super().get_params(ctx)
        _plain_help(ctx, params)
        return params


class App(typer.Typer):
    """The CLI; a store or records database that cannot be reached, or a setup error, is one
    line and exit 1, not a traceback. Its commands' help shows plain metavars (:func:`_plain_help`)."""

    def __init__(self, **kwargs) -> None:
        super().__init__(cls=_Group, **kwargs)

    def command(self, *args, **kwargs):
        return super().command(*args, cls=kwargs.pop("cls", _Command), **kwargs)

    def __call__(self, *args, **kwargs):
        try:
            return super().__call__(*args, **kwargs)
        except BookJobError as e:     # a refusal: its one sentence and exit code
            typer.echo(f"error: {e.message}", err=True)
            sys.exit(e.code)
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


app = App(help="Personalised children's books: photo in, print-ready book out.",
           no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)


def _version(asked: bool) -> None:
    if asked:
        from importlib.metadata import PackageNotFoundError, version

        try:
            typer.echo(f"bookjob {version('bookjob')}")
        except PackageNotFoundError:    # run from a checkout that was never installed
            typer.echo("bookjob (not installed: run from a checkout)")
        raise typer.Exit()


@app.callback()
def _main(version: Annotated[bool, typer.Option(
        "--version", help="Print bookjob's version and exit.", callback=_version,
        is_eager=True)] = False) -> None:
    """Personalised children's books: photo in, print-ready book out."""

DEMO = Path(__file__).parents[1] / "demo"


StoreOpt = Annotated[str | None, typer.Option(
    "--store", help="A folder or s3://bucket/prefix (env BOOKJOB_STORE; default ./bookjob-store)")]
RecordsOpt = Annotated[str | None, typer.Option(
    "--records", help="Where job records live: store (beside the pages), sqlite:///path/to/"
                      "bookjob.db or postgresql://user@host/db (env BOOKJOB_RECORDS; default: "
                      "store).")]
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



def say(message: str) -> None:
    typer.echo(message, err=True)


BookArg = Annotated[str | None, typer.Argument(
    help="A book folder holding book.yaml, or an s3:// prefix (may be left out for an existing "
         "job: it is bound to its book).")]
PhotoOpt = Annotated[str | None, typer.Option(
    "--photo", help="The child's photo (JPEG, PNG, WebP, HEIC): a file, s3://bucket/key, "
                    "https://… (or http://… from a host in BOOKJOB_ALLOW_HTTP_HOSTS); copied "
                    "into the store's uploads/<job>/.")]
NameOpt = Annotated[str | None, typer.Option("--name", help="The child's name, 1-40 characters.")]
AgeOpt = Annotated[str | None, typer.Option("--age", metavar="YEARS",
                                             help="The child's age in years, 0-17.")]
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
    "--pages-per-task", metavar="N|0|auto",
    help="Pages per chunk (one process/pod each): a number, 0 (one chunk per stage) or auto (one "
         "chunk per two cores, at least 4 pages each).")]
class Analyzer(str, Enum):
    heuristic = "heuristic"
    qwen2_vl = "qwen2-vl"


class FaceBackend(str, Enum):
    classic = "classic"
    comfyui = "comfyui"


AnalyzerOpt = Annotated[Analyzer | None, typer.Option(
    "--analyzer", help="heuristic on the CPU or qwen2-vl on a GPU (env BOOKJOB_ANALYZER).")]
AnalyzerModelOpt = Annotated[str | None, typer.Option(
    "--analyzer-model", help="Local folder of the Qwen2-VL weights (env BOOKJOB_ANALYZER_MODEL).")]
FaceBackendOpt = Annotated[FaceBackend | None, typer.Option(
    "--face-backend", help="classic on the CPU or comfyui on a GPU (env BOOKJOB_FACE_BACKEND).")]
ComfyOpt = Annotated[str | None, typer.Option(
    "--comfyui-url", help="The ComfyUI server for --face-backend comfyui (env BOOKJOB_COMFYUI_URL).")]
NotifyOpt = Annotated[str | None, typer.Option(
    "--notify-url", help="POST each of the job's events here (status changes, pages and PDFs "
                         "stored), signed with $BOOKJOB_NOTIFY_SECRET (env BOOKJOB_NOTIFY_URL).")]
UnsignedOpt = Annotated[bool, typer.Option(
    "--allow-unsigned", help="Send the webhook's events unsigned when no BOOKJOB_NOTIFY_SECRET "
                             "is set (otherwise a setup error; env BOOKJOB_ALLOW_UNSIGNED).")]


def backends(analyzer: str | None, analyzer_model: str | None, face_backend: str | None,
             comfyui_url: str | None, defaults: dict[str, str]) -> dict[str, str]:
    """The backend parameters that were given, over ``defaults``."""
    given = {"analyzer": analyzer and Analyzer(analyzer).value, "analyzer_model": analyzer_model,
             "face_backend": face_backend and FaceBackend(face_backend).value,
             "comfyui_url": comfyui_url}
    return {**defaults, **{k: v for k, v in given.items() if v}}
