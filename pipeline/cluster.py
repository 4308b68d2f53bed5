"""Book jobs on a cluster: Workflows made from the installed ``book-job`` template.

Two transports with one small interface (create, get, find by job, logs): the Argo Server API
through Hera's ``WorkflowsService`` (``ARGO_SERVER``, ``ARGO_TOKEN``, ``ARGO_NAMESPACE`` as
the argo CLI reads them), and, for clusters that expose no Argo Server, the Kubernetes API
directly (the Workflow custom resource and pod logs) with the user's kubeconfig or the
in-cluster service account.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from pipeline.spec import TEMPLATE_NAME, argo_name
from steps.core.settings import settings

GROUP, VERSION, PLURAL = "argoproj.io", "v1alpha1", "workflows"
DONE = {"Succeeded", "Failed", "Error"}
JOB_LABEL = "bookjob/job-id"


class ClusterError(Exception):
    """The cluster could not be reached or refused the request."""


@dataclass(frozen=True)
class ClusterSettings:
    transport: str               # "argo" | "kubernetes"
    namespace: str
    server: str | None = None    # https://host:2746 (Argo Server)
    token: str | None = None
    insecure: bool = False
    template: str = TEMPLATE_NAME

    @classmethod
    def resolve(cls, server: str | None = None, token: str | None = None,
                namespace: str | None = None, transport: str | None = None,
                insecure: bool = False) -> ClusterSettings:
        """Flags first, then the argo CLI's environment variables."""
        env = os.environ
        server = server or env.get("ARGO_SERVER") or None
        if server and "://" not in server:
            secure = env.get("ARGO_SECURE", "true").lower() != "false"
            server = f"{'https' if secure else 'http'}://{server}"
        insecure = insecure or env.get("ARGO_INSECURE_SKIP_VERIFY", "").lower() == "true"
        return cls(transport=transport or ("argo" if server else "kubernetes"),
                   namespace=namespace or env.get("ARGO_NAMESPACE") or "default",
                   server=server.rstrip("/") if server else None,
                   token=token or env.get("ARGO_TOKEN") or None, insecure=insecure)

    def ui_url(self, name: str) -> str | None:
        base = settings().argo_ui or self.server
        return f"{base.rstrip('/')}/workflows/{self.namespace}/{name}" if base else None


def label_value(text: str) -> str:
    """A Kubernetes label value: at most 63 of [A-Za-z0-9._-], alphanumeric at both ends."""
    import re

    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", text.removeprefix("s3://"))[:63]
    return cleaned.strip("-._")


def book_title(book: str) -> str:
    """The book's title from its manifest, for the UI ("" if it cannot be read now: the steps
    say what is wrong with the book)."""
    import yaml

    from steps.core.manifest import MANIFEST, SAFE_LOADER
    from steps.core.store import open_store

    try:
        data = yaml.load(open_store(book).read(MANIFEST), Loader=SAFE_LOADER)  # noqa: S506
    except Exception:  # noqa: BLE001 - a title is a courtesy; the job reports a bad book
        return ""
    title = data.get("title") if isinstance(data, dict) else None
    return " ".join(str(title).split())[:120] if title else ""


def workflow_manifest(params: dict[str, str], template: str = TEMPLATE_NAME,
                      title: str = "") -> dict:
    """A Workflow that runs the installed template with the job's parameters: the job id, the
    stage and settings (the child's details stay in the job's record). The UI's title and
    description are set in ``spec.workflowMetadata`` too, because the controller writes the
    template's ``workflowMetadata`` annotations over the Workflow's own
    (``workflow/controller/operator.go`` updateWorkflowMetadata, v4.1.2) and the Workflow's
    spec wins over the template's in that merge (``workflow/util/merge.go`` JoinWorkflowSpec)."""
    job, book, stage = params["job_id"], params["book"], params["stage"]
    annotations = {"workflows.argoproj.io/title": f"{job}: {title or book} ({stage})",
                   "workflows.argoproj.io/description": f"Book {book}, stage {stage}, job {job}"}
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Workflow",
        "metadata": {
            "generateName": f"{TEMPLATE_NAME}-",
            "labels": {JOB_LABEL: label_value(job), "bookjob/book": label_value(book),
                       "bookjob/stage": stage},
            "annotations": annotations,
        },
        "spec": {
            "workflowTemplateRef": {"name": template},
            "workflowMetadata": {"annotations": annotations},
            "arguments": {"parameters": [{"name": argo_name(k), "value": str(v)}
                                         for k, v in params.items()]},
        },
    }


# ---- transports -------------------------------------------------------------------------


class ArgoServer:
    """The Argo Server REST API (Hera's WorkflowsService)."""

    def __init__(self, settings: ClusterSettings) -> None:
        from hera.workflows import WorkflowsService

        if not settings.server:
            raise ClusterError("no Argo Server: set ARGO_SERVER or --server, or use "
                               "--transport kubernetes")
        self.settings = settings
        self.service = WorkflowsService(host=settings.server + "/", token=settings.token,
                                        namespace=settings.namespace,
                                        verify_ssl=not settings.insecure)

    def _call(self, method: Callable, *args, **kwargs):
        import requests
        from hera.exceptions import HeraException

        try:
            return method(*args, **kwargs)
        except (HeraException, requests.RequestException) as e:
            raise ClusterError(f"Argo Server {self.settings.server}: {e}") from e

    @staticmethod
    def _plain(model) -> dict:
        return json.loads(model.model_dump_json(by_alias=True, exclude_none=True))

    def create(self, manifest: dict) -> dict:
        from hera.workflows.models import Workflow, WorkflowCreateRequest

        request = WorkflowCreateRequest(namespace=self.settings.namespace,
                                        workflow=Workflow.model_validate(manifest))
        return self._plain(self._call(self.service.create_workflow, request))

    def get(self, name: str) -> dict:
        return self._plain(self._call(self.service.get_workflow, name))

    def find(self, job_id: str) -> list[dict]:
        found = self._call(self.service.list_workflows,
                           label_selector=f"{JOB_LABEL}={label_value(job_id)}")
        return [self._plain(w) for w in found.items or []]

    def terminate(self, name: str) -> dict:
        """Stop a workflow without running its exit handler (Argo's terminate)."""
        from hera.workflows.models import WorkflowTerminateRequest

        request = WorkflowTerminateRequest(name=name, namespace=self.settings.namespace)
        return self._plain(self._call(self.service.terminate_workflow, name, request))

    def logs(self, name: str) -> Iterator[tuple[str, str]]:
        # The log endpoint streams one JSON object per line ({"result": LogEntry}), which
        # Hera's workflow_logs does not parse: read the stream through its session.
        url = f"{self.settings.server}/api/v1/workflows/{self.settings.namespace}/{name}/log"
        headers = {"Authorization": self.service.token} if self.service.token else {}
        response = self._call(self.service.session.get, url, headers=headers, stream=True,
                              params={"logOptions.container": "main"},
                              verify=not self.settings.insecure, timeout=60)
        if not response.ok:
            raise ClusterError(f"Argo Server {self.settings.server}: logs of {name}: "
                               f"HTTP {response.status_code} {response.text[:200]}")
        for line in response.iter_lines():
            if line:
                result = json.loads(line).get("result") or {}
                yield result.get("podName", ""), result.get("content", "")


class Kubernetes:
    """The Kubernetes API: the Workflow custom resource and its pods' logs."""

    def __init__(self, settings: ClusterSettings) -> None:
        from kubernetes import client, config

        try:
            config.load_incluster_config()
        except config.ConfigException:
            try:
                config.load_kube_config()
            except (config.ConfigException, OSError) as e:
                raise ClusterError(f"no Kubernetes configuration: {e}") from e
        self.settings = settings
        self.custom = client.CustomObjectsApi()
        self.core = client.CoreV1Api()

    def _call(self, method: Callable, *args, **kwargs):
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        try:
            return method(*args, **kwargs)
        except (ApiException, HTTPError, OSError) as e:
            raise ClusterError(f"Kubernetes API: {e}") from e

    def create(self, manifest: dict) -> dict:
        return self._call(self.custom.create_namespaced_custom_object, GROUP, VERSION,
                          self.settings.namespace, PLURAL, manifest)

    def get(self, name: str) -> dict:
        return self._call(self.custom.get_namespaced_custom_object, GROUP, VERSION,
                          self.settings.namespace, PLURAL, name)

    def find(self, job_id: str) -> list[dict]:
        found = self._call(self.custom.list_namespaced_custom_object, GROUP, VERSION,
                           self.settings.namespace, PLURAL,
                           label_selector=f"{JOB_LABEL}={label_value(job_id)}")
        return found.get("items", [])

    def terminate(self, name: str) -> dict:
        """Argo's terminate through the resource: ``spec.shutdown: Terminate``."""
        return self._call(self.custom.patch_namespaced_custom_object, GROUP, VERSION,
                          self.settings.namespace, PLURAL, name, {"spec": {"shutdown": "Terminate"}})

    def logs(self, name: str) -> Iterator[tuple[str, str]]:
        pods = self._call(self.core.list_namespaced_pod, self.settings.namespace,
                          label_selector=f"workflows.argoproj.io/workflow={name}")
        from kubernetes.client.exceptions import ApiException

        for pod in sorted(pods.items, key=lambda p: p.metadata.name):
            # Raw bytes: the client's own decoding of this text/plain answer varies by version.
            try:
                response = self.core.read_namespaced_pod_log(
                    pod.metadata.name, self.settings.namespace, container="main",
                    _preload_content=False)
            except ApiException as e:
                # 400 "container "main" in pod … is waiting to start: ContainerCreating" (or
                # PodInitializing, an image pull): no log yet, not an error
                if e.status == 400 and "waiting to start" in str(e.body or e.reason or ""):
                    yield pod.metadata.name, "(not started yet: no log)"
                    continue
                raise ClusterError(f"Kubernetes API: {e}") from e
            except OSError as e:
                raise ClusterError(f"Kubernetes API: {e}") from e
            for line in response.data.decode("utf-8", "replace").splitlines():
                yield pod.metadata.name, line


def running(client: ArgoServer | Kubernetes, job_id: str) -> list[dict]:
    """The job's workflows that have not ended (label ``bookjob/job-id``)."""
    return [w for w in client.find(job_id) if phase(w) not in DONE]


class JobBusy(ClusterError):
    """The job already has a workflow that has not ended."""


def start_workflow(client: ArgoServer | Kubernetes, params: dict[str, str],
                   template: str = TEMPLATE_NAME, replace: bool = False) -> dict:
    """Create the job's workflow: refused while another of the job's workflows runs, unless
    ``replace`` (that one is terminated first)."""
    job_id = params["job_id"]
    for workflow in check_running(client, job_id, replace):
        client.terminate(workflow["metadata"]["name"])
    return client.create(workflow_manifest(params, template, book_title(params["book"])))


def check_running(client: ArgoServer | Kubernetes, job_id: str, replace: bool) -> list[dict]:
    """The job's running workflows (to replace); :class:`JobBusy` if there are and not ``replace``."""
    found = running(client, job_id)
    if found and not replace:
        workflow = found[0]
        raise JobBusy(f"job {job_id} already has workflow {workflow['metadata']['name']} "
                      f"({phase(workflow)}); wait for it, or replace it (--replace)")
    return found


def connect(settings: ClusterSettings) -> ArgoServer | Kubernetes:
    return ArgoServer(settings) if settings.transport == "argo" else Kubernetes(settings)


# ---- following a workflow ---------------------------------------------------------------


def phase(workflow: dict) -> str:
    """Pending until the controller has started it (an empty phase means not yet seen)."""
    return (workflow.get("status") or {}).get("phase") or "Pending"


# Node types whose messages say what a user waits for: a pod (scheduling, image pull, exit
# code), a Retry node ("Backoff for 30 seconds", "No more retries left"; operator.go
# processNodeRetries). A node queued for the GPU semaphore is Pending with "Waiting for … lock"
# and synchronizationStatus.waiting (markNodeWaitingForLock), whatever its type.
SHOWN = ("Pod", "Retry")


def node_lines(workflow: dict) -> list[str]:
    """One line per pod or retry node worth showing: step, phase, progress and message."""
    nodes = (workflow.get("status") or {}).get("nodes") or {}
    lines = []
    for node in sorted(nodes.values(), key=lambda n: (n.get("startedAt") or "", n.get("id", ""))):
        waiting = (node.get("synchronizationStatus") or {}).get("waiting")
        kind = node.get("type")
        if kind not in SHOWN and not waiting:
            continue
        if kind == "Retry" and not node.get("message") and not waiting:
            continue  # its attempts (Pod nodes) say it all
        message = node.get("message") or (f"waiting for {waiting}" if waiting else "")
        phase_text = "Queued" if waiting else node.get("phase")
        progress = f" {node['progress']}" if kind == "Pod" and node.get("progress") and \
            node.get("phase") == "Running" else ""
        lines.append(f"{node.get('displayName', node.get('name'))}: {phase_text}{progress}"
                     + (f" — {message}" if message else ""))
    return lines


def wait(client: ArgoServer | Kubernetes, name: str, timeout_s: float, poll_s: float = 5.0,
         report: Callable[[str], None] = lambda _: None) -> dict:
    """Follow a workflow until it ends; Pending (semaphore, autoscaling) is waited out.
    Raises TimeoutError after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    seen: set[str] = set()
    last_phase = None
    while True:
        workflow = client.get(name)
        current = phase(workflow)
        if current != last_phase:
            message = (workflow.get("status") or {}).get("message")
            report(f"{name}: {current}" + (f" — {message}" if message else ""))
            last_phase = current
        for line in node_lines(workflow):
            if line not in seen:
                seen.add(line)
                report(f"  {line}")
        if current in DONE:
            return workflow
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{name} is still {current} after {timeout_s:.0f} s")
        time.sleep(poll_s)


def cluster_phases(job_id: str, server, token, namespace, transport, insecure,
                   warn: Callable[[str], None] = lambda _: None) -> list[dict] | None:
    """The workflows of a job and their phases, when a cluster is configured; else None."""
    settings = ClusterSettings.resolve(server, token, namespace, transport, insecure)
    if transport is None and not settings.server:
        return None  # no cluster asked for: the store alone answers
    try:
        found = connect(settings).find(job_id)
    except ClusterError as e:
        warn(f"warning: {e}")
        return []
    return [{"workflow": w["metadata"]["name"], "phase": phase(w),
             "message": (w.get("status") or {}).get("message"),
             "ui": settings.ui_url(w["metadata"]["name"])}
            for w in sorted(found, key=lambda w: w["metadata"].get("creationTimestamp") or "")]
