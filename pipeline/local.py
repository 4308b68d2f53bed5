"""The embedded local engine: the pipeline spec run as subprocesses on this machine.

Each step runs as the same command Argo runs in its pod (``python -m steps.<name> …``), in
dependency order; the per-chunk steps of a pass run as one chain per chunk, chunks in
parallel up to the number of cores. When a core would be left idle (fewer chunks than cores),
each step of a chain is started while the one before it runs and waits for the go-ahead
(:data:`steps.protocol.GO_FILE`), so its start-up (the render step's browser) runs on that core
meanwhile; with every core busy it would only compete with the work. A step that takes pages
ahead (``Step.pages_ahead``: the render step) is let go with the first try of the step before
it, and sets each page as soon as that step reports it stored; if that try fails, it is stopped
and runs afresh after the retry, keeping the pages it set. In a job of two passes the first
chunk's render step stays for the next pass (:mod:`steps.protocol`): the same process, its
browser up, sets the next pass's first chunk, so a job starts one browser, not two; if it did
not stay (its run failed), the next pass's render step starts as soon as this pass's pages are
made, its browser booting while this pass assembles. On a worker, it stays from one job to
the next as well (:class:`pipeline.handoff.Slot`). Transient failures are retried as the
spec says; exit code 3 (bad input) is not. A step's output goes to ``jobs/{job_id}/logs/
{run_id}/`` in the store (each run keeps its own). While chunk steps run, the pages they
report stored are passed to ``pages`` (the CLI's progress bars).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from pipeline.handoff import EarlyStart, Slot
from pipeline.launch import Started, launcher
from pipeline.spec import ON_EXIT, PARAMETERS, PASSES, Step, steps_for
from steps.core.errors import SetupError, TransientError
from steps.core.job import JobNotFound, JobRecord, Status
from steps.core.records import Records, open_records
from steps.core.settings import settings
from steps.core.store import S3Store, Store, StoreError, log_key
from steps.protocol import EXIT_INPUT, last_error, progress_of, unchanged_lines, work_seconds

Progress = Callable[[str], None]
# (chunk, step, pages done, pages in the chunk): called as a chunk step stores each page
PageProgress = Callable[[str, str, int, int], None]
FAILED = (Status.ANALYSIS_FAILED, Status.GENERATION_FAILED)


@dataclass
class StepRun:
    """One finished step process."""

    stage: str
    step: str
    chunk: str | None
    wall_s: float
    work_s: float | None
    exit_code: int
    attempts: int
    command: list[str]

    @property
    def label(self) -> str:
        return f"{self.stage}/{self.step}" + (f"[{self.chunk}]" if self.chunk else "")


class Cancelled(Exception):
    """The run was stopped from outside (:meth:`LocalEngine.cancel`)."""


class StepFailed(Exception):
    def __init__(self, run: StepRun, message: str) -> None:
        super().__init__(message)
        self.run = run
        self.message = message


def chunk_chain(steps: list[Step]) -> list[Step]:
    """The longest chain of steps over one fan-out list (backgrounds, render): where starting a
    step early pays (its warm-up runs while the step before it works)."""
    groups: dict[str, list[Step]] = {}
    for step in steps:
        if step.fan_out:
            groups.setdefault(step.fan_out, []).append(step)
    return max(groups.values(), key=len, default=[])


class LocalEngine:
    def __init__(self, store: Store, params: dict[str, str], progress: Progress = lambda _: None,
                 workers: int | None = None, retry_delay_s: float = 0.5,
                 pages: PageProgress | None = None, run_id: str | None = None,
                 records: Records | None = None, env: dict[str, str] | None = None,
                 slot: Slot | None = None) -> None:
        self.store = store
        self.slot = slot             # a worker's: its render step stays from job to job
        self.records = records or open_records(store)
        self.env = dict(env or {})   # over this process's environment, for every step
        self.cancelled = False
        # each run keeps its own logs: jobs/{job_id}/logs/{run_id}/…
        self.run_id = run_id or uuid.uuid4().hex[:12]
        self.params = params
        self.progress = progress
        self.pages = pages
        self.workers = workers or os.cpu_count() or 1
        self.retry_delay_s = retry_delay_s
        self.runs: list[StepRun] = []
        self._lock = threading.Lock()
        self._ahead: tuple[str, EarlyStart] | None = None  # (the pass it is for, the step)

    def cancel(self) -> None:
        """Stop now (a worker hands its job back): steps killed, run() raises Cancelled."""
        self.cancelled = True
        if getattr(self, "launcher", None) is not None:
            self.launcher.kill()

    def run(self, stage: str) -> list[StepRun]:
        """Run every pass of ``stage``; raises :class:`StepFailed` after marking the job failed."""
        self.launcher = launcher(s3=isinstance(self.store, S3Store),
                                 sql=self.records.uri != "store", env=self.env)
        self._ahead = None
        passes = PASSES[stage]
        kept = self.slot.take(self.launcher) if self.slot is not None else None
        if kept is not None:
            self._ahead = (passes[0], kept)
        try:
            with tempfile.TemporaryDirectory(prefix="bookjob-") as scratch:
                try:
                    for i, pass_stage in enumerate(passes):
                        self._run_pass(pass_stage, Path(scratch), passes[i + 1:])
                finally:
                    self._hold(None)
        finally:
            self.launcher.close()
        return self.runs

    def _hold(self, ahead: tuple[str, EarlyStart] | None) -> None:
        """Hold ``ahead`` for its pass; what was held before is stopped, or kept by the slot
        for its next job once this one ends (``ahead`` None)."""
        with self._lock:
            before, self._ahead = self._ahead, ahead
        if before is not None:
            if self.slot is not None and ahead is None and not self.cancelled:
                self.slot.put(before[1])
            else:
                before[1].cancel()

    def _start_ahead(self, next_pass: str, scratch: Path) -> None:
        """Start the next pass's first early-started step (the render step: its browser) now,
        while this pass assembles and finalizes; its arguments come with the go-ahead."""
        chain = chunk_chain([s for s in steps_for(next_pass) if not s.skipped(self.params)])
        if len(chain) > 1:
            values = {**PARAMETERS, **self.params, "pass_stage": next_pass, "export_dir": "",
                      "gpu_face_backends": "", "pages": ""}
            for step in steps_for(next_pass):
                values.update({p.strip("{}"): "" for p in step.outputs.values()})
            self._hold((next_pass, EarlyStart.start(self.launcher, chain[1], values, scratch)))

    def _take_ahead(self, pass_stage: str, step: Step) -> EarlyStart | None:
        """The step started ahead (or kept by the slot) for this pass, if it is ``step``; one for
        another step or a later pass is left as it is."""
        with self._lock:
            if self._ahead is None or self._ahead[0] != pass_stage or self._ahead[1].step is not step:
                return None
            (_, ahead), self._ahead = self._ahead, None
        return ahead

    def _run_pass(self, pass_stage: str, scratch: Path, later: tuple[str, ...] = ()) -> None:
        # The same plan as on a cluster; no face backend runs on a GPU here, so the `faces`
        # list is empty and every page is made by the CPU steps. Parameters a caller leaves
        # out take their defaults, as on Argo.
        values = {**PARAMETERS, **self.params, "pass_stage": pass_stage, "export_dir": "",
                  "gpu_face_backends": ""}
        ordered = [s for s in steps_for(pass_stage) if not s.skipped(self.params)]
        for step in ordered:
            for placeholder in step.outputs.values():
                values[placeholder.strip("{}")] = str(scratch / f"{pass_stage}-{placeholder.strip('{}')}.json")
        lists = {out: placeholder.strip("{}") for s in ordered for out, placeholder in s.outputs.items()}
        main_chain = chunk_chain(ordered)
        for step in ordered:
            if step.fan_out:
                chain = [s for s in ordered if s.fan_out == step.fan_out]
                if step is chain[0]:
                    chunks = json.loads(Path(values[lists[step.fan_out]]).read_text())
                    next_pass = later[0] if later and chain == main_chain else None
                    self._run_chunks(chain, chunks, values, scratch, next_pass)
                    if next_pass and self._ahead is None:  # none stayed for it
                        self._start_ahead(next_pass, scratch)
                continue
            self._run_step(step, values, None)

    def _run_chunks(self, chain: list[Step], chunks: list[str], values: dict[str, str],
                    scratch: Path, next_pass: str | None = None) -> None:
        """Each chunk's chain of steps, chunks side by side. With ``next_pass`` (or a slot),
        the first chunk's last step (the render step), started early, stays for that pass (or
        the slot's next job): the same process, its browser up, does that pass's first chunk."""
        stays = next_pass is not None or self.slot is not None
        folder = self.slot.folder if self.slot is not None else scratch

        def one_chunk(pages: str) -> None:
            chunk_values = {**values, "pages": pages}
            early = None
            for i, step in enumerate(chain):
                following = self._take_ahead(values["pass_stage"], chain[i + 1]) \
                    if i + 1 < len(chain) else None
                if following is None and i + 1 < len(chain):
                    following = EarlyStart.start(self.launcher, chain[i + 1], chunk_values, scratch)
                if following is not None and stays and pages == chunks[0] and i + 2 == len(chain):
                    following.stay_in(folder)
                try:
                    self._run_step(step, chunk_values, pages, early, following)
                except BaseException:
                    if following is not None:
                        following.cancel()
                    raise
                held = early.stayed() if early is not None else None
                if held is not None:
                    self._hold((next_pass, held.adopt(self.launcher)) if next_pass else ("", held))
                early = following if following is not None and not following.stopped else None

        if not chunks:
            return
        with ThreadPoolExecutor(max_workers=max(1, min(self.workers, len(chunks)))) as pool:
            for future in [pool.submit(one_chunk, c) for c in chunks]:
                future.result()

    def _run_step(self, step: Step, values: dict[str, str], chunk: str | None,
                  early: EarlyStart | None = None, following: EarlyStart | None = None) -> StepRun:
        """Run a step (retried as the spec says). ``following``: the chunk's next step, started
        early; one that takes pages ahead goes with this step's first try and hears ``done``
        when it succeeds, or is stopped when a try fails (it then runs afresh afterwards)."""
        command = [sys.executable, "-m", step.module, *step.argv(values)]
        name = f"{values['pass_stage']}-{step.name}" + (f"-{chunk.replace(',', '_')}" if chunk else "")
        started = time.perf_counter()
        for attempt in range(1, step.retries + 2):
            if self.cancelled:
                raise Cancelled(f"{step.name} not started")
            if attempt == 1 and early is not None:
                process = early.go(command[3:])
            else:
                process = self.launcher.start(step.module, command[3:])
            if attempt == 1 and following is not None and following.step.pages_ahead \
                    and settings().pages_ahead:
                following.follow(values, process.err)
            done = self._wait(process, step.name, chunk)
            if self.cancelled:
                raise Cancelled(f"{step.name} stopped")
            if following is not None and following.argv is not None and not following.stopped:
                if done.returncode == 0:
                    following.done()
                else:
                    following.cancel()           # the pages it set from this try stay
            if done.returncode in (0, EXIT_INPUT) or attempt > step.retries:
                break
            self.progress(f"  ! {step.name} exited {done.returncode}, retrying ({attempt}/{step.retries})")
            time.sleep(self.retry_delay_s * 2 ** (attempt - 1))
        run = StepRun(values["pass_stage"], step.name, chunk, time.perf_counter() - started,
                      work_seconds(done.stderr), done.returncode, attempt, command)
        self.runs.append(run)
        log = log_key(values["job_id"], f"{self.run_id}/{name}")
        self._save_log(log, done.stdout + done.stderr)
        if done.returncode == 0:
            self.progress(f"  \u2713 {run.label:<36} {run.wall_s:6.2f} s")
            for line in unchanged_lines(done.stderr):  # work a step found already done
                self.progress(f"      {line}")
            return run
        self.progress(f"  \u2717 {run.label:<36} exit {done.returncode}")
        raise StepFailed(run, self._fail(step, run, log,
                                         last_error(done.stderr)))

    def _wait(self, started: Started, step: str, chunk: str | None):
        """Wait for a step; for a chunk step, report each page it says it stored as it goes."""
        if self.pages is None or chunk is None:
            return started.wait()
        seen = [0]

        def report(text: str) -> None:
            lines = [p for p in map(progress_of, text.splitlines()) if p]
            for line in lines[seen[0]:]:
                self.pages(chunk, step, int(line["done"]), int(line["total"]))
            seen[0] = max(seen[0], len(lines))

        stop = threading.Event()

        def tail() -> None:
            while not stop.wait(0.1):
                try:
                    text = Path(started.err).read_text(errors="replace")
                except OSError:
                    continue
                # only whole lines: the last one may still be being written
                report(text[:text.rfind("\n") + 1])

        watcher = threading.Thread(target=tail, daemon=True)
        watcher.start()
        try:
            done = started.wait()
        finally:
            stop.set()
            watcher.join()
        report(done.stderr)
        return done

    def _save_log(self, key: str, text: str) -> None:
        """Keep a step's output in the store; a store that is down must not hide the failure."""
        try:
            self.store.write(key, text.encode())
        except StoreError as e:
            self.progress(f"  ! could not save {key}: {e}")

    def _fail(self, step: Step, run: StepRun, log: str, detail: str = "") -> str:
        """Run the on-exit step as Argo would, then return the job's error message."""
        record = self._record()
        # on_exit leaves a job that its step already marked failed as it is: no need to run it.
        # Exit code 3 is the step's own word: it marked the job, or refused the request and
        # left the job as it was (a regeneration over the limit, another book).
        marked = record is not None and record.status in FAILED and record.error is not None
        if run.exit_code != EXIT_INPUT and not marked:
            # Argo's node message, plus the step's own last error line where it printed one
            message = f"Error (exit code {run.exit_code})" + (f": {detail.rstrip('.')}" if detail else "")
            failures = json.dumps([{"displayName": run.label,
                                    "templateName": step.name.replace("_", "-"), "phase": "Failed",
                                    "message": message}])
            values = {**self.params, "workflow_status": "Failed", "failures": failures}
            done = self.launcher.run(ON_EXIT.module, ON_EXIT.argv(values))
            self._save_log(log_key(self.params["job_id"], f"{self.run_id}/on_exit"),
                           done.stdout + done.stderr)
            record = self._record()
        if run.exit_code == EXIT_INPUT and detail:
            return detail
        if record is not None and record.error is not None:
            return record.error.message
        if detail and run.exit_code != EXIT_INPUT:
            return (f"step {step.name} failed with exit code {run.exit_code} after {run.attempts} "
                    f"attempt(s) ({detail.rstrip('.')}); run the same command again to resume "
                    "the job once that is fixed")
        return detail or f"step {step.name} failed with exit code {run.exit_code}; see {log} in the store"

    def _record(self) -> JobRecord | None:
        try:
            return self.records.read(self.params["job_id"])
        except (JobNotFound, TransientError, SetupError):  # no record, or none to be had now
            return None
