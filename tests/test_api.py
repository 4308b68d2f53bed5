"""The shop backend's Python API (pipeline/api.py), end to end: on the local engine (a
background `bookjob run`, real steps) and against the Argo Server double (tests/doubles/cluster.py,
checked against Argo's swagger); and `bookjob submit` refusing a second workflow of a job."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from pipeline.api import BookJobError, BookJobs
from pipeline.lease import EXIT_BUSY
from steps.core.analysis import Analysis
from steps.core.job import Artifact, JobRecord, Status
from steps.core.records import create_job, read_job, update_job
from steps.core.store import S3Store
from tests.doubles.cluster import ArgoServerDouble
from tests.helpers import DEMO_PHOTO, ROOT, make_book

TOKEN = "api-token"
CHILD_PARAMETERS = {"photo-key", "child-name", "child-age", "child-gender", "dedication",
                    "language"}


@pytest.fixture
def small(tmp_path) -> Path:
    return make_book(tmp_path / "book", size=(600, 400))


@pytest.mark.slow
def test_the_shop_flow_on_one_machine(small, tmp_path):
    """BookJobs queues each stage in the job's record; `bookjob worker` runs them."""
    from tests.test_worker import WorkerProcess

    store = tmp_path / "store"
    jobs = BookJobs(store=str(store))
    worker = WorkerProcess(store, "--slots", "1", "--port", "0")
    try:
        submitted = jobs.analyse("shop-1", book=str(small), photo=str(DEMO_PHOTO), name="Mia",
                                 age=5, language="en", dedication="For Mia")
        assert submitted.workflow is None and submitted.stage == "analyze"
        analysed = submitted.wait(600)
        assert analysed.status == "analyzing_completed" and analysed.artifacts == []
        assert analysed.record["dedication"] == "For Mia"

        assert jobs.generate("shop-1", "prepay").wait(600).status == "prepay_ready"
        ready = jobs.status("shop-1")
        pages = {a.page: a for a in ready.artifacts if a.kind == "page_png"}
        assert sorted(pages) == [1, 2]
        for artifact in ready.artifacts:  # local store: file paths, as recorded
            assert hashlib.sha256(Path(artifact.url).read_bytes()).hexdigest() == artifact.sha256

        assert jobs.regenerate("shop-1", pages=[1]).wait(600).status == "prepay_ready"
        again = jobs.status("shop-1")
        assert again.regenerations == 1
        history = [c["status"] for c in again.record["status_history"]]
        assert history.count("analyzing") == 1   # analysed once, at the start

        # a second call while one is queued or runs: refused at once, the job unharmed
        first = jobs.generate("shop-1", "postpay")
        with pytest.raises(BookJobError) as busy:
            jobs.generate("shop-1", "postpay")
        assert busy.value.code == EXIT_BUSY
        assert first.wait(600).status == "completed"
        assert jobs.wait("shop-1", until="completed", timeout=5).status == "completed"
    finally:
        assert worker.stop() == 0, worker.text()

    with pytest.raises(BookJobError) as missing:
        jobs.status("nobody")
    assert missing.value.code == 1


@pytest.fixture
def argo(monkeypatch):
    monkeypatch.setenv("ARGO_SECURE", "false")
    for name in ("ARGO_SERVER", "ARGO_TOKEN", "ARGO_NAMESPACE"):
        monkeypatch.delenv(name, raising=False)
    with ArgoServerDouble(token=TOKEN) as double:
        yield double
    assert double.problems == [], "bodies that do not match Argo's swagger"


def posted(argo) -> list[dict]:
    """The parameters of each workflow created, by name."""
    return [{p["name"]: p["value"] for p in body["workflow"]["spec"]["arguments"]["parameters"]}
            for method, path, body in argo.requests if method == "POST"]


def analysed_record(store: S3Store, job: str, status: Status) -> None:
    photo = DEMO_PHOTO.read_bytes()
    store.write(f"uploads/{job}/photo.jpg", photo)
    analysis = Analysis(skin_tone="light", hair_color="brown", hair_style="wavy", eye_color="blue",
                        source="heuristic", photo_size=(10, 10), face_box=(0, 0, 5, 5),
                        left_eye=(1, 1), right_eye=(3, 1))
    create_job(store, JobRecord(job_id=job, book_uri="s3://books/forest-friends",
                                photo_key=f"uploads/{job}/photo.jpg", child_name="Mia",
                                child_age=5, child_gender="girl", status=status,
                                analysis=analysis,
                                photo_sha256=hashlib.sha256(photo).hexdigest()))


def upload_book(bucket: str, folder: Path) -> str:
    """The test book in the S3 endpoint (a cluster reads its books there)."""
    import boto3

    client = boto3.client("s3")
    for path in folder.rglob("*"):
        if path.is_file():
            client.put_object(Bucket=bucket, Key=f"books/small/{path.relative_to(folder)}",
                              Body=path.read_bytes())
    return f"s3://{bucket}/books/small"


def test_the_shop_flow_against_the_argo_server(argo, bucket, portrait, small):
    uri = f"s3://{bucket}/shop"
    BOOK = upload_book(bucket, small)
    jobs = BookJobs(store=uri, server=f"127.0.0.1:{argo.port}", token=TOKEN, namespace="books")
    started = jobs.analyse("shop-2", book=BOOK, photo=str(portrait), name="Mia", age=5)
    assert started.workflow.startswith("book-job-") and started.ahead is None
    params = posted(argo)[-1]
    assert params["stage"] == "analyze" and params["job-id"] == "shop-2"
    assert params["skip-analysis"] == "false"
    # the child is in the job's record, created before the workflow; the workflow carries none
    assert not CHILD_PARAMETERS & set(params), params
    record = read_job(S3Store(uri), "shop-2")
    assert (record.child_name, record.child_age, record.status) == ("Mia", 5, Status.ANALYZING)
    assert S3Store(uri).read(record.photo_key) == portrait.read_bytes()

    # the first workflow has not ended: a second one for the job is refused
    with pytest.raises(BookJobError) as busy:
        jobs.generate("shop-2", "prepay")
    assert busy.value.code == EXIT_BUSY and started.workflow in busy.value.message
    assert len(posted(argo)) == 1

    # bad input is refused before any workflow, as on one machine
    for job_id, fields in (("shop-age", {"age": 42}), ("shop-book", {"book": f"s3://{bucket}/none"})):
        with pytest.raises(BookJobError) as refused:
            jobs.analyse(job_id, **{"book": BOOK, "photo": str(portrait), "name": "Mia",
                                    "age": 5, **fields})
        assert refused.value.code == 3
    assert len(posted(argo)) == 1


def test_regeneration_on_a_cluster_runs_no_analysis_pod(argo, bucket):
    uri = f"s3://{bucket}/shop"
    store = S3Store(uri)
    analysed_record(store, "shop-3", Status.PREPAY_READY)
    jobs = BookJobs(store=uri, server=f"127.0.0.1:{argo.port}", token=TOKEN, namespace="books")
    started = jobs.regenerate("shop-3", pages=[1])
    params = posted(argo)[-1]
    assert params["stage"] == "prepay" and params["skip-analysis"] == "true"
    assert params["randomize-seed"] == "true" and started.workflow
    retry = read_job(store, "shop-3").generation_retry
    assert retry.randomize_seed and retry.pages == [1]    # the plan step draws the seeds

    # status: artifact URLs are presigned and fetch the object
    def add(record: JobRecord) -> None:
        record.add_artifact(Artifact(kind="page_png", page=1, key="layout/shop-3/pages/page_01.png",
                                     sha256=hashlib.sha256(b"png").hexdigest(), size=3))

    store.write("layout/shop-3/pages/page_01.png", b"png")
    update_job(store, "shop-3", add)
    status = jobs.status("shop-3", url_ttl_s=600)
    [page] = status.artifacts
    assert "Signature" in page.url or "X-Amz-Signature" in page.url
    assert urllib.request.urlopen(page.url, timeout=10).read() == b"png"
    assert [w["workflow"] for w in status.workflows] == [started.workflow]


def test_a_terminated_workflow_is_reconciled_as_interrupted(argo, bucket):
    uri = f"s3://{bucket}/shop"
    store = S3Store(uri)
    analysed_record(store, "shop-4", Status.ANALYZING_COMPLETED)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("ARGO_")},
           "PYTHONPATH": str(ROOT), "ARGO_SERVER": f"127.0.0.1:{argo.port}", "ARGO_SECURE": "false",
           "ARGO_TOKEN": TOKEN, "ARGO_NAMESPACE": "books"}

    def bookjob(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "pipeline.cli", *args], capture_output=True,
                              text=True, timeout=120, env=env, cwd=ROOT)

    first = bookjob("submit", "--job-id", "shop-4", "--store", uri, "--json")
    assert first.returncode == 0, first.stderr
    name = json.loads(first.stdout)["workflow"]
    again = bookjob("submit", "--job-id", "shop-4", "--store", uri)
    assert again.returncode == EXIT_BUSY and name in again.stderr
    replaced = bookjob("submit", "--job-id", "shop-4", "--store", uri, "--replace", "--json")
    assert replaced.returncode == 0, replaced.stderr
    assert any(m == "PUT" and p.endswith(f"/{name}/terminate") for m, p, _ in argo.requests)
    second = json.loads(replaced.stdout)["workflow"]

    # the job is in progress while its workflow is: status leaves it as it is
    update_job(store, "shop-4", lambda r: r.move_to(Status.PREPAY_GENERATING))
    shown = json.loads(bookjob("status", "shop-4", "--store", uri, "--json").stdout)
    assert shown["status"] == "prepay_generating"
    # ... then that one is terminated too (Argo skips the exit handler): interrupted
    argo_terminate = bookjob("submit", "--job-id", "shop-4", "--store", uri, "--replace")
    assert argo_terminate.returncode == 0
    third = [w for w in argo.workflows if w not in (name, second)][0]
    argo.phases_of[third] = [("Failed", "Stopped with strategy 'Terminate'")]
    argo.workflows[third]["status"] = {"phase": "Failed"}
    shown = json.loads(bookjob("status", "shop-4", "--store", uri, "--json").stdout)
    assert shown["status"] == "generation_failed"
    assert shown["error"]["reason"] == "interrupted" and "terminated" in shown["error"]["message"]
