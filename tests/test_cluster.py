"""`bookjob submit | watch | logs | status` against an Argo Server and a Kubernetes API, both
test doubles over real HTTP (tests/cluster_doubles.py) checked against Argo's published API."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from steps.core.job import JobRecord
from steps.core.records import create_job, read_job
from steps.core.store import S3Store
from tests.doubles.cluster import DEFAULT_PHASES, SEMAPHORE_WAIT, ArgoServerDouble, KubernetesDouble, kubeconfig

TOKEN = "s3cr3t"


def bookjob(*args: str, env: dict[str, str], code: int | None = 0) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("ARGO_", "KUBE"))}
    done = subprocess.run([sys.executable, "-m", "pipeline.cli", *args], capture_output=True,
                          text=True, timeout=120, env={**clean, **env})
    if code is not None:
        assert done.returncode == code, done.stdout + done.stderr
    return done


@pytest.fixture
def argo():
    with ArgoServerDouble(token=TOKEN) as double:
        yield double
    assert double.problems == [], "bodies that do not match Argo's swagger"


@pytest.fixture
def argo_env(argo) -> dict[str, str]:
    return {"ARGO_SERVER": f"127.0.0.1:{argo.port}", "ARGO_SECURE": "false",
            "ARGO_TOKEN": TOKEN, "ARGO_NAMESPACE": "books"}


@pytest.fixture
def s3_store(bucket) -> str:
    return f"s3://{bucket}/bookjob"


def submit_args(store: str, portrait, *extra: str) -> list[str]:
    return ["submit", "s3://books/forest-friends", "--photo", str(portrait), "--name", "Олена",
            "--age", "5", "--gender", "girl", "--job-id", "olena-1", "--store", store, *extra]


def test_submit_creates_a_workflow_from_the_template(argo, argo_env, s3_store, portrait):
    done = bookjob(*submit_args(s3_store, portrait, "--stage", "full", "--pages-per-task", "4",
                                "--json"), env=argo_env)
    answer = json.loads(done.stdout)
    assert answer["workflow"].startswith("book-job-") and answer["job_id"] == "olena-1"
    assert answer["ui"] == f"http://127.0.0.1:{argo.port}/workflows/books/{answer['workflow']}"
    method, path, body = next(r for r in argo.requests if r[0] == "POST")
    assert path == "/api/v1/workflows/books"
    workflow = body["workflow"]
    assert workflow["spec"]["workflowTemplateRef"] == {"name": "book-job"}
    params = {p["name"]: p["value"] for p in workflow["spec"]["arguments"]["parameters"]}
    assert params["job-id"] == "olena-1" and params["stage"] == "full"
    assert params["pages-per-task"] == "4"
    assert params["store"] == s3_store
    assert "analyzer" not in params  # the template's default (the GPU backend) applies
    assert workflow["metadata"]["labels"]["bookjob/job-id"] == "olena-1"
    assert "olena-1" in workflow["metadata"]["annotations"]["workflows.argoproj.io/title"]
    # the photo and the record went to the store before the workflow was created
    assert S3Store(s3_store).read("uploads/olena-1/photo.png") == portrait.read_bytes()
    record = read_job(S3Store(s3_store), "olena-1")
    assert (record.child_name, record.child_age, record.child_gender) == ("Олена", 5, "girl")
    assert record.photo_key == "uploads/olena-1/photo.png"


CHILD_PARAMETERS = ("photo-key", "child-name", "child-age", "child-gender", "dedication")


def test_a_submitted_workflow_carries_no_childs_details(argo, argo_env, s3_store, portrait,
                                                        bucket):
    """The Workflow the cluster client creates (as the Argo Server receives it) holds the job
    id, the stage and settings; the child is read from the record by every step. The UI title
    shows the job id and the book's title (read from its manifest), set in the Workflow's
    spec.workflowMetadata as well: the controller writes the template's workflowMetadata
    annotations over the Workflow's own (argo-workflows v4.1.2,
    workflow/controller/operator.go updateWorkflowMetadata), and in that merge the Workflow's
    spec wins over the template's (workflow/util/merge.go JoinWorkflowSpec)."""
    import boto3

    from tests.helpers import DEMO

    books = boto3.client("s3")
    books.put_object(Bucket=bucket, Key="books/demo/book.yaml",
                     Body=(DEMO / "book" / "book.yaml").read_bytes())
    dedication = "Для Олени від бабусі"
    bookjob("submit", f"s3://{bucket}/books/demo", "--photo", str(portrait), "--name", "Олена",
            "--age", "5", "--gender", "girl", "--dedication", dedication, "--language", "uk",
            "--job-id", "olena-2", "--store", s3_store, env=argo_env)
    [body] = [b for m, _, b in argo.requests if m == "POST"]
    text = json.dumps(body, ensure_ascii=False)
    for secret in ("Олена", dedication, "uploads/olena-2", "girl"):
        assert secret not in text, f"{secret!r} is in the workflow"
    params = {p["name"] for p in body["workflow"]["spec"]["arguments"]["parameters"]}
    assert not params & set(CHILD_PARAMETERS)
    annotations = body["workflow"]["spec"]["workflowMetadata"]["annotations"]
    assert annotations["workflows.argoproj.io/title"] == "olena-2: Forest Friends (prepay)"
    assert body["workflow"]["metadata"]["annotations"] == annotations
    record = read_job(S3Store(s3_store), "olena-2")
    assert (record.dedication, record.language) == (dedication, "uk")


@pytest.mark.parametrize("source", ["compiled", "chart"])
def test_the_templates_give_the_child_parameters_no_values(source):
    """Left out by a submitted workflow, a child parameter takes the template's default: empty
    in the compiled template and in the chart's, so nothing of a child comes from there."""
    import yaml

    from tests.helpers import ROOT

    if source == "compiled":
        template = yaml.safe_load((ROOT / "argo-templates" / "book-job.yaml").read_text())
    else:
        from tests.test_helm import workflow_template

        template = workflow_template("default")
    defaults = {p["name"]: p.get("value") for p in template["spec"]["arguments"]["parameters"]}
    assert {name: defaults[name] for name in CHILD_PARAMETERS} == dict.fromkeys(CHILD_PARAMETERS, "")


def test_submit_wait_follows_pending_to_success(argo, argo_env, s3_store, portrait):
    done = bookjob(*submit_args(s3_store, portrait, "--wait", "--poll", "0.05"), env=argo_env)
    assert "Pending" in done.stderr and SEMAPHORE_WAIT in done.stderr
    assert "Running" in done.stderr
    assert done.stdout.strip().endswith("Succeeded")


def test_watch_a_failed_workflow_exits_1(argo_env, s3_store, portrait):
    with ArgoServerDouble(token=TOKEN, phases=[("Running", None), ("Failed", "child 'analyze' failed")]) as argo:
        env = {**argo_env, "ARGO_SERVER": f"127.0.0.1:{argo.port}"}
        name = json.loads(bookjob(*submit_args(s3_store, portrait, "--json"), env=env).stdout)["workflow"]
        done = bookjob("watch", name, "--poll", "0.05", env=env, code=1)
        assert "Failed" in done.stdout and "child 'analyze' failed" in done.stderr
    assert argo.problems == []


def test_watch_times_out_while_pending(argo_env, s3_store, portrait):
    with ArgoServerDouble(token=TOKEN, phases=[("Pending", SEMAPHORE_WAIT)]) as argo:
        env = {**argo_env, "ARGO_SERVER": f"127.0.0.1:{argo.port}"}
        name = json.loads(bookjob(*submit_args(s3_store, portrait, "--json"), env=env).stdout)["workflow"]
        done = bookjob("watch", name, "--poll", "0.1", "--timeout", "0.5", env=env, code=1)
        assert "still Pending" in done.stderr and "Traceback" not in done.stderr


def test_logs(argo, argo_env, s3_store, portrait):
    name = json.loads(bookjob(*submit_args(s3_store, portrait, "--json"), env=argo_env).stdout)["workflow"]
    done = bookjob("logs", name, env=argo_env)
    assert f"{name}-analyze-1: analyze: face found" in done.stdout.splitlines()


def test_status_merges_the_record_with_the_workflow_phase(argo, argo_env, s3_store, portrait):
    name = json.loads(bookjob(*submit_args(s3_store, portrait, "--json"), env=argo_env).stdout)["workflow"]
    create_job(S3Store(s3_store), JobRecord(
        job_id="olena-1", book_uri="s3://books/forest-friends", photo_key="uploads/olena-1/photo.png",
        child_name="Олена", child_age=5, child_gender="girl"))
    document = json.loads(bookjob("status", "olena-1", "--store", s3_store, "--json", env=argo_env).stdout)
    assert document["status"] == "analyzing"
    assert [w["workflow"] for w in document["workflows"]] == [name]
    assert document["workflows"][0]["phase"] in {p for p, _ in DEFAULT_PHASES if p} | {"Pending"}
    human = bookjob("status", "olena-1", "--store", s3_store, env=argo_env).stdout
    assert f"workflow {name}:" in human


def test_a_wrong_token_is_a_clear_error(argo, argo_env, s3_store, portrait):
    done = bookjob(*submit_args(s3_store, portrait), env={**argo_env, "ARGO_TOKEN": "nope"}, code=1)
    assert "token not valid" in done.stderr and "Traceback" not in done.stderr


def test_submit_needs_a_reachable_store(argo_env, portrait, tmp_path):
    done = bookjob(*submit_args(str(tmp_path / "local"), portrait), env=argo_env, code=2)
    assert "s3://" in done.stderr


def test_kubernetes_transport(s3_store, portrait, tmp_path):
    with KubernetesDouble(token=TOKEN) as k8s:
        env = {"KUBECONFIG": kubeconfig(tmp_path / "kubeconfig", k8s.port, TOKEN)}
        k = ["--transport", "kubernetes", "--namespace", "books"]
        done = bookjob(*submit_args(s3_store, portrait, *k, "--wait", "--poll", "0.05"), env=env)
        assert "Succeeded" in done.stdout and SEMAPHORE_WAIT in done.stderr
        method, path, body = next(r for r in k8s.requests if r[0] == "POST")
        assert path == "/apis/argoproj.io/v1alpha1/namespaces/books/workflows"
        assert body["kind"] == "Workflow" and body["spec"]["workflowTemplateRef"]["name"] == "book-job"
        name = next(iter(k8s.workflows))
        logs = bookjob("logs", name, *k, env=env).stdout
        assert f"{name}-analyze-1: analyze: face found" in logs
        # a pod that has not started (400 "is waiting to start") is said so, not an abort
        assert f"{name}-render-2: (not started yet: no log)" in logs
        create_job(S3Store(s3_store), JobRecord(
            job_id="olena-1", book_uri="s3://books/forest-friends",
            photo_key="uploads/olena-1/photo.png", child_name="Олена", child_age=5,
            child_gender="girl"))
        status = json.loads(bookjob("status", "olena-1", "--store", s3_store, *k, "--json",
                                    env=env).stdout)
        assert status["workflows"][0]["workflow"] == name
    assert k8s.problems == [], "posted Workflow does not match Argo's schema"


def test_watch_shows_queue_backoff_and_progress():
    """Node fields as the controller writes them (operator.go): a node queued for the GPU
    semaphore is Pending with "Waiting for … lock" and synchronizationStatus.waiting
    (markNodeWaitingForLock); a Retry node says "Backoff for …" between attempts
    (processNodeRetries); a running pod has progress "N/M" (from ARGO_PROGRESS_FILE)."""
    from pipeline.cluster import node_lines

    lock = "books/ConfigMap/bookjob-gpu-semaphore/gpu-pods"
    workflow = {"status": {"nodes": {
        "a": {"id": "a", "displayName": "analyze", "type": "Retry", "phase": "Pending",
              "startedAt": "2026-01-01T10:00:00Z", "synchronizationStatus": {"waiting": lock},
              "message": f"Waiting for {lock} lock. Lock status: 0/1"},
        "b": {"id": "b", "displayName": "backgrounds", "type": "Retry", "phase": "Running",
              "startedAt": "2026-01-01T10:00:01Z", "message": "Backoff for 15 seconds"},
        "c": {"id": "c", "displayName": "render(0)", "type": "Pod", "phase": "Running",
              "startedAt": "2026-01-01T10:00:02Z", "progress": "2/5"},
        "d": {"id": "d", "displayName": "render", "type": "Retry", "phase": "Running",
              "startedAt": "2026-01-01T10:00:02Z"},
        "e": {"id": "e", "displayName": "prepay", "type": "DAG", "phase": "Running",
              "startedAt": "2026-01-01T09:00:00Z"}}}}
    assert node_lines(workflow) == [
        f"analyze: Queued — Waiting for {lock} lock. Lock status: 0/1",
        "backgrounds: Running — Backoff for 15 seconds",
        "render(0): Running 2/5"]
