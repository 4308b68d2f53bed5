"""Step ``on_exit``: when a job run ends without success, make the job record say so.

Argo runs it as the workflow's ``onExit`` handler with ``{{workflow.status}}`` and
``{{workflow.failures}}``; the local engine runs it after a failed step with the same
arguments. A step that met bad input has already marked the job with its reason; anything
else (a crash, an exhausted retry, a deadline) becomes ``analysis_failed`` or
``generation_failed`` here, with the failing step and the reason.
"""

from __future__ import annotations

import ast
import json
import re
import sys
import warnings
from pathlib import Path

from steps import runner
from steps.core.job import JOB_ID, JobNotFound, Status
from steps.core.records import mark_failed, read_job
from steps.core.store import open_store
from steps.protocol import EXIT_INPUT

FAILED = (Status.ANALYSIS_FAILED, Status.GENERATION_FAILED)


def decode_failures(text: str) -> list[dict]:
    """``{{workflow.failures}}`` as the controller passes it, as a list of node dicts.

    The controller JSON-encodes the failed nodes and then ``strconv.Quote``s that text
    (``workflow/controller/operator.go``: "so that the escaped quotes are not removed during
    parameter substitution"), so the argument is a quoted string literal holding JSON; no
    failures is ``"null"``. On v3.7+ an over-long argument may arrive as ``@<file>``, the file
    holding it (``cmd/argoexec/commands/emissary.go``). Anything else gives an empty list."""
    value = text.strip()
    try:
        if value.startswith("@"):
            value = Path(value[1:]).read_bytes().decode().strip()
        if value.startswith('"'):
            value = _go_unquote(value)
        nodes = json.loads(value)             # TypeError: the literal held no string
    except (OSError, ValueError, TypeError, SyntaxError, RecursionError, MemoryError):
        return []
    return [n for n in nodes if isinstance(n, dict)] if isinstance(nodes, list) else []


def _go_unquote(literal: str) -> object:
    r"""What a ``strconv.Quote`` literal holds. Its escapes (\a \b \f \n \r \t \v \\ \"
    \xNN \uNNNN \UNNNNNNNN, ``strconv/quote.go`` appendEscapedRune) are a subset of Python's,
    so Python's literal parser reads it (and anything else that is not a literal is refused)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")      # an unknown escape (\q) warns, then stays as is
        return ast.literal_eval(literal)


EXIT_CODE = re.compile(r"exit code (\d+)")


# Messages of the nodes above a pod (Retry, DAG; ``operator.go`` processNodeRetries, dag.go):
# they say that something below failed, not what.
SUMMARIES = re.compile(r"^(No more retries left|retryStrategy\.expression evaluated to false|"
                       r"child '.*' failed|Max duration limit exceeded|"
                       r"Backoff would exceed max duration limit|"
                       r"template has failed or errored children.*)$")


def first_failure(failures: str) -> dict:
    """The node that explains the failure: a Pod node's (its message has an exit code), the
    earliest to finish; else the earliest with a message of its own (an eviction, a deadline).
    Nodes come in random order and include the DAG, Retry and workflow nodes above the pod, so
    neither order nor type is relied on."""
    nodes = [n for n in decode_failures(failures) if isinstance(n.get("templateName"), str)
             and n["templateName"] and str(n.get("message") or "").strip()]

    def rank(node: dict) -> tuple:
        message = str(node["message"]).strip()
        kind = 0 if EXIT_CODE.search(message) else 2 if SUMMARIES.match(message) else 1
        finished = str(node.get("finishedAt") or "")
        return kind, not finished, finished          # unfinished last
    return min(nodes, key=rank, default={})


def work(args) -> None:
    if args.workflow_status == "Succeeded" or not JOB_ID.fullmatch(args.job_id or ""):
        return
    store = open_store(args.store)
    try:
        record = read_job(store, args.job_id)
    except JobNotFound:
        print(f"on_exit: no job record for {args.job_id}; nothing to mark", file=sys.stderr)
        return
    if record.status in FAILED and record.error is not None:
        print(f"on_exit: job already {record.status.value}: {record.error.message}", file=sys.stderr)
        return
    node = first_failure(args.failures)
    step = str(node.get("templateName") or "workflow").replace("-", "_")
    detail = str(node.get("message") or f"the workflow ended {args.workflow_status}").strip()
    code = EXIT_CODE.search(detail)
    if code and int(code.group(1)) == EXIT_INPUT:
        # Exit 3 is the step's own word: it marked the job with its reason, or refused the
        # request and left the job as it was (a regeneration over the limit, another book).
        print(f"on_exit: step {step} exited {EXIT_INPUT} (bad input); the job stays "
              f"{record.status.value}", file=sys.stderr)
        return
    reason = f"exit_{code.group(1)}" if code else f"workflow_{args.workflow_status.lower()}"
    message = (f"Step {step} failed ({detail.rstrip('.')}); run the job again with the same "
               "job id to resume it.")
    mark_failed(store, args.job_id, step, reason, message)
    print(f"on_exit: job {args.job_id} marked failed: {message}", file=sys.stderr)


def main() -> None:
    p = runner.parser("on_exit", __doc__.splitlines()[0])
    p.add_argument("--workflow-status", required=True, help="Succeeded, Failed or Error")
    p.add_argument("--failures", default="", help="{{workflow.failures}}: JSON list of failed nodes")
    runner.run("on_exit", p.parse_args(), work)


if __name__ == "__main__":
    main()
