"""How ComfyUI validates a queued graph, for the ComfyUI test double.

Written from ComfyUI's ``execution.py`` (``validate_prompt``, ``validate_inputs``; read at
Comfy-Org/ComfyUI ``04e2a914334246661a77665aa14068a0670e3321`` and the 0.3.6x-era form it kept,
then checked against what 0.3.64 ``a125cd84b054a57729b5eecab930ca9408719832`` answered, see
``tests/data/comfyui/README.md``), ``comfy_execution/validation.py`` (``validate_node_input``)
and ``server.py`` (``post_prompt``). What this follows, rule by rule:

- every node needs a ``class_type`` the server knows, else the whole prompt is
  ``invalid_prompt`` "Cannot execute because node X does not exist." (details ``Node ID '#id'``,
  ``node_errors: {}``); a graph without an output node is ``prompt_no_outputs``;
- validation starts at each output node and follows links upstream; a node no output needs is
  never validated (nor run);
- per declared input (required and optional): missing required -> ``required_input_missing``;
  a link -> ``bad_linked_input`` (not a pair), ``return_type_mismatch`` (the source output's type
  shares no type with the input's, ``*`` matching anything), or the source validated in turn --
  a link whose source node or output index does not exist raises while the *source* is validated
  and is reported on it as ``exception_during_inner_validation`` (``tuple index out of range``);
  a widget value is converted (``int()``, ``float()``, ``str()``, ``bool()``: ``"768"`` becomes 768,
  ``"abc"`` is ``invalid_input_type``), then checked against ``min``/``max`` and the combo options
  (case matters) unless the node's own ``VALIDATE_INPUTS`` takes that input;
- ``VALIDATE_INPUTS`` of ``LoadImage``/``LoadImageMask`` (``nodes.py``): the file must exist in the
  input folder (``subfolder/name`` as uploaded), else ``custom_validation_failed``
  ``image - Invalid image file: NAME``;
- when no output node is valid: HTTP 400 ``prompt_outputs_failed_validation`` with
  ``node_errors`` keyed by the nodes that carry errors; otherwise HTTP 200, the valid outputs run,
  and ``node_errors`` still lists the others.

ComfyUI iterates a node's inputs as a set (order varies between runs); here they go in declared
order, which is one of the orders the real server may produce.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path

OBJECT_INFO = Path(__file__).resolve().parents[1] / "data" / "comfyui" / "object_info.json"
ANY = "*"
# Node classes whose VALIDATE_INPUTS takes these inputs (nodes.py: LoadImage, LoadImageMask).
VALIDATES_ITSELF = {"LoadImage": ("image",), "LoadImageMask": ("image",)}
CONVERT: dict[str, Callable] = {"INT": int, "FLOAT": float, "STRING": str, "BOOLEAN": bool}


@functools.cache
def _object_info_text() -> str:
    return OBJECT_INFO.read_text()


def load_object_info() -> dict:
    """A fresh copy of the captured server's node definitions (callers may edit it)."""
    return json.loads(_object_info_text())


def full_type_name(kind: type) -> str:
    """``execution.py``'s ``full_type_name``: ``module.Qualname``, bare for builtins."""
    return kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"


def _error(kind: str, message: str, details: str, extra: dict) -> dict:
    return {"type": kind, "message": message, "details": details, "extra_info": extra}


def types_match(received: object, wanted: object) -> bool:
    """``validate_node_input`` (non-strict): equal, ``*``, or overlapping ``A,B`` type lists."""
    if received == wanted or ANY in (received, wanted):
        return True
    if isinstance(received, list) and wanted == "COMBO":
        return True
    if not isinstance(received, str) or not isinstance(wanted, str):
        return False
    got = {t.strip() for t in received.split(",")}
    accepts = {t.strip() for t in wanted.split(",")}
    return ANY in got or ANY in accepts or bool(got & accepts)


def _combo_options(input_type: object, extra: dict) -> list | None:
    if isinstance(input_type, list):
        return input_type
    if input_type == "COMBO":
        return extra.get("options", [])
    return None


def _validate_node(info: dict, graph: dict, nid: str, validated: dict,
                   file_exists: Callable[[str], bool]) -> tuple[bool, list]:
    if nid in validated:
        return validated[nid]
    node = graph[nid]
    inputs = node.get("inputs", {})
    spec = info[node["class_type"]]["input"]
    required = spec.get("required", {})
    declared = {**required, **spec.get("optional", {})}
    own = VALIDATES_ITSELF.get(node["class_type"], ())
    errors: list[dict] = []
    valid = True
    for name, config in declared.items():
        input_type = config[0]
        extra = config[1] if len(config) > 1 and isinstance(config[1], dict) else {}
        if name not in inputs:
            if name in required:
                errors.append(_error("required_input_missing", "Required input is missing", name,
                                     {"input_name": name}))
            continue
        value = inputs[name]
        config_out = [input_type, extra]
        if isinstance(value, list):
            if len(value) != 2:
                errors.append(_error("bad_linked_input", "Bad linked input, must be a length-2 list "
                                     "of [node_id, slot_index]", name,
                                     {"input_name": name, "input_config": config_out,
                                      "received_value": value}))
                continue
            source_id, index = value
            # raises KeyError / IndexError / TypeError as ComfyUI does; the caller reports it
            received = tuple(info[graph[source_id]["class_type"]]["output"])[index]
            if not types_match(received, input_type):
                errors.append(_error("return_type_mismatch", "Return type mismatch between linked nodes",
                                     f"{name}, received_type({received}) mismatch input_type({input_type})",
                                     {"input_name": name, "input_config": config_out,
                                      "received_type": received, "linked_node": value}))
                continue
            try:
                if not _validate_node(info, graph, source_id, validated, file_exists)[0]:
                    valid = False
            except Exception as ex:  # noqa: BLE001 - ComfyUI's own catch-all, reported on the source
                valid = False
                validated[source_id] = (False, [_error(
                    "exception_during_inner_validation", "Exception when validating inner node", str(ex),
                    {"input_name": name, "input_config": config_out, "exception_message": str(ex),
                     "exception_type": full_type_name(type(ex)), "traceback": [], "linked_node": value})])
            continue
        try:
            if isinstance(value, dict) and "__value__" in value:
                value = value["__value__"]
            if isinstance(input_type, str) and input_type in CONVERT:
                value = CONVERT[input_type](value)
            inputs[name] = value
        except Exception as ex:  # noqa: BLE001 - int("abc"), float([1]), ...
            errors.append(_error("invalid_input_type", f"Failed to convert an input value to a {input_type} value",
                                 f"{name}, {value}, {ex}",
                                 {"input_name": name, "input_config": config_out, "received_value": value,
                                  "exception_message": str(ex)}))
            continue
        if name in own:
            continue
        if "min" in extra and value < extra["min"]:
            errors.append(_error("value_smaller_than_min", f"Value {value} smaller than min of {extra['min']}",
                                 name, {"input_name": name, "input_config": config_out, "received_value": value}))
            continue
        if "max" in extra and value > extra["max"]:
            errors.append(_error("value_bigger_than_max", f"Value {value} bigger than max of {extra['max']}",
                                 name, {"input_name": name, "input_config": config_out, "received_value": value}))
            continue
        options = _combo_options(input_type, extra)
        if options is not None and value not in options:
            big = len(options) > 20
            errors.append(_error("value_not_in_list", "Value not in list",
                                 f"{name}: '{value}' not in "
                                 f"{f'(list of length {len(options)})' if big else str(options)}",
                                 {"input_name": name, "input_config": None if big else config_out,
                                  "received_value": value}))
    for name in own:
        value = inputs.get(name)
        if isinstance(value, str) and not file_exists(value):
            errors.append(_error("custom_validation_failed", "Custom validation failed for node",
                                 f"{name} - Invalid image file: {value}", {"input_name": name}))
    validated[nid] = (valid and not errors, errors)
    return validated[nid]


def validate_prompt(info: dict, graph: object, file_exists: Callable[[str], bool]
                    ) -> tuple[int, dict, list[str]]:
    """ComfyUI's answer to ``POST /prompt``: (HTTP status, error body or node_errors, good outputs).

    On 200 the body is ``{"node_errors": …}`` (the caller adds ``prompt_id`` and ``number``)."""
    if not isinstance(graph, dict):  # the double's own answer (ComfyUI itself fails with a 500)
        return 400, {"error": _error("invalid_prompt", "Prompt is not a dict", "", {}), "node_errors": {}}, []
    outputs = []
    for nid, node in graph.items():
        if not isinstance(node, dict) or "class_type" not in node:
            return 400, {"error": _error("invalid_prompt", "Cannot execute because a node is missing the "
                                         "class_type property.", f"Node ID '#{nid}'", {}),
                         "node_errors": {}}, []
        if node["class_type"] not in info:
            return 400, {"error": _error("invalid_prompt", f"Cannot execute because node {node['class_type']} "
                                         "does not exist.", f"Node ID '#{nid}'", {}),
                         "node_errors": {}}, []
        if info[node["class_type"]].get("output_node"):
            outputs.append(nid)
    if not outputs:
        return 400, {"error": _error("prompt_no_outputs", "Prompt has no outputs", "", {}),
                     "node_errors": {}}, []
    validated: dict = {}
    good, failed, node_errors = [], [], {}
    for output in outputs:
        try:
            ok, reasons = _validate_node(info, graph, output, validated, file_exists)
        except Exception as ex:  # noqa: BLE001 - the output node's own link is broken
            ok, reasons = False, [_error("exception_during_validation", "Exception when validating node", str(ex),
                                         {"exception_type": full_type_name(type(ex)), "traceback": []})]
            validated[output] = (False, reasons)
        if ok:
            good.append(output)
            continue
        failed.append((output, reasons))
        for nid, (node_ok, node_reasons) in validated.items():
            if not node_ok and node_reasons:
                entry = node_errors.setdefault(nid, {"errors": node_reasons, "dependent_outputs": [],
                                                     "class_type": graph[nid]["class_type"]})
                entry["dependent_outputs"].append(output)
    if not good:
        details = "\n".join(f"{e['message']}: {e['details']}" for _, reasons in failed for e in reasons)
        return 400, {"error": _error("prompt_outputs_failed_validation", "Prompt outputs failed validation",
                                     details, {}), "node_errors": node_errors}, []
    return 200, {"node_errors": node_errors}, good
