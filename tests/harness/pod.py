"""One container template run as a pod would run it: a local process.

What the controller and kubelet do for a pod that matters to bookjob, and nothing more:
the main container's ``command`` + ``args`` (``python`` is this interpreter), its ``env``,
each ``volumeMount`` as a folder of its own (an ``emptyDir`` per pod), Argo's progress file,
``activeDeadlineSeconds`` and the node message a failed pod gets.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.harness.expr import Unsupported

ROOT = Path(__file__).resolve().parents[2]
# workflowpod.go createWorkflowPod: ARGO_PROGRESS_FILE=/var/run/argo/progress in every
# container (common.ArgoProgressPath); the executor reads its last N/M line (executor.go
# monitorProgress).
PROGRESS = re.compile(r"^\s*(\d+)/(\d+)\s*$")
DEADLINE_MESSAGE = "Pod was active on the node longer than the specified deadline"


@dataclass
class PodResult:
    phase: str                      # Succeeded | Failed | Error
    message: str = ""
    exit_code: int | None = None
    outputs: dict[str, str] = field(default_factory=dict)
    artifacts: dict[str, Path] = field(default_factory=dict)
    progress: str = ""
    log: str = ""


def _mounts(template: dict, workdir: Path) -> dict[str, Path]:
    mounts = {}
    for mount in template["container"].get("volumeMounts", []):
        path = workdir / "volumes" / mount["name"]
        path.mkdir(parents=True, exist_ok=True)
        mounts[mount["mountPath"].rstrip("/")] = path
    return mounts


def _mapped(value: str, mounts: dict[str, Path]) -> str:
    for mount, path in sorted(mounts.items(), key=lambda m: -len(m[0])):
        if value == mount or value.startswith(mount + "/"):
            return str(path) + value[len(mount):]
    return value


def _env(container: dict, base: dict[str, str], mounts: dict[str, Path]) -> dict[str, str]:
    env = dict(base)
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = _mapped(var["value"], mounts)
        elif "valueFrom" in var:
            ref = var["valueFrom"].get("secretKeyRef")
            if not (ref and ref.get("optional")):
                raise Unsupported(f"env {var['name']} from {var['valueFrom']}")
            # an optional Secret that does not exist: the variable is simply not set
    return env


def exit_message(code: int, style: str) -> str:
    """``operator.go`` inferFailedReason: ``<Reason> (exit code N)``; the newest (v4-era)
    controller prefixes the container name (``main: Error (exit code 3)``)."""
    text = f"Error (exit code {code})"
    return f"main: {text}" if style == "v4" else text


def run_pod(template: dict, workdir: Path, base_env: dict[str, str], deadline_s: float | None,
            delay_s: float = 0.0, style: str = "v3", raw: dict | None = None,
            sidecars: dict | None = None) -> PodResult:
    """``raw``: the template before substitution; only what it spells as a path under a mount
    is mapped to the mount's folder (a parameter's value is data, never remapped).
    ``sidecars``: sidecar name -> a context-manager factory standing in for it (the sidecar's
    own image cannot run here); it runs for the pod's life, as Argo's sidecars do."""
    stand_ins = [(sidecars or {}).get(s["name"]) for s in template.get("sidecars", [])]
    if None in stand_ins:
        raise Unsupported(f"sidecars of {template['name']}: the harness has no stand-in for them")
    with contextlib.ExitStack() as stack:
        for factory in stand_ins:
            stack.enter_context(factory())
        return _run_main(template, workdir, base_env, deadline_s, delay_s, style, raw)


def _run_main(template: dict, workdir: Path, base_env: dict[str, str], deadline_s: float | None,
              delay_s: float, style: str, raw: dict | None) -> PodResult:
    container = template["container"]
    command = list(container.get("command") or [])
    if command[:2] != ["python", "-m"]:
        raise Unsupported(f"command {command}")
    mounts = _mounts(template, workdir)
    argo = workdir / "var-run-argo"
    argo.mkdir(parents=True, exist_ok=True)
    env = _env(container, base_env, mounts)
    env["ARGO_PROGRESS_FILE"] = str(argo / "progress")
    literal = (raw or template)["container"].get("args", [])
    args = container.get("args", [])
    if len(literal) != len(args):
        raise Unsupported("args whose count changes with substitution")
    argv = [sys.executable, "-m", *command[2:],
            *(_mapped(a, mounts) if _mapped(lit, mounts) != lit else a for a, lit in zip(args, literal))]
    started = time.monotonic()
    if delay_s:  # a slow step: the pod is running (its deadline counts) before the program is
        time.sleep(delay_s)
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        left = None if deadline_s is None else max(0.0, deadline_s - (time.monotonic() - started))
        log, _ = proc.communicate(timeout=left)
    except subprocess.TimeoutExpired:
        # kubelet: activeDeadlineSeconds -> pod Failed, reason DeadlineExceeded; the node takes
        # pod.Status.Message (inferFailedReason uses it before container states)
        os.killpg(proc.pid, signal.SIGKILL)
        log, _ = proc.communicate()
        return PodResult("Failed", DEADLINE_MESSAGE, None, log=log or "")
    code = proc.returncode if proc.returncode >= 0 else 128 - proc.returncode  # 137 = SIGKILL
    result = PodResult("Succeeded" if code == 0 else "Failed", exit_code=code, log=log or "")
    if code != 0:
        result.message = exit_message(code, style)
    lines = [ln for ln in (argo / "progress").read_text().splitlines() if ln.strip()] \
        if (argo / "progress").is_file() else []
    if lines and PROGRESS.match(lines[-1]):
        result.progress = lines[-1].strip()
    if code == 0:
        _collect_outputs(template, mounts, workdir, result)
    return result


def _collect_outputs(template: dict, mounts: dict[str, Path], workdir: Path, result: PodResult) -> None:
    outputs = template.get("outputs", {})
    for param in outputs.get("parameters", []):
        path = Path(_mapped(param["valueFrom"]["path"], mounts))
        if not path.is_file():
            # executor SaveParameters: a missing file without a default is an error
            result.phase, result.message = "Error", f"open {param['valueFrom']['path']}: no such file or directory"
            return
        result.outputs[param["name"]] = path.read_text().strip()
    for artifact in outputs.get("artifacts", []):
        path = Path(_mapped(artifact["path"], mounts))
        if not path.exists():
            if artifact.get("optional"):
                continue
            result.phase, result.message = "Error", f"artifact {artifact['name']} not found"
            return
        kept = workdir / "artifacts" / artifact["name"]
        kept.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if path.is_dir() else shutil.copy)(path, kept)
        result.artifacts[artifact["name"]] = kept
