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
        assert container["command"] == ["python", "-m", step.module]
        flags = [a.split("=")[0] for a in container["args"] if a.startswith("--")]
        assert flags == [a.split("=")[0] for a in step.args if a.startswith("--")]
        # every placeholder became an Argo parameter reference or a fixed value
        assert not [a for a in container["args"] if re.search(r"(?<!\{)\{\w+\}(?!\})", a)]


def _task_of(step, dag_tasks):
    """The task of the pass DAG that runs ``step``: its own, or its fan-out list's."""
    for name in (argo_name(step.name), argo_name(step.fan_out)):
        if name in dag_tasks:
            return name
    raise AssertionError(f"{step.name} has no task")


@pytest.mark.parametrize("pass_name", ["analyze", "prepay", "postpay"])
def test_dag_dependencies_follow_the_spec(template, pass_name):
    """Each pass is a DAG of its spec steps; depends come from Step.depends; the steps of one
    fan-out list run as one task over that list (withParam on the step that writes it)."""
    by_name = templates_by_name(template)
    tasks = {t["name"]: t for t in by_name[f"{pass_name}-pass"]["dag"]["tasks"]}
    chosen = steps_for(pass_name)
    names = {s.name for s in chosen}
    expected_tasks = {_task_of(s, tasks) for s in chosen}
    assert set(tasks) == expected_tasks
    for step in chosen:
        task = tasks[_task_of(step, tasks)]
        group = [s for s in chosen if step.fan_out and s.fan_out == step.fan_out] or [step]
        deps = {_task_of(next(x for x in chosen if x.name == d), tasks)
                for g in group for d in g.depends if d in names} - {task["name"]}
        assert set(filter(None, (task.get("depends") or "").split(" && "))) == deps, step.name
        if step.fan_out:
            source = next(s for s in chosen if step.fan_out in s.outputs)
            assert task["withParam"] == (f"{{{{tasks.{argo_name(source.name)}.outputs."
                                         f"parameters.{argo_name(step.fan_out)}}}}}")
            if len(group) > 1:  # a DAG of the group, chained as the spec says
                inner = {t["name"]: t for t in by_name[task["template"]]["dag"]["tasks"]}
                for g in group:
                    own = [argo_name(d) for d in g.depends if d in {x.name for x in group}]
                    assert inner[argo_name(g.name)].get("depends") == (" && ".join(own) or None)
        if step.skip_if:
            assert task["when"] == f"'{{{{workflow.parameters.{argo_name(step.skip_if)}}}}}' != 'true'"
    assert template["spec"]["onExit"] == "on-exit"


def test_stages_choose_passes(template):
    main = {t["name"]: t for t in templates_by_name(template)["main"]["dag"]["tasks"]}
    assert set(main) == {"analyze", "prepay", "postpay"}
    assert main["analyze"]["when"] == "'{{workflow.parameters.stage}}' == 'analyze'"
    assert "'full'" in main["postpay"]["when"] and "'postpay'" in main["postpay"]["when"]
    assert main["postpay"]["depends"] == "prepay"


def _holders(t: dict) -> list[dict]:
    return [c for c in [t["container"], *t.get("sidecars", [])]
            if "nvidia.com/gpu" in c["resources"]["limits"]]


def _is_gpu_pod(t: dict) -> bool:
    return bool(_holders(t) or t.get("nodeSelector") or t.get("tolerations") or t.get("synchronization"))


def test_gpu_and_cpu_resources(template):
    by_name = templates_by_name(template)
    for step in (*PIPELINE, ON_EXIT):
        t = by_name[argo_name(step.name)]
        limits = t["container"]["resources"]["limits"]
        assert t["container"]["resources"]["requests"]["cpu"] and limits["memory"]
        if step.resources == "gpu":
            # faces: the ComfyUI sidecar holds the pod's one GPU; analyze holds its own
            holders = _holders(t)
            assert [c["resources"]["limits"]["nvidia.com/gpu"] for c in holders] == ["1"]
            if step.sidecar:
                sidecar = t["sidecars"][0]
                assert sidecar["name"] == "comfyui" and holders == [sidecar]
                assert {"name": "BOOKJOB_COMFYUI_READY_TIMEOUT", "value": "900"} in t["container"]["env"]
                assert t["container"]["image"].startswith("ghcr.io/bookjob/bookjob-cpu")
            else:
                assert t["container"]["image"].startswith("ghcr.io/bookjob/bookjob-gpu")
            assert t["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
            assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in t["tolerations"]
            sem = t["synchronization"]["semaphores"][0]["configMapKeyRef"]
            assert sem == {"name": "bookjob-gpu-semaphore", "key": "gpu-pods"}
        else:
            assert not _is_gpu_pod(t)
            assert t["container"]["image"].startswith("ghcr.io/bookjob/bookjob-cpu")


def test_no_gpu_visible_to_a_container_without_a_gpu_limit(template):
    """The GPU image sets NVIDIA_VISIBLE_DEVICES=all; a container without a GPU limit gets
    "void" (none), one with a limit gets what the device plugin gives it."""
    for t in template["spec"]["templates"]:
        for c in [t.get("container"), *t.get("sidecars", [])]:
            if not c or c.get("name") == "comfyui":
                continue
            env = {e["name"]: e.get("value") for e in c.get("env", [])}
            has_gpu = "nvidia.com/gpu" in c["resources"]["limits"]
            assert (env.get("NVIDIA_VISIBLE_DEVICES") == "void") == (not has_gpu), t["name"]


def test_comfyui_sidecar_image_contract(template):
    """An explicit command (else the controller looks the entrypoint up in the registry,
    workflowpod.go createWorkflowPod), ComfyUI's folders under the writable /tmp, uid 10001,
    read-only root filesystem."""
    sidecar = templates_by_name(template)["faces"]["sidecars"][0]
    command = sidecar["command"]
    assert command[:2] == ["/opt/venv/bin/python", "/opt/comfyui/main.py"]
    opts = dict(zip(command[2::2], command[3::2]))
    assert opts["--listen"] == "127.0.0.1" and opts["--port"] == "8188"
    for flag in ("--input-directory", "--output-directory", "--temp-directory", "--user-directory"):
        assert opts[flag].startswith("/tmp/comfyui/")
    assert opts["--extra-model-paths-config"] == "/opt/comfyui/extra_model_paths.yaml"
    sc = sidecar["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["runAsUser"] == 10001
    assert {"name": "scratch", "mountPath": "/tmp"} in sidecar["volumeMounts"]


def test_retries_and_deadlines(template):
    """Per-attempt activeDeadlineSeconds only: no template `timeout` (operator.go
    checkTemplateTimeout fails a node Pending on the GPU semaphore; workflowpod.go then makes it
    every pod's deadline) and no backoff.maxDuration (one window from the first attempt's
    start, processNodeRetries). The workflow's activeDeadlineSeconds bounds a job, queueing
    included."""
    by_name = templates_by_name(template)
    for step in (*PIPELINE, ON_EXIT):
        t = by_name[argo_name(step.name)]
        retry = t["retryStrategy"]
        assert retry["limit"] == step.retries
        assert "asInt(lastRetry.exitCode) != 3" in retry["expression"]
        assert retry["backoff"] == {"duration": "15s", "factor": 2}
        assert t["activeDeadlineSeconds"] > 0
        assert "timeout" not in t and "pendingTimeout" not in t
    spec = template["spec"]
    assert spec["activeDeadlineSeconds"] >= 3600
    assert spec["podGC"] == {"strategy": "OnWorkflowCompletion", "deleteDelayDuration": "1h"}
    assert spec["archiveLogs"] is True
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
    assert {argo_name(p) for p in PARAMETERS} | {"notify-url"} == names
    stage = next(p for p in template["spec"]["arguments"]["parameters"] if p["name"] == "stage")
    assert stage["enum"] == ["analyze", "prepay", "postpay", "full"]
    skip = next(p for p in template["spec"]["arguments"]["parameters"] if p["name"] == "skip-analysis")
    assert skip["value"] == "false"


def test_ui_annotations_and_labels(template):
    meta = template["spec"]["workflowMetadata"]
    assert "{{workflow.parameters.job-id}}" in meta["annotations"]["workflows.argoproj.io/title"]
    assert set(meta["labelsFrom"]) == {"bookjob/job-id", "bookjob/book", "bookjob/stage"}


def test_comfyui_as_an_in_cluster_service_instead_of_a_sidecar():
    """No sidecar: ComfyUI is reached by URL, no face backend is routed to a GPU, and `faces`
    (which then never gets a page) is a plain CPU pod."""
    plain = templates_by_name(yaml.safe_load(build(ArgoSettings(comfyui_sidecar_image="")).to_yaml()))
    assert "sidecars" not in plain["faces"] and not _is_gpu_pod(plain["faces"])
    for name in ("plan", "backgrounds", "faces"):
        args = plain[name]["container"]["args"]
        assert args[args.index("--gpu-face-backends") + 1] == ""
    with_sidecar = templates_by_name(yaml.safe_load(to_yaml()))
    args = with_sidecar["plan"]["container"]["args"]
    assert args[args.index("--gpu-face-backends") + 1] == "comfyui"


def test_cpu_only_cluster_has_no_gpu_pod():
    cpu = yaml.safe_load(build(ArgoSettings(gpus=False)).to_yaml())
    assert not [t["name"] for t in cpu["spec"]["templates"] if "container" in t and _is_gpu_pod(t)]
    assert errors(schema_validator(), cpu) == []


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
        per_chunk = sum(s.fan_out == "chunks" for s in steps_for(name))
        pods[name] = sum(not s.fan_out for s in steps_for(name)) + n_chunks * per_chunk
    # prepay: analyze, plan, assemble, finalize + backgrounds, render (faces: no GPU chunk)
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
              "comfyui_url": "", "skip_analysis": "false"}
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
            elif compiled.startswith("/tmp/") or compiled == "comfyui":
                assert local == "" or local.endswith(".json")
            else:
                assert local == compiled


def test_pages_per_task_auto_counts_the_pods_cpu_limit(tmp_path):
    """A pod's `limits.cpu` is a CFS quota (cgroup v2 cpu.max "<quota> <period>"; v1
    cpu.cfs_quota_us / cpu.cfs_period_us): `auto` counts it, not the node's cores."""
    from steps.plan import usable_cpus

    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "cpu.max").write_text("150000 100000\n")
    assert usable_cpus(v2) == min(2, usable_cpus(tmp_path / "none"))
    (v2 / "cpu.max").write_text("max 100000\n")
    assert usable_cpus(v2) == usable_cpus(tmp_path / "none") >= 1
    v1 = tmp_path / "v1" / "cpu"
    v1.mkdir(parents=True)
    (v1 / "cpu.cfs_quota_us").write_text("100000\n")
    (v1 / "cpu.cfs_period_us").write_text("100000\n")
    assert usable_cpus(tmp_path / "v1") == 1
    (v1 / "cpu.cfs_quota_us").write_text("-1\n")
    assert usable_cpus(tmp_path / "v1") == usable_cpus(tmp_path / "none")


def test_face_pages_go_to_the_gpu_only_for_a_gpu_backend():
    from steps.plan import faces_on_gpu

    assert faces_on_gpu("comfyui", "comfyui")
    assert not faces_on_gpu("classic", "comfyui")      # the classic backend runs on CPU
    assert not faces_on_gpu("comfyui", "")             # ComfyUI by URL / CPU cluster / local
    assert faces_on_gpu("comfyui", "x, comfyui")
