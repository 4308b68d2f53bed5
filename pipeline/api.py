"""The shop backend's Python API: the old ``analyze_photo_task.delay(job_id)`` and
``build_stage_backgrounds_task.delay(job_id, stage)`` as one-line calls.

::

    from pipeline.api import BookJobs

    jobs = BookJobs(store="s3://books/prod")                    # the local engine, or
    jobs = BookJobs(store="s3://books/prod", server="https://argo:2746", token=..., namespace="books")
    jobs.analyse("order-17", book="s3://books/forest-friends", photo="s3://uploads/17.jpg",
                 name="Mia", age=5)                             # -> analyzing_completed
    jobs.generate("order-17", "prepay")                         # -> prepay_ready
    jobs.regenerate("order-17", pages=[2])                      # fresh seeds for page 2
    jobs.generate("order-17", "postpay")                        # after payment -> completed
    jobs.status("order-17")                                     # status, error, artifact URLs

Every call goes through the same code as the ``bookjob`` CLI: the checks of
:func:`pipeline.commands.app.prepare_job`, then, on the local engine, ``bookjob run`` in a
background process (the call returns at once with a :class:`Started`; its lease keeps a
second run of the job out), or, on a cluster, a Workflow created through the Argo Server (or
the Kubernetes API) with :func:`pipeline.cluster.start_workflow`. A refusal raises
:class:`BookJobError` with the CLI's exit code and sentence (2 usage, 3 bad input, 4 busy).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from pipeline.cluster import DONE, ClusterError, ClusterSettings, JobBusy, connect, phase
from pipeline.lease import EXIT_BUSY, interrupted
from steps.core.job import GENERATING, JobNotFound, JobRecord
from steps.core.records import JobQuery, JobSummary, Records, open_records
from steps.core.store import S3Store, Store, open_store
from steps.protocol import EXIT_FAILURE

Stage = str  # "analyze" | "prepay" | "postpay" | "full"


class BookJobError(Exception):
    """A call refused: ``code`` as the CLI's exit code, ``message`` one sentence."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Artifact:
    kind: str                 # page_bg_png | page_png | preview_pdf | book_pdf
    page: int | None
    url: str                  # presigned https:// for S3, a file path for a local store
    sha256: str
    size: int


@dataclass(frozen=True)
class JobStatus:
    job_id: str
    status: str               # the old clients' statuses (DESIGN §2)
    error: dict | None        # {step, reason, message}
    artifacts: list[Artifact]
    regenerations: int
    workflows: list[dict] | None = None   # on a cluster: name and phase of each
    record: dict = field(default_factory=dict, repr=False)


@dataclass
class Started:
    """A stage started: a background ``bookjob run`` (``process``) or a Workflow (``workflow``)."""

    job_id: str
    process: subprocess.Popen | None = None
    workflow: str | None = None
    log: Path | None = None

    def wait(self, timeout: float | None = None) -> int:
        """Local engine: wait for the run; its exit code (0 done, 3 bad input, 4 busy, 1 other)."""
        if self.process is None:
            raise ValueError("a workflow is followed with status() or `bookjob watch`")
        return self.process.wait(timeout)


def reconcile(records: Records, record: JobRecord, workflows: list[dict] | None) -> JobRecord:
    """A job left in an in-progress status by a run that has ended without saying so (a killed
    local run; a workflow terminated or deleted, which skips the exit handler) becomes failed
    with reason ``interrupted``. ``workflows``: the job's workflows, or None if unknown."""
    if record.status not in GENERATING:
        return record
    if workflows and any(w["phase"] not in DONE for w in workflows):
        return record
    over = interrupted(records, record.job_id)
    if over is not None:
        how = "was killed" if not over.released else "ended"
        message = (f"The local {over.describe()} {how} while the job was "
                   f"{record.status.value}; run the stage again to resume it.")
    elif workflows is not None:
        ended = ", ".join(f"{w['workflow']} {w['phase']}" for w in workflows) or "none left"
        message = (f"The job's workflows ended without finishing it ({ended}: terminated or "
                   f"deleted); submit the stage again to resume it.")
    else:
        return record
    return records.mark_failed(record.job_id, "run", "interrupted", message)


def artifact_url(store: Store, key: str, ttl_s: int) -> str:
    if isinstance(store, S3Store):
        return store.client.generate_presigned_url(
            "get_object", Params={"Bucket": store.bucket, "Key": store.prefix + key},
            ExpiresIn=ttl_s)
    return str(Path(store.uri) / key)


class BookJobs:
    """Book jobs for the shop's backend: ``server`` (or ``transport="kubernetes"``) for a
    cluster, else the local engine on this machine."""

    def __init__(self, store: str, *, records: str | None = None, server: str | None = None,
                 token: str | None = None, namespace: str | None = None,
                 transport: str | None = None, insecure: bool = False,
                 env: dict[str, str] | None = None) -> None:
        self.store_uri = store
        self.store = open_store(store)
        self.records_url = records
        self.records = open_records(self.store, records)
        self.cluster = (ClusterSettings.resolve(server, token, namespace, transport, insecure)
                        if server or transport else None)
        self.env = env or {}

    # ---- the calls ---------------------------------------------------------------------

    def analyse(self, job_id: str, *, book: str, photo: str, name: str, age: int | str,
                gender: str | None = None) -> Started:
        """Create the job and analyse its photo (the old ``POST /upload_and_analyze/``); the
        job rests at ``analyzing_completed``. ``photo``: a file, ``s3://…`` or ``https://…``."""
        return self._start(job_id, "analyze", book=book, photo=photo, name=name, age=str(age),
                           gender=gender)

    def generate(self, job_id: str, stage: Stage = "prepay", *, book: str | None = None,
                 photo: str | None = None, name: str | None = None, age: int | str | None = None,
                 gender: str | None = None) -> Started:
        """Make a stage's pages (the old ``build_stage_backgrounds_task``). An analysed job
        is not analysed again; a new one needs book, photo, name and age."""
        return self._start(job_id, stage, book=book, photo=photo, name=name,
                           age=None if age is None else str(age), gender=gender)

    def regenerate(self, job_id: str, pages: list[int] | None = None) -> Started:
        """Fresh seeds for the prepay pages (only ``pages`` if given), counted against
        ``BOOKJOB_MAX_REGENERATIONS``; no new analysis."""
        return self._start(job_id, "prepay", randomize=True, pages=pages)

    def status(self, job_id: str, url_ttl_s: int = 3600) -> JobStatus:
        """The job's status, error and artifacts with URLs; a run that ended without saying so
        is recorded as ``interrupted`` first."""
        try:
            record = self.records.read(job_id)
        except JobNotFound as e:
            raise BookJobError(EXIT_FAILURE, str(e)) from None
        workflows = self._workflows(job_id)
        record = reconcile(self.records, record, workflows)
        return JobStatus(
            job_id=job_id, status=record.status.value,
            error=record.error.model_dump() if record.error else None,
            artifacts=[Artifact(a.kind, a.page, artifact_url(self.store, a.key, url_ttl_s),
                                a.sha256, a.size) for a in record.artifacts],
            regenerations=record.generation_retry.count, workflows=workflows,
            record=record.model_dump(mode="json"))

    def list(self, *, status: str | list[str] | None = None, book: str | None = None,
             since: datetime | None = None, stuck: timedelta | None = None,
             limit: int | None = None) -> list[JobSummary]:
        """The jobs asked for, newest first (``bookjob jobs``): by status, book, created since,
        or ``stuck`` in a generating status with no change for that long."""
        statuses = (status,) if isinstance(status, str) else tuple(status or ())
        return self.records.list(JobQuery(statuses=statuses, book_id=book, since=since,
                                          stuck=stuck, limit=limit))

    # ---- engines -----------------------------------------------------------------------

    def _workflows(self, job_id: str) -> list[dict] | None:
        if self.cluster is None:
            return None
        try:
            found = connect(self.cluster).find(job_id)
        except ClusterError:
            return None  # unknown: nothing is concluded from a cluster that did not answer
        return [{"workflow": w["metadata"]["name"], "phase": phase(w)} for w in found]

    def _start(self, job_id: str, stage: Stage, *, book=None, photo=None, name=None, age=None,
               gender=None, randomize: bool = False, pages: list[int] | None = None) -> Started:
        if self.cluster is None:
            return self._start_local(job_id, stage, book, photo, name, age, gender, randomize,
                                     pages)
        return self._start_cluster(job_id, stage, book, photo, name, age, gender, randomize,
                                   pages)

    def _start_local(self, job_id, stage, book, photo, name, age, gender, randomize,
                     pages) -> Started:
        args = [sys.executable, "-m", "pipeline.cli", "run", *([book] if book else []),
                "--job-id", job_id, "--store", self.store_uri, "--stage", stage]
        if self.records_url:
            args += ["--records", self.records_url]
        for option, value in (("--photo", photo), ("--name", name), ("--age", age),
                              ("--gender", gender)):
            if value is not None:
                args += [option, str(value)]
        if randomize:
            args.append("--randomize-seed")
        if pages:
            args += ["--pages", ",".join(map(str, pages))]
        log = Path(tempfile.mkstemp(prefix=f"bookjob-{job_id}-", suffix=".log")[1])
        with open(log, "wb") as out:
            process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, start_new_session=True,
                                       env={**os.environ, **self.env})
        return Started(job_id, process=process, log=log)

    def _start_cluster(self, job_id, stage, book, photo, name, age, gender, randomize,
                       pages) -> Started:
        from pipeline.cluster import check_running
        from pipeline.commands.app import Failed, backends, prepare_job
        from pipeline.commands.app import Stage as Stages

        try:  # before anything is written for it
            check_running(connect(self.cluster), job_id, replace=False)
        except JobBusy as e:
            raise BookJobError(EXIT_BUSY, str(e)) from None
        except ClusterError as e:
            raise BookJobError(EXIT_FAILURE, str(e)) from None
        try:
            params = prepare_job(self.store, book, photo, name, age, gender, Stages(stage),
                                 job_id, randomize, "0",
                                 ",".join(map(str, pages)) if pages else None,
                                 records=self.records)
        except Failed as e:
            raise BookJobError(e.exit_code, e.message) from None
        params |= backends(None, None, None, None, {})
        from pipeline.cluster import start_workflow

        try:
            created = start_workflow(connect(self.cluster), params, self.cluster.template)
        except JobBusy as e:
            raise BookJobError(EXIT_BUSY, str(e)) from None
        except ClusterError as e:
            raise BookJobError(EXIT_FAILURE, str(e)) from None
        return Started(job_id, workflow=created["metadata"]["name"])
