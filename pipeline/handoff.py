"""Steps that wait for the engine on one machine: started early, or staying for the next run.

The local engine starts a chunk step before the step it follows has finished
(:class:`EarlyStart`), so that its start-up (the render step's browser) runs meanwhile; the
step warms up and waits for the go-ahead (:mod:`steps.protocol`). A go-ahead may ask the
step to stay after a run that succeeds: the same process, warm, then waits at the go-file the
go-ahead named, for the job's next pass, or, on a worker, for the next job of its slot
(:class:`Slot`). Each run still reads as a run of its own: its exit code, and its output in
files of its own.
"""

from __future__ import annotations

import uuid
from pathlib import Path

from pipeline.launch import Started
from pipeline.spec import Step
from steps.protocol import GO_FILE, RAN_SUFFIX, say

# Jobs one kept process serves before a slot lets it go and starts afresh (Celery's
# worker_max_tasks_per_child): what a browser holds on to over many jobs is given back.
SLOT_RUNS = 50


def go_file(folder: Path) -> Path:
    return folder / f"go-{uuid.uuid4().hex}"


class EarlyStart:
    """A step process waiting for its go-ahead (:meth:`go`; or, taking pages ahead,
    :meth:`follow`, then :meth:`done`). With :meth:`stay_in`, a run that succeeds leaves the
    process waiting for another (:meth:`stayed`)."""

    def __init__(self, step: Step, path: Path, started: Started, launcher,
                 outputs: tuple[str, str] | None = None, env: dict[str, str] | None = None,
                 runs: int = 0) -> None:
        self.step, self.path, self.started, self.launcher = step, path, started, launcher
        self.outputs = outputs                  # where a process that stayed writes this run
        self.env = dict(env if env is not None else launcher.env)   # the job settings it runs with
        self.runs = runs                        # runs this process did before this one
        self.next_path: Path | None = None      # where it waits after this run, if it stays
        self.argv: list[str] | None = None      # what it went with
        self.stopped = False

    @classmethod
    def start(cls, launcher, step: Step, values: dict[str, str], scratch: Path) -> EarlyStart:
        path = go_file(scratch)
        return cls(step, path, launcher.start(step.module, step.argv(values), {GO_FILE: str(path)}),
                   launcher)

    def stay_in(self, folder: Path) -> None:
        """Ask the step to stay after this run (if it succeeds), at a go-file in ``folder``;
        before :meth:`go`."""
        self.next_path = go_file(folder)
        self.started = self.started.staying(Path(f"{self.next_path}{RAN_SUFFIX}"))

    def stayed(self) -> EarlyStart | None:
        """After this run succeeded: the same process, warm, waiting for its next go-ahead
        (None if it did not stay). :meth:`adopt` it before it goes."""
        if self.next_path is None or not Path(f"{self.next_path}{RAN_SUFFIX}").exists():
            return None
        return EarlyStart(self.step, self.next_path, self.started.next_run(None, None), None,
                          env=self.env, runs=self.runs + 1)

    def adopt(self, launcher) -> EarlyStart:
        """Its next run, for ``launcher``'s engine: output to files of that launcher's, the
        process ended by its :meth:`~pipeline.launch._Launcher.kill`."""
        self.launcher, self.outputs = launcher, launcher.outputs()
        self.started = self.started.next_run(*self.outputs)
        launcher.track(self.started)
        return self

    def go(self, argv: list[str]) -> Started:
        """Go ahead, with the step's arguments (it may have been started before they were
        known); a step already following goes on as it is."""
        if self.argv is None:
            self.argv = argv
            say(self.path, "go", argv, self.outputs, self.next_path)
        return self.started

    def follow(self, values: dict[str, str], after: str) -> None:
        """Go now, taking each page as the step before it, whose stderr is ``after``, says it
        finished it (:class:`steps.protocol.PagesAhead`)."""
        self.go([*self.step.argv(values), "--after", after])

    def done(self) -> None:
        """The step before succeeded: every page is there."""
        if self.argv is not None:
            say(self.path, "done", self.argv, self.outputs, self.next_path)

    def cancel(self) -> None:
        if not self.stopped:
            self.stopped = True
            say(self.path, "stop")
            self.started.wait()


class Slot:
    """What a worker slot keeps from one job to the next: its render step, staying after the
    job's last run with its browser up, in ``folder`` (which outlives the jobs). A job takes it
    (:meth:`take`) if it runs with the same settings, and gives back what stayed (:meth:`put`)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.held: EarlyStart | None = None

    def take(self, launcher) -> EarlyStart | None:
        """The kept step, adopted by ``launcher``'s engine; None if there is none, or it is
        gone, or it was made for other settings (it is stopped then)."""
        held, self.held = self.held, None
        if held is None:
            return None
        if held.env != launcher.env or not held.started.running():
            held.cancel()
            return None
        return held.adopt(launcher)

    def put(self, held: EarlyStart) -> None:
        """Keep ``held`` (a step waiting for its go-ahead, not gone yet) for the next job."""
        if self.held is not None:
            self.held.cancel()
        if held.argv is not None or held.stopped or held.runs >= SLOT_RUNS:
            held.cancel()
            return
        self.held = held

    def close(self) -> None:
        if self.held is not None:
            self.held.cancel()
            self.held = None
