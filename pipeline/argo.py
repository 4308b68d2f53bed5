"""The Argo compiler: the one pipeline spec as the ``book-job`` WorkflowTemplate (Hera).

The compiler walks ``pipeline.spec``; it knows no step by name. Every step becomes a container
template running the same command the local engine runs; the ``{placeholders}`` of its
arguments become Argo parameters. The DAGs come from ``Step.depends``:

    main:         one task per pass (analyze, prepay, postpay), each run when `stage` has it
    <pass>-pass:  the pass's steps; the steps of one fan-out list (``Step.fan_out``) are one
                  task over that list (withParam), a DAG of their own when there are several
    onExit:       on-exit (marks a failed job analysis_failed / generation_failed, notifies)

GPU steps ask for ``nvidia.com/gpu``, carry a node selector and a toleration for the GPU taint
and hold a ConfigMap semaphore; a step whose server needs the GPU (``Step.sidecar``) has it
beside it and the sidecar holds the GPU. Every pod runs non-root with a read-only root
filesystem. Deadlines are per attempt (``activeDeadlineSeconds``, counted from the pod's start,
so time queued for the GPU semaphore or a GPU node never counts); no template ``timeout``
(it counts queueing and then replaces the pod deadline — see README "Deadlines").
"""

from __future__ import annotations

from pathlib import Path

from hera.workflows import DAG, Container, Parameter, Task, WorkflowTemplate
from hera.workflows import models as m

from pipeline.argo_settings import (  # noqa: F401
    CLUSTER_DEFAULTS,
    COMFYUI_COMMAND,
    COMFYUI_MODELS,
    COMFYUI_UID,
    EXPORT_DIR,
    SCRATCH,
    ArgoSettings,
    Resources,
)
from pipeline.spec import (
    ON_EXIT,
    PARAMETERS,
    PASSES,
    PIPELINE,
    STAGES,
    TEMPLATE_NAME,
    Step,
    argo_name,
    passes,
    steps_for,
)
from steps.protocol import EXIT_INPUT


def _runtime_values(settings: ArgoSettings) -> dict[str, str]:
    """What the engine fills in a step's arguments, as the compiled template spells it."""
    values = {
        "pass_stage": "{{inputs.parameters.pass-stage}}",
        "pages": "{{inputs.parameters.pages}}",
        "export_dir": EXPORT_DIR,
        # the face backends whose pages go to the GPU step: only where the sidecar holds one
        "gpu_face_backends": "comfyui" if settings.sidecar else "",
        "workflow_status": "{{workflow.status}}",
        "failures": "{{workflow.failures}}",
    }
    for step in PIPELINE:
        for name, placeholder in step.outputs.items():
            values[placeholder.strip("{}")] = f"{SCRATCH}/{argo_name(name)}.json"
    return values


def _placeholder_values(settings: ArgoSettings) -> dict[str, str]:
    values = {name: f"{{{{workflow.parameters.{argo_name(name)}}}}}" for name in PARAMETERS}
    return {**values, **_runtime_values(settings)}


INPUTS = ("pass_stage", "pages")          # the placeholders a task passes to its step


def _inputs(step: Step) -> list[Parameter]:
    used = set(step.placeholders())
    return [Parameter(name=argo_name(n)) for n in INPUTS if n in used]


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
    """Exit code 3 is a permanent input error: never retried; anything else is transient.

    No ``backoff.maxDuration``: it is one window from the first attempt's start that also cuts
    each later attempt's deadline (``operator.go`` processNodeRetries), so a long step could
    never be retried. Each attempt has its own ``activeDeadlineSeconds``; the workflow's
    deadline bounds the whole series."""
    return m.RetryStrategy(
        limit=m.IntOrString(step.retries), retry_policy="Always",
        expression=f"lastRetry.status == 'Error' || asInt(lastRetry.exitCode) != {EXIT_INPUT}",
        backoff=m.Backoff(duration="15s", factor=m.IntOrString(2)))


NO_GPU = m.EnvVar(name="NVIDIA_VISIBLE_DEVICES", value="void")


def _env(settings: ArgoSettings, gpu: bool) -> list[m.EnvVar]:
    env = [
        m.EnvVar(name="HOME", value=SCRATCH),
        m.EnvVar(name="BOOKJOB_NOTIFY_URL", value="{{workflow.parameters.notify-url}}"),
        m.EnvVar(name="BOOKJOB_NOTIFY_SECRET", value_from=m.EnvVarSource(
            secret_key_ref=m.SecretKeySelector(name=settings.notify_secret, key="secret",
                                               optional=True))),
    ]
    # The GPU image sets NVIDIA_VISIBLE_DEVICES=all: a container without a GPU limit would see
    # every GPU of its node. "void": the NVIDIA runtime gives it none.
    return env if gpu else [*env, NO_GPU]


def _outputs(step: Step) -> dict:
    params = [Parameter(name=argo_name(name), value_from=m.ValueFrom(path=f"{SCRATCH}/{argo_name(name)}.json"))
              for name in step.outputs]
    artifacts = [_ui_artifact(e.name, f"{EXPORT_DIR}/{e.path}".rstrip("/"), e.path or e.name)
                 for e in step.exports]
    outputs = [*params, *artifacts]
    return {"outputs": outputs} if outputs else {}


def _ui_artifact(name: str, path: str, key: str) -> m.Artifact:
    """A copy of the final pages / PDFs for the Argo UI to preview (`archive: none`)."""
    return m.Artifact(name=name, path=path, optional=True, archive=m.ArchiveStrategy(none=m.NoneStrategy()),
                      s3=m.S3Artifact(key=f"bookjob/{{{{workflow.parameters.job-id}}}}/{key}"))


def _comfyui_sidecar(settings: ArgoSettings) -> m.UserContainer:
    """ComfyUI beside the step, holding the pod's GPU: an explicit command (no registry
    look-up of the image's entrypoint, ``workflowpod.go``), writable folders under /tmp (an
    emptyDir), the models read-only from the pod's ``comfyui-models`` volume when the chart
    mounts one."""
    command = [a.replace("{port}", str(settings.comfyui_port)) for a in COMFYUI_COMMAND]
    return m.UserContainer(
        name="comfyui", image=settings.comfyui_sidecar_image,
        image_pull_policy=settings.image_pull_policy,
        command=command,
        ports=[m.ContainerPort(container_port=settings.comfyui_port, name="http")],
        env=[m.EnvVar(name="HOME", value=SCRATCH)],
        resources=_resources(settings.resources["gpu"]),
        security_context=m.SecurityContext(
            allow_privilege_escalation=False, read_only_root_filesystem=True, run_as_non_root=True,
            run_as_user=COMFYUI_UID, run_as_group=COMFYUI_UID,
            capabilities=m.Capabilities(drop=["ALL"]),
            seccomp_profile=m.SeccompProfile(type="RuntimeDefault")),
        volume_mounts=[m.VolumeMount(name="scratch", mount_path=SCRATCH)],
    )


def _gpu_placement(settings: ArgoSettings) -> dict:
    return dict(
        node_selector=dict(settings.gpu_node_selector),
        tolerations=[m.Toleration(key="nvidia.com/gpu", operator="Exists", effect="NoSchedule")],
        synchronization=m.Synchronization(semaphores=[m.SemaphoreRef(
            config_map_key_ref=m.ConfigMapKeySelector(
                name=settings.gpu_semaphore_configmap, key=settings.gpu_semaphore_key))]),
    )


def compiled_steps(settings: ArgoSettings) -> list[Step]:
    """The spec's steps. One that needs a sidecar where the cluster has none is compiled as a
    CPU step; it then gets no work (``gpu_face_backends`` is empty, so its list is)."""
    return list(PIPELINE)


def container(step: Step, settings: ArgoSettings) -> Container:
    """The container template of one step."""
    gpu = step.resources == "gpu" and settings.gpus and (settings.sidecar or not step.sidecar)
    extra: dict = {"sidecars": [_comfyui_sidecar(settings)]} if gpu and step.sidecar else {}
    holds_gpu = gpu and not step.sidecar   # else the sidecar holds it
    env = _env(settings, holds_gpu)
    if extra:
        env.append(m.EnvVar(name="BOOKJOB_COMFYUI_READY_TIMEOUT",
                            value=str(settings.comfyui_ready_timeout_s)))
    if gpu:
        extra.update(_gpu_placement(settings))
    return Container(
        name=argo_name(step.name),
        image=settings.gpu_image if holds_gpu else settings.cpu_image,
        image_pull_policy=settings.image_pull_policy,
        command=["python", "-m", step.module],
        args=step.argv(_placeholder_values(settings)),
        inputs=_inputs(step),
        env=env,
        resources=_resources(settings.resources["gpu" if holds_gpu else "cpu"]),
        security_context=_security_context(),
        volume_mounts=[m.VolumeMount(name="scratch", mount_path=SCRATCH)],
        active_deadline_seconds=settings.step_deadline_s[step.name],
        retry_strategy=_retry(step),
        labels={"bookjob/step": step.name, "bookjob/resources": "gpu" if gpu else "cpu"},
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


def _either(expr: str, values: list[str]) -> str:
    # quoted on both sides: the same under govaluate (v3.x) and expr (v4) `when` evaluation
    return " || ".join(f"'{expr}' == '{v}'" for v in values)


def _task_name(step: Step, group: list[Step]) -> str:
    return argo_name(step.name if len(group) == 1 else step.fan_out)


def _pass_dag(pass_name: str, settings: ArgoSettings, containers: dict[str, Container],
              groups: dict[str, Task | DAG]) -> None:
    """The DAG of one pass: its steps as tasks, depends from the spec, one task per fan-out."""
    chosen = [s for s in steps_for(pass_name) if s in compiled_steps(settings)]
    names = {s.name for s in chosen}
    producer = {out: s for s in chosen for out in s.outputs}
    task_of: dict[str, str] = {}
    members: dict[str, list[Step]] = {}
    for s in chosen:
        if s.fan_out:
            members.setdefault(s.fan_out, []).append(s)
    for s in chosen:
        task_of[s.name] = _task_name(s, members[s.fan_out]) if s.fan_out else argo_name(s.name)

    with DAG(name=f"{pass_name}-pass"):
        made: set[str] = set()
        for s in chosen:
            task = task_of[s.name]
            if task in made:
                continue
            made.add(task)
            group = members.get(s.fan_out, [s]) if s.fan_out else [s]
            deps = sorted({task_of[d] for g in group for d in g.depends if d in names} - {task},
                          key=list(task_of.values()).index)
            kwargs: dict = {}
            if s.fan_out:
                source = producer[s.fan_out]
                deps = deps if task_of[source.name] in deps else [*deps, task_of[source.name]]
                kwargs["with_param"] = (f"{{{{tasks.{task_of[source.name]}.outputs.parameters."
                                        f"{argo_name(s.fan_out)}}}}}")
            template = containers[s.name] if len(group) == 1 else groups[s.fan_out]
            inputs = {p.name for g in group for p in containers[g.name].inputs or []}
            arguments = {"pass-stage": pass_name, "pages": "{{item}}"}
            skips = [g.skip_if for g in group if g.skip_if]
            if skips:
                kwargs["when"] = " && ".join(
                    f"'{{{{workflow.parameters.{argo_name(p)}}}}}' != 'true'" for p in skips)
            Task(name=task, template=template,
                 arguments={k: v for k, v in arguments.items() if k in inputs},
                 depends=" && ".join(deps) or None, **kwargs)


def _fan_out_dags(settings: ArgoSettings, containers: dict[str, Container]) -> dict[str, DAG]:
    """A DAG for each fan-out list run by more than one step (e.g. backgrounds then render)."""
    lists: dict[str, list[Step]] = {}
    for s in compiled_steps(settings):
        if s.fan_out:
            lists.setdefault(s.fan_out, []).append(s)
    dags = {}
    for fan_out, group in lists.items():
        if len(group) == 1:
            continue
        inputs = sorted({p.name for g in group for p in containers[g.name].inputs or []},
                        key=[argo_name(n) for n in INPUTS].index)
        names = {g.name for g in group}
        with DAG(name=argo_name(fan_out), inputs=[Parameter(name=n) for n in inputs]) as dag:
            for g in group:
                own = {p.name for p in containers[g.name].inputs or []}
                deps = [argo_name(d) for d in g.depends if d in names]
                Task(name=argo_name(g.name), template=containers[g.name],
                     arguments={n: f"{{{{inputs.parameters.{n}}}}}" for n in inputs if n in own},
                     depends=" && ".join(deps) or None)
        dags[fan_out] = dag
    return dags


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
        # Failed pods stay (their logs with them); successful ones go once the workflow is done,
        # their logs kept by archiveLogs in the artifact repository.
        pod_gc=m.PodGC(strategy="OnWorkflowCompletion", delete_delay_duration="1h"),
        archive_logs=True,
        ttl_strategy=m.TTLStrategy(seconds_after_completion=settings.ttl_after_completion_s),
        workflow_metadata=_metadata(),
    ) as template:
        containers = {s.name: container(s, settings) for s in compiled_steps(settings)}
        container(ON_EXIT, settings)
        groups = _fan_out_dags(settings, containers)
        for pass_name in passes():
            _pass_dag(pass_name, settings, containers, groups)
        with DAG(name="main"):
            tasks = {}
            for pass_name in passes():
                stages = [st for st, ps in PASSES.items() if pass_name in ps]
                tasks[pass_name] = Task(name=pass_name, template=f"{pass_name}-pass",
                                        when=_either("{{workflow.parameters.stage}}", stages))
            for ps in PASSES.values():
                for before, after in zip(ps, ps[1:]):
                    tasks[before] >> tasks[after]
    return template


def to_yaml(settings: ArgoSettings | None = None) -> str:
    header = ("# Generated by `bookjob templates` from pipeline/spec.py and pipeline/argo.py.\n"
              "# Do not edit: change the pipeline and regenerate (a test fails on drift).\n")
    return header + build(settings).to_yaml()


def write_templates(out: Path, settings: ArgoSettings | None = None) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{TEMPLATE_NAME}.yaml"
    path.write_text(to_yaml(settings))
    return [path]
