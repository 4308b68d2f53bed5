"""Starting step programs on this machine.

A step is ``python -m steps.<name> ARGS``. Starting a fresh interpreter and importing numpy,
OpenCV, Pillow, pydantic and boto3 costs about half a second per step, which is most of
what a short step does. :class:`WarmLauncher` therefore runs the same module with the same
arguments in a process forked from a warm interpreter that has those libraries imported
already (multiprocessing's fork server: a clean single-threaded parent, so forking is safe).
The child is still a separate process with its own exit code, environment and output, killed
and retried exactly like a fresh one. ``BOOKJOB_LAUNCH=exec`` starts fresh interpreters instead.
"""

from __future__ import annotations

import multiprocessing
import os
import runpy
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

# Imported once in the fork server; every step child starts with them loaded.
PRELOAD = ["numpy", "PIL.Image", "PIL.PngImagePlugin", "yaml", "pydantic", "steps.job",
           "steps.manifest", "steps.images", "steps.store", "steps.runner", "steps.artifacts",
           "boto3", "botocore.client", "cv2", "img2pdf"]


@dataclass(frozen=True)
class Finished:
    returncode: int
    stdout: str
    stderr: str


def _step_main(module: str, argv: list[str], env: dict[str, str], out: str, err: str) -> None:
    """In the child: become ``python -m module argv`` with ``env``, output to files."""
    os.environ.clear()
    os.environ.update(env)
    for fd, path in ((1, out), (2, err)):
        target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(target, fd)
        os.close(target)
    sys.argv = [module, *argv]
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()


class ExecLauncher:
    """A fresh interpreter per step: ``python -m module args``."""

    def run(self, module: str, argv: list[str]) -> Finished:
        done = subprocess.run([sys.executable, "-m", module, *argv], capture_output=True, text=True)
        return Finished(done.returncode, done.stdout, done.stderr)

    def close(self) -> None:
        pass


class WarmLauncher:
    """Steps forked from a fork server that has the heavy libraries imported."""

    def __init__(self) -> None:
        self.context = multiprocessing.get_context("forkserver")
        self.context.set_forkserver_preload(PRELOAD)
        self.scratch = tempfile.TemporaryDirectory(prefix="bookjob-steps-")

    def run(self, module: str, argv: list[str]) -> Finished:
        out = tempfile.NamedTemporaryFile(dir=self.scratch.name, suffix=".out", delete=False).name
        err = out.removesuffix(".out") + ".err"
        process = self.context.Process(target=_step_main,
                                       args=(module, argv, dict(os.environ), out, err))
        process.start()
        process.join()
        texts = []
        for path in (out, err):
            texts.append(Path(path).read_text(errors="replace") if Path(path).exists() else "")
            Path(path).unlink(missing_ok=True)
        return Finished(process.exitcode if process.exitcode is not None else 1, *texts)

    def close(self) -> None:
        self.scratch.cleanup()


def launcher() -> ExecLauncher | WarmLauncher:
    return ExecLauncher() if os.environ.get("BOOKJOB_LAUNCH") == "exec" else WarmLauncher()
