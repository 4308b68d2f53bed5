"""Fault injection for the crash tests: SIGKILL a step at a named point of its work.

Unset (as always in production) this is one settings lookup per step and nothing else.

``BOOKJOB_KILL=<step>:<point>[:<n>]`` kills step ``<step>`` the ``n``-th time (default: the
first) it reaches ``<point>``. The points:

- ``write``  a local store write: the temporary file is complete, not yet renamed into place;
- ``put``    an artifact's object is stored, its record not yet updated;
- ``record`` a chunk's artifacts are about to be added to the job record;
- ``update`` a job-record update is computed, not yet written (compare-and-swap).

``BOOKJOB_KILL_SCOPE=group`` kills the step's whole process group (a local engine run: the
`bookjob` CLI, the step and its browser), as when the machine dies; the default kills the step
alone, as when a pod is killed (the engine then retries it). ``BOOKJOB_KILL_ONCE=<file>`` fires
only if ``<file>`` does not exist yet and creates it first, so a retried step survives.
"""

from __future__ import annotations

import os
import signal

from steps.core.settings import settings

_step: str | None = None
_target: tuple[str, str, int] | None = None
_seen: dict[str, int] = {}


def arm(step: str) -> None:
    """Called once by the step runner: this process is step ``step``."""
    global _step, _target
    _step = step
    spec = settings().kill
    parts = spec.split(":")
    if len(parts) in (2, 3) and parts[0] == step:
        _target = (parts[0], parts[1], int(parts[2]) if len(parts) == 3 else 1)


def point(name: str) -> None:
    """A named point of a step's work: die here if the test asked for it."""
    if _target is None or _target[1] != name:
        return
    _seen[name] = _seen.get(name, 0) + 1
    if _seen[name] != _target[2]:
        return
    once = settings().kill_once
    if once:
        try:
            os.close(os.open(once, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return
    if settings().kill_scope == "group":
        os.killpg(os.getpgrp(), signal.SIGKILL)
    os.kill(os.getpid(), signal.SIGKILL)
