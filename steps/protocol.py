"""The step protocol: everything an engine relies on when it runs a step, defined once.

A step is ``python -m steps.<name> ARGS``. What comes back to the engine:

- its **exit code**: :data:`EXIT_OK`; :data:`EXIT_INPUT` for bad input (permanent, never
  retried, the job is already marked failed with the reason); anything else is transient and
  retried (:data:`EXIT_FAILURE` for a crash, a store or server that is away, a machine that
  lacks something);
- **lines on stderr** the engine reads: ``error: <one sentence>`` (the last one is the reason a
  person reads), one ``bookjob-timing {json}`` line with the step's own work time, and
  ``<what>: unchanged, skipped`` for work a re-run found already done, and one
  ``bookjob-progress {json}`` line per page a chunk step has finished (its record is written);
- the **go-file handshake**: an engine may start a step early with ``$BOOKJOB_GO_FILE`` set;
  the step warms up, then waits until that file says ``go`` (or ``stop``: it exits doing
  nothing). The engine writes the word atomically with :func:`say`; a ``go`` may carry the
  step's arguments on a second line (JSON), for a step started before they were known;
- **pages ahead** (one machine): a chunk step may be let go while the step before it is still
  making the chunk's pages. Its ``--after`` argument names that step's stderr; it takes each
  page once a progress line there says it is finished (:class:`PagesAhead`), until the go-file
  says ``done`` (the step before succeeded: every page is there) or ``stop``.
- **staying for the next run** (one machine): a step whose go-ahead names a go-file to stay
  on (:func:`say`'s ``stay``) does not exit after a run that succeeds: it writes the exit code
  to that path plus :data:`RAN_SUFFIX` and waits there, warm (the render step: its browser),
  for the next go-ahead (the job's next pass, or on a worker the next job), which carries that
  run's arguments, the files its stdout and stderr go to and, to stay once more, the go-file
  after it; ``stop``, or the engine gone, and it exits.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INPUT = 3

ERROR_PREFIX = "error: "
TIMING_PREFIX = "bookjob-timing "
PROGRESS_PREFIX = "bookjob-progress "
UNCHANGED = ": unchanged, skipped"
GO_FILE = "BOOKJOB_GO_FILE"
RAN_SUFFIX = ".ran"


def error_line(message: str) -> str:
    return ERROR_PREFIX + message


def timing_line(step: str, work_s: float, code: int) -> str:
    return TIMING_PREFIX + json.dumps({"step": step, "work_s": round(work_s, 4), "exit": code})


def progress_line(step: str, page: int, done: int, total: int) -> str:
    return PROGRESS_PREFIX + json.dumps({"step": step, "page": page, "done": done, "total": total})


def progress_of(line: str) -> dict[str, Any] | None:
    """A progress line's fields, or None for any other line."""
    if not line.startswith(PROGRESS_PREFIX):
        return None
    try:
        fields = json.loads(line[len(PROGRESS_PREFIX):])
    except json.JSONDecodeError:
        return None
    return fields if isinstance(fields, dict) else None


def unchanged_line(what: str) -> str:
    return f"{what}{UNCHANGED}"


def last_error(stderr: str) -> str:
    """The last ``error:`` line's sentence, or ""."""
    errors = [line[len(ERROR_PREFIX):] for line in stderr.splitlines() if line.startswith(ERROR_PREFIX)]
    return errors[-1] if errors else ""


def work_seconds(stderr: str) -> float | None:
    """The step's own work time from its timing line, if it printed one."""
    for line in reversed(stderr.splitlines()):
        if line.startswith(TIMING_PREFIX):
            value = json.loads(line[len(TIMING_PREFIX):]).get("work_s")
            return float(value) if value is not None else None
    return None


def unchanged_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.endswith(UNCHANGED)]


def say(path: Path, word: str, argv: list[str] | None = None,
        outputs: tuple[str, str] | None = None, stay: Path | None = None) -> None:
    """Engine side of the handshake: write ``go`` (with the step's arguments, if given; for a
    step that stayed, the files of its stdout and stderr; for one to stay again, the go-file
    of its next run) or ``stop``, atomically, so the step never reads half a word."""
    lines = [word] + [json.dumps(v) for v in (argv, outputs, None if stay is None else str(stay))]
    temporary = path.with_suffix(".tmp")
    temporary.write_text("\n".join(lines))
    temporary.replace(path)


def _said(path: str, line: int) -> Any:
    lines = Path(path).read_text().split("\n")
    return json.loads(lines[line]) if len(lines) > line else None


def go_arguments(path: str) -> list[str] | None:
    """The arguments a ``go`` carried, or None if it carried none."""
    argv = _said(path, 1)
    return [str(a) for a in argv] if argv is not None else None


def go_outputs(path: str) -> tuple[str, str] | None:
    """The stdout and stderr files a ``go`` for a step that stayed named, or None."""
    outputs = _said(path, 2)
    return tuple(outputs) if outputs is not None else None


def go_stay(path: str) -> str:
    """The go-file a ``go`` asks the step to stay on after this run, or ""."""
    return str(_said(path, 3) or "")


def ran(path: str, code: int) -> None:
    """Step side, staying for the next pass: the run it did ended with ``code``."""
    temporary = Path(path + RAN_SUFFIX + ".tmp")
    temporary.write_text(str(code))
    temporary.replace(path + RAN_SUFFIX)


def wait_for_go(path: str, parent: int, poll_s: float = 0.005) -> bool:
    """Step side: True once ``path`` says ``go``; False if it says anything else, or if the
    engine is gone (this process was orphaned by ``parent``, or the engine's scratch folder
    was removed)."""
    while True:
        word = heard(path)
        if word:
            return word in ("go", "done")
        if os.getppid() != parent or not Path(path).parent.is_dir():
            return False
        time.sleep(poll_s)


def heard(path: str) -> str:
    """The word the engine last said in the go-file; "" while it has said nothing."""
    try:
        return Path(path).read_text().partition("\n")[0]
    except FileNotFoundError:
        return ""


class PagesAhead:
    """The pages of a chunk as the step making them finishes them: its stderr (``after``) has a
    progress line for each, written once the page and its record are stored; the engine's
    go-file says ``done`` when that step succeeded (its stderr may be gone by then) and
    ``stop`` when it failed."""

    def __init__(self, after: str, go_file: str, parent: int, poll_s: float = 0.005) -> None:
        self.after, self.go_file, self.parent, self.poll_s = after, go_file, parent, poll_s
        self.finished: set[int] = set()
        self._read = 0

    def wait(self, page: int) -> bool:
        """True once ``page`` is finished; False if the engine said stop or is gone."""
        while True:
            self._take_new_lines()
            if page in self.finished:
                return True
            word = heard(self.go_file)                  # "": the engine's scratch is gone
            if word == "done":
                return True
            if word != "go" or os.getppid() != self.parent:
                return False
            time.sleep(self.poll_s)

    def _take_new_lines(self) -> None:
        try:
            with open(self.after, "rb") as f:
                f.seek(self._read)
                text = f.read()
        except FileNotFoundError:
            return
        whole = text[:text.rfind(b"\n") + 1]           # the last line may be half written
        self._read += len(whole)
        for line in whole.decode(errors="replace").splitlines():
            page = (progress_of(line) or {}).get("page")
            if isinstance(page, int):
                self.finished.add(page)
