"""Step ``on_exit``: when a job run ends without success, make the job record say so.

Argo runs it as the workflow's ``onExit`` handler with ``{{workflow.status}}`` and
``{{workflow.failures}}``; the local engine runs it after a failed step with the same
arguments. A step that met bad input has already marked the job with its reason; anything
else (a crash, an exhausted retry, a deadline) becomes ``analysis_failed`` or
``generation_failed`` here, with the failing step and the reason.
"""

from __future__ import annotations

import json
import re
import sys

from steps import runner
from steps.core.job import JOB_ID, JobNotFound, Status, mark_failed, read_job
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
    value = (text or "").strip()
    if value.startswith("@"):
        try:
            with open(value[1:], encoding="utf-8") as f:
                value = f.read().strip()
        except OSError:
            return []
    for _ in range(3):  # unquote until a list appears (quoted once, or not at all)
        if not isinstance(value, str):
            break
        try:
            value = json.loads(_go_unquote(value))
        except (json.JSONDecodeError, ValueError, RecursionError):
            return []
    if not isinstance(value, list):
        return []
    return [n for n in value if isinstance(n, dict)]


_GO_ESCAPE = re.compile(r"\\(x[0-9a-fA-F]{2}|[av]|.)", re.S)


def _go_unquote(text: str) -> str:
    r"""Go's strconv.Quote escapes JSON lacks (\\a, \\v, \\xNN) made JSON-readable."""
    if not text.startswith('"'):
        return text

    def fix(match: re.Match) -> str:
        esc = match.group(1)
        if esc[0] == "x" and len(esc) == 3:
            return "\\u00" + esc[1:]
        return {"a": "\\u0007", "v": "\\u000b"}.get(esc, match.group(0))
    return _GO_ESCAPE.sub(fix, text)


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
             and n.get("templateName")]

    def rank(node: dict) -> tuple:
        message = str(node.get("message") or "").strip()
        kind = 0 if EXIT_CODE.search(message) else 1 if message and not SUMMARIES.match(message) \
            else 2 if message else 3
        return kind, str(node.get("finishedAt") or "9999")
    ranked = sorted(nodes, key=rank)
    return ranked[0] if ranked and rank(ranked[0])[0] < 3 else {}


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
