"""Writing a job's outputs: store the bytes, describe them for the job record.

Each artifact carries ``inputs_sha256``, a :func:`fingerprint` of everything it was made from
(input bytes, manifest entries, child fields, the code that made it). A step re-run with the
same inputs finds the artifact with :func:`reuse` and skips the work, saying so on stderr
(``page 3: unchanged, skipped``); the local engine shows those lines under the step.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import sys
from functools import cache
from pathlib import Path, PurePosixPath

from pydantic import BaseModel

from steps.core import faults
from steps.core.job import Artifact, ArtifactKind, JobRecord
from steps.core.records import update_job
from steps.core.store import Store
from steps.protocol import unchanged_line


def fingerprint(*parts: object) -> str:
    """A sha256 over the inputs of an output: bytes by their hash, pydantic models and anything
    else as canonical JSON. Same parts in the same order, same fingerprint, on any machine."""
    digest = hashlib.sha256()
    for part in parts:
        if isinstance(part, (bytes, bytearray)):
            blob = b"b" + hashlib.sha256(part).digest()
        elif isinstance(part, BaseModel):
            blob = b"m" + part.model_dump_json().encode()
        else:
            blob = b"j" + json.dumps(part, sort_keys=True, ensure_ascii=False,
                                     separators=(",", ":")).encode()
        digest.update(len(blob).to_bytes(8, "big") + blob)
    return digest.hexdigest()


@cache
def code_version(*modules: str) -> str:
    """A hash of the source of ``modules`` (those that exist): new code, new inputs."""
    digest = hashlib.sha256()
    for name in modules:
        try:
            spec = importlib.util.find_spec(name)
        except ModuleNotFoundError:
            continue
        if spec is not None and spec.origin and Path(spec.origin).is_file():
            digest.update(name.encode() + b"\0" + Path(spec.origin).read_bytes())
    return digest.hexdigest()


def unchanged(label: str) -> None:
    print(unchanged_line(label), file=sys.stderr, flush=True)


def reuse(store: Store, job: JobRecord, kind: str, page: int | None,
          inputs_sha256: str) -> Artifact | None:
    """The recorded (kind, page) artifact if it was made from ``inputs_sha256`` and its object
    is still in the store with the recorded sha256; None if it must be made (again)."""
    old = job.artifact(kind, page)
    if old is None or old.inputs_sha256 != inputs_sha256:
        return None
    try:
        data = store.read(old.key)
    except FileNotFoundError:
        return None
    if hashlib.sha256(data).hexdigest() != old.sha256:
        return None
    unchanged(f"page {page}" if page is not None else PurePosixPath(old.key).name)
    return old


def put(store: Store, key: str, data: bytes, kind: ArtifactKind, page: int | None = None,
        inputs_sha256: str | None = None) -> Artifact:
    store.write(key, data)
    faults.point("put")
    return Artifact(kind=kind, page=page, key=key, sha256=hashlib.sha256(data).hexdigest(),
                    size=len(data), inputs_sha256=inputs_sha256)


def record(store: Store, job_id: str, artifacts: list[Artifact]) -> JobRecord:
    """Add artifacts to the job record in one compare-and-swap update."""

    def add(job: JobRecord) -> None:
        for artifact in artifacts:
            job.add_artifact(artifact)

    faults.point("record")
    return update_job(store, job_id, add)


def export(directory: str, artifacts: list[Artifact], store: Store) -> None:
    """Also copy outputs to a local folder (``--export``), where Argo picks them up as
    artifacts the UI previews. An empty ``directory`` means no export."""
    if not directory:
        return
    Path(directory).mkdir(parents=True, exist_ok=True)
    for artifact in artifacts:
        (Path(directory) / Path(artifact.key).name).write_bytes(store.read(artifact.key))
