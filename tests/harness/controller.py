"""Workflows run as the controller runs them: DAGs, fan-out, retries, semaphores, deadlines,
the exit handler. Each rule names the controller source it follows (argoproj/argo-workflows,
``workflow/controller/``; see ``/work/notes/argo-controller.md`` for the versions read)."""

from __future__ import annotations

import random
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from tests.harness.expr import Unsupported, substitute, workflow_failures
from tests.harness.pod import PodResult, run_pod

DONE = ("Succeeded", "Failed", "Error", "Skipped", "Omitted")


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _seconds(duration: str | int) -> float:
    """Go time.ParseDuration for what templates use (``15s``, ``20m``, ``1h30m``); a bare
    number is seconds where the field allows it (backoff.duration)."""
    if isinstance(duration, int) or str(duration).isdigit():
        return float(duration)
    parts = re.findall(r"(\d+(?:\.\d+)?)(h|m|s|ms)", str(duration))
    if not parts or "".join(a + b for a, b in parts) != str(duration):
        raise ValueError(f"invalid duration {duration!r}")
    unit = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    return sum(float(a) * unit[b] for a, b in parts)


def _humanize(seconds: float) -> str:
    """argoproj/pkg humanize.Duration, as in ``Backoff for 15 seconds``."""
    s = int(seconds)
    if s < 60:
        return f"{s} second{'s' if s != 1 else ''}"
    m = s // 60
    return f"{m} minute{'s' if m != 1 else ''}"


@dataclass
class Node:
    id: str
    name: str
    display_name: str
    type: str                      # DAG | TaskGroup | Retry | Pod | Skipped
    template_name: str
    phase: str = "Pending"
    message: str = ""
    started_at: str = ""
    finished_at: str = ""
    pod_name: str = ""
    children: list[str] = field(default_factory=list)
    outputs: dict[str, str] = field(default_factory=dict)
    exit_code: int | None = None
    progress: str = ""
    waiting_for_lock: str = ""

    def failure_entry(self) -> dict:
        return {"displayName": self.display_name, "message": self.message,
                "templateName": self.template_name, "phase": self.phase,
                "podName": self.pod_name, "finishedAt": self.finished_at or None}


@dataclass
class PodRun:
    node: Node
    template: dict                 # as substituted for this attempt
    result: PodResult
    started: float
    finished: float


class Controller:
    """Shared across workflows: the semaphores (``workflow/sync``) and the settings of a run.

    ``time_scale`` shrinks every backoff wait (15 s -> 0.15 s at 0.01) so tests are fast;
    ``deadline_scale`` does the same for activeDeadlineSeconds / timeout / workflow deadlines.
    ``delays``: template name -> seconds a pod of it runs before its program (a slow step).
    ``style``: "v3" or "v4" node messages for failed pods."""

    def __init__(self, workdir: Path, configmaps: dict[str, dict[str, str]] | None = None,
                 namespace: str = "books", env: dict[str, str] | None = None,
                 time_scale: float = 0.01, deadline_scale: float = 1.0,
                 delays: dict[str, float] | None = None, style: str = "v3",
                 sidecars: dict | None = None) -> None:
        self.workdir, self.configmaps, self.namespace = workdir, configmaps or {}, namespace
        self.env = dict(env or {})
        self.time_scale, self.deadline_scale = time_scale, deadline_scale
        self.delays, self.style, self.sidecars = delays or {}, style, sidecars or {}
        self.locks = threading.Condition()
        self.holders: dict[str, set[str]] = {}
        self.queues: dict[str, list[str]] = {}

    def run(self, template: dict, parameters: dict[str, str], name: str | None = None) -> Workflow:
        wf = self.submit(template, parameters, name)
        wf.join()
        return wf

    def submit(self, template: dict, parameters: dict[str, str], name: str | None = None) -> Workflow:
        wf = Workflow(self, template, parameters, name or f"book-job-{uuid.uuid4().hex[:5]}")
        wf.start()
        return wf

    # --- semaphores: workflow/sync (semaphore.go tryAcquire, prioritysemaphore) --------------
    def lock_name(self, ref: dict) -> str:
        cm = ref.get("configMapKeyRef")
        if not cm or set(ref) - {"configMapKeyRef", "namespace"}:
            raise Unsupported(f"semaphore {ref}")
        return f"{self.namespace}/ConfigMap/{cm['name']}/{cm['key']}"

    def limit(self, lock: str) -> int | None:
        _, _, cm, key = lock.split("/", 3)
        try:
            return int(self.configmaps[cm][key])
        except (KeyError, ValueError):
            return None

    def try_acquire(self, lock: str, holder: str) -> tuple[bool, str]:
        """Holder = the node executing the template (for a template with retries, the Retry
        parent: held across attempts and backoff — operator.go executeTemplate). FIFO queue: a
        waiter not at the head waits even if a slot is free."""
        limit = self.limit(lock)
        if limit is None:
            raise LookupError(f"Failed to get semaphore limit for {lock}")
        held = self.holders.setdefault(lock, set())
        if holder in held:
            return True, ""
        queue = self.queues.setdefault(lock, [])
        if holder not in queue:
            queue.append(holder)
        if len(held) < limit and queue[0] == holder:
            queue.pop(0)
            held.add(holder)
            return True, ""
        return False, f"Waiting for {lock} lock. Lock status: {max(0, limit - len(held))}/{limit}"

    def release(self, lock: str, holder: str) -> None:
        with self.locks:
            self.holders.get(lock, set()).discard(holder)
            if holder in self.queues.get(lock, []):
                self.queues[lock].remove(holder)
            self.locks.notify_all()


class Workflow:
    def __init__(self, controller: Controller, template: dict, parameters: dict[str, str], name: str) -> None:
        if template.get("kind") not in ("WorkflowTemplate", "Workflow"):
            raise Unsupported(f"kind {template.get('kind')}")
        self.c, self.name, self.spec = controller, name, template["spec"]
        self.templates = {t["name"]: t for t in self.spec["templates"]}
        self.nodes: dict[str, Node] = {}
        self.pods: list[PodRun] = []
        self.phase, self.message = "Running", ""
        self.mutex = threading.Lock()
        self.thread = threading.Thread(target=self._operate, name=name, daemon=True)
        self.error: BaseException | None = None
        declared = {p["name"]: p for p in self.spec.get("arguments", {}).get("parameters", [])}
        unknown = set(parameters) - set(declared)
        if unknown:
            raise ValueError(f"parameters not declared by the template: {sorted(unknown)}")
        self.parameters = {n: str(parameters.get(n, p.get("value", ""))) for n, p in declared.items()}
        for n, p in declared.items():  # validation of enum parameters at submission
            if p.get("enum") and self.parameters[n] not in p["enum"]:
                raise ValueError(f"{n}={self.parameters[n]} is not one of {p['enum']}")
        self.globals = {"workflow.name": name, "workflow.namespace": controller.namespace,
                        "workflow.uid": str(uuid.uuid4()),
                        **{f"workflow.parameters.{k}": v for k, v in self.parameters.items()}}
        deadline = self.spec.get("activeDeadlineSeconds")
        self.deadline = None if deadline is None else \
            time.monotonic() + deadline * controller.deadline_scale
        self.workdir = controller.workdir / name

    # --- running -----------------------------------------------------------------------------
    def start(self) -> None:
        self.thread.start()

    def join(self, timeout: float = 600) -> None:
        self.thread.join(timeout)
        if self.thread.is_alive():
            raise TimeoutError(f"workflow {self.name} still running after {timeout} s")
        if self.error is not None:
            raise self.error

    def _operate(self) -> None:
        """operator.go operate: the entry node, then {{workflow.status}} and
        {{workflow.failures}}, then the onExit handler (run even after a failure; its pods
        ignore the workflow deadline)."""
        try:
            entry = self._execute(self.spec["entrypoint"], self.name, self.name, {}, exit_handler=False)
            status = entry.phase if entry.phase in ("Failed", "Error") else "Succeeded"
            self.phase, self.message = status, entry.message
            on_exit = self.spec.get("onExit")
            if on_exit:
                with self.mutex:
                    nodes = list(self.nodes.values())
                random.shuffle(nodes)            # Go map iteration order
                self.globals["workflow.status"] = status
                self.globals["workflow.failures"] = workflow_failures([n.failure_entry() for n in nodes])
                handler = self._execute(on_exit, f"{self.name}.onExit", f"{self.name}.onExit", {},
                                        exit_handler=True)
                if handler.phase != "Succeeded" and status == "Succeeded":
                    self.phase, self.message = handler.phase, handler.message
        except BaseException as e:  # noqa: BLE001 - reported by join()
            self.error = e
            self.phase = "Error"

    def _node(self, name: str, display: str, kind: str, template: str) -> Node:
        with self.mutex:
            node = Node(id=f"{self.name}-{abs(hash(name)) % 10**10}", name=name, display_name=display,
                        type=kind, template_name=template, started_at=_now())
            # util.GeneratePodName (POD_NAMES v2), computed for every node (also in failures)
            node.pod_name = self.name if name == self.name else \
                f"{self.name}-{template}-{_fnv32a(name)}"
            self.nodes[node.id] = node
            return node

    def _finish(self, node: Node, phase: str, message: str = "") -> Node:
        with self.mutex:
            node.phase, node.message, node.finished_at = phase, message, _now()
        return node

    def _scope(self, inputs: dict[str, str]) -> dict[str, str]:
        return {**self.globals, **{f"inputs.parameters.{k}": v for k, v in inputs.items()}}

    def _inputs(self, template: dict, args: dict[str, str]) -> dict[str, str]:
        values = {}
        for p in template.get("inputs", {}).get("parameters", []):
            if p["name"] in args:
                values[p["name"]] = args[p["name"]]
            elif "value" in p or "default" in p:
                values[p["name"]] = str(p.get("value", p.get("default")))
            else:
                raise ValueError(f"inputs.parameters.{p['name']} was not supplied")
        return values

    def _execute(self, name: str, node_name: str, display: str, args: dict[str, str],
                 exit_handler: bool) -> Node:
        template = self.templates[name]
        supported = {"name", "inputs", "outputs", "dag", "container", "retryStrategy", "metadata",
                     "synchronization", "activeDeadlineSeconds", "timeout", "nodeSelector",
                     "tolerations", "sidecars", "podSpecPatch", "volumes"}
        if set(template) - supported:
            raise Unsupported(f"template fields {sorted(set(template) - supported)}")
        inputs = self._inputs(template, args)
        if "dag" in template:
            from tests.harness.dag import execute_dag
            return execute_dag(self, template, node_name, display, inputs, exit_handler)
        return self._execute_container(template, node_name, display, inputs, exit_handler)

    def _execute_container(self, template: dict, node_name: str, display: str,
                           inputs: dict[str, str], exit_handler: bool) -> Node:
        retry = template.get("retryStrategy")
        node = self._node(node_name, display, "Retry" if retry else "Pod", template["name"])
        locks = [self.c.lock_name(ref) for ref in
                 template.get("synchronization", {}).get("semaphores", [])]
        if set(template.get("synchronization", {})) - {"semaphores"}:
            raise Unsupported(f"synchronization {template['synchronization']}")
        try:
            if not self._acquire(node, template, locks):
                return node
            if retry:
                from tests.harness.retry import execute_retries
                return execute_retries(self, template, node, inputs, exit_handler)
            self._attempt(template, node, inputs, exit_handler, {"retries": "0"})
            return node
        finally:
            for lock in locks:
                self.c.release(lock, node.id)

    def _acquire(self, node: Node, template: dict, locks: list[str]) -> bool:
        """operator.go executeTemplate: checkTemplateTimeout (a Pending node past its
        ``timeout`` fails with message "timeout"), then TryAcquire; while waiting the node is
        Pending with the waiting message (markNodeWaitingForLock)."""
        timeout = template.get("timeout")
        started = time.monotonic()
        for lock in locks:
            with self.c.locks:
                while True:
                    try:
                        acquired, message = self.c.try_acquire(lock, node.id)
                    except LookupError as e:
                        self._finish(node, "Error", str(e))
                        return False
                    if acquired:
                        node.waiting_for_lock, node.message = "", ""
                        break
                    node.waiting_for_lock, node.message = lock, message
                    if timeout and time.monotonic() - started > _seconds(timeout) * self.c.deadline_scale:
                        self.c.queues[lock].remove(node.id)
                        self._finish(node, "Failed", "timeout")
                        return False
                    self.c.locks.wait(0.05)
        node.phase = "Running"
        return True

    def _attempt(self, template: dict, node: Node, inputs: dict[str, str], exit_handler: bool,
                 retry_scope: dict[str, str], execution_deadline: float | None = None) -> PodResult:
        """One pod: the template substituted (inputs, {{retries}}, {{lastRetry.*}}, {{pod.name}}),
        its deadline (workflowpod.go createWorkflowPod: activeDeadlineSeconds, capped by what is
        left of the workflow's unless an exit handler; ``timeout`` overrides it from the node's
        start), then the process."""
        scope = {**self._scope(inputs), **retry_scope, "pod.name": node.pod_name}
        pod = substitute(template, scope, strict_prefixes=("inputs.", "workflow.parameters."))
        deadline = pod.get("activeDeadlineSeconds")
        deadline = None if deadline is None else float(deadline) * self.c.deadline_scale
        if not exit_handler and self.deadline is not None:
            left = self.deadline - time.monotonic()
            if left <= 0:
                return self._record(node, pod, PodResult("Failed", "Step exceeded its deadline"))
            deadline = left if deadline is None else min(deadline, left)
        if pod.get("timeout"):
            deadline = _seconds(pod["timeout"]) * self.c.deadline_scale
        if execution_deadline is not None:  # ARGO_DEADLINE from backoff.maxDuration
            left = execution_deadline - time.monotonic()
            deadline = left if deadline is None else min(deadline, left)
        node.phase = "Running"
        started = time.monotonic()
        env = {**self.c.env}
        result = run_pod(pod, self.workdir / node.pod_name, env, deadline,
                         self.c.delays.get(template["name"], 0.0), self.c.style, raw=template,
                         sidecars=self.c.sidecars)
        return self._record(node, pod, result, started)

    def _record(self, node: Node, pod: dict, result: PodResult, started: float | None = None) -> PodResult:
        with self.mutex:
            node.exit_code, node.outputs, node.progress = result.exit_code, result.outputs, result.progress
            self.pods.append(PodRun(node, pod, result, started or time.monotonic(), time.monotonic()))
        self._finish(node, result.phase, result.message)
        return result

    # --- what tests look at ------------------------------------------------------------------
    def by_display(self, display: str) -> list[Node]:
        return [n for n in self.nodes.values() if n.display_name == display]

    def pods_of(self, template: str) -> list[PodRun]:
        return [p for p in self.pods if p.node.template_name == template]

    def summary(self) -> str:
        return "\n".join(f"{n.type:9} {n.phase:9} {n.display_name} {n.message}"
                         for n in self.nodes.values())


def _fnv32a(text: str) -> int:
    h = 0x811C9DC5
    for b in text.encode():
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return h


__all__ = ["Controller", "Workflow", "Node", "PodRun"]
