"""Starting steps early: a step launched with $BOOKJOB_GO_FILE warms up, waits for the go-ahead,
and does nothing at all when told to stop or when its engine is gone. Real step processes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.launch import ExecLauncher, WarmLauncher, launcher
from steps.backends.chromium import descendants
from steps.plan import AUTO_MIN_PAGES, CORES_PER_CHUNK, chunks
from steps.protocol import GO_FILE, TIMING_PREFIX
from tests.helpers import ROOT


def chromium_children(pid: int) -> list[int]:
    found = []
    for kid in descendants(pid):
        try:
            if "chrom" in Path(f"/proc/{kid}/comm").read_text():
                found.append(kid)
        except OSError:
            pass
    return found


def render_step(go: Path, store: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "steps.render", "--store", str(store), "--job-id", "nobody-1",
         "--book", str(ROOT / "pipeline" / "demo" / "book"), "--pages", "1"],
        env={**os.environ, GO_FILE: str(go)}, cwd=ROOT, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)


def say(go: Path, word: str) -> None:
    go.with_suffix(".tmp").write_text(word)
    go.with_suffix(".tmp").replace(go)


def test_a_step_told_to_stop_does_nothing(tmp_path):
    go = tmp_path / "go"
    step = render_step(go, tmp_path / "store")
    deadline = time.monotonic() + 30
    while not chromium_children(step.pid):  # warming up: its browser starts before the go-ahead
        assert step.poll() is None and time.monotonic() < deadline, step.communicate()
        time.sleep(0.05)
    say(go, "stop")
    out, err = step.communicate(timeout=30)
    assert step.returncode == 0
    assert TIMING_PREFIX not in err and out == ""  # the work never began
    assert not (tmp_path / "store").exists()


def test_a_step_told_to_go_does_its_work(tmp_path):
    go = tmp_path / "go"
    step = render_step(go, tmp_path / "store")
    time.sleep(0.5)
    assert step.poll() is None  # still waiting
    say(go, "go")
    _, err = step.communicate(timeout=60)
    # the work ran (and met a job that does not exist: bad input, exit 3, reason no_job)
    assert TIMING_PREFIX in err and step.returncode == 3 and "no_job" in err
    assert "nobody-1" in err


def test_a_go_ahead_may_bring_the_arguments(tmp_path):
    """A step started before its arguments were known (the next pass's render step) does its
    work with the ones the go-ahead brings."""
    from steps.protocol import say as engine_says

    go = tmp_path / "go"
    step = render_step(go, tmp_path / "store")
    argv = ["--store", str(tmp_path / "store"), "--job-id", "nobody-2", "--book",
            str(ROOT / "pipeline" / "demo" / "book"), "--pages", "2"]
    engine_says(go, "go", argv)
    _, err = step.communicate(timeout=60)
    # it worked on job nobody-2 (no such job: exit 3, naming it), not on the one it started with
    assert TIMING_PREFIX in err and step.returncode == 3
    assert "nobody-2" in err and "nobody-1" not in err


def test_an_orphaned_step_gives_up(tmp_path):
    """If the engine dies before the go-ahead, the waiting step exits instead of waiting forever."""
    go, pid_file = tmp_path / "go", tmp_path / "pid"
    parent = subprocess.run(
        [sys.executable, "-c",
         "import os, subprocess, sys\n"
         f"p = subprocess.Popen([sys.executable, '-m', 'steps.render', '--store', {str(tmp_path)!r},"
         f" '--job-id', 'nobody-1', '--book', {str(ROOT / 'pipeline/demo/book')!r}, '--pages', '1'],"
         f" env={{**os.environ, {GO_FILE!r}: {str(go)!r}}}, cwd={str(ROOT)!r})\n"
         f"open({str(pid_file)!r}, 'w').write(str(p.pid))\n"
         "import time; time.sleep(3)\n"  # the step is up and waiting; now the engine dies
         "os._exit(0)\n"], timeout=30)
    assert parent.returncode == 0
    child = int(pid_file.read_text())
    deadline = time.monotonic() + 30
    while True:
        try:
            state = Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            break
        if state == "Z":
            break
        assert time.monotonic() < deadline, "the orphaned step is still waiting"
        time.sleep(0.1)


@pytest.mark.parametrize("kind", ["warm", "exec"])
def test_launchers_start_and_wait(kind, tmp_path, monkeypatch):
    if kind == "exec":
        monkeypatch.setenv("BOOKJOB_LAUNCH", "exec")
    chosen = launcher()
    assert isinstance(chosen, WarmLauncher if kind == "warm" else ExecLauncher)
    try:
        started = chosen.start("steps.plan", ["--help"], {"BOOKJOB_PROBE": "1"})
        done = started.wait()
        assert done.returncode == 0 and "--pages-per-task" in done.stdout
        assert chosen.run("steps.plan", ["--no-such-flag"]).returncode == 2
    finally:
        chosen.close()


def test_auto_chunks_are_one_per_two_cores_but_never_tiny(monkeypatch):
    assert (AUTO_MIN_PAGES, CORES_PER_CHUNK) == (4, 2)
    for cores in ({0}, {0, 1}, {0, 1, 2}):                  # one chunk keeps two cores busy
        monkeypatch.setattr(os, "sched_getaffinity", lambda _, c=cores: c, raising=False)
        assert chunks(list(range(1, 25)), "auto") == [",".join(map(str, range(1, 25)))]
    monkeypatch.setattr(os, "sched_getaffinity", lambda _: set(range(4)), raising=False)
    assert chunks([1, 2, 3], "auto") == ["1,2,3"]          # too few pages to split
    assert chunks(list(range(4, 8)), "auto") == ["4,5,6,7"]
    assert chunks(list(range(1, 9)), "auto") == ["1,2,3,4", "5,6,7,8"]
    assert len(chunks(list(range(1, 25)), "auto")) == 2    # never more than cores / 2
    monkeypatch.setattr(os, "sched_getaffinity", lambda _: set(range(16)), raising=False)
    assert chunks(list(range(1, 25)), "auto") == [
        ",".join(map(str, range(n, n + 4))) for n in range(1, 25, 4)]   # 6 chunks of 4, not 8
    assert chunks([1, 2, 3], 0) == ["1,2,3"] and chunks([1, 2, 3], 2) == ["1,2", "3"]


@pytest.mark.parametrize("kept", [True, False])
def test_a_step_keeps_freed_page_memory_for_the_next_page(kept):
    """Making and dropping the arrays of a print page (three at a time, as a step does), page
    after page: with keep_freed_memory() (every step runs it) glibc reuses the memory; by
    default it gives most of it back to the kernel and faults fresh pages in each time."""
    program = ("import resource, numpy as np\n"
               "from steps.runner import keep_freed_memory\n"
               f"{'keep_freed_memory()' if kept else ''}\n"
               "before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
               "for _ in range(20):\n"
               "    arrays = [np.ones((2480, 2480, 3), np.uint8) for _ in range(3)]; del arrays\n"
               "print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)\n")
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                          cwd=ROOT, timeout=60, check=True)
    faults = int(done.stdout)
    pages = 20 * 3 * 2480 * 2480 * 3 // 4096              # 4 KiB pages touched in all
    assert (faults < pages // 40) if kept else (faults > pages // 20), faults
