"""Test doubles of the two APIs `bookjob submit/watch/logs/status` talk to, over real HTTP.

- :class:`ArgoServerDouble`: the Argo Server REST API routes the CLI uses. Every request body it
  receives and every response body it sends is validated against Argo v4.1.2's swagger
  definitions (strict: unknown fields are errors); problems are collected in ``problems``.
- :class:`KubernetesDouble`: the Kubernetes API routes for the Workflow custom resource and pod
  logs; posted Workflows are validated against Argo's JSON schema (strict).

Both play a workflow's life from ``phases``: each GET moves it one phase on, e.g. Pending
(waiting for the GPU semaphore) -> Running -> Succeeded.
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

from tests.argo_api import errors, schema_validator, swagger_validator

SEMAPHORE_WAIT = "Waiting for argo/ConfigMap/bookjob-gpu-semaphore/gpu-pods lock. Lock status: 0/1"
DEFAULT_PHASES = [("", None), ("Pending", SEMAPHORE_WAIT), ("Running", None), ("Succeeded", None)]
NOW = "2026-11-28T12:00:00Z"


class _Double:
    """Shared state: workflows, their scripted phases, what was asked, what was wrong."""

    def __init__(self, token: str = "test-token", phases=None) -> None:
        self.token = token
        self.phases = list(phases or DEFAULT_PHASES)
        self.workflows: dict[str, dict] = {}
        self.progress: dict[str, int] = {}
        self.phases_of: dict[str, list] = {}   # a workflow's own phases (terminated)
        self.requests: list[tuple[str, str, dict | None]] = []
        self.problems: list[str] = []
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *_):
        self.server.shutdown()
        self.server.server_close()

    # -- the workflow's life ---------------------------------------------------------------

    def _create(self, workflow: dict, namespace: str) -> dict:
        meta = workflow.setdefault("metadata", {})
        name = meta.get("name") or meta.get("generateName", "wf-") + uuid.uuid4().hex[:5]
        meta.update(name=name, namespace=namespace, uid=str(uuid.uuid4()),
                    creationTimestamp=NOW, resourceVersion="1")
        meta.pop("generateName", None)
        workflow["status"] = {}
        with self.lock:
            self.workflows[name] = workflow
            self.progress[name] = 0
        return workflow

    def _advance(self, name: str) -> dict:
        with self.lock:
            phases = self.phases_of.get(name, self.phases)
            step = min(self.progress[name], len(phases) - 1)
            self.progress[name] += 1
            phase, message = phases[step]
            workflow = self.workflows[name]
        status: dict = {}
        if phase:
            status = {"phase": phase, "startedAt": NOW, "progress": "0/1", "nodes": {
                f"{name}-1": {"id": f"{name}-1", "name": f"{name}.prepay.analyze",
                              "displayName": "analyze", "type": "Pod", "templateName": "analyze",
                              "phase": phase if phase != "Running" else "Running", "startedAt": NOW,
                              **({"message": message} if message else {})}}}
            if message:
                status["message"] = message
            if phase in ("Succeeded", "Failed", "Error"):
                status["finishedAt"] = NOW
                status["progress"] = "1/1"
        workflow["status"] = status
        return workflow

    def logs_of(self, name: str) -> list[tuple[str, str]]:
        return [(f"{name}-analyze-1", "analyze: face found"),
                (f"{name}-analyze-1", "bookjob-timing {\"step\": \"analyze\", \"work_s\": 1.2}")]

    def _handler(self):
        double = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_):  # quiet
                pass

            def _body(self) -> dict | None:
                length = int(self.headers.get("Content-Length") or 0)
                return json.loads(self.rfile.read(length)) if length else None

            def _send(self, code: int, body, content_type="application/json") -> None:
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _route(self, method: str) -> None:
                url = urlparse(self.path)
                body = self._body() if method in ("POST", "PUT") else None
                double.requests.append((method, self.path, body))
                if self.headers.get("Authorization") != f"Bearer {double.token}":
                    return double.unauthorized(self)
                double.route(self, method, url.path, parse_qs(url.query), body)

            def do_GET(self):
                self._route("GET")

            def do_POST(self):
                self._route("POST")

            def do_PUT(self):
                self._route("PUT")

        return Handler

    def check(self, what: str, validator, document: dict) -> None:
        self.problems += [f"{what}: {e}" for e in errors(validator, document)]


class ArgoServerDouble(_Double):
    """``/api/v1/workflows/{namespace}[...]`` of the Argo Server, checked against swagger."""

    def unauthorized(self, handler) -> None:
        handler._send(401, {"code": 16, "message": "token not valid. see https://argo-workflows.readthedocs.io/en/latest/faq/"})

    def _respond(self, handler, definition: str, document: dict) -> None:
        self.check(f"response {definition}", swagger_validator(definition), document)
        handler._send(200, document)

    def route(self, handler, method, path, query, body) -> None:
        found = re.fullmatch(r"/api/v1/workflows/([^/]+)(?:/([^/]+))?(/log|/terminate)?", path)
        if not found:
            return handler._send(404, {"code": 5, "message": f"no route {path}"})
        namespace, name, log = found.groups()
        v1 = "io.argoproj.workflow.v1alpha1."
        if method == "PUT" and log == "/terminate" and name in self.workflows:
            # the controller stops it and skips the exit handler (workflow shutdown: Terminate)
            self.check("request WorkflowTerminateRequest",
                       swagger_validator(v1 + "WorkflowTerminateRequest"), body)
            workflow = self.workflows[name]
            workflow["spec"]["shutdown"] = "Terminate"
            workflow["status"] = {"phase": "Failed", "startedAt": NOW, "finishedAt": NOW,
                                  "message": "Stopped with strategy 'Terminate'"}
            self.progress[name] = 10 ** 6
            self.phases_of[name] = [("Failed", "Stopped with strategy 'Terminate'")]
            return self._respond(handler, v1 + "Workflow", workflow)
        if method == "POST" and not name:
            self.check("request WorkflowCreateRequest", swagger_validator(v1 + "WorkflowCreateRequest"), body)
            return self._respond(handler, v1 + "Workflow", self._create(body["workflow"], namespace))
        if method == "GET" and not name:
            selector = query.get("listOptions.labelSelector", [""])[0]
            key, _, value = selector.partition("=")
            items = [w for w in self.workflows.values()
                     if not selector or w["metadata"].get("labels", {}).get(key) == value]
            return self._respond(handler, v1 + "WorkflowList", {"metadata": {}, "items": items})
        if name not in self.workflows:
            return handler._send(404, {"code": 5, "message": f'workflows.argoproj.io "{name}" not found'})
        if log == "/log":
            lines = []
            for pod, content in self.logs_of(name):
                entry = {"result": {"podName": pod, "content": content}}
                self.check("log entry", swagger_validator(v1 + "LogEntry"), entry["result"])
                lines.append(json.dumps(entry))
            return handler._send(200, ("\n".join(lines) + "\n").encode())
        return self._respond(handler, v1 + "Workflow", self._advance(name))


class KubernetesDouble(_Double):
    """The Kubernetes API: the Workflow custom resource and pod logs."""

    def unauthorized(self, handler) -> None:
        handler._send(401, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                            "message": "Unauthorized", "reason": "Unauthorized", "code": 401})

    def route(self, handler, method, path, query, body) -> None:
        wf = re.fullmatch(r"/apis/argoproj.io/v1alpha1/namespaces/([^/]+)/workflows(?:/([^/]+))?", path)
        pods = re.fullmatch(r"/api/v1/namespaces/([^/]+)/pods(?:/([^/]+)/log)?", path)
        if wf and method == "POST":
            self.check("posted Workflow", schema_validator("Workflow"), body)
            return handler._send(201, self._create(body, wf.group(1)))
        if wf and wf.group(2):
            if wf.group(2) not in self.workflows:
                return handler._send(404, {"kind": "Status", "code": 404, "message": "not found"})
            return handler._send(200, self._advance(wf.group(2)))
        if wf:
            selector = query.get("labelSelector", [""])[0]
            key, _, value = selector.partition("=")
            items = [w for w in self.workflows.values()
                     if w["metadata"].get("labels", {}).get(key) == value]
            return handler._send(200, {"apiVersion": "argoproj.io/v1alpha1", "kind": "WorkflowList",
                                       "metadata": {}, "items": items})
        if pods and not pods.group(2):
            workflow = query.get("labelSelector", [""])[0].partition("=")[2]
            names = sorted({pod for pod, _ in self.logs_of(workflow)} | {f"{workflow}-render-2"}) \
                if workflow in self.workflows else []
            return handler._send(200, {"apiVersion": "v1", "kind": "PodList", "metadata": {},
                                       "items": [{"metadata": {"name": n, "namespace": pods.group(1)}}
                                                 for n in names]})
        if pods:
            if query.get("container") != ["main"]:
                return handler._send(400, {"kind": "Status", "code": 400, "message": "container?"})
            if pods.group(2).endswith("-render-2"):
                # a pod whose container has not started: the API server's answer (kubernetes
                # issue #55958; kubectl: "Error from server (BadRequest): container … is waiting
                # to start: ContainerCreating")
                return handler._send(400, {
                    "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                    "message": f'container "main" in pod "{pods.group(2)}" is waiting to start: '
                               "ContainerCreating", "reason": "BadRequest", "code": 400})
            text = "\n".join(c for w in self.workflows for p, c in self.logs_of(w) if p == pods.group(2))
            return handler._send(200, (text + "\n").encode(), content_type="text/plain")
        return handler._send(404, {"kind": "Status", "code": 404, "message": f"no route {path}"})


def kubeconfig(path, port: int, token: str) -> str:
    """A kubeconfig pointing at the double."""
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "double",
        "clusters": [{"name": "double", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
        "users": [{"name": "tester", "user": {"token": token}}],
        "contexts": [{"name": "double", "context": {"cluster": "double", "user": "tester",
                                                     "namespace": "books"}}],
    }))
    return str(path)
