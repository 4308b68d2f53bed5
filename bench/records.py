"""How long `bookjob jobs --status prepay_ready` takes over many jobs, on each records backend.

``python -m bench.records [JOBS]`` (and ``make bench``, as its ``records`` section) fills each
backend with JOBS records (default 10,000: a fifth of them prepay_ready, each with ten
artifacts and an analysis, as a real job's), then times the command as a user types it (a
fresh interpreter, the CLI's imports included) and the query alone (``Records.list`` in this
process), best of three. PostgreSQL is a throwaway server (tests/postgres.py); without one the
backend is left out with a note.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from steps.core.analysis import Analysis
from steps.core.job import SCHEMA_VERSION, Artifact, JobRecord, Status, StatusChange
from steps.core.records import JobQuery, open_records
from steps.core.records_base import dump
from steps.core.store import LocalStore, job_key

ROOT = Path(__file__).resolve().parents[1]
STATUSES = [Status.COMPLETED, Status.PREPAY_READY, Status.COMPLETED, Status.POSTPAY_GENERATING,
            Status.ANALYZING_COMPLETED]


def records(count: int) -> list[JobRecord]:
    analysis = Analysis(skin_tone="light", hair_color="brown", hair_style="wavy", eye_color="blue",
                        source="heuristic", photo_size=(600, 600), face_box=(100, 100, 300, 300),
                        left_eye=(180, 200), right_eye=(320, 200))
    start = datetime(2026, 11, 1, tzinfo=UTC)
    made = []
    for n in range(count):
        at = (start + timedelta(seconds=60 * n)).isoformat(timespec="milliseconds")
        at = at.replace("+00:00", "Z")
        status = STATUSES[n % len(STATUSES)]
        pages = [Artifact(kind=kind, page=p, key=f"layout/order-{n}/pages/page_{p:02d}{s}.png",
                          sha256="ab" * 32, size=900_000, inputs_sha256="cd" * 32)
                 for p in range(1, 6) for kind, s in (("page_bg_png", "_bg"), ("page_png", ""))]
        made.append(JobRecord(
            schema_version=SCHEMA_VERSION, job_id=f"order-{n}", book_id="forest-friends",
            book_uri="s3://books/forest-friends", photo_key=f"uploads/order-{n}/photo.jpg",
            child_name="Mia", child_age=5, child_gender="girl", status=status,
            status_history=[StatusChange(status=status, at=at)], analysis=analysis,
            artifacts=pages, created_at=at, updated_at=at))
    return made


def fill(url: str, folder: Path, jobs: list[JobRecord]) -> None:
    if url == "store":
        store = LocalStore(folder)
        for record in jobs:
            store.write(job_key(record.job_id), dump(record))
        return
    from sqlalchemy import insert

    from steps.core.migrations import upgrade
    from steps.core.records_sql import SqlRecords, job_artifacts
    from steps.core.records_sql import jobs as table

    upgrade(url)
    backend = SqlRecords.at(url)
    at = datetime.now(UTC)
    with backend.engine.begin() as connection:
        connection.execute(insert(table), [{"id": r.job_id, "version": 1, **backend._row(r)}
                                           for r in jobs])
        connection.execute(insert(job_artifacts), [
            backend._artifact_row(r.job_id, a, at) for r in jobs for a in r.artifacts])


def best(fn, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def measure(url: str, folder: Path, count: int) -> dict:
    fill(url, folder, records(count))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "pipeline.cli", "jobs", "--status", "prepay_ready",
               "--store", str(folder), "--records", url]
    lines: list[int] = []

    def cli() -> None:
        done = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
        lines.append(len(done.stdout.splitlines()) - 1)

    cli_s = best(cli)
    query = JobQuery(statuses=("prepay_ready",))
    found = open_records(LocalStore(folder), url)
    return {"jobs": count, "listed": lines[-1], "cli_s": round(cli_s, 3),
            "query_s": round(best(lambda: found.list(query)), 4)}


def main(count: int = 10_000) -> dict:
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="bookjob-records-bench-") as scratch:
        base = Path(scratch)
        results["store"] = measure("store", base / "store", count)
        results["sqlite"] = measure(f"sqlite:///{base / 'bookjob.db'}", base / "sqlite", count)
        try:
            from tests.postgres import PostgresServer

            server = PostgresServer().start()
        except BaseException as e:  # noqa: BLE001 - pytest.fail's exception: no server here
            results["postgresql"] = {"left_out": str(e)[:200]}
        else:
            try:
                results["postgresql"] = measure(server.database(), base / "pg", count)
            finally:
                server.stop()
    return results


if __name__ == "__main__":
    figures = main(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000)
    print(json.dumps(figures, indent=2))
