"""retryStrategy as ``operator.go`` processNodeRetries applies it to a Retry node."""

from __future__ import annotations

import time

from tests.harness.expr import Unsupported, eval_retry


def execute_retries(wf, template: dict, parent, inputs: dict[str, str], exit_handler: bool):
    """Attempts ``<name>(N)`` until one succeeds or the strategy says stop, in the
    controller's order after a failed attempt: backoff (maxDuration checks, then the wait
    ``duration * factor^(attempts-1)``, only while attempts <= limit), retryPolicy, ``No more
    retries left`` once attempts > limit, and only then ``expression`` — so a permanent
    failure still waits out one backoff before the parent fails."""
    rs = template["retryStrategy"]
    if set(rs) - {"limit", "retryPolicy", "expression", "backoff"}:
        raise Unsupported(f"retryStrategy {rs}")
    limit = int(rs["limit"]) if "limit" in rs else None
    policy = rs.get("retryPolicy") or ("Always" if rs.get("expression") else "OnFailure")
    backoff = rs.get("backoff") or {}
    if set(backoff) - {"duration", "factor", "maxDuration"}:
        raise Unsupported(f"backoff {backoff}")
    scale = wf.c.time_scale
    from tests.harness.controller import _humanize, _seconds
    first_start = time.monotonic()
    max_deadline = (first_start + _seconds(backoff["maxDuration"]) * wf.c.deadline_scale
                    if backoff.get("maxDuration") else None)
    scope = {"retries": "0", "lastRetry.exitCode": "0", "lastRetry.status": "",
             "lastRetry.duration": "0", "lastRetry.message": ""}
    attempts = 0
    while True:
        child = wf._node(f"{parent.name}({attempts})", f"{parent.display_name}({attempts})",
                         "Pod", template["name"])
        parent.children.append(child.id)
        started = time.monotonic()
        result = wf._attempt(template, child, inputs, exit_handler, dict(scope),
                             execution_deadline=max_deadline)
        attempts += 1
        if child.phase == "Succeeded":
            parent.outputs = child.outputs
            return wf._finish(parent, "Succeeded")
        if backoff:
            if max_deadline is not None and time.monotonic() > max_deadline:
                return wf._finish(parent, child.phase, "Max duration limit exceeded")
            wait = _seconds(backoff.get("duration", 0)) * (int(backoff.get("factor", 1) or 1) ** (attempts - 1))
            if max_deadline is not None and time.monotonic() + wait * scale > max_deadline:
                return wf._finish(parent, child.phase, "Backoff would exceed max duration limit")
            if limit is not None and attempts <= limit:
                parent.message = f"Backoff for {_humanize(wait)}"
                time.sleep(wait * scale)
                parent.message = ""
        retried = {"Always": ("Failed", "Error"), "OnFailure": ("Failed",), "OnError": ("Error",)}
        if policy not in retried:
            raise Unsupported(f"retryPolicy {policy}")
        if child.phase not in retried[policy]:
            return wf._finish(parent, child.phase, child.message)
        if limit is not None and attempts > limit:
            return wf._finish(parent, child.phase, "No more retries left")
        scope = {"retries": str(attempts),
                 "lastRetry.exitCode": str(child.exit_code if child.exit_code is not None else -1),
                 "lastRetry.status": child.phase,
                 "lastRetry.duration": f"{time.monotonic() - started:.1f}",
                 "lastRetry.message": child.message}
        if rs.get("expression") and not eval_retry(rs["expression"], scope):
            return wf._finish(parent, child.phase, "retryStrategy.expression evaluated to false")
        del result
