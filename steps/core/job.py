"""The job record: statuses, allowed transitions, its versions, the child's fields checked.

The record is the only mutable shared state of a job. Where it lives and how it is changed
safely (compare-and-swap, on every backend) is :mod:`steps.core.records`.

Records are versioned: every record carries ``schema_version`` (:data:`SCHEMA_VERSION` for
those this code writes; a record without one is version 1). Fields this version does not know
are kept (``extra="allow"`` on every model of the record), and a status it does not know
(``printing``, written by a newer bookjob) is read as it is: a :class:`Status` outside the
flow, which :mod:`steps.core.records` refuses to change.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import UTC, datetime
from enum import Enum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from steps.core.analysis import Analysis, GenerationRetry
from steps.core.errors import InputError

# 1: records before versioning; 2: schema_version, unknown fields and statuses kept.
SCHEMA_VERSION = 2
KEEP = ConfigDict(extra="allow")   # fields a newer bookjob added survive every update


class Status(str, Enum):
    ANALYZING = "analyzing"
    ANALYZING_COMPLETED = "analyzing_completed"
    PREPAY_GENERATING = "prepay_generating"
    PREPAY_READY = "prepay_ready"
    POSTPAY_GENERATING = "postpay_generating"
    COMPLETED = "completed"
    ANALYSIS_FAILED = "analysis_failed"
    GENERATION_FAILED = "generation_failed"

    @classmethod
    def _missing_(cls, value: object) -> Status | None:
        """A status a newer bookjob wrote: kept and shown as it is, outside the flow."""
        if not isinstance(value, str) or not value:
            return None
        unknown = str.__new__(cls, value)
        unknown._name_ = value.upper()
        unknown._value_ = value
        return unknown


S = Status
# The old system's flow, plus re-entry: a stale in-progress or failed status may be entered
# again (a run that died is resumed), and a finished stage may be re-run. A failure is
# recorded from any status (mark_failed never meets a refusal): analysis_failed while
# analysing, generation_failed from everything else.
_ANY = frozenset({S.ANALYZING, S.GENERATION_FAILED})
TRANSITIONS: dict[Status, frozenset[Status]] = {
    S.ANALYZING: frozenset({S.ANALYZING, S.ANALYZING_COMPLETED, S.ANALYSIS_FAILED}),
    S.ANALYZING_COMPLETED: _ANY | {S.ANALYZING_COMPLETED, S.PREPAY_GENERATING},
    S.PREPAY_GENERATING: _ANY | {S.PREPAY_GENERATING, S.PREPAY_READY},
    S.PREPAY_READY: _ANY | {S.PREPAY_GENERATING, S.POSTPAY_GENERATING},
    S.POSTPAY_GENERATING: _ANY | {S.POSTPAY_GENERATING, S.COMPLETED},
    S.COMPLETED: _ANY | {S.POSTPAY_GENERATING},
    S.ANALYSIS_FAILED: frozenset({S.ANALYZING, S.ANALYSIS_FAILED}),
    S.GENERATION_FAILED: _ANY | {S.ANALYZING_COMPLETED, S.PREPAY_GENERATING,
                                 S.POSTPAY_GENERATING},
}
# Where each status stands in the flow, for "is the job already past this step?".
ORDER = {S.ANALYZING: 0, S.ANALYZING_COMPLETED: 1, S.PREPAY_GENERATING: 2, S.PREPAY_READY: 3,
         S.POSTPAY_GENERATING: 4, S.COMPLETED: 5}
GENERATING = (S.ANALYZING, S.PREPAY_GENERATING, S.POSTPAY_GENERATING)
FAILED = (S.ANALYSIS_FAILED, S.GENERATION_FAILED)

ArtifactKind = Literal["page_bg_png", "page_png", "preview_pdf", "book_pdf"]
Gender = Literal["girl", "boy", "unspecified"]
GENDERS = ("girl", "boy", "unspecified")


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class StatusChange(BaseModel):
    model_config = KEEP

    status: Status
    at: str


class Event(BaseModel):
    """A change the shop is told about, in the order it happened (its ``seq``, from 1, no
    gaps): the job's status changed, or an artifact was stored (each page as it lands, each
    PDF). Written with the record change it describes (:mod:`steps.core.records`). It carries
    ids, statuses and keys, never the child's details."""

    model_config = KEEP

    seq: int
    type: Literal["status", "artifact"]
    at: str
    status: str | None = None          # type status
    kind: str | None = None            # type artifact: its kind, page, key and sha256
    page: int | None = None
    key: str | None = None
    sha256: str | None = None


class Artifact(BaseModel):
    model_config = KEEP

    kind: ArtifactKind
    page: int | None = None
    key: str
    sha256: str
    size: int
    inputs_sha256: str | None = None   # what it was made from (steps.core.artifacts.fingerprint)


class JobError(BaseModel):
    model_config = KEEP

    step: str
    reason: str
    message: str


class QueuedStage(BaseModel):
    """A stage asked for and not yet done (``bookjob worker``'s queue: the old Celery task).
    The job keeps the status the old clients know until a worker starts the stage."""

    model_config = KEEP

    stage: str                         # analyze | prepay | postpay | full
    at: str                            # when it was asked for: the queue's order
    params: dict[str, str] = Field(default_factory=dict)  # the engine's (never the child)
    attempts: int = 0                  # deliveries so far (a worker that died counts one)
    max_attempts: int = 3              # then the job is failed with the reason


class JobRecord(BaseModel):
    model_config = KEEP

    schema_version: int = 1            # absent: a record from before versioning
    job_id: str
    book_id: str | None = None
    book_uri: str
    photo_key: str
    photo_sha256: str | None = None    # the photo the analysis was made from
    photo_source: str | None = None    # where the photo was copied from (s3://…, https://…)
    child_name: str
    child_age: int | None
    child_gender: str
    language: str = ""                 # the edition (a language of the book); "" = the book's first
    dedication: str = ""               # the parent's words for {dedication}; "" = none
    status: Status = Status.ANALYZING
    status_history: list[StatusChange] = Field(default_factory=list)
    analysis: Analysis | None = None
    artifacts: list[Artifact] = Field(default_factory=list)
    error: JobError | None = None
    queued: QueuedStage | None = None  # a stage waiting for a worker (or running on one)
    events: list[Event] = Field(default_factory=list)   # what the shop is told, in order
    notify_url: str = ""               # where its events are delivered ("": the sender's own)
    created_at: str = Field(default_factory=now)
    updated_at: str = Field(default_factory=now)

    @model_validator(mode="before")
    @classmethod
    def _old_generation_retry(cls, data: Any) -> Any:
        """Records written before regeneration moved into the analysis kept it at the top."""
        if isinstance(data, dict) and "generation_retry" in data:
            data = dict(data)
            old = data.pop("generation_retry")
            if isinstance(data.get("analysis"), dict) and "generation_retry" not in data["analysis"]:
                data["analysis"] = {**data["analysis"], "generation_retry": old}
        return data

    @property
    def generation_retry(self) -> GenerationRetry:
        """The analysis's regeneration state (a detached empty one before any analysis)."""
        return self.analysis.generation_retry if self.analysis is not None else GenerationRetry()

    def move_to(self, status: Status) -> None:
        """Change status if the flow allows it; clears a previous error when resuming."""
        if status not in TRANSITIONS[self.status]:
            raise InvalidTransition(
                f"job {self.job_id} is {self.status.value}; it cannot become {status.value}")
        self.status = status
        self.status_history.append(StatusChange(status=status, at=now()))
        if status not in (Status.ANALYSIS_FAILED, Status.GENERATION_FAILED):
            self.error = None

    def reached(self, status: Status) -> bool:
        return any(change.status == status for change in self.status_history)

    def add_artifact(self, artifact: Artifact) -> None:
        """Record an artifact; the same (kind, page) replaces the old record."""
        self.artifacts = [a for a in self.artifacts
                          if (a.kind, a.page) != (artifact.kind, artifact.page)]
        self.artifacts.append(artifact)
        self.artifacts.sort(key=lambda a: (a.page or 0, a.kind))

    def artifact(self, kind: str, page: int | None = None) -> Artifact | None:
        return next((a for a in self.artifacts if (a.kind, a.page) == (kind, page)), None)


class InvalidTransition(Exception):
    """A status change the flow does not allow."""


class JobNotFound(Exception):
    pass


# ---- a new record ----------------------------------------------------------------------


def new_record(job_id: str, book_uri: str, photo_key: str, name: str, age: str | int,
               gender: str, photo_source: str | None = None, language: str = "",
               dedication: str = "") -> JobRecord:
    """A new job's record as the analyze step makes it (fields checked there, after it exists,
    so that bad ones are recorded as the job's failure)."""
    try:
        child_age = parse_age(age)
    except InputError:
        child_age = None
    return JobRecord(schema_version=SCHEMA_VERSION, job_id=job_id, book_uri=book_uri,
                     photo_key=photo_key, child_name=str(name).strip()[:200], child_age=child_age,
                     child_gender=gender, photo_source=photo_source, language=language,
                     dedication=dedication)


# ---- validation of what a user types ----------------------------------------------------

JOB_ID = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,61}[A-Za-z0-9])?")
MAX_NAME = 40


def validate_job_id(job_id: str) -> str:
    if not JOB_ID.fullmatch(job_id or "") or ".." in job_id:
        raise InputError(
            "bad_job_id",
            f"Job id {job_id[:80]!r} is not allowed: use 1-63 letters, digits, '.', '_' or '-', "
            "starting and ending with a letter or digit.")
    return job_id


def validate_name(name: str) -> str:
    name = unicodedata.normalize("NFC", name or "").strip()
    if any(unicodedata.category(c) in ("Cc", "Cf", "Cs", "Co", "Zl", "Zp") for c in name):
        raise InputError("bad_name", "The child's name contains control or invisible characters; "
                                     "type the name as plain letters.")
    if not 1 <= len(name) <= MAX_NAME:
        raise InputError("bad_name", f"The child's name must be 1-{MAX_NAME} characters long "
                                     f"(got {len(name)}); give a shorter or non-empty name.")
    return name


def parse_age(age: str | int) -> int:
    try:
        value = int(str(age).strip())
    except ValueError:
        raise InputError("bad_age", f"Age {str(age)[:20]!r} is not a whole number; "
                                    "give the child's age in years, 0-17.") from None
    if not 0 <= value <= 17:
        raise InputError("bad_age", f"Age {value} is outside 0-17; "
                                    "give the child's age in years, 0-17.")
    return value


def validate_gender(gender: str) -> str:
    if gender not in GENDERS:
        raise InputError("bad_gender", f"Gender {gender[:20]!r} is not one of "
                                       f"{', '.join(GENDERS)}; pick one of those.")
    return gender
