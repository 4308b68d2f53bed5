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
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from steps.core.settings import settings

# Imported once in the fork server; every step child starts with them loaded. The CLI is there
# because multiprocessing re-runs the parent's main script (for `bookjob`, an import of the CLI)
# in each child; boto3 only when the store is on S3. The steps themselves and what they import
# on first use (the classic backends, ICU for the book's languages, fontTools for the glyph
# check, Pillow's photo formats) are there too: a worker's hundredth job imports nothing.
# Playwright (its Python side: no thread, no driver until a browser starts) and the PNG codec's
# ISA-L are there for the render step; a module that is not installed is skipped by the fork
# server. pyvips is not, and must not be: libvips starts threads when first used, and a process
# forked after that can hang in it.
PRELOAD = ["numpy", "numpy.ma", "PIL.Image", "PIL.PngImagePlugin", "PIL.JpegImagePlugin",
           "PIL.BmpImagePlugin", "PIL.PpmImagePlugin", "PIL.ImageDraw", "PIL.ImageFont", "yaml",
           "pydantic", "icu", "fontTools.ttLib", "fontTools.ttLib.tables._c_m_a_p",
           "fontTools.ttLib.tables._p_o_s_t", "fontTools.ttLib.tables._m_a_x_p", "fontTools.unicode",
           "steps.core.job", "steps.core.manifest", "steps.core.images", "steps.core.store",
           "steps.runner", "steps.core.artifacts", "steps.core.glyphs", "cv2", "img2pdf",
           "isal.isal_zlib", "playwright.async_api", "steps.backends.typesetter",
           "steps.backends.classic", "steps.analyze", "steps.plan", "steps.backgrounds",
           "steps.render", "steps.assemble", "steps.finalize", "steps.on_exit", "pipeline.cli"]
S3_PRELOAD = ["boto3", "botocore.client"]
SQL_PRELOAD = ["sqlalchemy", "psycopg", "steps.core.records_sql"]   # records in a database
POLL_S = 0.005


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


class Started:
    """A step process that has been started; :meth:`wait` for it. ``poll``: its exit code, or
    None while it runs; ``kill`` ends it. With ``ran`` (a step that stays for the next run), a
    run ends when the step writes its exit code there, or when the process exits. ``out`` and
    ``err`` are the files of the run's output (None: a process waiting between runs)."""

    def __init__(self, wait: Callable[[], int], out: str | None, err: str | None,
                 poll: Callable[[], int | None], ran: Path | None = None,
                 kill: Callable[[], None] = lambda: None) -> None:
        self._wait, self.out, self.err, self._poll, self.ran = wait, out, err, poll, ran
        self.kill = kill

    def staying(self, ran: Path) -> Started:
        """The same run, ending when the step says so in ``ran``."""
        return Started(self._wait, self.out, self.err, self._poll, ran, self.kill)

    def next_run(self, out: str | None, err: str | None) -> Started:
        """The same process's next run (a step that stayed), its output in ``out`` and ``err``."""
        return Started(self._wait, out, err, self._poll, kill=self.kill)

    def running(self) -> bool:
        return self._poll() is None

    def _code(self) -> int:
        if self.ran is None:
            return self._wait()
        while True:
            code = self._poll()
            if code is not None:
                return code
            try:
                return int(self.ran.read_text())
            except (FileNotFoundError, ValueError):
                time.sleep(POLL_S)

    def wait(self) -> Finished:
        code = self._code()
        texts = []
        for path in (self.out, self.err):
            texts.append(Path(path).read_text(errors="replace")
                         if path is not None and Path(path).exists() else "")
            if path is not None:
                Path(path).unlink(missing_ok=True)
        return Finished(code, *texts)


class _Launcher:
    """Starts step processes with this process's environment and ``env`` over it (a job's own
    settings, on a worker that runs many jobs); :meth:`kill` ends every one still running."""

    def __init__(self, env: dict[str, str] | None = None) -> None:
        self.scratch = tempfile.TemporaryDirectory(prefix="bookjob-steps-")
        self.env = dict(env or {})
        self._kills: list[Callable[[], None]] = []

    def environment(self, env: dict[str, str] | None) -> dict[str, str]:
        return {**os.environ, **self.env, **(env or {})}

    def track(self, started: Started) -> None:
        """Count a process another launcher started (a step a worker slot kept) as this one's:
        :meth:`kill` ends it too."""
        self._kills.append(started.kill)

    def kill(self) -> None:
        """SIGKILL every step process this launcher started (or tracks) that still runs (a
        worker handing its job back)."""
        for kill in self._kills:
            try:
                kill()
            except (ProcessLookupError, OSError, ValueError, AttributeError):
                pass

    def outputs(self) -> tuple[str, str]:
        """Two new files for a step run's stdout and stderr."""
        out = tempfile.NamedTemporaryFile(dir=self.scratch.name, suffix=".out", delete=False).name
        return out, out.removesuffix(".out") + ".err"

    def start(self, module: str, argv: list[str], env: dict[str, str] | None = None) -> Started:
        raise NotImplementedError

    def run(self, module: str, argv: list[str], env: dict[str, str] | None = None) -> Finished:
        return self.start(module, argv, env).wait()

    def close(self) -> None:
        self.scratch.cleanup()


class ExecLauncher(_Launcher):
    """A fresh interpreter per step: ``python -m module args``."""

    def start(self, module: str, argv: list[str], env: dict[str, str] | None = None) -> Started:
        out, err = self.outputs()
        with open(out, "wb") as stdout, open(err, "wb") as stderr:
            process = subprocess.Popen([sys.executable, "-m", module, *argv], stdout=stdout,
                                       stderr=stderr, env=self.environment(env))
        self._kills.append(process.kill)
        return Started(process.wait, out, err, process.poll, kill=process.kill)


class WarmLauncher(_Launcher):
    """Steps forked from a fork server that has the heavy libraries imported."""

    def __init__(self, preload: list[str], env: dict[str, str] | None = None) -> None:
        super().__init__(env)
        self.context = multiprocessing.get_context("forkserver")
        self.context.set_forkserver_preload(preload)

    def start(self, module: str, argv: list[str], env: dict[str, str] | None = None) -> Started:
        out, err = self.outputs()
        process = self.context.Process(target=_step_main,
                                       args=(module, argv, self.environment(env), out, err))
        process.start()
        self._kills.append(process.kill)

        def wait() -> int:
            process.join()
            return process.exitcode if process.exitcode is not None else 1
        return Started(wait, out, err, lambda: process.exitcode, kill=process.kill)


def start_early(s3: bool = False, sql: bool = False) -> None:
    """Start the fork server now (it imports :data:`PRELOAD`, about a second, in its own
    process) so that it is ready by the time the engine starts its first step; the CLI calls
    this before it checks the job. Nothing when steps will be fresh interpreters."""
    if _warm():
        from multiprocessing import forkserver

        multiprocessing.get_context("forkserver").set_forkserver_preload(_preload(s3, sql))
        forkserver.ensure_running()


def _warm() -> bool:
    """Warm unless ``BOOKJOB_LAUNCH=exec``, or the main script cannot be re-run (``python -``)."""
    main = getattr(sys.modules.get("__main__"), "__file__", None)
    return not (settings().launch == "exec" or (main is not None and not Path(main).is_file()))


def _preload(s3: bool, sql: bool = False) -> list[str]:
    return PRELOAD + (S3_PRELOAD if s3 else []) + (SQL_PRELOAD if sql else [])


def launcher(s3: bool = False, sql: bool = False,
             env: dict[str, str] | None = None) -> ExecLauncher | WarmLauncher:
    """A warm launcher (see :func:`_warm`), else fresh interpreters; ``env`` over this
    process's environment for every step it starts."""
    return WarmLauncher(_preload(s3, sql), env) if _warm() else ExecLauncher(env)
