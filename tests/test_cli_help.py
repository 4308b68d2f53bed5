"""The CLI's help as a person reads it (issue 29): every command's help rendered by Rich, as
``bookjob CMD --help`` prints it, shows each option's environment variable, plain metavars
(nothing beside a switch, TEXT for text, not typer's ``<bool>``/``<str>``), and says what is
true; ``--version``; a job id that names no job is exit 2 for ``run`` and ``status`` alike."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from importlib.metadata import version

import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from steps.plan import CORES_PER_CHUNK
from tests.helpers import ROOT

COMMANDS = ["run", "status", "submit", "watch", "logs", "demo", "templates", "proof", "jobs",
            "worker", "db upgrade", "db import"]


def help_of(command: str) -> str:
    done = CliRunner().invoke(app, [*command.split(), "--help"], env={"COLUMNS": "220"},
                              terminal_width=220)
    assert done.exit_code == 0, done.output
    return done.output


def option_rows(text: str) -> list[str]:
    return [line for line in text.splitlines() if re.match(r"│ +--", line)]


@pytest.mark.parametrize("command", ["", *COMMANDS])
def test_no_option_shows_typer_type_names(command):
    rows = option_rows(help_of(command))
    assert rows, command
    assert not [r for r in rows if re.search(r"<(bool|str|int|float|path)>", r)], command
    assert any("--help " in r and "Show this message" in r for r in rows)


@pytest.mark.parametrize(("command", "option", "variable"), [
    ("run", "--analyzer", "BOOKJOB_ANALYZER"), ("run", "--notify-url", "BOOKJOB_NOTIFY_URL"),
    ("run", "--store", "BOOKJOB_STORE"), ("run", "--face-backend", "BOOKJOB_FACE_BACKEND"),
    ("submit", "--server", "ARGO_SERVER"), ("submit", "--token", "ARGO_TOKEN"),
    ("status", "--server", "ARGO_SERVER"), ("status", "--namespace", "ARGO_NAMESPACE"),
])
def test_each_option_names_its_environment_variable(command, option, variable):
    assert f"env {variable}" in described(help_of(command), option)


def described(text: str, option: str) -> str:
    """An option's row and the lines of its help below it, as one line of words."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if re.match(rf"│ +{option}\b", line))
    end = next(i for i in range(start + 1, len(lines))
               if re.match(r"│ +-", lines[i]) or lines[i].startswith("╰"))
    return re.sub(r"[│\s]+", " ", " ".join(lines[start:end]))


def test_switches_and_text_show_plain_metavars():
    rows = option_rows(help_of("run"))
    [seed] = [r for r in rows if re.match(r"│ +--randomize-seed ", r)]
    [photo] = [r for r in rows if re.match(r"│ +--photo ", r)]
    [age] = [r for r in rows if re.match(r"│ +--age ", r)]
    assert re.match(r"│ +--randomize-seed +Regenerate", seed)
    assert " TEXT " in photo and " YEARS " in age


def test_the_help_says_what_is_true():
    run = re.sub(r"[│\s]+", " ", help_of("run"))
    per = {1: "one chunk per core", 2: "one chunk per two cores"}[CORES_PER_CHUNK]
    assert per in run
    proof = help_of("proof")
    assert "may be left out" not in proof and "[required]" in proof   # proof needs its book
    assert "Namespace of the workflows" in described(help_of("status"), "--namespace")


def test_version():
    done = CliRunner().invoke(app, ["--version"])
    assert done.exit_code == 0 and done.output == f"bookjob {version('bookjob')}\n"


def test_a_job_id_that_names_no_job_is_exit_2_for_run_and_status(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for argv in (["status", "no-such-job"], ["run", "--job-id", "no-such-job", "--stage", "postpay"]):
        done = subprocess.run([sys.executable, "-m", "pipeline.cli", *argv, "--store",
                               str(tmp_path / "store")], capture_output=True, text=True, env=env)
        assert done.returncode == 2, (argv, done.stderr)
        [line] = done.stderr.splitlines()
        assert line.startswith("error: ") and "no-such-job" in line and "Traceback" not in line
