"""A step that stays for the next run (one machine): a go-ahead that names a go-file to stay
on leaves the process, after a run that succeeds, waiting there, warm, for the next go-ahead
(the job's next pass, a worker's next job), whose run writes to files of its own; the engine
reads each run as a run. Real step processes (tests/stay_step.py; the render step in a job)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.handoff import SLOT_RUNS, EarlyStart, Slot
from pipeline.launch import launcher
from pipeline.spec import Step
from steps.protocol import GO_FILE, RAN_SUFFIX, TIMING_PREFIX, say
from tests.helpers import CHILD_ARGS, DEMO_PHOTO, ROOT


@pytest.fixture(params=["warm", "exec"])
def start(request, tmp_path, monkeypatch):
    """Start tests.stay_step early with a go-file; yields (launcher, a function starting it
    and returning its first run's Started, go, the go-file to stay on)."""
    if request.param == "exec":
        monkeypatch.setenv("BOOKJOB_LAUNCH", "exec")
    chosen = launcher()
    go, again = tmp_path / "go", tmp_path / "again"

    def begin(*argv: str):
        started = chosen.start("tests.stay_step", list(argv), {GO_FILE: str(go)})
        return started.staying(Path(f"{again}{RAN_SUFFIX}"))

    try:
        yield chosen, begin, go, again
    finally:
        chosen.close()


def test_a_run_that_succeeds_stays_and_does_the_next_one_with_its_own_outputs(start):
    chosen, begin, go, again = start
    first = begin("--say", "one")
    say(go, "go", stay=again)
    done = first.wait()  # returns while the process waits for the next run
    assert done.returncode == 0 and done.stdout == "one warm=True\n"
    assert "one on stderr" in done.stderr and done.stderr.count(TIMING_PREFIX) == 1
    pid = re.search(r"probe: staying for the next run \(process (\d+)\)", done.stderr)
    assert pid and "closed" not in done.stderr  # the warm-up is kept for the next run
    time.sleep(0.2)
    assert Path(f"/proc/{pid.group(1)}").exists()

    outputs = chosen.outputs()
    second = first.next_run(*outputs)
    say(again, "go", ["--say", "two", "--fail"], outputs)
    done = second.wait()  # the process's own exit: the second run's code (bad input: 3)
    assert done.returncode == 3 and done.stdout == ""
    assert f"probe: the process of the run before, warm (process {pid.group(1)})" in done.stderr
    assert "error: two failed as asked." in done.stderr and "one on stderr" not in done.stderr
    assert done.stderr.count(TIMING_PREFIX) == 1 and done.stderr.count("closed") == 1


def test_a_step_that_stayed_and_is_told_to_stop_exits_without_a_second_run(start):
    chosen, begin, go, again = start
    first = begin("--say", "one")
    say(go, "go", stay=again)
    assert first.wait().returncode == 0
    outputs = chosen.outputs()
    second = first.next_run(*outputs)
    say(again, "stop")
    done = second.wait()
    assert done.returncode == 0 and done.stdout == "" and TIMING_PREFIX not in done.stderr


def test_a_run_that_fails_does_not_stay(start):
    _, begin, go, again = start
    first = begin("--say", "one", "--fail")
    say(go, "go", stay=again)
    done = first.wait()  # the process's exit
    assert done.returncode == 3 and "error: one failed as asked." in done.stderr
    assert "staying" not in done.stderr and not Path(f"{again}{RAN_SUFFIX}").exists()


def test_a_go_ahead_that_names_no_go_file_to_stay_on_ends_the_process(start):
    _, begin, go, again = start
    first = begin("--say", "one")
    say(go, "go")
    done = first.wait()  # the process's own exit: nothing asked it to stay
    assert done.returncode == 0 and done.stdout == "one warm=True\n"
    assert "staying" not in done.stderr and not Path(f"{again}{RAN_SUFFIX}").exists()
    assert done.stderr.count("closed") == 1


def test_a_step_stays_run_after_run_while_each_go_ahead_asks_it_to(start, tmp_path):
    chosen, begin, go, again = start
    run = begin("--say", "r0")
    say(go, "go", stay=again)
    done = run.wait()
    pid = re.search(r"staying for the next run \(process (\d+)\)", done.stderr).group(1)
    here = again
    for n in range(1, 4):
        after = tmp_path / f"again-{n}"
        outputs = chosen.outputs()
        run = run.next_run(*outputs).staying(Path(f"{after}{RAN_SUFFIX}"))
        say(here, "go", ["--say", f"r{n}"], outputs, stay=after)
        done = run.wait()
        assert done.returncode == 0 and done.stdout == f"r{n} warm=True\n"
        assert f"the process of the run before, warm (process {pid})" in done.stderr
        assert "closed" not in done.stderr and f"r{n - 1}" not in done.stderr
        here = after
    outputs = chosen.outputs()
    last = run.next_run(*outputs)
    say(here, "go", ["--say", "last"], outputs)   # names no go-file: it stays no more
    done = last.wait()
    assert done.returncode == 0 and done.stdout == "last warm=True\n"
    assert done.stderr.count("closed") == 1 and "staying" not in done.stderr
    assert not Path(f"/proc/{pid}").exists() or Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"


PROBE = Step("probe", ("--say", "{say}"), entry="tests.stay_step")


def _kept(chosen, tmp_path, say_word: str = "one") -> EarlyStart:
    """A probe step started early, asked to stay, run once: what a slot keeps."""
    probe = EarlyStart.start(chosen, PROBE, {"say": say_word}, tmp_path)
    probe.stay_in(tmp_path)
    assert probe.go(["--say", say_word]).wait().returncode == 0
    held = probe.stayed()
    assert held is not None and held.runs == 1
    return held


def test_a_slot_gives_its_kept_step_to_the_next_job_with_the_same_settings(tmp_path):
    slot = Slot(tmp_path)
    first, second = launcher(env={"BOOKJOB_NOTIFY_URL": ""}), launcher(env={"BOOKJOB_NOTIFY_URL": ""})
    try:
        slot.put(_kept(first, tmp_path))
        first.close()                           # the job that made it has ended
        taken = slot.take(second)
        assert taken is not None and slot.held is None
        done = taken.go(["--say", "again"]).wait()
        assert done.returncode == 0 and done.stdout == "again warm=True\n"
        assert "the process of the run before, warm" in done.stderr
        assert taken.outputs is not None and Path(taken.outputs[1]).parent == Path(second.scratch.name)
    finally:
        second.close()


def test_a_slot_stops_a_kept_step_made_for_other_settings_and_one_that_is_gone(tmp_path):
    slot = Slot(tmp_path)
    made = launcher(env={"BOOKJOB_NOTIFY_URL": "http://a.example/hook"})
    other = launcher(env={"BOOKJOB_NOTIFY_URL": "http://b.example/hook"})
    try:
        held = _kept(made, tmp_path)
        slot.put(held)
        assert slot.take(other) is None and not held.started.running()   # stopped, not leaked
        gone = _kept(made, tmp_path)
        slot.put(gone)
        gone.started.kill()
        time.sleep(0.2)
        assert slot.take(made) is None and slot.held is None
    finally:
        made.close()
        other.close()


def test_a_slot_lets_a_step_go_after_its_runs(tmp_path):
    slot = Slot(tmp_path)
    chosen = launcher()
    try:
        held = _kept(chosen, tmp_path)
        held.runs = SLOT_RUNS - 1
        slot.put(held)
        assert slot.held is held                # one run left: kept
        held = slot.take(chosen)
        held.runs = SLOT_RUNS
        slot.put(held)
        assert slot.held is None and not held.started.running()
    finally:
        chosen.close()


@pytest.mark.slow
def test_a_full_job_sets_both_passes_text_in_one_render_process(small_book, tmp_path):
    """The prepay pass's render step stays; the postpay pass's first chunk is its next run:
    one browser start per job. Each run keeps its own log, with its own pages."""
    store = tmp_path / "store"
    done = subprocess.run([sys.executable, "-m", "pipeline.cli", "run", str(small_book), "--photo",
                           str(DEMO_PHOTO), *CHILD_ARGS, "--job-id", "both", "--store", str(store),
                           "--stage", "full"], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    [prepay] = [p.read_text() for p in (store / "jobs/both/logs").glob("*/prepay-render*")]
    [postpay] = [p.read_text() for p in (store / "jobs/both/logs").glob("*/postpay-render*")]
    pid = re.search(r"render: staying for the next run \(process (\d+)\)", prepay)
    assert pid, prepay
    assert postpay.startswith(f"render: the process of the run before, warm (process {pid.group(1)})")
    pages = [re.findall(r'"page": (\d+)', log) for log in (prepay, postpay)]
    assert pages == [["1", "2"], ["3", "4"]]   # small_book: prepay pages 1-2
    assert prepay.count(TIMING_PREFIX) == postpay.count(TIMING_PREFIX) == 1
    assert (store / "layout/both/book.pdf").is_file()
