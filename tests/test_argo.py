"""The compiled WorkflowTemplate: valid for Argo v4.1.2, committed, and the same pipeline the
local engine runs."""

from __future__ import annotations

import copy
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline.argo import ArgoSettings, argo_name, build, to_yaml
from pipeline.spec import ON_EXIT, PARAMETERS, PIPELINE, steps_for
from steps.plan import chunks
from tests.argo_api import errors, schema_validator

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = ROOT / "argo-templates" / "book-job.yaml"


@pytest.fixture(scope="module")
def template() -> dict:
    return yaml.safe_load(to_yaml())


def templates_by_name(template: dict) -> dict[str, dict]:
    return {t["name"]: t for t in template["spec"]["templates"]}


def test_committed_templates_are_up_to_date():
    assert COMMITTED.read_text() == to_yaml(), "argo-templates/ drifted: run `make templates`"


def test_templates_command_reports_drift(tmp_path):
    out = tmp_path / "t"
    run = [sys.executable, "-m", "pipeline.cli", "templates", "--out", str(out)]
    assert subprocess.run(run, capture_output=True).returncode == 0
    assert subprocess.run(run + ["--check"], capture_output=True).returncode == 0
    (out / "book-job.yaml").write_text((out / "book-job.yaml").read_text().replace("limit: 3", "limit: 9"))
    done = subprocess.run(run + ["--check"], capture_output=True, text=True)
    assert done.returncode == 1 and "out of date" in done.stderr


def test_valid_against_argo_schema_strict(template):
    assert errors(schema_validator(), template) == []


def test_strict_schema_catches_a_typo(template):
    broken = copy.deepcopy(template)
    broken["spec"]["templates"][0]["retryStrategy"]["limt"] = 3
    assert any("limt" in e for e in errors(schema_validator(), broken))


def test_every_spec_step_is_a_container_with_the_same_command(template):
    by_name = templates_by_name(template)
    for step in (*PIPELINE, ON_EXIT):
        container = by_name[argo_name(step.name)]["container"]
        assert container["command"] == ["python", "-m", f"steps.{step.name}"]
        flags = [a.split("=")[0] for a in container["args"] if a.startswith("--")]
        assert flags == [a.split("=")[0] for a in step.args if a.startswith("--")]
        # every placeholder became an Argo parameter reference or a fixed path
        assert not [a for a in container["args"] if re.search(r"(?<!\{)\{\w+\}(?!\})", a)]


def test_dag_dependencies_follow_the_spec(template):
    """Per-chunk steps chain inside the `chunk` DAG; the others chain in `stage-pass`, with the
    chunk fan-out standing where the per-chunk steps are."""
    by_name = templates_by_name(template)
    dags = {name: {t["name"]: t for t in by_name[name]["dag"]["tasks"]} for name in ("stage-pass", "chunk")}
    for step in PIPELINE:
        dag = dags["chunk" if step.per_chunk else "stage-pass"]
        deps = [d for d in step.depends
                if next(s for s in PIPELINE if s.name == d).per_chunk == step.per_chunk]
        expected = deps or [d for d in step.depends if not step.per_chunk]
        expected = [argo_name(d) if d in dag else "chunk" for d in expected]
        assert dag[argo_name(step.name)].get("depends") == (" && ".join(expected) or None), step.name
    stage_pass = dags["stage-pass"]
    assert stage_pass["chunk"]["withParam"] == "{{tasks.plan.outputs.parameters.chunks}}"
    assert stage_pass["chunk"]["depends"] == "plan"
    assert "prepay" in stage_pass["analyze"]["when"]
    assert template["spec"]["onExit"] == "on-exit"


def test_gpu_and_cpu_resources(template):
    by_name = templates_by_name(template)
    for step in (*PIPELINE, ON_EXIT):
        t = by_name[argo_name(step.name)]
        limits = t["container"]["resources"]["limits"]
        assert t["container"]["resources"]["requests"]["cpu"] and limits["memory"]
        if step.resources == "gpu":
            # backgrounds: the ComfyUI sidecar holds the pod's one GPU; analyze holds its own
            holders = [c for c in [t["container"], *t.get("sidecars", [])]
                       if "nvidia.com/gpu" in c["resources"]["limits"]]
            assert [c["resources"]["limits"]["nvidia.com/gpu"] for c in holders] == ["1"]
            if step.name == "backgrounds":
                sidecar = t["sidecars"][0]
                assert sidecar["name"] == "comfyui" and holders == [sidecar]
                assert sidecar["securityContext"]["readOnlyRootFilesystem"] is True
                assert {"name": "BOOKJOB_COMFYUI_READY_TIMEOUT", "value": "900"} in t["container"]["env"]
            assert t["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
            assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in t["tolerations"]
            sem = t["synchronization"]["semaphores"][0]["configMapKeyRef"]
            assert sem == {"name": "bookjob-gpu-semaphore", "key": "gpu-pods"}
            assert t["container"]["image"].startswith("ghcr.io/bookjob/bookjob-gpu")
        else:
            assert "nvidia.com/gpu" not in limits and "nodeSelector" not in t
            assert "synchronization" not in t
            assert t["container"]["image"].startswith("ghcr.io/bookjob/bookjob-cpu")


def test_retries_deadlines_and_exit_code_3(template):
    by_name = templates_by_name(template)
    for step in (*PIPELINE, ON_EXIT):
        t = by_name[argo_name(step.name)]
        retry = t["retryStrategy"]
        assert retry["limit"] == (3 if step.name == "analyze" else 2)
        assert "asInt(lastRetry.exitCode) != 3" in retry["expression"]
        assert retry["backoff"]["factor"] == 2
        assert t["activeDeadlineSeconds"] > 0
        assert int(t["timeout"].rstrip("m")) * 60 >= t["activeDeadlineSeconds"] + 30 * 60
    spec = template["spec"]
    assert spec["activeDeadlineSeconds"] >= 3600
    assert spec["podGC"]["strategy"] == "OnPodSuccess"
    assert spec["ttlStrategy"]["secondsAfterCompletion"] > 0


def test_pod_security_on_every_template(template):
    spec = template["spec"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for t in spec["templates"]:
        if "container" not in t:
            continue
        sc = t["container"]["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True
        assert sc["runAsNonRoot"] is True and sc["capabilities"]["drop"] == ["ALL"]
        assert {"name": "scratch", "mountPath": "/tmp"} in t["container"]["volumeMounts"]
    assert any(v["name"] == "scratch" and "emptyDir" in v for v in spec["volumes"])


def test_ui_artifacts_and_repository_by_configmap(template):
    by_name = templates_by_name(template)
    assemble = {a["name"]: a for a in by_name["assemble"]["outputs"]["artifacts"]}
    assert assemble["book"]["s3"]["key"].endswith(".pdf") and assemble["book"]["archive"] == {"none": {}}
    assert by_name["render"]["outputs"]["artifacts"][0]["archive"] == {"none": {}}
    assert template["spec"]["artifactRepositoryRef"]["configMap"] == "bookjob-artifact-repository"
    text = to_yaml()
    assert "accessKeySecret" not in text and "secretKeySecret" not in text and "bucket:" not in text


def test_parameters_cover_the_run_options(template):
    names = {p["name"] for p in template["spec"]["arguments"]["parameters"]}
    assert {"job-id", "book", "stage", "child-name", "child-age", "child-gender", "photo-key",
            "randomize-seed", "pages-per-task", "analyzer", "face-backend", "store",
            "notify-url"} <= names
    stage = next(p for p in template["spec"]["arguments"]["parameters"] if p["name"] == "stage")
    assert stage["enum"] == ["prepay", "postpay", "full"]


def test_ui_annotations_and_labels(template):
    meta = template["spec"]["workflowMetadata"]
    assert "{{workflow.parameters.job-id}}" in meta["annotations"]["workflows.argoproj.io/title"]
    assert set(meta["labelsFrom"]) == {"bookjob/job-id", "bookjob/book", "bookjob/stage"}


def test_comfyui_as_an_in_cluster_service_instead_of_a_sidecar():
    plain = yaml.safe_load(build(ArgoSettings(comfyui_sidecar_image="")).to_yaml())
    backgrounds = templates_by_name(plain)["backgrounds"]
    assert "sidecars" not in backgrounds
    assert backgrounds["container"]["resources"]["limits"]["nvidia.com/gpu"] == "1"


def test_settings_change_images_and_node_selector():
    custom = yaml.safe_load(build(ArgoSettings(
        gpu_image="registry.local/gpu:1", gpu_node_selector={"pool": "a100"})).to_yaml())
    analyze = templates_by_name(custom)["analyze"]
    assert analyze["container"]["image"] == "registry.local/gpu:1"
    assert analyze["nodeSelector"] == {"pool": "a100"}


@pytest.mark.parametrize("pages", [4, 24])
def test_pods_per_stage_do_not_grow_with_pages(pages):
    """Default chunking: one chunk per stage pass, so the pod count is fixed."""
    prepay, postpay = list(range(1, 4)), list(range(4, pages + 1))
    pods = {}
    for name, nums in (("prepay", prepay), ("postpay", postpay)):
        n_chunks = len(chunks(nums, 0))
        per_chunk = sum(s.per_chunk for s in steps_for(name))
        pods[name] = sum(not s.per_chunk for s in steps_for(name)) + n_chunks * per_chunk
    assert pods == {"prepay": 6, "postpay": 5}


@pytest.mark.slow
def test_local_engine_runs_what_the_template_declares(template, book, portrait, tmp_path):
    """Run a real job locally; every command matches its compiled container, argument for
    argument: Argo's {{workflow.parameters.x}} is the job's parameter x."""
    from pipeline.local import LocalEngine
    from steps.core.store import LocalStore, upload_key

    store = LocalStore(tmp_path / "store")
    store.write(upload_key("agree", "png"), portrait.read_bytes())
    params = {"job_id": "agree", "book": str(book), "store": store.uri, "stage": "prepay",
              "photo_key": upload_key("agree", "png"), "child_name": "Mia", "child_age": "5",
              "child_gender": "girl", "randomize_seed": "false", "pages_per_task": "1",
              "analyzer": "heuristic", "analyzer_model": "", "face_backend": "classic",
              "comfyui_url": ""}
    runs = LocalEngine(store, params).run("full")
    by_name = templates_by_name(template)
    ran = sorted((r.stage, r.step, r.chunk or "") for r in runs)  # chunks run in parallel
    assert ran == sorted([
        ("prepay", "analyze", ""), ("prepay", "plan", ""), ("prepay", "backgrounds", "1"),
        ("prepay", "render", "1"), ("prepay", "backgrounds", "2"), ("prepay", "render", "2"),
        ("prepay", "assemble", ""), ("prepay", "finalize", ""), ("postpay", "plan", ""),
        ("postpay", "backgrounds", "3"), ("postpay", "render", "3"), ("postpay", "backgrounds", "4"),
        ("postpay", "render", "4"), ("postpay", "assemble", ""), ("postpay", "finalize", "")])
    for run in runs:
        container = by_name[argo_name(run.step)]["container"]
        assert run.command[1:3] == container["command"][1:]
        local_args = run.command[3:]
        assert len(local_args) == len(container["args"])
        for local, compiled in zip(local_args, container["args"]):
            # a parameter as an argument of its own, or as `--flag={{…}}`; one the job did not
            # give has its default (PARAMETERS), as in Argo
            found = re.fullmatch(r"(--[\w-]+=)?\{\{workflow\.parameters\.([\w-]+)\}\}", compiled)
            if found:
                value = {**PARAMETERS, **params}[found.group(2).replace("-", "_")]
                assert local == (found.group(1) or "") + value
            elif compiled == "{{inputs.parameters.pass-stage}}":
                assert local == run.stage
            elif compiled == "{{inputs.parameters.pages}}":
                assert local == run.chunk
            elif compiled.startswith("/tmp/"):
                assert local == "" or local.endswith(".json")
            else:
                assert local == compiled
