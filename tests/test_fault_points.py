"""The crash tests' fault points (steps.core.faults): which step is armed, the n-th time a point
is reached, once-only kills and whole-group kills. Kills happen in a child process."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from steps.core import faults
from tests.helpers import ROOT


@pytest.fixture
def disarmed(monkeypatch):
    monkeypatch.setattr(faults, "_step", None)
    monkeypatch.setattr(faults, "_target", None)
    monkeypatch.setattr(faults, "_seen", {})


@pytest.mark.parametrize("spec,target", [
    ("render:put", ("render", "put", 1)), ("render:put:3", ("render", "put", 3)),
    ("assemble:put:1", None), ("render", None), ("render:put:1:x", None), ("", None)])
def test_arm_takes_only_its_own_step(disarmed, monkeypatch, spec, target):
    monkeypatch.setenv("BOOKJOB_KILL", spec)
    faults.arm("render")
    assert faults._step == "render"
    assert faults._target == target
    faults.point("write")              # another point: nothing happens, nothing is counted
    assert faults._seen == {}


def test_unarmed_points_do_nothing(disarmed):
    for _ in range(3):
        faults.point("put")
    assert faults._seen == {}


def child(script: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    code = "from steps.core import faults\nfaults.arm('render')\n" + script
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT), **env}, check=False)


def test_the_nth_time_a_point_is_reached_the_step_dies():
    done = child("for i in range(1, 4):\n    faults.point('write')\n    faults.point('put')\n"
                 "    print(i, flush=True)\n", {"BOOKJOB_KILL": "render:put:2"})
    assert done.returncode == -9 and done.stdout == "1\n"
    done = child("faults.point('put')\nprint('alive', flush=True)\n", {"BOOKJOB_KILL": "assemble:put"})
    assert done.returncode == 0 and done.stdout == "alive\n"


def test_a_once_file_lets_the_retried_step_live(tmp_path):
    once = tmp_path / "fired"
    env = {"BOOKJOB_KILL": "render:put", "BOOKJOB_KILL_ONCE": str(once)}
    first = child("faults.point('put')\nprint('alive', flush=True)\n", env)
    assert first.returncode == -9 and once.exists()
    second = child("faults.point('put')\nprint('alive', flush=True)\n", env)
    assert second.returncode == 0 and second.stdout == "alive\n"


def test_group_scope_kills_the_whole_process_group():
    script = ("import os, subprocess, sys\n"
              "os.setpgid(0, 0)\n"
              "sleeper = subprocess.Popen(['sleep', '60'])\n"
              "print(sleeper.pid, flush=True)\n"
              "faults.point('record')\n")
    done = child(script, {"BOOKJOB_KILL": "render:record", "BOOKJOB_KILL_SCOPE": "group"})
    assert done.returncode == -9
    sleeper = int(done.stdout.strip())
    for _ in range(50):
        try:
            os.kill(sleeper, 0)            # gone, or a zombie about to be reaped by init
        except ProcessLookupError:
            break
        with open(f"/proc/{sleeper}/stat") as stat:
            state = stat.read().split(")")[-1].split()[0]
        if state == "Z":
            break
        import time

        time.sleep(0.1)
    else:
        os.kill(sleeper, 9)
        pytest.fail("the step's group was not killed")
