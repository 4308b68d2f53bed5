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

FAILED = (Status.ANALYSIS_FAILED, Status.GENERATION_FAILED)


def first_failure(failures: str) -> dict:
    """The first failed step node of ``{{workflow.failures}}`` (a JSON list), or {}."""
    try:
        nodes = json.loads(failures or "[]")
    except json.JSONDecodeError:
        return {}
    for node in nodes if isinstance(nodes, list) else []:
        if isinstance(node, dict) and node.get("templateName"):
            return node
    return {}


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
    step = node.get("templateName", "workflow").replace("-", "_")
    detail = node.get("message") or f"the workflow ended {args.workflow_status}"
    code = re.search(r"exit code (\d+)", detail)
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
