"""The container images (images/*.Dockerfile, .dockerignore): hadolint and checkov clean, built
the way the chart runs them, and each holding what its steps import and nothing heavier; the
ComfyUI sidecar image built to the sidecar contract (command, writable paths, mounted models).

No Docker daemon and no registry exist on the test machines, so the images are not built here;
what can be checked without building is checked: the Dockerfiles' instructions, the build
context, and that the steps each image runs import with only that image's extra installed.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import tomllib
from fnmatch import fnmatch
from pathlib import Path

import pytest
import yaml

from pipeline.argo import ArgoSettings, build
from pipeline.spec import ON_EXIT, PIPELINE
from tests.tools import checkov_failures, hadolint, run_checkov

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT / "images"
DOCKERFILES = {"gpu": IMAGES / "gpu.Dockerfile", "cpu": IMAGES / "cpu.Dockerfile",
               "comfyui": IMAGES / "comfyui.Dockerfile"}
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
OCI_LABELS = {"title", "description", "version", "licenses", "source"}


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order; continuation lines joined, comments dropped."""
    out, current = [], ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith("#") or (not stripped and not current):
            continue
        current += stripped[:-1] + " " if stripped.endswith("\\") else stripped
        if not stripped.endswith("\\"):
            keyword, _, rest = current.partition(" ")
            out.append((keyword.upper(), rest.strip()))
            current = ""
    return out


def stages(path: Path) -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for keyword, rest in instructions(path):
        if keyword == "FROM":
            result.append([])
        if result:
            result[-1].append((keyword, rest))
    return result


def key_values(args: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in shlex.split(args) if "=" in part)


def code(path: Path) -> str:
    """The instructions without the comments."""
    return "\n".join(f"{keyword} {rest}" for keyword, rest in instructions(path))


def from_image(stage: list[tuple[str, str]]) -> str:
    return stage[0][1].split()[0]


@pytest.mark.parametrize("kind", DOCKERFILES)
def test_hadolint_clean(kind):
    done = subprocess.run([hadolint(), "--no-color", str(DOCKERFILES[kind])], capture_output=True, text=True)
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


def test_hadolint_would_catch_a_mistake(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install requests\n")
    done = subprocess.run([hadolint(), "--no-color", str(bad)], capture_output=True, text=True)
    assert done.returncode != 0 and "DL3007" in done.stdout and "DL3013" in done.stdout


def test_checkov_dockerfile_checks_pass():
    reports = run_checkov([IMAGES], ["dockerfile"])
    assert [r["check_type"] for r in reports] == ["dockerfile"]
    assert reports[0]["summary"]["passed"] > 50
    assert checkov_failures(reports) == []


@pytest.mark.parametrize("kind", DOCKERFILES)
def test_multi_stage_with_pinned_bases(kind):
    all_stages = stages(DOCKERFILES[kind])
    assert len(all_stages) >= 2
    for stage in all_stages:
        image = from_image(stage)
        if image == "scratch":
            continue
        name, _, tag = image.partition(":")
        assert tag and tag != "latest" and re.search(r"\d+\.\d+", tag), f"unpinned base {image}"
    final = from_image(all_stages[-1])
    if kind in ("gpu", "comfyui"):
        assert re.fullmatch(r"nvidia/cuda:\d+\.\d+\.\d+-(cudnn-)?runtime-ubuntu\d+\.\d+", final)
    else:
        assert re.fullmatch(r"python:3\.(\d+)\.\d+-slim-\w+", final)
        minimum = tuple(map(int, re.search(r"(\d+)\.(\d+)", PYPROJECT["project"]["requires-python"]).groups()))
        assert (3, int(re.search(r"python:3\.(\d+)", final).group(1))) >= minimum


@pytest.mark.parametrize("kind", DOCKERFILES)
def test_runs_as_the_templates_non_root_user(kind):
    """USER is numeric (runAsNonRoot can verify it) and is the template's runAsUser:runAsGroup."""
    pod = build(ArgoSettings()).to_dict()["spec"]["securityContext"]
    final = stages(DOCKERFILES[kind])[-1]
    users = [rest for keyword, rest in final if keyword == "USER"]
    assert users == [f"{pod['runAsUser']}:{pod['runAsGroup']}"]
    run = " ".join(rest for keyword, rest in final if keyword == "RUN")
    assert f"--uid {pod['runAsUser']}" in run and f"--gid {pod['runAsGroup']}" in run


@pytest.mark.parametrize("kind", DOCKERFILES)
def test_oci_labels_and_environment(kind):
    final = stages(DOCKERFILES[kind])[-1]
    labels = {k: v for keyword, rest in final if keyword == "LABEL" for k, v in key_values(rest).items()}
    assert {f"org.opencontainers.image.{name}" for name in OCI_LABELS} <= set(labels)
    # ComfyUI and ComfyUI_IPAdapter_plus are GPL-3.0; the image holds no bookjob code
    assert labels["org.opencontainers.image.licenses"] == (
        "GPL-3.0-only" if kind == "comfyui" else PYPROJECT["project"]["license"])
    assert labels["org.opencontainers.image.title"] == f"bookjob-{kind}"
    version_arg = [rest for keyword, rest in final if keyword == "ARG" and rest.startswith("VERSION=")]
    assert version_arg == [f"VERSION={PYPROJECT['project']['version']}"]
    env = {k: v for keyword, rest in final if keyword == "ENV" for k, v in key_values(rest).items()}
    assert env["HOME"] == "/tmp" and env["PATH"].startswith("/opt/venv/bin:")
    text = code(DOCKERFILES[kind])
    assert "PLAYWRIGHT_BROWSERS_PATH" not in text and "playwright install" not in text
    if kind == "cpu":
        assert env["BOOKJOB_CHROMIUM"] == "/usr/bin/chromium"
    elif kind == "gpu":
        assert env["BOOKJOB_ANALYZER_MODEL"] == CLUSTER_MODEL_PATH
    if kind != "cpu":
        assert env["HF_HUB_OFFLINE"] == "1"


CLUSTER_MODEL_PATH = ArgoSettings().parameter_defaults["analyzer_model"]


def test_cpu_image_has_chromium_and_fonts_for_every_script_and_no_torch():
    text = " ".join(rest for keyword, rest in instructions(DOCKERFILES["cpu"]) if keyword == "RUN")
    packages = set(re.search(r"apt-get install -y --no-install-recommends ([^&]+)", text).group(1).split())
    # chromium; Noto core: Latin, Cyrillic, Greek, Arabic, Hebrew, Indic; Noto CJK; DejaVu
    assert {"chromium", "fonts-noto-core", "fonts-noto-cjk", "fonts-dejavu-core"} <= packages
    assert '".[render]"' in text and "gpu" not in re.findall(r'"\.\[(.*?)\]"', text)[0]
    assert "torch" not in code(DOCKERFILES["cpu"])


def test_gpu_image_has_torch_and_no_chromium():
    text = code(DOCKERFILES["gpu"])
    assert "chromium" not in text.lower() and '".[gpu]"' in text and "[render" not in text
    torch = [d for d in PYPROJECT["project"]["optional-dependencies"]["gpu"] if d.startswith("torch")]
    assert torch and "==" in torch[0], "the gpu extra pins torch; the image installs that version"


def test_extras_keep_the_images_apart():
    extras = PYPROJECT["project"]["optional-dependencies"]
    names = lambda deps: {re.split(r"[<>=!\[; ]", d, maxsplit=1)[0].lower() for d in deps}  # noqa: E731
    assert not names(extras["render"]) & {"torch", "transformers"}
    assert not names(extras["gpu"]) & {"playwright"}
    assert not names(PYPROJECT["project"]["dependencies"]) & {"torch", "transformers", "playwright"}


def _imports(modules: list[str], blocked: list[str]) -> subprocess.CompletedProcess:
    code = (f"import sys\nfor name in {blocked!r}:\n    sys.modules[name] = None\n"
            f"import importlib\nfor module in {modules!r}:\n    importlib.import_module(module)\n"
            f"print('ok')\n")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)


def test_steps_import_with_only_their_images_libraries():
    """The CPU image has no torch/transformers, the GPU image no Chromium: the steps each image
    runs must import without them (heavy imports happen inside the backend that needs them)."""
    steps = [*PIPELINE, ON_EXIT]
    cpu = [s.module for s in steps if s.resources == "cpu"]
    gpu = [s.module for s in steps if s.resources == "gpu"]
    assert cpu and gpu
    done = _imports(cpu, ["torch", "transformers"])
    assert done.stdout.strip() == "ok", done.stderr
    done = _imports(gpu, ["steps.backends.chromium", "steps.backends.typesetter"])
    assert done.stdout.strip() == "ok", done.stderr
    # and the block is real: importing torch fails under it
    assert _imports(["torch"], ["torch"]).returncode != 0


def _dockerignore() -> list[tuple[bool, str]]:
    rules = []
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            rules.append((line.startswith("!"), line.lstrip("!").rstrip("/")))
    return rules


def _ignored(path: str) -> bool:
    """Docker's rule: the last matching pattern wins; a pattern matching a parent covers it."""
    ignored = False
    parts = path.split("/")
    for negated, pattern in _dockerignore():
        pattern_re = pattern.replace("**/", "")
        for i in range(1, len(parts) + 1):
            prefix = "/".join(parts[:i])
            if fnmatch(prefix, pattern) or (pattern.startswith("**/") and fnmatch(parts[i - 1], pattern_re)):
                ignored = not negated
                break
    return ignored


def test_build_context_holds_only_what_the_images_install():
    for kind, path in DOCKERFILES.items():
        for keyword, rest in instructions(path):
            if keyword != "COPY" or rest.startswith("--from"):
                continue
            *sources, _ = shlex.split(rest)
            for source in sources:
                assert (ROOT / source).exists(), f"{kind}: COPY {source} does not exist"
                assert not _ignored(source.rstrip("/")), f"{kind}: COPY {source} is excluded by .dockerignore"
    for kept in ["pyproject.toml", "README.md", "steps/core/store.py", "pipeline/spec.py", "images/model/README.md"]:
        assert not _ignored(kept), kept
    for kept in ["images/comfyui/extra_model_paths.yaml", "images/comfyui/constraints.txt"]:
        assert not _ignored(kept), kept
    for left_out in [".venv", ".git", "bookjob-store", "tests", "helm", "docs", "steps/__pycache__/x.pyc",
                     "images/gpu.Dockerfile", "images/comfyui.Dockerfile", "models"]:
        assert _ignored(left_out), left_out


def test_no_model_weights_in_the_repository():
    """The GPU image's weights come from `--build-context model=DIR` or a mounted volume; the
    placeholder folder holds only its note."""
    assert [p.name for p in (IMAGES / "model").iterdir()] == ["README.md"]
    assert "--build-context model=" in DOCKERFILES["gpu"].read_text()
    big = [p for p in IMAGES.rglob("*") if p.is_file() and p.stat().st_size > 64_000]
    assert big == []


def test_make_images_says_when_docker_is_missing(tmp_path):
    """Without a Docker daemon `make images` stops with a clear message instead of a stack of
    docker errors (PATH holds a docker that cannot reach a daemon)."""
    fake = tmp_path / "docker"
    fake.write_text("#!/bin/sh\nexit 1\n")
    fake.chmod(0o755)
    done = subprocess.run(["make", "--no-print-directory", "images"], capture_output=True, text=True, cwd=ROOT,
                          env={"PATH": f"{tmp_path}:/usr/bin:/bin"})
    assert done.returncode != 0 and "no usable Docker here" in done.stdout


# ---- the ComfyUI sidecar image -------------------------------------------------------------------

# The sidecar contract the Argo template compiles (pipeline/argo.py) and the image's CMD: ComfyUI on
# loopback, every directory it writes under /tmp (the pod's emptyDir; the root filesystem is
# read-only), its model folders from images/comfyui/extra_model_paths.yaml.
SIDECAR_COMMAND = ["/opt/venv/bin/python", "/opt/comfyui/main.py", "--listen", "127.0.0.1", "--port", "8188",
                   "--input-directory", "/tmp/comfyui/input", "--output-directory", "/tmp/comfyui/output",
                   "--temp-directory", "/tmp/comfyui/temp", "--user-directory", "/tmp/comfyui/user",
                   "--extra-model-paths-config", "/opt/comfyui/extra_model_paths.yaml"]
COMFYUI = IMAGES / "comfyui"
DATA = ROOT / "tests" / "data" / "comfyui" / "README.md"


def _final_json(keyword: str) -> list:
    import json

    final = stages(DOCKERFILES["comfyui"])[-1]
    return [json.loads(rest) for k, rest in final if k == keyword]


def test_comfyui_image_runs_the_sidecar_contract():
    """CMD is the contract; the template's sidecar (when it names a command) says the same."""
    assert _final_json("CMD") == [SIDECAR_COMMAND]
    assert SIDECAR_COMMAND[SIDECAR_COMMAND.index("--port") + 1] == str(ArgoSettings().comfyui_port)
    writable = [SIDECAR_COMMAND[i + 1] for i, arg in enumerate(SIDECAR_COMMAND) if arg.endswith("-directory")]
    assert len(writable) == 4 and all(path.startswith("/tmp/") for path in writable)
    template = build(ArgoSettings()).to_dict()
    sidecars = [s for t in template["spec"]["templates"] for s in (t.get("sidecars") or [])]
    assert sidecars and all(s["image"] == ArgoSettings().comfyui_sidecar_image for s in sidecars)
    for sidecar in sidecars:
        if "command" in sidecar:  # compiled by pipeline/argo.py (issue 12, point 5)
            assert sidecar["command"] + sidecar.get("args", []) == SIDECAR_COMMAND


def test_comfyui_image_pins_the_servers_the_tests_describe():
    """ComfyUI and the IP-Adapter nodes at the commits of the captured object_info the ComfyUI
    double validates against; fetched by hash and checked; their Python dependencies pinned."""
    text = " ".join(code(DOCKERFILES["comfyui"]).split())
    args = {k: v for keyword, rest in instructions(DOCKERFILES["comfyui"]) if keyword == "ARG"
            for k, v in key_values(rest).items()}
    provenance = DATA.read_text()
    for name in ("COMFYUI_COMMIT", "IPADAPTER_COMMIT"):
        assert re.fullmatch(r"[0-9a-f]{40}", args[name]) and args[name] in provenance
    assert "https://github.com/Comfy-Org/ComfyUI.git /opt/comfyui" in text
    assert ("https://github.com/cubiq/ComfyUI_IPAdapter_plus.git "
            "/opt/comfyui/custom_nodes/ComfyUI_IPAdapter_plus") in text
    assert 'test "$(git -C "$2" rev-parse HEAD)" = "$3"' in text
    assert re.search(r'"insightface==[\d.]+"', text) and re.search(r'"onnxruntime-gpu==[\d.]+"', text)
    constraints = [line for line in (COMFYUI / "constraints.txt").read_text().splitlines()
                   if line and not line.startswith("#")]
    assert {line.split("==")[0] for line in constraints} >= {"torch", "torchvision", "torchaudio"}
    assert all(re.fullmatch(r"[\w-]+==[\d.]+", line) for line in constraints)


def test_comfyui_models_are_mounted_never_baked():
    config = yaml.safe_load((COMFYUI / "extra_model_paths.yaml").read_text())
    (entry,) = config.values()
    assert entry["base_path"] == "/models/comfyui" and entry["is_default"] is True
    assert {"checkpoints", "controlnet", "clip_vision", "ipadapter", "loras"} <= set(entry)
    assert all(entry[kind] == kind for kind in entry if kind not in ("base_path", "is_default"))
    text = code(DOCKERFILES["comfyui"])
    assert "ln -s /models/comfyui/insightface /opt/comfyui/models/insightface" in text
    copies = [rest for keyword, rest in instructions(DOCKERFILES["comfyui"]) if keyword in ("COPY", "ADD")]
    assert all(rest.startswith("--from=build") or "images/comfyui/" in rest for rest in copies), copies
    assert not [p for p in COMFYUI.rglob("*") if p.suffix in (".safetensors", ".pth", ".bin", ".onnx", ".ckpt")]


def test_comfyui_image_is_a_server_with_a_health_check():
    final = stages(DOCKERFILES["comfyui"])[-1]
    health = [rest for keyword, rest in final if keyword == "HEALTHCHECK"]
    assert len(health) == 1 and "http://127.0.0.1:8188/system_stats" in health[0]
    assert [rest for keyword, rest in final if keyword == "EXPOSE"] == ["8188"]
    assert "checkov:skip" not in DOCKERFILES["comfyui"].read_text()


def test_the_readme_states_the_image_contract():
    readme = " ".join((ROOT / "README.md").read_text().replace("`", "").split())
    assert " ".join(SIDECAR_COMMAND) in readme
    for fact in ("10001:10001", "HOME=/tmp", "read-only volume at /models/comfyui",
                 "a125cd84", "9d076a3d"):
        assert fact in readme, fact
