"""The Argo compiler: the one pipeline spec as the ``book-job`` WorkflowTemplate (Hera).

Every step of ``pipeline.spec`` becomes a container template running the same command the
local engine runs; the ``{placeholders}`` of its arguments become Argo parameters. The DAG is

    main:        prepay ─▶ postpay          (each a stage-pass, skipped by the `stage` param)
    stage-pass:  analyze ─▶ plan ─▶ chunk × N (withParam) ─▶ assemble ─▶ finalize
    chunk:       backgrounds ─▶ render
    onExit:      on-exit (marks a failed job analysis_failed / generation_failed, notifies)

GPU steps ask for ``nvidia.com/gpu``, carry a node selector and a toleration for the GPU taint
and hold a ConfigMap semaphore; every pod runs non-root with a read-only root filesystem.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from hera.workflows import DAG, Container, Parameter, Task, WorkflowTemplate
from hera.workflows import models as m

from steps.protocol import EXIT_INPUT

from pipeline.spec import ON_EXIT, PARAMETERS, PIPELINE, TEMPLATE_NAME, Step, argo_name

SCRATCH = "/tmp"
CHUNKS_FILE = f"{SCRATCH}/chunks.json"
EXPORT_DIR = f"{SCRATCH}/export"

# What a step's {placeholder} is inside the compiled template.
RUNTIME_VALUES = {
    "pass_stage": "{{inputs.parameters.pass-stage}}",
    "pages": "{{inputs.parameters.pages}}",
    "chunks_file": CHUNKS_FILE,
    "export_dir": EXPORT_DIR,
    "workflow_status": "{{workflow.status}}",
    "failures": "{{workflow.failures}}",
}
# On a cluster the production backends are the default (issue: GPU backends).
CLUSTER_DEFAULTS = {
    "analyzer": "qwen2-vl",
    "analyzer_model": "/models/qwen2-vl",
    "face_backend": "comfyui",
    "comfyui_url": "http://127.0.0.1:8188",
    "store": "s3://bookjob/data",
}
STAGES = ["prepay", "postpay", "full"]


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
    gpu_node_selector: dict[str, str] = field(
        default_factory=lambda: {"nvidia.com/gpu.present": "true"})
    gpu_semaphore_configmap: str = "bookjob-gpu-semaphore"
    gpu_semaphore_key: str = "gpu-pods"
    artifact_repository_configmap: str = "bookjob-artifact-repository"
    artifact_repository_key: str = "default"
    notify_secret: str = "bookjob-notify"           # Secret with key `secret` (optional)
    # ComfyUI as a sidecar of the backgrounds pod (it then holds the pod's GPU, and the step
    # waits for it); "" = no sidecar, the `comfyui-url` parameter names an in-cluster service.
    comfyui_sidecar_image: str = "ghcr.io/bookjob/comfyui:0.1.0"
    comfyui_port: int = 8188
    comfyui_ready_timeout_s: int = 900
    resources: dict[str, Resources] = field(default_factory=lambda: {
        "gpu": Resources("4", "16Gi", "24Gi", gpus=1),
        "cpu": Resources("1", "1536Mi", "3Gi", cpu_limit="2"),
    })
    # Deadlines replace the old visibility_timeout (3600 s): per step, while running ...
    step_deadline_s: dict[str, int] = field(default_factory=lambda: {
        "analyze": 900, "plan": 300, "backgrounds": 3600, "render": 1800, "assemble": 900,
        "finalize": 300, "on_exit": 300})
    # ... plus time in Pending (the `timeout` counts it), enough for a GPU node to scale in.
    pending_allowance_min: int = 45
    workflow_deadline_s: int = 6 * 3600
    ttl_after_completion_s: int = 7 * 24 * 3600
    parameter_defaults: dict[str, str] = field(default_factory=lambda: dict(CLUSTER_DEFAULTS))


def _placeholder_values() -> dict[str, str]:
    values = {name: f"{{{{workflow.parameters.{argo_name(name)}}}}}" for name in PARAMETERS}
    return {**values, **RUNTIME_VALUES}


def _inputs(step: Step) -> list[Parameter]:
    used = {name for arg in step.args for name in re.findall(r"\{(\w+)\}", arg)}
    return [Parameter(name=argo_name(n)) for n in ("pass_stage", "pages") if n in used]


def _security_context() -> m.SecurityContext:
    return m.SecurityContext(
        allow_privilege_escalation=False, read_only_root_filesystem=True, run_as_non_root=True,
        capabilities=m.Capabilities(drop=["ALL"]),
        seccomp_profile=m.SeccompProfile(type="RuntimeDefault"))


def _resources(r: Resources) -> m.ResourceRequirements:
    requests = {"cpu": m.Quantity(r.cpu_request),
                "memory": m.Quantity(r.memory_request)}
    limits = {"memory": m.Quantity(r.memory_limit)}
    if r.cpu_limit:
        limits["cpu"] = m.Quantity(r.cpu_limit)
    if r.gpus:
        limits["nvidia.com/gpu"] = m.Quantity(str(r.gpus))
    return m.ResourceRequirements(requests=requests, limits=limits)


def _retry(step: Step) -> m.RetryStrategy:
    # Exit code 3 is a permanent input error: never retried. Anything else is transient.
    return m.RetryStrategy(
        limit=m.IntOrString(step.retries), retry_policy="Always",
        expression=f"lastRetry.status == 'Error' || asInt(lastRetry.exitCode) != {EXIT_INPUT}",
        backoff=m.Backoff(duration="15s", factor=m.IntOrString(2), max_duration="20m"))


def _env(settings: ArgoSettings) -> list[m.EnvVar]:
    return [
        m.EnvVar(name="HOME", value=SCRATCH),
        m.EnvVar(name="BOOKJOB_NOTIFY_URL", value="{{workflow.parameters.notify-url}}"),
        m.EnvVar(name="BOOKJOB_NOTIFY_SECRET", value_from=m.EnvVarSource(
            secret_key_ref=m.SecretKeySelector(name=settings.notify_secret, key="secret",
                                               optional=True))),
    ]


def _outputs(step: Step) -> dict:
    if "chunks" in step.outputs:
        return {"outputs": [Parameter(name="chunks", value_from=m.ValueFrom(path=CHUNKS_FILE))]}
    if step.name == "render":
        return {"outputs": [_ui_artifact("pages", EXPORT_DIR, "pages")]}
    if step.name == "assemble":
        return {"outputs": [_ui_artifact("preview", f"{EXPORT_DIR}/preview.pdf", "preview.pdf"),
                            _ui_artifact("book", f"{EXPORT_DIR}/book.pdf", "book.pdf")]}
    return {}


def _ui_artifact(name: str, path: str, key: str) -> m.Artifact:
    """A copy of the final pages / PDFs for the Argo UI to preview (`archive: none`)."""
    return m.Artifact(name=name, path=path, optional=True, archive=m.ArchiveStrategy(none=m.NoneStrategy()),
                      s3=m.S3Artifact(key=f"bookjob/{{{{workflow.parameters.job-id}}}}/{key}"))


def _comfyui_sidecar(settings: ArgoSettings) -> m.UserContainer:
    return m.UserContainer(
        name="comfyui", image=settings.comfyui_sidecar_image,
        image_pull_policy=settings.image_pull_policy,
        ports=[m.ContainerPort(container_port=settings.comfyui_port, name="http")],
        env=[m.EnvVar(name="HOME", value=SCRATCH)],
        resources=_resources(settings.resources["gpu"]),
        security_context=_security_context(),
        volume_mounts=[m.VolumeMount(name="scratch", mount_path=SCRATCH)],
    )


def container(step: Step, settings: ArgoSettings) -> Container:
    """The container template of one step."""
    gpu = step.resources == "gpu"
    sidecar = step.name == "backgrounds" and bool(settings.comfyui_sidecar_image)
    extra: dict = {}
    env = _env(settings)
    resources = settings.resources[step.resources]
    if sidecar:
        extra["sidecars"] = [_comfyui_sidecar(settings)]
        env.append(m.EnvVar(name="BOOKJOB_COMFYUI_READY_TIMEOUT",
                            value=str(settings.comfyui_ready_timeout_s)))
        resources = settings.resources["cpu"]  # the sidecar holds the GPU
    if gpu:
        extra.update(
            node_selector=dict(settings.gpu_node_selector),
            tolerations=[m.Toleration(key="nvidia.com/gpu", operator="Exists", effect="NoSchedule")],
            synchronization=m.Synchronization(semaphores=[m.SemaphoreRef(
                config_map_key_ref=m.ConfigMapKeySelector(
                    name=settings.gpu_semaphore_configmap, key=settings.gpu_semaphore_key))]),
        )
    return Container(
        name=argo_name(step.name),
        image=settings.gpu_image if gpu else settings.cpu_image,
        image_pull_policy=settings.image_pull_policy,
        command=["python", "-m", step.module],
        args=step.argv(_placeholder_values()),
        inputs=_inputs(step),
        env=env,
        resources=_resources(resources),
        security_context=_security_context(),
        volume_mounts=[m.VolumeMount(name="scratch", mount_path=SCRATCH)],
        active_deadline_seconds=settings.step_deadline_s[step.name],
        timeout=f"{settings.step_deadline_s[step.name] // 60 + settings.pending_allowance_min}m",
        retry_strategy=_retry(step),
        labels={"bookjob/step": step.name, "bookjob/resources": step.resources},
        **_outputs(step),
        **extra,
    )


def _metadata() -> m.WorkflowMetadata:
    job, book, stage = ("{{workflow.parameters.job-id}}", "{{workflow.parameters.book}}",
                        "{{workflow.parameters.stage}}")

    def label(param: str) -> m.LabelValueFrom:
        # Label values: at most 63 characters of [A-Za-z0-9._-], alphanumeric at both ends.
        value = f"workflow.parameters['{param}']"
        return m.LabelValueFrom(expression=(
            f"sprig.trimAll('-._', sprig.trunc(63, sprig.regexReplaceAll('[^A-Za-z0-9._-]+', "
            f"sprig.trimPrefix('s3://', {value}), '-')))"))

    return m.WorkflowMetadata(
        labels={"app.kubernetes.io/name": "bookjob", "app.kubernetes.io/component": "book-job"},
        labels_from={"bookjob/job-id": label("job-id"), "bookjob/book": label("book"),
                     "bookjob/stage": label("stage")},
        annotations={"workflows.argoproj.io/title": f"Book job {job} ({stage})",
                     "workflows.argoproj.io/description": f"Book {book}, stage {stage}, job {job}"},
    )


def _parameters(settings: ArgoSettings) -> list[Parameter]:
    defaults = {**PARAMETERS, **settings.parameter_defaults, "notify_url": ""}
    params = []
    for name, default in defaults.items():
        enum = STAGES if name == "stage" else None
        # `job-id` has no useful default: an empty one fails at analyze with a clear message.
        params.append(Parameter(name=argo_name(name), value=default, enum=enum))
    return params


def build(settings: ArgoSettings | None = None) -> WorkflowTemplate:
    """The ``book-job`` WorkflowTemplate."""
    settings = settings or ArgoSettings()
    with WorkflowTemplate(
        name=TEMPLATE_NAME,
        labels={"app.kubernetes.io/name": "bookjob", "app.kubernetes.io/component": "book-job"},
        annotations={"workflows.argoproj.io/description":
                     "A personalised children's book: photo in, print-ready book out."},
        entrypoint="main",
        on_exit=argo_name(ON_EXIT.name),
        arguments=_parameters(settings),
        service_account_name=settings.service_account,
        artifact_repository_ref=m.ArtifactRepositoryRef(
            config_map=settings.artifact_repository_configmap, key=settings.artifact_repository_key),
        security_context=m.PodSecurityContext(
            run_as_non_root=True, run_as_user=10001, run_as_group=10001, fs_group=10001,
            seccomp_profile=m.SeccompProfile(type="RuntimeDefault")),
        volumes=[m.Volume(name="scratch", empty_dir=m.EmptyDirVolumeSource(size_limit=m.Quantity("4Gi")))],
        active_deadline_seconds=settings.workflow_deadline_s,
        pod_gc=m.PodGC(strategy="OnPodSuccess", delete_delay_duration="10m"),
        ttl_strategy=m.TTLStrategy(seconds_after_completion=settings.ttl_after_completion_s),
        workflow_metadata=_metadata(),
    ) as template:
        steps = {s.name: container(s, settings) for s in PIPELINE}
        container(ON_EXIT, settings)

        with DAG(name="chunk", inputs=[Parameter(name="pass-stage"), Parameter(name="pages")]) as chunk:
            args = {"pass-stage": "{{inputs.parameters.pass-stage}}",
                    "pages": "{{inputs.parameters.pages}}"}
            _chain(steps, [s for s in PIPELINE if s.per_chunk], args)

        with DAG(name="stage-pass", inputs=[Parameter(name="pass-stage")]):
            pass_stage = {"pass-stage": "{{inputs.parameters.pass-stage}}"}
            analyze = Task(name="analyze", template=steps["analyze"], arguments=pass_stage,
                           when="'{{inputs.parameters.pass-stage}}' == 'prepay'")
            plan = Task(name="plan", template=steps["plan"], arguments=pass_stage)
            chunks = Task(name="chunk", template=chunk,
                          arguments={**pass_stage, "pages": "{{item}}"},
                          with_param="{{tasks.plan.outputs.parameters.chunks}}")
            assemble = Task(name="assemble", template=steps["assemble"], arguments=pass_stage)
            finalize = Task(name="finalize", template=steps["finalize"], arguments=pass_stage)
            analyze >> plan >> chunks >> assemble >> finalize

        with DAG(name="main"):
            prepay = Task(name="prepay", template="stage-pass", arguments={"pass-stage": "prepay"},
                          when="'{{workflow.parameters.stage}}' != 'postpay'")
            postpay = Task(name="postpay", template="stage-pass", arguments={"pass-stage": "postpay"},
                           when="'{{workflow.parameters.stage}}' != 'prepay'")
            prepay >> postpay
    return template


def _chain(steps: dict[str, Container], chain: list[Step], args: dict[str, str]) -> None:
    previous = None
    for s in chain:
        task = Task(name=argo_name(s.name), template=steps[s.name],
                    arguments={k: v for k, v in args.items()
                               if k in {p.name for p in steps[s.name].inputs or []}})
        if previous is not None:
            previous >> task
        previous = task


def to_yaml(settings: ArgoSettings | None = None) -> str:
    header = ("# Generated by `bookjob templates` from pipeline/spec.py and pipeline/argo.py.\n"
              "# Do not edit: change the pipeline and regenerate (a test fails on drift).\n")
    return header + build(settings).to_yaml()


def write_templates(out: Path, settings: ArgoSettings | None = None) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{TEMPLATE_NAME}.yaml"
    path.write_text(to_yaml(settings))
    return [path]


