"""DAG templates as ``workflow/controller/dag.go`` executes them."""

from __future__ import annotations

import json
import re
import threading

from tests.harness.expr import Unsupported, eval_depends, eval_when, substitute

TASK_FIELDS = {"name", "template", "arguments", "depends", "when", "withParam"}


def _result(node) -> str:
    return node.phase


def execute_dag(wf, template: dict, node_name: str, display: str, inputs: dict[str, str],
                exit_handler: bool):
    """executeDAG: a task starts once every task its ``depends`` names is fulfilled; a false
    ``depends`` makes it Omitted ("omitted: depends condition not met"), a false ``when``
    Skipped ("when '…' evaluated false"); ``withParam`` fans it out under a TaskGroup node
    (an empty list: Skipped, "Skipped, empty params"). failFast (default): once a task failed,
    no new task starts (checkParallelism). The DAG fails, without a message, when a task
    failed (assessDAGPhase; for bookjob's chains every failure reaches a target)."""
    dag = template["dag"]
    if set(dag) - {"tasks"}:
        raise Unsupported(f"dag fields {sorted(set(dag) - {'tasks'})}")
    node = wf._node(node_name, display, "DAG", template["name"])
    node.phase = "Running"
    tasks = {t["name"]: t for t in dag["tasks"]}
    for t in tasks.values():
        if set(t) - TASK_FIELDS:
            raise Unsupported(f"task fields {sorted(set(t) - TASK_FIELDS)}")
    results: dict[str, object] = {}          # task -> its node (finished)
    running: dict[str, threading.Thread] = {}
    done = threading.Condition()
    failed = False
    errors: list[BaseException] = []

    def deps(t: dict) -> list[str]:
        return sorted(set(re.findall(r"[A-Za-z][\w-]*", re.sub(r"\.[A-Za-z]+", "", t.get("depends") or ""))))

    def run_task(t: dict) -> None:
        try:
            child = _execute_task(wf, t, node, inputs, results, exit_handler)
        except BaseException as e:  # noqa: BLE001
            errors.append(e)
            child = wf._finish(wf._node(f"{node_name}.{t['name']}", t["name"], "Pod", t["template"]),
                               "Error", str(e))
        with done:
            results[t["name"]] = child
            done.notify_all()

    while True:
        with done:
            if errors:
                raise errors[0]
            failed = failed or any(r.phase in ("Failed", "Error") for r in results.values())
            for name, t in tasks.items():
                if name in results or name in running:
                    continue
                if failed:
                    continue
                if all(d in results for d in deps(t)):
                    if t.get("depends") and not eval_depends(
                            t["depends"], {k: _result(v) for k, v in results.items()}):
                        skipped = wf._node(f"{node_name}.{name}", name, "Skipped", t["template"])
                        results[name] = wf._finish(skipped, "Omitted", "omitted: depends condition not met")
                        continue
                    running[name] = threading.Thread(target=run_task, args=(t,), daemon=True)
                    running[name].start()
            active = [n for n in running if n not in results]
            if not active:
                break
            done.wait(0.1)
    for thread in running.values():
        thread.join()
    if errors:
        raise errors[0]
    bad = [r for r in results.values() if r.phase in ("Failed", "Error")]
    node.children = [r.id for r in results.values()]
    node.outputs = {}
    return wf._finish(node, bad[0].phase if bad else "Succeeded", "")


def _execute_task(wf, t: dict, dag_node, inputs: dict[str, str], results: dict, exit_handler: bool):
    scope = wf._scope(inputs)
    for name, child in results.items():
        for out, value in child.outputs.items():
            scope[f"tasks.{name}.outputs.parameters.{out}"] = value
        scope[f"tasks.{name}.status"] = child.phase
    task = substitute({k: v for k, v in t.items() if k != "withParam"}, scope,
                      strict_prefixes=("inputs.", "workflow.parameters.", "tasks."))
    name = f"{dag_node.name}.{t['name']}"
    if task.get("when") and not eval_when(task["when"]):
        skipped = wf._node(name, t["name"], "Skipped", t["template"])
        return wf._finish(skipped, "Skipped", f"when '{task['when']}' evaluated false")
    args = {p["name"]: str(p.get("value", "")) for p in task.get("arguments", {}).get("parameters", [])}
    if "withParam" not in t:
        return wf._execute(t["template"], name, t["name"], args, exit_handler)
    raw = substitute(t["withParam"], scope, strict_prefixes=("tasks.", "inputs."))
    items = json.loads(raw)                  # expandTask: must be a JSON list
    if not isinstance(items, list):
        raise ValueError(f"withParam value is not a list: {raw}")
    if not items:
        skipped = wf._node(name, t["name"], "Skipped", t["template"])
        return wf._finish(skipped, "Skipped", "Skipped, empty params")
    group = wf._node(name, t["name"], "TaskGroup", t["template"])
    group.phase = "Running"
    children: list = [None] * len(items)

    def one(i: int, item) -> None:
        text = item if isinstance(item, str) else json.dumps(item, separators=(",", ":"))
        item_args = substitute(t.get("arguments", {}), {**scope, "item": text})
        args_i = {p["name"]: str(p.get("value", "")) for p in item_args.get("parameters", [])}
        label = f"{t['name']}({i}:{text})"
        children[i] = wf._execute(t["template"], f"{dag_node.name}.{label}", label, args_i, exit_handler)

    threads = [threading.Thread(target=one, args=(i, item), daemon=True) for i, item in enumerate(items)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    if any(c is None for c in children):
        raise RuntimeError(f"a child of {name} did not run")
    group.children = [c.id for c in children]
    bad = [c for c in children if c.phase in ("Failed", "Error")]
    return wf._finish(group, bad[0].phase if bad else "Succeeded", "")
