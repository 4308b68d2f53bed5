"""Writing a job's outputs: store the bytes, describe them for the job record."""

from __future__ import annotations

import hashlib
from pathlib import Path

from steps.job import Artifact, JobRecord, update_job
from steps.store import Store


def put(store: Store, key: str, data: bytes, kind: str, page: int | None = None) -> Artifact:
    store.write(key, data)
    return Artifact(kind=kind, page=page, key=key, sha256=hashlib.sha256(data).hexdigest(),
                    size=len(data))


def record(store: Store, job_id: str, artifacts: list[Artifact]) -> JobRecord:
    """Add artifacts to the job record in one compare-and-swap update."""

    def add(job: JobRecord) -> None:
        for artifact in artifacts:
            job.add_artifact(artifact)

    return update_job(store, job_id, add)


def export(directory: str, artifacts: list[Artifact], store: Store) -> None:
    """Also copy outputs to a local folder (``--export``), where Argo picks them up as
    artifacts the UI previews. An empty ``directory`` means no export."""
    if not directory:
        return
    Path(directory).mkdir(parents=True, exist_ok=True)
    for artifact in artifacts:
        (Path(directory) / Path(artifact.key).name).write_bytes(store.read(artifact.key))
