"""Substitution and expressions as the workflow controller evaluates them."""

from __future__ import annotations

import json
import re
import unicodedata


class Unsupported(Exception):
    """The template uses something the harness does not implement (so it cannot vouch for it)."""


TOKEN = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")


def substitute(node, scope: dict[str, str], strict_prefixes: tuple[str, ...] = ()):
    """Replace ``{{name}}`` in every string of ``node`` (a template, as plain data).

    ``util/template`` (simpleReplace, used by ``common.SubstituteParams``): the template is
    marshalled to JSON, each ``{{tag}}`` with a value in scope is replaced by the value escaped
    for a JSON string (``strconv.Quote`` minus the outer quotes), and the result unmarshalled;
    so a value reaches the container exactly as stored. Tags without a value are left as they
    are, except those under ``strict_prefixes`` (the controller fails those: "failed to resolve
    {{…}}"). ``{{=expr}}`` expression tags are not implemented here."""
    text = json.dumps(node)

    def replace(match: re.Match) -> str:
        tag = match.group(1)
        if tag.startswith("="):
            raise Unsupported(f"expression tag {{{{{tag}}}}}")
        if tag in scope:
            return json.dumps(str(scope[tag]))[1:-1]
        if tag.startswith(strict_prefixes):
            raise ValueError(f"failed to resolve {{{{{tag}}}}}")
        return match.group(0)
    return json.loads(TOKEN.sub(replace, text))


def go_quote(text: str) -> str:
    """Go's ``strconv.Quote``: a double-quoted literal; printable runes kept, ``\\"`` and
    ``\\\\`` escaped, the usual C escapes, other control runes as ``\\xNN`` (< 0x80) or
    ``\\uNNNN``/``\\UNNNNNNNN`` (``strconv/quote.go`` appendEscapedRune)."""
    out = ['"']
    simple = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t",
              "\v": "\\v", '"': '\\"', "\\": "\\\\"}
    for ch in text:
        if ch in simple:
            out.append(simple[ch])
        elif ch == " " or not unicodedata.category(ch).startswith(("C", "Z")):
            out.append(ch)
        elif ord(ch) < 0x80:
            out.append(f"\\x{ord(ch):02x}")
        elif ord(ch) < 0x10000:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    out.append('"')
    return "".join(out)


FAILED_NODE_FIELDS = ("displayName", "message", "templateName", "phase", "podName", "finishedAt")


def workflow_failures(nodes: list[dict]) -> str:
    """``{{workflow.failures}}``: every Failed/Error node, no type filter, in map (random)
    order, as ``json.Marshal`` of failedNodeStatus then ``strconv.Quote`` (``operator.go``
    operate: "This strconv.Quote is necessary so that the escaped quotes are not removed during
    parameter substitution"); none is ``null`` (a nil slice), quoted."""
    failed = [{k: n.get(k) for k in FAILED_NODE_FIELDS} for n in nodes
              if n["phase"] in ("Failed", "Error")]
    body = json.dumps(failed, separators=(",", ":"), ensure_ascii=False) if failed else "null"
    return go_quote(body)


# --- expressions ------------------------------------------------------------------------------

_STRING = r"'(?:[^'\\]|\\.)*'"
_WHEN = re.compile(rf"^\s*(?:{_STRING}|\d+|==|!=|\|\||&&|\(|\)|!|\s)+\s*$")


def eval_when(expr: str) -> bool:
    """A DAG task's ``when`` after substitution (``dag.go``/``steps.go`` shouldExecute:
    govaluate in v3.x, expr in v4). Both agree on what bookjob writes: quoted strings compared
    with ==/!=, joined with ||/&&. Anything else is refused."""
    if not _WHEN.match(expr):
        raise Unsupported(f"when expression {expr!r}")
    return bool(_python(expr, {}))


def _python(expr: str, names: dict) -> object:
    py = expr.replace("||", " or ").replace("&&", " and ")
    py = re.sub(r"!(?!=)", " not ", py)
    return eval(py, {"__builtins__": {}}, names)  # noqa: S307 - checked by the callers' patterns


_RETRY = re.compile(rf"^(?:{_STRING}|\d+|==|!=|\|\||&&|\(|\)|!|\s|asInt\(|"
                    r"lastRetry\.(?:exitCode|status|duration|message)|retries)+$")


def eval_retry(expr: str, scope: dict[str, str]) -> bool:
    """``retryStrategy.expression`` (``operator.go`` buildRetryStrategyLocalScope: every
    variable is a string; ``asInt`` converts)."""
    if not _RETRY.match(expr.strip()):
        raise Unsupported(f"retry expression {expr!r}")
    names = {"asInt": int, "retries": scope["retries"]}
    py = re.sub(r"lastRetry\.(\w+)", lambda m: f"lastRetry_{m.group(1)}", expr)
    names.update({f"lastRetry_{k}": scope[f"lastRetry.{k}"]
                  for k in ("exitCode", "status", "duration", "message")})
    return bool(_python(py, names))


RESULTS = {"Succeeded", "Failed", "Errored", "Skipped", "Omitted", "Daemoned",
           "AnySucceeded", "AllFailed"}


def eval_depends(expr: str, results: dict[str, str]) -> bool:
    """A task's ``depends`` (``workflow/common/ancestry.go`` getTaskDependsLogic /
    expandDependency): a bare task name means ``(t.Succeeded || t.Skipped || t.Daemoned)``;
    ``t.<Result>`` tests one result. ``results``: task -> its result (phase, or Skipped/Omitted)."""
    def term(match: re.Match) -> str:
        task, _, result = match.group(0).partition(".")
        if task not in results:
            raise ValueError(f"depends names an unknown task {task!r}")
        got = results[task]
        if not result:
            return str(got in ("Succeeded", "Skipped", "Daemoned"))
        if result not in RESULTS or result in ("AnySucceeded", "AllFailed"):
            raise Unsupported(f"depends result {result}")
        return str(got == {"Errored": "Error"}.get(result, result))
    py = re.sub(r"[A-Za-z][\w-]*(?:\.[A-Za-z]+)?", term, expr)
    return bool(_python(py, {"True": True, "False": False}))
