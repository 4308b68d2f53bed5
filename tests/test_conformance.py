"""The compiled ``book-job`` template, run by the conformance harness (tests/harness) the way
the workflow controller runs it: the committed argo-templates/book-job.yaml and the template
the Helm chart renders, each step's command a local process against the moto S3 server.

Each controller rule the harness follows cites its source there; the tests below cite the rule
they depend on."""

from __future__ import annotations

import copy
import json
import os
import time
from pathlib import Path

import boto3
import pytest
import yaml

from pipeline.spec import argo_name
from tests.harness import Controller, Unsupported
from tests.harness.expr import eval_depends, eval_retry, eval_when, go_quote, substitute, workflow_failures
from tests.helpers import DEMO_PHOTO, ROOT, make_book
from tests.tools import helm_sdk

COMMITTED = ROOT / "argo-templates" / "book-job.yaml"
SEMAPHORE = {"bookjob-gpu-semaphore": {"gpu-pods": "1"}}


def committed() -> tuple[dict, dict]:
    return yaml.safe_load(COMMITTED.read_text()), SEMAPHORE


def chart_rendered(s3_endpoint: str) -> tuple[dict, dict]:
    """The chart's WorkflowTemplate and ConfigMaps (real Helm), S3 reached through the chart's
    own values (s3.endpoint -> AWS_ENDPOINT_URL_S3 in every step)."""
    helm = helm_sdk()
    values = {"s3": {"endpoint": s3_endpoint, "insecure": True}, "gpu": {"maxConcurrentPods": 1}}
    with helm.Chart.load(ROOT / "helm" / "bookjob") as chart:
        rendered = chart.render(values, name="bookjob", namespace="books", is_install=True)
    docs = [d for source, text in rendered.items() if source.endswith(".yaml")
            for d in yaml.safe_load_all(text) if d and "kind" in d]
    (template,) = [d for d in docs if d["kind"] == "WorkflowTemplate"]
    configmaps = {d["metadata"]["name"]: d["data"] for d in docs if d["kind"] == "ConfigMap"}
    return template, configmaps


@pytest.fixture(params=["committed", "chart"])
def source(request, s3_endpoint):
    return committed() if request.param == "committed" else chart_rendered(s3_endpoint)


@pytest.fixture
def controller(tmp_path, source, s3_endpoint):
    template, configmaps = source

    def make(**kw) -> tuple[Controller, dict]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ARGO_", "BOOKJOB_KILL"))}
        env["PYTHONPATH"] = str(ROOT)
        env.update(kw.pop("env", {}))
        return Controller(tmp_path / "cluster", configmaps, env=env, **kw), copy.deepcopy(template)
    return make


def job(bucket: str, book: Path, job_id: str, stage: str, **extra) -> dict[str, str]:
    """Parameters of a job on the S3 store, with the CPU backends; the photo uploaded."""
    boto3.client("s3").put_object(Bucket=bucket, Key=f"data/uploads/{job_id}/photo.png",
                                  Body=DEMO_PHOTO.read_bytes())
    return {"job-id": job_id, "book": str(book), "stage": stage, "store": f"s3://{bucket}/data",
            "photo-key": f"uploads/{job_id}/photo.png", "child-name": "Mia", "child-age": "5",
            "child-gender": "girl", "analyzer": "heuristic", "analyzer-model": "",
            "face-backend": "classic", "comfyui-url": "", **extra}


def record(bucket: str, job_id: str) -> dict:
    body = boto3.client("s3").get_object(Bucket=bucket, Key=f"data/jobs/{job_id}/job.json")["Body"]
    return json.loads(body.read())


def gpu_pod(run) -> bool:
    t = run.template
    return bool(t.get("nodeSelector") or t.get("synchronization") or t.get("sidecars") or any(
        "nvidia.com/gpu" in c.get("resources", {}).get("limits", {})
        for c in [t["container"], *t.get("sidecars", [])]))


def ran(wf) -> list[str]:
    return sorted(p.node.template_name for p in wf.pods if p.result.phase == "Succeeded")


# --- through the harness -------------------------------------------------------------------

@pytest.mark.slow
def test_full_job_completes(controller, bucket, tmp_path):
    c, template = controller()
    book = make_book(tmp_path / "book", size=(600, 400))
    wf = c.run(template, job(bucket, book, "full1", "full", **{"pages-per-task": "1"}))
    assert wf.phase == "Succeeded", wf.summary()
    rec = record(bucket, "full1")
    assert rec["status"] == "completed"
    kinds = sorted(a["kind"] for a in rec["artifacts"])
    assert kinds.count("page_png") == 4 and "book_pdf" in kinds and "preview_pdf" in kinds
    # one render pod per chunk, the pages' progress reported through ARGO_PROGRESS_FILE
    renders = wf.pods_of("render")
    assert len(renders) == 4 and {p.result.progress for p in renders} == {"1/1"}
    # the face pages (1, 3) were made on CPU pods: classic is no GPU backend (no `faces` pod)
    assert not wf.pods_of("faces")
    assert [p.node.template_name for p in wf.pods if gpu_pod(p)] == ["analyze"]
    assert "book" in wf.pods_of("assemble")[-1].result.artifacts  # the UI's preview copy
    assert wf.by_display(f"{wf.name}.onExit")[0].phase == "Succeeded"


@pytest.mark.slow
def test_a_step_that_keeps_failing_is_named_in_the_record(controller, bucket, tmp_path):
    """backgrounds is killed in every attempt (SIGKILL: exit code 137): retried twice with
    backoff (Retry node message "Backoff for 15 seconds"), then "No more retries left"; the exit
    handler gets {{workflow.failures}} (quoted JSON, random order, DAG and Retry nodes in it)
    and marks the job generation_failed naming backgrounds and exit_137."""
    c, template = controller(env={"BOOKJOB_KILL": "backgrounds:record"})
    book = make_book(tmp_path / "book", size=(600, 400))
    wf = c.run(template, job(bucket, book, "fails1", "prepay"))
    assert wf.phase == "Failed"
    attempts = wf.pods_of("backgrounds")
    assert [p.result.exit_code for p in attempts] == [137, 137, 137]
    (retry,) = [n for n in wf.nodes.values() if n.type == "Retry" and n.template_name == "backgrounds"]
    assert retry.message == "No more retries left"
    failures = wf.globals["workflow.failures"]
    assert failures.startswith('"[{\\"displayName\\"') and failures.endswith(']"')
    rec = record(bucket, "fails1")
    assert rec["status"] == "generation_failed"
    assert rec["error"]["step"] == "backgrounds" and rec["error"]["reason"] == "exit_137"
    assert "exit code 137" in rec["error"]["message"]


@pytest.mark.slow
def test_bad_input_is_not_retried(controller, bucket, tmp_path):
    """Exit 3 (bad input): the retry expression is false — after one backoff wait, as
    processNodeRetries evaluates it only then — and the step's own reason stays in the record."""
    c, template = controller()
    book = make_book(tmp_path / "book", size=(600, 400))
    params = job(bucket, book, "bad1", "analyze")
    boto3.client("s3").put_object(Bucket=bucket, Key="data/uploads/bad1/photo.png", Body=b"not a photo")
    wf = c.run(template, params)
    assert wf.phase == "Failed"
    assert [p.result.exit_code for p in wf.pods_of("analyze")] == [3]
    (retry,) = [n for n in wf.nodes.values() if n.type == "Retry" and n.template_name == "analyze"]
    assert retry.message == "retryStrategy.expression evaluated to false"
    rec = record(bucket, "bad1")
    assert rec["status"] == "analysis_failed" and rec["error"]["step"] == "analyze"
    assert not rec["error"]["reason"].startswith("exit_")   # the step's own reason is kept


@pytest.mark.slow
def test_three_jobs_share_one_gpu_slot_without_timeouts(controller, bucket, tmp_path):
    """One GPU slot (semaphore limit 1), a slow GPU step (3 s), three jobs at once: they queue
    (node Pending, "Waiting for books/ConfigMap/…/gpu-pods lock. Lock status: 0/1") and all
    complete — the template has no `timeout`, and activeDeadlineSeconds counts a pod's run,
    never the queue."""
    c, template = controller(delays={"analyze": 3.0})
    book = make_book(tmp_path / "book", size=(600, 400))
    runs = [c.submit(template, job(bucket, book, f"gpu{i}", "analyze")) for i in range(3)]
    seen_waiting: set[str] = set()
    while any(w.thread.is_alive() for w in runs):
        for w in runs:
            seen_waiting |= {n.message for n in list(w.nodes.values()) if n.waiting_for_lock}
        time.sleep(0.05)
    for w in runs:
        w.join()
        assert w.phase == "Succeeded", w.summary()
    assert any(m.startswith("Waiting for books/ConfigMap/") and m.endswith("lock. Lock status: 0/1")
               for m in seen_waiting), seen_waiting
    spans = sorted((p.started, p.finished) for w in runs for p in w.pods_of("analyze"))
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:])), "GPU pods overlapped"
    for w in runs:
        assert record(bucket, w.parameters["job-id"])["status"] == "analyzing_completed"


@pytest.mark.slow
def test_a_template_timeout_would_fail_a_queued_step(controller, bucket, tmp_path):
    """The other side: with `timeout: 4s` on the GPU step (as the template had before), the
    third job's node fails "timeout" while it waits for the slot (operator.go
    checkTemplateTimeout on a Pending node) — why the template has none."""
    c, template = controller(delays={"analyze": 3.0})
    for t in template["spec"]["templates"]:
        if t["name"] == "analyze":
            t["timeout"] = "4s"
    book = make_book(tmp_path / "book", size=(600, 400))
    runs = [c.submit(template, job(bucket, book, f"old{i}", "analyze")) for i in range(3)]
    for w in runs:
        w.join()
    messages = [n.message for w in runs for n in w.nodes.values() if n.template_name == "analyze"]
    assert "timeout" in messages and sum(w.phase == "Failed" for w in runs) >= 1


def _set(template: dict, name: str, **fields) -> dict:
    for t in template["spec"]["templates"]:
        if t["name"] == name:
            for key, value in fields.items():
                if value is None:
                    t.pop(key, None)
                elif key == "maxDuration":
                    t["retryStrategy"]["backoff"]["maxDuration"] = value
                else:
                    t[key] = value
    return template


@pytest.mark.slow
def test_every_attempt_gets_its_retry_and_its_own_deadline(controller, bucket, tmp_path):
    """A step that runs past its activeDeadlineSeconds (here plan, 1 s) fails with the pod's
    message (kubelet DeadlineExceeded; inferFailedReason takes pod.Status.Message) and is
    retried, each attempt with its own deadline (no backoff.maxDuration window,
    processNodeRetries); after the last, the exit handler marks the job naming the step and
    the message."""
    c, template = controller()
    book = make_book(tmp_path / "book", size=(600, 400))
    assert c.run(template, job(bucket, book, "slow1", "analyze")).phase == "Succeeded"
    c.delays["plan"] = 2.0
    _set(template, "plan", activeDeadlineSeconds=1)
    wf = c.run(template, job(bucket, book, "slow1", "prepay", **{"skip-analysis": "true"}))
    attempts = wf.pods_of("plan")
    assert len(attempts) == 3                                   # limit 2: 1 + 2 retries
    assert {p.result.message for p in attempts} == {
        "Pod was active on the node longer than the specified deadline"}
    rec = record(bucket, "slow1")
    assert rec["status"] == "generation_failed"
    assert (rec["error"]["step"], rec["error"]["reason"]) == ("plan", "workflow_failed")
    assert "longer than the specified deadline" in rec["error"]["message"]


@pytest.mark.slow
def test_a_max_duration_window_would_stop_retries(controller, bucket, tmp_path):
    """The other side: with backoff.maxDuration (the old template's 20m, here 1s) an attempt
    that fails after the window is never retried ("Max duration limit exceeded")."""
    c, template = controller(delays={"analyze": 1.5}, env={"BOOKJOB_KILL": "analyze:update"})
    _set(template, "analyze", maxDuration="1s")
    book = make_book(tmp_path / "book", size=(600, 400))
    wf = c.run(template, job(bucket, book, "window1", "analyze"))
    assert len(wf.pods_of("analyze")) == 1
    (retry,) = [n for n in wf.nodes.values() if n.type == "Retry" and n.template_name == "analyze"]
    assert retry.message == "Max duration limit exceeded"


@pytest.mark.slow
def test_no_face_pages_start_no_gpu_pod(controller, bucket, tmp_path):
    """The default cluster (ComfyUI sidecar, face-backend comfyui) on a job analysed already
    (skip-analysis) whose pass has no face page: plan's GPU list is empty, `faces` is Skipped
    ("Skipped, empty params"), every pod is a CPU pod; no analyze pod either."""
    c, template = controller()
    book = make_book(tmp_path / "book", size=(600, 400))
    first = c.run(template, job(bucket, book, "nofaces", "analyze"))
    assert first.phase == "Succeeded"
    manifest = yaml.safe_load((book / "book.yaml").read_text())
    for page in manifest["pages"]:
        page["needs_face_swap"], _ = False, page.pop("face", None)
    (book / "book.yaml").write_text(yaml.safe_dump(manifest))
    wf = c.run(template, job(bucket, book, "nofaces", "prepay", **{
        "skip-analysis": "true", "face-backend": "comfyui", "comfyui-url": "http://127.0.0.1:9"}))
    assert wf.phase == "Succeeded", wf.summary()
    assert [p.node.template_name for p in wf.pods if gpu_pod(p)] == []
    assert "analyze" not in ran(wf)
    (faces,) = [n for n in wf.nodes.values() if n.display_name == "faces"]
    assert (faces.phase, faces.message) == ("Skipped", "Skipped, empty params")
    assert record(bucket, "nofaces")["status"] == "prepay_ready"


@pytest.mark.slow
def test_stage_analyze_runs_only_analyze_and_skip_analysis_starts_no_analyze_pod(controller, bucket, tmp_path):
    c, template = controller()
    book = make_book(tmp_path / "book", size=(600, 400))
    wf = c.run(template, job(bucket, book, "an1", "analyze"))
    assert wf.phase == "Succeeded" and ran(wf) == ["analyze", "on-exit"]
    assert record(bucket, "an1")["status"] == "analyzing_completed"
    again = c.run(template, job(bucket, book, "an1", "prepay", **{"skip-analysis": "true"}))
    assert again.phase == "Succeeded", again.summary()
    assert "analyze" not in ran(again) and "plan" in ran(again)
    (skipped,) = [n for n in again.nodes.values() if n.template_name == "analyze"]
    assert skipped.phase == "Skipped" and "evaluated false" in skipped.message
    assert record(bucket, "an1")["status"] == "prepay_ready"


@pytest.mark.slow
def test_a_mixed_chunk_sends_only_its_face_pages_to_the_gpu(controller, bucket, tmp_path):
    """The default cluster, face-backend comfyui: prepay pages 1 (face) and 2 (no face) are one
    chunk; page 1 goes to `faces` (GPU: semaphore, GPU node selector, ComfyUI sidecar — here a
    stand-in, the ComfyUI double), page 2 to `backgrounds` on a CPU pod."""
    import contextlib

    from tests.doubles.comfyui import ComfyUIDouble

    double = ComfyUIDouble()
    url = double.start()

    @contextlib.contextmanager
    def sidecar():
        yield
    try:
        c, template = controller(sidecars={"comfyui": sidecar})
        book = make_book(tmp_path / "book", size=(600, 400))
        wf = c.run(template, job(bucket, book, "mixed", "prepay", **{
            "face-backend": "comfyui", "comfyui-url": url}))
    finally:
        double.stop()
    assert wf.phase == "Succeeded", wf.summary()
    (faces,) = wf.pods_of("faces")
    assert gpu_pod(faces) and faces.template["synchronization"]
    args = faces.template["container"]["args"]
    assert args[args.index("--pages") + 1] == "1"
    (backgrounds,) = wf.pods_of("backgrounds")
    assert not gpu_pod(backgrounds)
    assert len(double.received.prompts) == 1           # one face page, one ComfyUI run
    pages = {a["page"] for a in record(bucket, "mixed")["artifacts"] if a["kind"] == "page_bg_png"}
    assert pages == {1, 2}


# --- the harness's own rules, each side ------------------------------------------------------

def test_workflow_failures_is_quoted_json_as_the_controller_makes_it():
    """operator.go: json.Marshal then strconv.Quote; substitution (util/template) splices the
    quoted text in unchanged; no failures is the quoted "null"."""
    nodes = [{"displayName": "backgrounds(0)", "message": 'Error (exit code 1): "bad"\n',
              "templateName": "backgrounds", "phase": "Failed", "podName": "p", "finishedAt": "t"}]
    quoted = workflow_failures(nodes)
    assert quoted.startswith('"[{\\"displayName\\":') and '\\\\\\"bad\\\\\\"' in quoted
    assert json.loads(json.loads(quoted))[0]["message"] == 'Error (exit code 1): "bad"\n'
    assert workflow_failures([]) == '"null"'
    assert workflow_failures([{**nodes[0], "phase": "Succeeded"}]) == '"null"'
    arg = substitute({"args": ["--failures", "{{workflow.failures}}"]}, {"workflow.failures": quoted})
    assert arg["args"][1] == quoted
    assert go_quote("a\x07\x00é\u200b") == '"a\\a\\x00é\\u200b"'


def test_expressions_each_side():
    assert eval_when("'prepay' == 'prepay' || 'a' == 'b'") and not eval_when("'x' != 'x'")
    with pytest.raises(Unsupported):
        eval_when("len(x) > 1")
    scope = {"retries": "0", "lastRetry.exitCode": "3", "lastRetry.status": "Failed",
             "lastRetry.duration": "1", "lastRetry.message": ""}
    expr = "lastRetry.status == 'Error' || asInt(lastRetry.exitCode) != 3"
    assert not eval_retry(expr, scope)
    assert eval_retry(expr, {**scope, "lastRetry.exitCode": "1"})
    assert eval_retry(expr, {**scope, "lastRetry.status": "Error"})
    assert eval_depends("a && b", {"a": "Succeeded", "b": "Skipped"})
    assert not eval_depends("a && b", {"a": "Succeeded", "b": "Omitted"})
    assert eval_depends("a.Failed", {"a": "Failed"}) and not eval_depends("a", {"a": "Failed"})
    with pytest.raises(ValueError):
        substitute({"x": "{{inputs.parameters.nope}}"}, {}, strict_prefixes=("inputs.",))


def test_the_harness_refuses_what_it_does_not_implement(tmp_path):
    template, configmaps = committed()
    template["spec"]["templates"][0]["parallelism"] = 1
    c = Controller(tmp_path, configmaps)
    wf = c.submit(template, {"job-id": "x", "stage": "analyze"})
    with pytest.raises(Unsupported):
        wf.join()
    assert argo_name("a_b") == "a-b"
