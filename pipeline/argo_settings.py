"""What a cluster may change in the compiled ``book-job`` template (the Helm chart exposes
the same values; ``pipeline.chart`` maps each field), and the ComfyUI sidecar image's contract."""

from __future__ import annotations

from dataclasses import dataclass, field

SCRATCH = "/tmp"
EXPORT_DIR = f"{SCRATCH}/export"
# The ComfyUI sidecar image's contract (images/comfyui.Dockerfile): where it is installed, what
# it may write (only /tmp, an emptyDir) and where the models are mounted.
COMFYUI_COMMAND = [
    "/opt/venv/bin/python", "/opt/comfyui/main.py", "--listen", "127.0.0.1", "--port", "{port}",
    "--input-directory", "/tmp/comfyui/input", "--output-directory", "/tmp/comfyui/output",
    "--temp-directory", "/tmp/comfyui/temp", "--user-directory", "/tmp/comfyui/user",
    "--extra-model-paths-config", "/opt/comfyui/extra_model_paths.yaml"]
COMFYUI_MODELS = "/models/comfyui"
COMFYUI_UID = 10001

# On a cluster the production backends are the default (issue: GPU backends).
CLUSTER_DEFAULTS = {
    "analyzer": "qwen2-vl",
    "analyzer_model": "/models/qwen2-vl",
    "face_backend": "comfyui",
    "comfyui_url": "http://127.0.0.1:8188",
    "store": "s3://bookjob/data",
}


@dataclass(frozen=True)
class Resources:
    cpu_request: str
    memory_request: str
    memory_limit: str
    cpu_limit: str | None = None
    gpus: int = 0


@dataclass(frozen=True)
class ArgoSettings:
    """Everything a cluster may want to change; the Helm chart exposes the same values."""

    gpu_image: str = "ghcr.io/bookjob/bookjob-gpu:0.1.0"
    cpu_image: str = "ghcr.io/bookjob/bookjob-cpu:0.1.0"
    image_pull_policy: str = "IfNotPresent"
    service_account: str = "bookjob-workflow"
    # False: a cluster without GPUs; every step runs on a CPU pod (no sidecar).
    gpus: bool = True
    gpu_node_selector: dict[str, str] = field(
        default_factory=lambda: {"nvidia.com/gpu.present": "true"})
    gpu_semaphore_configmap: str = "bookjob-gpu-semaphore"
    gpu_semaphore_key: str = "gpu-pods"
    artifact_repository_configmap: str = "bookjob-artifact-repository"
    artifact_repository_key: str = "default"
    notify_secret: str = "bookjob-notify"           # Secret with key `secret` (optional)
    # ComfyUI as a sidecar of the `faces` pod (it then holds the pod's GPU, and the step waits
    # for it); "" = no sidecar: the `comfyui-url` parameter names a ComfyUI service and every
    # page is made on CPU pods.
    comfyui_sidecar_image: str = "ghcr.io/bookjob/comfyui:0.1.0"
    comfyui_port: int = 8188
    comfyui_ready_timeout_s: int = 900
    resources: dict[str, Resources] = field(default_factory=lambda: {
        "gpu": Resources("4", "16Gi", "24Gi", gpus=1),
        "cpu": Resources("1", "1536Mi", "3Gi", cpu_limit="2"),
    })
    # Deadlines replace the old visibility_timeout (3600 s): per attempt, while the pod runs.
    step_deadline_s: dict[str, int] = field(default_factory=lambda: {
        "analyze": 900, "plan": 300, "faces": 3600, "backgrounds": 1800, "render": 1800,
        "assemble": 900, "finalize": 300, "on_exit": 300})
    # The whole job, queueing for a GPU included: the bound on waiting (README "Deadlines").
    workflow_deadline_s: int = 6 * 3600
    ttl_after_completion_s: int = 7 * 24 * 3600
    parameter_defaults: dict[str, str] = field(default_factory=lambda: dict(CLUSTER_DEFAULTS))

    @property
    def sidecar(self) -> bool:
        return self.gpus and bool(self.comfyui_sidecar_image)
