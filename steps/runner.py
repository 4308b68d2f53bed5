"""What every step program shares: its common arguments and failure handling, speaking
:mod:`steps.protocol` to the engine.

A step that meets bad input prints one sentence, marks the job failed with the reason and
exits with code 3 (never retried). A :class:`~steps.core.errors.TransientError` (the store, a
server, the browser) or a :class:`~steps.core.errors.SetupError` is one line and exit code 1;
anything else is a crash: the traceback goes to the step's log (stderr) and the exit code is 1.
The engines retry all of these. Each step reports its own work time on stderr as one timing
line, for the benchmarks. A step started early (``$BOOKJOB_GO_FILE``) warms up, then waits
for the go-ahead; one whose go-ahead asks it to stay then does the next run (the job's next
pass, or a worker's next job), and stays again while each go-ahead asks it to.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

from steps.core import faults, notify
from steps.core.errors import InputError, Refusal, SetupError, TransientError
from steps.core.job import JOB_ID, JobNotFound
from steps.core.records import mark_failed
from steps.core.store import StoreError, open_store
from steps.protocol import (
    EXIT_FAILURE,
    EXIT_INPUT,
    EXIT_OK,
    GO_FILE,
    error_line,
    go_arguments,
    go_outputs,
    go_stay,
    ran,
    timing_line,
    wait_for_go,
)


def parser(step: str, description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"python -m steps.{step}", description=description)
    p.add_argument("--store", required=True, help="store: a folder or s3://bucket/prefix")
    p.add_argument("--job-id", required=True)
    return p


def boolean(text: str) -> bool:
    """``true``/``false`` as Argo passes parameters."""
    return str(text).strip().lower() in ("1", "true", "yes")


def parse_pages(text: str) -> list[int]:
    """``"1,2,5"`` -> [1, 2, 5] (the form chunks travel in between steps)."""
    return [int(n) for n in text.split(",") if n.strip()]


def report_progress(done: int, total: int) -> None:
    """Pages done / total of a chunk, where Argo looks: the last ``N/M`` line of
    ``$ARGO_PROGRESS_FILE`` (the executor reads it every few seconds and the UI shows it,
    ``workflow/executor/executor.go`` monitorProgress). Unset outside Argo: nothing to do."""
    path = os.environ.get("ARGO_PROGRESS_FILE", "")
    if not path or total <= 0:
        return
    try:
        with open(path, "a") as f:
            f.write(f"{done}/{total}\n")
    except OSError:  # progress is a courtesy: it never fails a step
        pass
def _mark(args: argparse.Namespace, step: str, reason: str, message: str) -> None:
    """Record the failure on the job; a record that cannot be marked never hides the exit code."""
    try:
        mark_failed(open_store(args.store), args.job_id, step, reason, message)
    except (JobNotFound, StoreError):  # no record, or the store is down: nothing to mark
        pass
    except Exception as e:  # noqa: BLE001 - the step's own failure is what must be reported
        print(f"could not mark job {args.job_id} failed: {e}", file=sys.stderr)


def run(step: str, args: argparse.Namespace, work: Callable[..., None],
        warm_up: Callable[[argparse.Namespace], Any] | None = None,
        parse: Callable[[list[str]], argparse.Namespace] | None = None) -> None:
    """Run a step's work and exit with the code the engines understand.

    With ``warm_up``, ``work(args, warm)`` gets what ``warm_up(args)`` made (it must return at
    once, its work going on in the background, and have a ``close()``) when the engine started
    the step early, else None; a warm-up that fails is simply not used. With ``parse``, the
    go-ahead may bring the step's arguments (they replace ``args``), and the step may stay for
    the next run: after a run that succeeds it waits, warm, at the go-file its go-ahead named
    (:func:`steps.protocol.go_stay`), and does that run too, and so on while each go-ahead
    names one.
    """
    keep_freed_memory()
    notify.as_step()
    parent = os.getppid()
    warm = None
    go = os.environ.pop(GO_FILE, "")
    stay = ""
    if go:
        if warm_up is not None:
            try:
                warm = warm_up(args)
            except Exception:  # noqa: BLE001 - the work starts its own and reports properly
                warm = None
        if not wait_for_go(go, parent):
            if warm is not None:
                warm.close()
            sys.exit(EXIT_OK)
        if parse is not None:
            _take_outputs(go)     # (a process kept for a later job writes to that job's files)
            argv, stay = go_arguments(go), go_stay(go)
            if argv is not None:
                args = parse(argv)
    try:
        code = _run_once(step, args, go, work, warm, warm_up is not None)
        while code == EXIT_OK and stay and parse is not None:
            ran(stay, code)
            print(f"{step}: staying for the next run (process {os.getpid()})", file=sys.stderr,
                  flush=True)
            if not wait_for_go(stay, parent):
                break
            go, stay = stay, go_stay(stay)
            _take_outputs(go)
            print(f"{step}: the process of the run before, warm (process {os.getpid()})",
                  file=sys.stderr, flush=True)
            code = _run_once(step, parse(go_arguments(go) or []), go, work, warm,
                             warm_up is not None)
    finally:
        if warm is not None:
            warm.close()
    sys.exit(code)


def keep_freed_memory() -> None:
    """Let glibc keep freed memory for the next allocation. A step makes and drops several
    arrays of a print page (18 MB at 2480x2480) for every page; by default glibc hands each
    back to the kernel and the next one is faulted in afresh, page by page, zeroed: about
    4,000 page faults and 20 ms of system time a page. Nothing where malloc is not glibc's."""
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library the interpreter runs on
    except (OSError, AttributeError):
        return
    m_trim_threshold, m_mmap_threshold = -1, -3  # mallopt's parameter numbers (malloc.h)
    # Blocks up to 256 MiB come from the heap (larger ones, or any when the heap cannot grow,
    # are mapped as before), and the heap keeps up to 1 GiB free at its top for the next page.
    mallopt(m_mmap_threshold, 256 << 20)
    mallopt(m_trim_threshold, 1 << 30)


def _take_outputs(go: str) -> None:
    """Send stdout and stderr to the files the go-ahead names (a run of its own)."""
    outputs = go_outputs(go)
    if outputs is None:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    for fd, path in zip((1, 2), outputs, strict=True):
        target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(target, fd)
        os.close(target)


def _run_once(step: str, args: argparse.Namespace, go: str, work: Callable[..., None],
              warm: Any, warmable: bool) -> int:
    """One run of the step's work; its exit code (the failure reported as the engines expect)."""
    args.go_file = go                   # a step taking pages ahead hears done/stop there
    started = time.perf_counter()
    code = EXIT_OK
    faults.arm(step)
    try:
        if not warmable:
            work(args)
        else:
            work(args, warm)
    except JobNotFound as e:  # permanent: no record to work on (and none to mark)
        code = EXIT_INPUT
        print(error_line(f"{e}; start the job with its first stage (reason no_job)."),
              file=sys.stderr)
    except InputError as e:
        code = EXIT_INPUT
        print(error_line(e.message), file=sys.stderr)
        if not isinstance(e, Refusal) and JOB_ID.fullmatch(args.job_id or ""):
            _mark(args, step, e.reason, e.message)
    except TransientError as e:  # the store, a server, the browser: one line, exit 1, retried
        code = EXIT_FAILURE
        what = "temporary store failure" if isinstance(e, StoreError) else "temporary failure"
        print(error_line(f"{what}, the step will be retried: {e}"), file=sys.stderr)
    except SetupError as e:  # the machine lacks something: one line saying what, exit 1
        code = EXIT_FAILURE
        print(error_line(str(e)), file=sys.stderr)
    except Exception:  # noqa: BLE001 - a crash is reported and retried, never swallowed
        code = EXIT_FAILURE
        traceback.print_exc()
    print(timing_line(step, time.perf_counter() - started, code), file=sys.stderr, flush=True)
    return code
