"""Random sequences of engine events on one job, through the steps' own code on a real local
store: stage runs that finish or stop at any step (a crash the exit handler records, bad input
the step records itself, a run killed outright), late duplicates of single steps, re-runs,
artifacts recorded, a run found interrupted. Whatever the sequence, no artifact record is ever
lost, the record stays consistent, and running the job again completes it.

Each step runs in-process under :func:`steps.runner.run` as its program would (exit codes, the
job marked on bad input); a failed step is followed by the exit handler as the local engine's
``_fail`` does it. Only the analyzer and the photo decoding are stand-ins (a fixed analysis)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
from argparse import Namespace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from steps import analyze, finalize, on_exit, plan, runner
from steps.core import artifacts, faults
from steps.core.analysis import Analysis
from steps.core.errors import InputError
from steps.core.job import GENERATING, ArtifactKind, JobNotFound, Status
from steps.core.manifest import load_book
from steps.core.records import mark_failed, read_job
from steps.core.store import LocalStore
from steps.protocol import EXIT_INPUT
from tests.helpers import make_book

JOB = "ev1"
FAILED = (Status.ANALYSIS_FAILED, Status.GENERATION_FAILED)
ANALYSIS = Analysis(skin_tone="light", hair_color="brown", hair_style="curly", eye_color="blue",
                    source="heuristic", photo_size=(200, 200), face_box=(50, 50, 100, 100),
                    left_eye=(80.0, 90.0), right_eye=(120.0, 90.0), gender="girl")


@pytest.fixture(scope="module")
def events_book(tmp_path_factory) -> tuple[str, object]:
    folder = make_book(tmp_path_factory.mktemp("events") / "book", size=(240, 160))
    return str(folder), load_book(str(folder))


class Engine:
    """One job, driven step by step as the local engine would drive it."""

    def __init__(self, root: Path, book_uri: str) -> None:
        self.store = LocalStore(root)
        self.uri = str(root)
        self.book_uri = book_uri
        self.pages = {"prepay": [1, 2], "postpay": [1, 2, 3, 4]}
        self.recorded: dict[tuple[str, int | None], str] = {}   # (kind, page) -> sha256, last made
        self.made = 0
        self.store.write(f"uploads/{JOB}/photo.jpg", b"a photo")

    # ---- the steps ---------------------------------------------------------------------

    def args(self, **fields) -> Namespace:
        return Namespace(store=self.uri, job_id=JOB, **fields)

    def analyze_args(self) -> Namespace:
        return self.args(book=self.book_uri, photo_key="", name="Mia", age="5", gender="girl",
                         language="", dedication="", analyzer="heuristic", analyzer_model="")

    def plan_args(self, stage: str) -> Namespace:
        return self.args(book=self.book_uri, stage=stage, pages_per_task=0, randomize_seed=False,
                         out="", face_out="", face_backend="classic", gpu_face_backends="")

    def artifact_work(self, kind: ArtifactKind, page: int | None):
        def work(args: Namespace) -> None:   # what backgrounds, render and assemble do
            self.made += 1
            data = f"{kind} {page} #{self.made}".encode()
            made = artifacts.put(self.store, f"jobs/{JOB}/out/{kind}-{page}", data, kind, page)
            artifacts.record(self.store, JOB, [made])
            self.recorded[kind, page] = made.sha256
        return work

    def steps(self, pass_stage: str) -> list[tuple[str, object, Namespace]]:
        """A pass's steps in the order the engine runs them (pipeline/spec.py)."""
        if pass_stage == "analyze":
            return [("analyze", analyze.work, self.analyze_args())]
        made = [("backgrounds", self.artifact_work("page_bg_png", n), self.args())
                for n in self.pages[pass_stage]]
        made += [("render", self.artifact_work("page_png", n), self.args())
                 for n in self.pages[pass_stage]]
        pdf = "preview_pdf" if pass_stage == "prepay" else "book_pdf"
        return ([("analyze", analyze.work, self.analyze_args())] if pass_stage == "prepay" else []) + [
            ("plan", plan.work, self.plan_args(pass_stage)),
            *made,
            ("assemble", self.artifact_work(pdf, None), self.args()),
            ("finalize", finalize.work, self.args(book=self.book_uri, stage=pass_stage))]

    def run_step(self, name: str, work, args: Namespace, fail: str = "") -> int:
        """Run one step as its program; a failure is followed by the exit handler."""
        if fail == "crash":
            def work(args: Namespace) -> None:
                raise RuntimeError("the step crashed")
        elif fail == "bad_input":
            def work(args: Namespace) -> None:
                raise InputError("bad_manifest", "book.yaml is broken.")
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            try:
                runner.run(name, args, work)
            except SystemExit as e:
                code = int(e.code or 0)
            if code != 0:
                self.exit_handler(name, code)
        return code

    def exit_handler(self, step: str, code: int) -> None:
        """pipeline/local.py LocalEngine._fail: on_exit unless exit 3 or already marked."""
        try:
            record = read_job(self.store, JOB)
        except JobNotFound:
            record = None
        marked = record is not None and record.status in FAILED and record.error is not None
        if code != EXIT_INPUT and not marked:
            failures = json.dumps([{"displayName": step, "templateName": step, "phase": "Failed",
                                    "message": f"Error (exit code {code})"}])
            args = self.args(workflow_status="Failed", failures=failures)
            with contextlib.suppress(SystemExit):
                runner.run("on_exit", args, on_exit.work)

    # ---- the events --------------------------------------------------------------------

    def run_stage(self, stage: str, stop_at: int | None = None, how: str = "crash") -> bool:
        """Run a stage's passes; stop at step ``stop_at`` of it (counted over its passes)."""
        passes = {"full": ["prepay", "postpay"]}.get(stage, [stage])
        steps = [step for p in passes for step in self.steps(p)]
        for i, (name, work, args) in enumerate(steps):
            if i == stop_at:
                if how != "killed":       # killed: the run just ends, nothing is recorded
                    self.run_step(name, work, args, fail=how)
                return False
            if self.run_step(name, work, args) != 0:
                return False
        return True

    def duplicate(self, which: int) -> None:
        """A late duplicate of one step of some pass (Argo's retry racing a finished step)."""
        steps = self.steps("prepay") + self.steps("postpay")
        name, work, args = steps[which % len(steps)]
        self.run_step(name, work, args)

    def interrupted(self) -> None:
        """pipeline/api.py reconcile: a run that ended without saying so."""
        if read_job(self.store, JOB).status in GENERATING:
            mark_failed(self.store, JOB, "run", "interrupted", "The local run was killed.")

    # ---- what must always hold ---------------------------------------------------------

    def check(self) -> None:
        try:
            record = read_job(self.store, JOB)
        except JobNotFound:
            assert not self.recorded
            return
        assert {(a.kind, a.page): a.sha256 for a in record.artifacts} == self.recorded
        assert record.status_history and record.status_history[-1].status is record.status
        assert (record.status in FAILED) is (record.error is not None), record


EVENTS = st.one_of(
    st.tuples(st.just("stage"), st.sampled_from(["analyze", "prepay", "postpay", "full"]),
              st.none() | st.integers(0, 25), st.sampled_from(["crash", "bad_input", "killed"])),
    st.tuples(st.just("duplicate"), st.integers(0, 25)),
    st.tuples(st.just("interrupted")))


@pytest.fixture(scope="module")
def patched(events_book):
    """The analyzer and photo decoding stood in for; the book loaded once."""
    loaded = events_book[1]
    with pytest.MonkeyPatch.context() as mp:
        for module in (analyze, plan, finalize):
            mp.setattr(module, "load_book", lambda uri, *a, **k: loaded)
        mp.setattr(analyze, "load_photo", lambda data: data)
        mp.setattr(analyze, "analyzer", lambda name: lambda photo, gender, model_dir="":
                   ANALYSIS.model_copy(deep=True))
        mp.setattr(faults, "_target", None)   # no fault armed by an earlier test
        yield events_book[0]


SCRATCH = "/dev/shm" if os.path.isdir("/dev/shm") else None   # the store's fsyncs are cheap there


@settings(derandomize=True, max_examples=40, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(events=st.lists(EVENTS, max_size=6))
def test_no_sequence_of_events_loses_an_artifact_or_strands_the_job(patched, events):
    with tempfile.TemporaryDirectory(dir=SCRATCH) as root:
        engine = Engine(Path(root), patched)
        for event in events:
            if event[0] == "stage":
                engine.run_stage(event[1], event[2], event[3])
            elif event[0] == "duplicate":
                engine.duplicate(event[1])
            else:
                with contextlib.suppress(JobNotFound):
                    engine.interrupted()
            engine.check()
        before = dict(engine.recorded)
        assert engine.run_stage("full"), "running the job again did not complete it"
        engine.check()
        record = read_job(engine.store, JOB)
        assert record.status is Status.COMPLETED and record.error is None
        assert set(before) <= set(engine.recorded)
        assert set(engine.recorded) == {(k, n) for k in ("page_bg_png", "page_png")
                                        for n in (1, 2, 3, 4)} | {("preview_pdf", None),
                                                                  ("book_pdf", None)}
