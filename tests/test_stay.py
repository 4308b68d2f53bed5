"""A step that stays for the next pass (one machine): after a run that succeeds it says so and
waits, warm, for the next pass's go-ahead, whose run writes to files of its own; the engine
reads each run as a run. Real step processes (tests/stay_step.py; the render step in a job)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.launch import launcher
from steps.protocol import GO_FILE, NEXT_GO_FILE, RAN_SUFFIX, TIMING_PREFIX, say
from tests.helpers import CHILD_ARGS, DEMO_PHOTO, ROOT


@pytest.fixture(params=["warm", "exec"])
def start(request, tmp_path, monkeypatch):
    """Start tests.stay_step early with a go-file and a next go-file; yields (launcher, the
    first run's Started, go, next go)."""
    if request.param == "exec":
        monkeypatch.setenv("BOOKJOB_LAUNCH", "exec")
    chosen = launcher()
    go, again = tmp_path / "go", tmp_path / "again"

    def begin(*argv: str):
        started = chosen.start("tests.stay_step", list(argv), {GO_FILE: str(go), NEXT_GO_FILE: str(again)})
        return started.staying(Path(f"{again}{RAN_SUFFIX}"))

    try:
        yield chosen, begin, go, again
    finally:
        chosen.close()


def test_a_run_that_succeeds_stays_and_does_the_next_one_with_its_own_outputs(start):
    chosen, begin, go, again = start
    first = begin("--say", "one")
    say(go, "go")
    done = first.wait()  # returns while the process waits for the next pass
    assert done.returncode == 0 and done.stdout == "one warm=True\n"
    assert "one on stderr" in done.stderr and done.stderr.count(TIMING_PREFIX) == 1
    pid = re.search(r"probe: staying for the next pass \(process (\d+)\)", done.stderr)
    assert pid and "closed" not in done.stderr  # the warm-up is kept for the next run
    time.sleep(0.2)
    assert Path(f"/proc/{pid.group(1)}").exists()

    outputs = chosen.outputs()
    second = first.next_run(*outputs)
    say(again, "go", ["--say", "two", "--fail"], outputs)
    done = second.wait()  # the process's own exit: the second run's code (bad input: 3)
    assert done.returncode == 3 and done.stdout == ""
    assert f"probe: the process of the pass before, warm (process {pid.group(1)})" in done.stderr
    assert "error: two failed as asked." in done.stderr and "one on stderr" not in done.stderr
    assert done.stderr.count(TIMING_PREFIX) == 1 and done.stderr.count("closed") == 1


def test_a_step_that_stayed_and_is_told_to_stop_exits_without_a_second_run(start):
    chosen, begin, go, again = start
    first = begin("--say", "one")
    say(go, "go")
    assert first.wait().returncode == 0
    outputs = chosen.outputs()
    second = first.next_run(*outputs)
    say(again, "stop")
    done = second.wait()
    assert done.returncode == 0 and done.stdout == "" and TIMING_PREFIX not in done.stderr


def test_a_run_that_fails_does_not_stay(start):
    _, begin, go, again = start
    first = begin("--say", "one", "--fail")
    say(go, "go")
    done = first.wait()  # the process's exit
    assert done.returncode == 3 and "error: one failed as asked." in done.stderr
    assert "staying" not in done.stderr and not Path(f"{again}{RAN_SUFFIX}").exists()


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
    pid = re.search(r"render: staying for the next pass \(process (\d+)\)", prepay)
    assert pid, prepay
    assert postpay.startswith(f"render: the process of the pass before, warm (process {pid.group(1)})")
    pages = [re.findall(r'"page": (\d+)', log) for log in (prepay, postpay)]
    assert pages == [["1", "2"], ["3", "4"]]   # small_book: prepay pages 1-2
    assert prepay.count(TIMING_PREFIX) == postpay.count(TIMING_PREFIX) == 1
    assert (store / "layout/both/book.pdf").is_file()
