"""The shop backend's Python API: the old ``analyze_photo_task.delay(job_id)`` and
``build_stage_backgrounds_task.delay(job_id, stage)`` as one-line calls.

::

    from pipeline.api import BookJobs

    jobs = BookJobs(store="s3://books/prod")                    # a worker on this machine, or
    jobs = BookJobs(store="s3://books/prod", server="https://argo:2746", token=..., namespace="books")
    jobs.analyse("order-17", book="s3://books/forest-friends", photo="s3://uploads/17.jpg",
                 name="Mia", age=5)                             # -> analyzing_completed
    jobs.generate("order-17", "prepay")                         # -> prepay_ready
    jobs.wait("order-17")                                       # until the stage has ended
    jobs.regenerate("order-17", pages=[2])                      # fresh seeds for page 2
    jobs.generate("order-17", "postpay")                        # after payment -> completed
    jobs.status("order-17")                                     # status, error, artifact URLs

Every call goes through the same code as the ``bookjob`` CLI (:mod:`pipeline.jobs`), and is
checked before it returns: a bad photo, name, age, book or edition, or a busy job, raises
:class:`BookJobError` with the CLI's exit code and sentence (2 usage, 3 bad input, 4 busy)
and nothing is queued. Then, on one machine, the stage is queued in the job's record for
``bookjob worker`` (:mod:`pipeline.worker`) and the call returns a :class:`Submitted`; on a
cluster, a Workflow is created through the Argo Server (or the Kubernetes API).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from pipeline.cluster import DONE, ClusterError, ClusterSettings, JobBusy, connect, phase
from pipeline.jobs import BookJobError, Stage, local_backends, prepare_job
from pipeline.lease import EXIT_BUSY, Holder, holder, interrupted
from pipeline.worker import AlreadyQueued, ahead, enqueue, workers_seen
from steps.core.job import GENERATING, JobNotFound, JobRecord, Status
from steps.core.records import JobQuery, JobSummary, Records, open_records
from steps.core.settings import settings
from steps.core.store import S3Store, Store, open_store
from steps.protocol import EXIT_FAILURE

__all__ = ["BookJobs", "BookJobError", "JobStatus", "Submitted", "Artifact", "reconcile"]
log = logging.getLogger("bookjob")

# What a stage ends in when it succeeds.
REACHES = {"analyze": Status.ANALYZING_COMPLETED, "prepay": Status.PREPAY_READY,
           "postpay": Status.COMPLETED, "full": Status.COMPLETED}


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
    status: str               # the old clients' statuses
    error: dict | None        # {step, reason, message}
    artifacts: list[Artifact]
    regenerations: int
    workflows: list[dict] | None = None   # on a cluster: name and phase of each
    queued: dict | None = None            # one machine: {stage, attempts, ahead} while queued
    record: dict = field(default_factory=dict, repr=False)


@dataclass
class Submitted:
    """A stage asked for: queued for a worker (``ahead``: requests before it) or a Workflow
    (``workflow``); :meth:`wait` follows it. ``note`` says what may hold it up."""

    job_id: str
    stage: str
    jobs: BookJobs = field(repr=False)
    workflow: str | None = None
    ahead: int | None = None
    note: str = ""

    def wait(self, timeout: float | None = None) -> JobStatus:
        """Until the stage has ended (done or failed); its status."""
        return self.jobs.wait(self.job_id, timeout=timeout)


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
                 transport: str | None = None, insecure: bool = False) -> None:
        self.store_uri = store
        self.store = open_store(store)
        self.records_url = records
        self.records = open_records(self.store, records)
        self.cluster = (ClusterSettings.resolve(server, token, namespace, transport, insecure)
                        if server or transport else None)

    # ---- the calls ---------------------------------------------------------------------

    def analyse(self, job_id: str, *, book: str, photo: str, name: str, age: int | str,
                gender: str | None = None, language: str | None = None,
                dedication: str | None = None, notify_url: str | None = None) -> Submitted:
        """Create the job and analyse its photo (the old ``POST /upload_and_analyze/``); the
        job rests at ``analyzing_completed``. ``photo``: a file, ``s3://…`` or ``https://…``."""
        return self._start(job_id, "analyze", book=book, photo=photo, name=name, age=str(age),
                           gender=gender, language=language, dedication=dedication,
                           notify_url=notify_url)

    def generate(self, job_id: str, stage: str = "prepay", *, book: str | None = None,
                 photo: str | None = None, name: str | None = None, age: int | str | None = None,
                 gender: str | None = None, language: str | None = None,
                 dedication: str | None = None, notify_url: str | None = None) -> Submitted:
        """Make a stage's pages (the old ``build_stage_backgrounds_task``). An analysed job
        is not analysed again; a new one needs book, photo, name and age."""
        return self._start(job_id, stage, book=book, photo=photo, name=name,
                           age=None if age is None else str(age), gender=gender,
                           language=language, dedication=dedication, notify_url=notify_url)

    def regenerate(self, job_id: str, pages: list[int] | None = None,
                   notify_url: str | None = None) -> Submitted:
        """Fresh seeds for the prepay pages (only ``pages`` if given), counted against
        ``BOOKJOB_MAX_REGENERATIONS``; no new analysis."""
        return self._start(job_id, "prepay", randomize=True, pages=pages, notify_url=notify_url)

    def status(self, job_id: str, url_ttl_s: int = 3600) -> JobStatus:
        """The job's status, error and artifacts with URLs (and, queued, its place); a run
        that ended without saying so is recorded as ``interrupted`` first."""
        try:
            record = self.records.read(job_id)
        except JobNotFound as e:
            raise BookJobError(EXIT_FAILURE, str(e)) from None
        workflows = self._workflows(job_id)
        record = reconcile(self.records, record, workflows)
        queued = None
        if record.queued is not None:
            queued = {"stage": record.queued.stage, "attempts": record.queued.attempts,
                      "ahead": ahead(self.records, job_id)}
        return JobStatus(
            job_id=job_id, status=record.status.value,
            error=record.error.model_dump() if record.error else None,
            artifacts=[Artifact(a.kind, a.page, artifact_url(self.store, a.key, url_ttl_s),
                                a.sha256, a.size) for a in record.artifacts],
            regenerations=record.generation_retry.count, workflows=workflows, queued=queued,
            record=record.model_dump(mode="json"))

    def wait(self, job_id: str, until: str | Iterable[str] | None = None,
             timeout: float | None = None, poll_s: float = 0.5) -> JobStatus:
        """Until the job is in one of ``until`` (statuses), or, without ``until``, until its
        stage has ended: nothing queued or running, and the job not in a generating status.
        :class:`TimeoutError` after ``timeout`` seconds."""
        wanted = {until} if isinstance(until, str) else set(until or ())
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            state = self.status(job_id)
            if wanted and state.status in wanted:
                return state
            ended = (state.queued is None and state.status not in {s.value for s in GENERATING}
                     and not any(w["phase"] not in DONE for w in state.workflows or [])
                     and self._holder(job_id) is None)
            if not wanted and ended:
                return state
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"job {job_id} is still {state.status} after {timeout:g} s"
                                   + (f" (queued, {state.queued['ahead']} ahead)"
                                      if state.queued else ""))
            time.sleep(poll_s)

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

    def _start(self, job_id: str, stage: str, *, book=None, photo=None, name=None, age=None,
               gender=None, language=None, dedication=None, notify_url=None,
               randomize: bool = False, pages: list[int] | None = None) -> Submitted:
        stage = Stage(stage).value
        busy = self._busy_locally if self.cluster is None else self._busy_on_cluster
        busy(job_id)   # before anything is written for the job
        params = prepare_job(self.store, book, photo, name, age, gender, stage, job_id,
                             randomize, "auto" if self.cluster is None else "0",
                             ",".join(map(str, pages)) if pages else None, language,
                             dedication, records=self.records, thorough=True,
                             notify_url=(notify_url or "") if self.cluster is None else "")
        if notify_url:
            params["notify_url"] = notify_url
        if self.cluster is None:
            return self._queue(params, stage)
        return self._submit(params, stage)

    def _holder(self, job_id: str) -> Holder | None:
        """The live run on this machine that holds the job (a worker lets go just after it
        answers), if any."""
        if self.cluster is not None:
            return None
        found = holder(self.records, job_id)
        return found if found is not None and not found.dead(settings().lease_s) else None

    def _busy_locally(self, job_id: str) -> None:
        try:
            queued = self.records.read(job_id).queued
        except JobNotFound:
            return
        if queued is not None:
            raise BookJobError(EXIT_BUSY, f"job {job_id} already has its {queued.stage} stage "
                                          "queued or running; wait for it (BookJobs.wait)")
        found = self._holder(job_id)
        if found is not None:
            raise BookJobError(EXIT_BUSY, f"job {job_id} is being run by {found.describe()}; "
                                          "wait for it (BookJobs.wait)")

    def _queue(self, params: dict[str, str], stage: str) -> Submitted:
        job_id = params["job_id"]
        try:
            enqueue(self.records, {**local_backends(), **params}, stage)
        except AlreadyQueued as e:   # asked for by another call meanwhile
            raise BookJobError(EXIT_BUSY, f"job {job_id} already has its {e.queued.stage} "
                                          "stage queued or running; wait for it") from None
        note = ""
        if not workers_seen(self.store):
            note = (f"no bookjob worker has been seen on {self.store.uri} in the last 30 s: the "
                    f"{stage} stage of job {job_id} waits until one runs (`bookjob worker "
                    f"--store {self.store.uri}`)")
            log.warning(note)
        return Submitted(job_id, stage, self, ahead=ahead(self.records, job_id), note=note)

    def _busy_on_cluster(self, job_id: str) -> None:
        from pipeline.cluster import check_running

        try:
            check_running(connect(self.cluster), job_id, replace=False)
        except JobBusy as e:
            raise BookJobError(EXIT_BUSY, str(e)) from None
        except ClusterError as e:
            raise BookJobError(EXIT_FAILURE, str(e)) from None

    def _submit(self, params: dict[str, str], stage: str) -> Submitted:
        from pipeline.cluster import start_workflow

        try:
            created = start_workflow(connect(self.cluster), params, self.cluster.template)
        except JobBusy as e:
            raise BookJobError(EXIT_BUSY, str(e)) from None
        except ClusterError as e:
            raise BookJobError(EXIT_FAILURE, str(e)) from None
        return Submitted(params["job_id"], stage, self, workflow=created["metadata"]["name"])
