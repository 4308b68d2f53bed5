"""The Helm chart (helm/bookjob): real Helm v4 (helm-python-sdk) lints and renders it with the
default values and four other value sets; what it renders is checked against Argo's schema
(strict), Kubernetes' schemas (kubernetes-validate), checkov and Pod Security "restricted"."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from collections import Counter
from functools import cache
from pathlib import Path

import pytest
import yaml

from pipeline.argo import ArgoSettings
from pipeline.chart import CHART, OUTPUT, chart_template
from tests.argo_api import errors, schema_validator
from tests.pod_security import argo_pods, restricted_violations
from tests.tools import checkov_failures, helm_on_path, helm_sdk, run_checkov

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = ROOT / "argo-templates" / "book-job.yaml"
RELEASE, NAMESPACE = "bookjob", "books"
HELM_LABELS = {"helm.sh/chart", "app.kubernetes.io/instance", "app.kubernetes.io/version",
               "app.kubernetes.io/managed-by", "app.kubernetes.io/part-of"}
CORE_KINDS = {"ServiceAccount", "Role", "RoleBinding", "ConfigMap"}
EXECUTOR_SC = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
               "runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}

VALUE_SETS: dict[str, dict] = {
    "default": {},
    "custom-registry": {"images": {
        "registry": "registry.example.com/books",
        "gpu": {"repository": "bookjob-gpu", "tag": "1.2.3"},
        "cpu": {"repository": "bookjob-cpu", "tag": "1.2.3"},
        "comfyui": {"repository": "comfyui", "digest": "sha256:" + "a" * 64},
        "pullPolicy": "Always", "pullSecrets": ["registry-creds"]}},
    "gpu-pool": {
        # Helm merges maps with the defaults: null removes the default selector
        "gpu": {"nodeSelector": {"cloud.google.com/gke-accelerator": "nvidia-h100-80gb",
                                 "nvidia.com/gpu.present": None},
                "tolerations": [
                    {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
                    {"key": "dedicated", "operator": "Equal", "value": "books", "effect": "NoSchedule"}],
                "maxConcurrentPods": 4},
        "resources": {"gpu": {"requests": {"cpu": "8", "memory": "32Gi"},
                              "limits": {"memory": "48Gi", "nvidia.com/gpu": "1"}}},
        "deadlines": {"steps": {"faces": 7200}},
        "backends": {"comfyui": {"sidecar": {"modelVolume": {
            "persistentVolumeClaim": {"claimName": "comfyui-models", "readOnly": True}}}}}},
    "minio-secret": {
        "s3": {"endpoint": "minio.minio.svc:9000", "region": "us-east-1", "insecure": True,
               "existingSecret": "minio-creds", "accessKeyKey": "rootUser", "secretKeyKey": "rootPassword"},
        "artifactRepository": {"bucket": "argo-artifacts"},
        "store": {"uri": "s3://books-data/prod"},
        "rbac": {"submitters": {"subjects": [{"kind": "ServiceAccount", "name": "shop", "namespace": "shop"}]},
                 "argoServer": {"serviceAccount": "argo-server", "namespace": "argo"}}},
    "cpu-backends-model-volume": {
        "fullnameOverride": "books",
        "backends": {"analyzer": {"name": "heuristic", "modelVolume": {
                         "persistentVolumeClaim": {"claimName": "qwen2-vl", "readOnly": True}}},
                     "faceBackend": "classic",
                     "comfyui": {"url": "http://comfyui.ml.svc:8188", "timeoutSeconds": 900,
                                 "sidecar": {"enabled": False}}},
        "notify": {"existingSecret": "hooks"},
        "records": {"existingSecret": "shop-db", "urlKey": "bookjob-url"},
        "extraEnv": [{"name": "AWS_MAX_ATTEMPTS", "value": "8"}]},
}


@cache
def rendered(name: str) -> dict[str, list[dict]]:
    """Template file -> the objects Helm renders from it (values: VALUE_SETS[name])."""
    helm = helm_sdk()
    with helm.Chart.load(CHART) as chart:
        manifests = chart.render(copy.deepcopy(VALUE_SETS[name]), name=RELEASE,
                                 namespace=NAMESPACE, is_install=True)
    return {source.split("/", 1)[1]: [d for d in yaml.safe_load_all(text) if d]
            for source, text in manifests.items() if not source.endswith("NOTES.txt")}


def objects(name: str) -> list[dict]:
    return [doc for docs in rendered(name).values() for doc in docs]


def workflow_template(name: str) -> dict:
    (template,) = [d for d in objects(name) if d["kind"] == "WorkflowTemplate"]
    return template


def by_kind(name: str) -> dict[tuple[str, str], dict]:
    return {(d["kind"], d["metadata"]["name"]): d for d in objects(name)}


def templates(template: dict) -> dict[str, dict]:
    return {t["name"]: t for t in template["spec"]["templates"]}


def strings(node) -> list[str]:
    if isinstance(node, dict):
        return [s for v in node.values() for s in strings(v)]
    if isinstance(node, list):
        return [s for v in node for s in strings(v)]
    return [node] if isinstance(node, str) else []


# --- generated from the pipeline -------------------------------------------------------------

def test_chart_workflow_template_is_up_to_date():
    assert OUTPUT.read_text() == chart_template(), \
        "helm/bookjob/templates/workflowtemplate.yaml drifted from pipeline/: run `make chart`"


def test_chart_command_reports_drift(tmp_path):
    out = tmp_path / "workflowtemplate.yaml"
    run = [sys.executable, "-m", "pipeline.chart", "--out", str(out)]
    assert subprocess.run(run, capture_output=True, cwd=ROOT).returncode == 0
    assert subprocess.run(run + ["--check"], capture_output=True, cwd=ROOT).returncode == 0
    out.write_text(out.read_text().replace("limit: 3", "limit: 9"))
    done = subprocess.run(run + ["--check"], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 1 and "out of date" in done.stderr


def test_default_values_render_the_committed_template():
    """With the default values the chart's WorkflowTemplate is argo-templates/book-job.yaml,
    except for what the installation adds: Helm's labels, the namespace, and the podSpecPatch
    that locks down Argo's init/wait containers (values `executor`)."""
    committed = yaml.safe_load(COMMITTED.read_text())
    chart = copy.deepcopy(workflow_template("default"))
    assert chart["metadata"].pop("namespace") == NAMESPACE
    labels = chart["metadata"]["labels"]
    assert HELM_LABELS <= set(labels) and labels["app.kubernetes.io/instance"] == RELEASE
    for key in HELM_LABELS:
        labels.pop(key)
    if "podSpecPatch" not in committed["spec"]:
        patch = json.loads(chart["spec"].pop("podSpecPatch"))
        assert patch == {"initContainers": [{"name": "init", "securityContext": EXECUTOR_SC}],
                         "containers": [{"name": "wait", "securityContext": EXECUTOR_SC}]}
    assert chart == committed


def test_argo_expressions_survive_helm():
    """Every {{…}} Argo expression of the compiled template comes out of Helm unchanged."""
    expressions = lambda doc: Counter(e for s in strings(doc) for e in re.findall(r"\{\{.*?\}\}", s))  # noqa: E731
    committed = expressions(yaml.safe_load(COMMITTED.read_text()))
    assert committed["{{workflow.parameters.job-id}}"] > 5 and "{{item}}" in committed
    for name in VALUE_SETS:
        assert expressions(workflow_template(name)) == committed, name
    helm_source = OUTPUT.read_text()
    assert "{{`{{workflow.parameters.job-id}}`}}" in helm_source


def test_every_argo_settings_value_has_a_chart_value():
    """ArgoSettings is every cluster-tunable value; each one is a sentinel in the generator
    (it raises on a field it does not map), and the chart's defaults are ArgoSettings' defaults."""
    defaults, values = ArgoSettings(), yaml.safe_load((CHART / "values.yaml").read_text())
    template = workflow_template("default")
    by_name = templates(template)
    assert by_name["analyze"]["container"]["image"] == defaults.gpu_image
    assert by_name["plan"]["container"]["image"] == defaults.cpu_image
    assert by_name["analyze"]["nodeSelector"] == defaults.gpu_node_selector
    assert values["gpu"]["tolerations"] == by_name["analyze"]["tolerations"]
    assert template["spec"]["serviceAccountName"] == defaults.service_account
    params = {p["name"]: p.get("value") for p in template["spec"]["arguments"]["parameters"]}
    for key, value in defaults.parameter_defaults.items():
        assert params[key.replace("_", "-")] == value


# --- Helm: lint and render -------------------------------------------------------------------

@pytest.mark.parametrize("name", VALUE_SETS)
def test_helm_lint_strict(name):
    report = helm_sdk().lint(str(CHART), copy.deepcopy(VALUE_SETS[name]), strict=True,
                             namespace=NAMESPACE, kube_version="v1.35.0")
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


def test_helm_command_line(tmp_path):
    """scripts/helm.py (`make helm-lint`, and `helm` for checkov) lints and templates like helm."""
    helm = [sys.executable, str(ROOT / "scripts" / "helm.py")]
    lint = subprocess.run([*helm, "lint", "--strict", str(CHART)], capture_output=True, text=True)
    assert lint.returncode == 0 and "0 chart(s) failed" in lint.stdout, lint.stdout + lint.stderr
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump({"gpu": {"maxConcurrentPods": 3}}))
    out = subprocess.run([*helm, "template", RELEASE, str(CHART), "-n", NAMESPACE, "-f", str(values),
                          "--set", "store.uri=s3://b/p", "--dependency-update"],
                         capture_output=True, text=True, check=True).stdout
    sources = re.findall(r"^---\n# Source: (\S+)$", out, re.M)
    docs = [d for d in yaml.safe_load_all(out) if d]
    assert len(sources) == len(docs) == len(objects("default"))
    assert all(s.startswith("bookjob/templates/") for s in sources)
    semaphore = next(d for d in docs if d["metadata"]["name"] == "bookjob-gpu-semaphore")
    assert semaphore["data"]["gpu-pods"] == "3"
    bad = subprocess.run([*helm, "template", str(CHART), "--set", "gpu.maxConcurrentPods=0"],
                         capture_output=True, text=True)
    assert bad.returncode == 1 and "maxConcurrentPods" in bad.stderr
    version = subprocess.run([*helm, "version"], capture_output=True, text=True, check=True).stdout
    assert version.startswith('version.BuildInfo{Version:"v4.')


@pytest.mark.parametrize("name", VALUE_SETS)
def test_rendered_workflow_template_is_valid_argo(name):
    template = workflow_template(name)
    assert errors(schema_validator(), template) == []
    assert template["metadata"]["name"] == "book-job"
    assert not any("{{`" in s or "__BJ_" in s or "__BLOCK" in s for s in strings(template))


@pytest.mark.parametrize("name", VALUE_SETS)
def test_core_objects_validate_against_kubernetes(name):
    import kubernetes_validate
    from kubernetes_validate.utils import latest_version

    version = latest_version()
    assert tuple(map(int, version.split(".")[:2])) >= (1, 33), "kubernetes-validate is too old"
    core = [d for d in objects(name) if d["kind"] in CORE_KINDS]
    assert {d["kind"] for d in core} == CORE_KINDS
    for doc in core:
        kubernetes_validate.validate(doc, version, strict=True)
        assert doc["metadata"]["namespace"] == NAMESPACE
        assert {"app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/version",
                "app.kubernetes.io/managed-by", "helm.sh/chart"} <= set(doc["metadata"]["labels"])


def test_kubernetes_validate_catches_a_mistake():
    import kubernetes_validate
    from kubernetes_validate.utils import latest_version

    role = copy.deepcopy(by_kind("default")[("Role", "bookjob-workflow")])
    role["rules"][0]["verb"] = ["get"]
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(role, latest_version(), strict=True)


@pytest.mark.parametrize("name", VALUE_SETS)
def test_objects_refer_to_each_other(name):
    template, objs = workflow_template(name), by_kind(name)
    spec = template["spec"]
    sa = spec["serviceAccountName"]
    assert ("ServiceAccount", sa) in objs
    binding = next(d for (kind, _), d in objs.items() if kind == "RoleBinding")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": sa, "namespace": NAMESPACE}]
    assert ("Role", binding["roleRef"]["name"]) in objs
    repo = spec["artifactRepositoryRef"]
    assert repo["key"] in objs[("ConfigMap", repo["configMap"])]["data"]
    for t in spec["templates"]:
        for ref in t.get("synchronization", {}).get("semaphores", []):
            key = ref["configMapKeyRef"]
            assert int(objs[("ConfigMap", key["name"])]["data"][key["key"]]) >= 1


def test_role_is_least_privilege():
    role = by_kind("default")[("Role", "bookjob-workflow")]
    assert role["rules"] == [{"apiGroups": ["argoproj.io"], "resources": ["workflowtaskresults"],
                              "verbs": ["create", "patch"]}]
    assert not any(d["kind"] in {"ClusterRole", "ClusterRoleBinding", "Secret"} for d in objects("default"))


SUBMITTER_RULES = [
    {"apiGroups": ["argoproj.io"], "resources": ["workflows"], "verbs": ["create", "get", "list", "watch"]},
    {"apiGroups": ["argoproj.io"], "resources": ["workflowtemplates"], "verbs": ["get"]},
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]}]


def test_submitter_role_and_argo_server_artifact_access():
    """`bookjob submit/watch/logs` (and `argo submit --from`) need the submitter Role
    (server/workflow/workflow_server.go; pods and pods/log for the Kubernetes log transport);
    the Argo Server reads artifacts with the caller's client, so with auth mode `server` its
    own ServiceAccount must read the S3 Secret (server/artifacts/artifact_server.go)."""
    default = by_kind("default")
    assert default[("Role", "bookjob-submitter")]["rules"] == SUBMITTER_RULES
    assert ("RoleBinding", "bookjob-submitter") not in default          # no subjects given
    assert ("Role", "bookjob-artifact-reader") not in default            # no Secret to read
    minio = by_kind("minio-secret")
    assert minio[("RoleBinding", "bookjob-submitter")]["subjects"] == [
        {"kind": "ServiceAccount", "name": "shop", "namespace": "shop"}]
    reader = minio[("Role", "bookjob-artifact-reader")]
    assert reader["rules"] == [{"apiGroups": [""], "resources": ["secrets"],
                                "resourceNames": ["minio-creds"], "verbs": ["get"]}]
    binding = minio[("RoleBinding", "bookjob-artifact-reader")]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "argo-server", "namespace": "argo"}]


def test_initless_pods_get_no_pod_spec_patch():
    """Init-less pods (v4.1+, docs/initless-pod.md) have no init/wait container: a patch naming
    them would add image-less containers and every pod would be rejected."""
    assert "podSpecPatch" in workflow_template("default")["spec"]
    helm = helm_sdk()
    with helm.Chart.load(CHART) as chart:
        text = chart.render({"executor": {"initlessPods": True}}, name=RELEASE, namespace=NAMESPACE)[
            "bookjob/templates/workflowtemplate.yaml"]
    assert "podSpecPatch" not in yaml.safe_load(text)["spec"]


def test_custom_registry_and_tags():
    by_name = templates(workflow_template("custom-registry"))
    assert by_name["analyze"]["container"]["image"] == "registry.example.com/books/bookjob-gpu:1.2.3"
    assert by_name["render"]["container"]["image"] == "registry.example.com/books/bookjob-cpu:1.2.3"
    sidecar = by_name["faces"]["sidecars"][0]
    assert sidecar["image"] == "registry.example.com/books/comfyui@sha256:" + "a" * 64
    pulls = {c["imagePullPolicy"] for t in by_name.values() for c in [t.get("container"), *t.get("sidecars", [])] if c}
    assert pulls == {"Always"}
    sa = by_kind("custom-registry")[("ServiceAccount", "bookjob-workflow")]
    assert sa["imagePullSecrets"] == [{"name": "registry-creds"}]


def test_gpu_node_selector_tolerations_and_limits():
    template = workflow_template("gpu-pool")
    by_name = templates(template)
    gpu_steps = {"analyze", "faces"}
    for name, t in by_name.items():
        if name in gpu_steps:
            assert t["nodeSelector"] == {"cloud.google.com/gke-accelerator": "nvidia-h100-80gb"}
            assert {"key": "dedicated", "operator": "Equal", "value": "books",
                    "effect": "NoSchedule"} in t["tolerations"]
        else:
            assert "nodeSelector" not in t and "tolerations" not in t
    assert by_name["analyze"]["container"]["resources"]["requests"] == {"cpu": "8", "memory": "32Gi"}
    # with the ComfyUI sidecar the sidecar holds the GPU, the step itself runs with CPU resources
    faces = by_name["faces"]
    assert faces["sidecars"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert "nvidia.com/gpu" not in faces["container"]["resources"]["limits"]
    assert faces["activeDeadlineSeconds"] == 7200 and "timeout" not in faces
    # ComfyUI's models, read-only where the image's extra_model_paths.yaml looks
    assert {"name": "comfyui-models", "mountPath": "/models/comfyui", "readOnly": True} in \
        faces["sidecars"][0]["volumeMounts"]
    assert {"name": "comfyui-models", "persistentVolumeClaim": {
        "claimName": "comfyui-models", "readOnly": True}} in template["spec"]["volumes"]
    semaphore = by_kind("gpu-pool")[("ConfigMap", "bookjob-gpu-semaphore")]
    assert semaphore["data"] == {"gpu-pods": "4"}


def test_existing_s3_secret_with_a_minio_endpoint():
    objs = by_kind("minio-secret")
    repo = yaml.safe_load(objs[("ConfigMap", "bookjob-artifact-repository")]["data"]["default"])
    assert repo == {"s3": {
        "bucket": "argo-artifacts", "endpoint": "minio.minio.svc:9000", "region": "us-east-1",
        "insecure": True,
        "accessKeySecret": {"name": "minio-creds", "key": "rootUser"},
        "secretKeySecret": {"name": "minio-creds", "key": "rootPassword"}}}
    assert errors(schema_validator("ArtifactRepository"), repo) == []
    template = workflow_template("minio-secret")
    params = {p["name"]: p.get("value") for p in template["spec"]["arguments"]["parameters"]}
    assert params["store"] == "s3://books-data/prod"
    for t in template["spec"]["templates"]:
        if "container" not in t:
            continue
        env = {e["name"]: e for e in t["container"]["env"]}
        assert env["AWS_ENDPOINT_URL_S3"]["value"] == "http://minio.minio.svc:9000"
        assert env["AWS_REGION"]["value"] == "us-east-1"
        assert env["AWS_ACCESS_KEY_ID"]["valueFrom"] == {"secretKeyRef": {"name": "minio-creds", "key": "rootUser"}}
        assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"]["key"] == "rootPassword"


def test_default_artifact_repository_uses_sdk_credentials():
    repo = yaml.safe_load(by_kind("default")[("ConfigMap", "bookjob-artifact-repository")]["data"]["default"])
    assert repo == {"s3": {"bucket": "bookjob", "endpoint": "s3.amazonaws.com", "insecure": False,
                           "useSDKCreds": True}}
    assert errors(schema_validator("ArtifactRepository"), repo) == []


def test_cpu_backends_model_volume_and_no_sidecar():
    template = workflow_template("cpu-backends-model-volume")
    by_name, spec = templates(template), template["spec"]
    params = {p["name"]: p.get("value") for p in spec["arguments"]["parameters"]}
    assert (params["analyzer"], params["face-backend"], params["comfyui-url"]) == \
        ("heuristic", "classic", "http://comfyui.ml.svc:8188")
    assert {"name": "models", "persistentVolumeClaim": {"claimName": "qwen2-vl", "readOnly": True}} in spec["volumes"]
    mounts = by_name["analyze"]["container"]["volumeMounts"]
    assert {"name": "models", "mountPath": "/models", "readOnly": True} in mounts
    assert all(m["name"] != "models" for m in by_name["render"]["container"]["volumeMounts"])
    faces, backgrounds = by_name["faces"], by_name["backgrounds"]
    # ComfyUI by URL: no sidecar, no GPU pod for pages at all
    assert "sidecars" not in faces and "nodeSelector" not in faces and "synchronization" not in faces
    assert "nvidia.com/gpu" not in faces["container"]["resources"]["limits"]
    env = {e["name"]: e for e in backgrounds["container"]["env"]}
    assert env["BOOKJOB_COMFYUI_TIMEOUT"]["value"] == "900" and env["AWS_MAX_ATTEMPTS"]["value"] == "8"
    assert "BOOKJOB_COMFYUI_READY_TIMEOUT" not in env
    assert env["BOOKJOB_NOTIFY_SECRET"]["valueFrom"]["secretKeyRef"]["name"] == "hooks"
    # the job records in the shop's database: every step (on_exit too) reads the same URL
    for step in ("analyze", "plan", "render", "finalize", "on-exit"):
        step_env = {e["name"]: e for e in by_name[step]["container"]["env"]}
        assert step_env["BOOKJOB_RECORDS"]["valueFrom"] == {
            "secretKeyRef": {"name": "shop-db", "key": "bookjob-url"}}
    assert all(e["name"] != "BOOKJOB_RECORDS"       # by default: the store, nothing to set
               for t in templates(workflow_template("default")).values()
               for e in (t.get("container") or {}).get("env", []))
    assert spec["serviceAccountName"] == "books-workflow"
    names = {n for (_, n) in by_kind("cpu-backends-model-volume")}
    assert {"books-gpu-semaphore", "books-artifact-repository"} <= names


@pytest.mark.parametrize("values, message", [
    ({"backends": {"analyzer": {"modelVolume": {"hostPath": {"path": "/models"}}}}}, "hostPath"),
    ({"gpu": {"maxConcurrentPods": 0}}, "maxConcurrentPods"),
    ({"imagez": {}}, "imagez"),
    ({"images": {"pullPolicy": "Sometimes"}}, "pullPolicy"),
])
def test_values_schema_rejects_mistakes(values, message):
    helm = helm_sdk()
    with helm.Chart.load(CHART) as chart, pytest.raises(helm.HelmError, match=message):
        chart.render(values, name=RELEASE, namespace=NAMESPACE)


def test_notes_say_how_to_submit_the_first_job():
    helm = helm_sdk()
    with helm.Chart.load(CHART) as chart:
        notes = chart.render({}, name=RELEASE, namespace=NAMESPACE)["bookjob/templates/NOTES.txt"]
    assert "argo submit -n books --from workflowtemplate/book-job" in notes
    assert "bookjob submit" in notes and "--namespace books" in notes


def test_chart_metadata_and_readme_values_table():
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    version = re.search(r'^version = "(.+)"', (ROOT / "pyproject.toml").read_text(), re.M).group(1)
    assert chart["appVersion"] == version and ArgoSettings().gpu_image.endswith(f":{version}")
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    readme = (CHART / "README.md").read_text()

    blocks = {"gpu.nodeSelector", "resources.gpu", "resources.cpu", "deadlines.steps",
              "executor.securityContext"}

    def leaves(node, prefix=""):
        if isinstance(node, dict) and node and prefix not in blocks:
            for key, value in node.items():
                yield from leaves(value, f"{prefix}.{key}" if prefix else key)
        else:
            yield prefix
    missing = [key for key in leaves(values) if f"`{key}`" not in readme]
    assert missing == [], f"values missing from helm/bookjob/README.md: {missing}"


# --- Pod Security Standards "restricted" -------------------------------------------------------

@pytest.mark.parametrize("name", VALUE_SETS)
def test_every_pod_meets_pod_security_restricted(name):
    """Each step template's pod, as Argo builds it (init + wait executor containers with the
    controller's defaults, main, sidecars, volumes, podSpecPatch), passes every restricted control."""
    pods = argo_pods(workflow_template(name))
    assert set(pods) >= {"analyze", "plan", "faces", "backgrounds", "render", "assemble", "finalize", "on-exit"}
    for template_name, pod in pods.items():
        assert restricted_violations(pod) == [], template_name
    assert not [d for d in objects(name) if d["kind"] in {"Pod", "Deployment", "Job", "DaemonSet",
                                                          "StatefulSet", "CronJob", "ReplicaSet"}]


def test_pod_security_check_catches_the_executor_containers():
    """Without the chart's podSpecPatch, Argo's init/wait containers would break "restricted"."""
    template = copy.deepcopy(workflow_template("default"))
    del template["spec"]["podSpecPatch"]
    violations = restricted_violations(argo_pods(template)["analyze"])
    assert "allowPrivilegeEscalation: wait not false" in violations
    assert "capabilities: init does not drop ALL" in violations
    template["spec"]["volumes"].append({"name": "host", "hostPath": {"path": "/"}})
    assert any("HostPath" in v for v in restricted_violations(argo_pods(template)["plan"]))


# --- checkov -----------------------------------------------------------------------------------

def test_checkov_reports_no_failed_checks(tmp_path):
    """checkov's kubernetes, helm (through scripts/helm.py as `helm`), dockerfile and
    argo_workflows checks on helm/, images/ and every rendered value set: 0 failed, every skip
    with its reason."""
    rendered_dir = tmp_path / "rendered"
    for name in VALUE_SETS:
        for i, doc in enumerate(objects(name)):
            folder = rendered_dir / name
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{i:02d}-{doc['kind']}.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    reports = run_checkov([CHART.parent, ROOT / "images", rendered_dir],
                          ["kubernetes", "helm", "dockerfile", "argo_workflows"], env=helm_on_path(tmp_path))
    ran = {r["check_type"]: r["summary"]["passed"] for r in reports}
    assert set(ran) == {"kubernetes", "helm", "dockerfile", "argo_workflows"}, ran
    assert all(passed > 0 for passed in ran.values()), ran
    assert checkov_failures(reports) == []
