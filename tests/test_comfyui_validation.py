"""The ComfyUI double validates a graph as the real server does, and the bundled workflow passes.

The double's node definitions are a real ComfyUI 0.3.64 server's ``GET /object_info``
(``tests/data/comfyui/``, with provenance); its rules follow ComfyUI's ``execution.py``
``validate_prompt`` / ``validate_inputs`` (Comfy-Org/ComfyUI, read at
``04e2a914334246661a77665aa14068a0670e3321``; the 0.3.64 forms -- ``invalid_prompt`` for an
unknown class, ``'{val}' not in {list}`` for a combo -- checked against what
``a125cd84b054a57729b5eecab930ca9408719832`` answered). Each broken graph below is posted over
HTTP and must come back with the error type, message and details that server sends; the
boundary values beside them must pass.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from PIL import Image

from steps.backends.comfyui import WORKFLOW, load_workflow
from tests.doubles.comfyui import ComfyUIDouble
from tests.doubles.comfyui_validation import (
    OBJECT_INFO,
    load_object_info,
    validate_prompt,
)

DATA = Path(__file__).parent / "data" / "comfyui"
MODEL_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin")


@pytest.fixture(scope="module")
def server():
    double = ComfyUIDouble()
    double.start()
    yield double
    double.stop()


@pytest.fixture
def comfy(server) -> ComfyUIDouble:
    """The double with the bundled workflow's three input images uploaded (top-level names)."""
    server.reset()
    png = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 120, 90)).save(png, format="PNG")
    for name in ("child.png", "base.png", "mask.png"):
        server.files[("input", "", name)] = png.getvalue()
    return server


def post(url: str, graph: object) -> tuple[int, dict]:
    request = urllib.request.Request(url + "/prompt", data=json.dumps({"prompt": graph}).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def only_error(answer: dict) -> tuple[str, str, dict]:
    """(node id, class type, error) of a rejection that carries exactly one node error."""
    found = [(nid, info["class_type"], e) for nid, info in answer["node_errors"].items() for e in info["errors"]]
    assert len(found) == 1, found
    return found[0]


# ---- the reference data -------------------------------------------------------------------


def test_the_doubles_node_definitions_are_the_captured_servers():
    readme = (DATA / "README.md").read_text()
    digest = hashlib.sha256(OBJECT_INFO.read_bytes()).hexdigest()
    assert f"`{digest}`" in readme and "a125cd84b054a57729b5eecab930ca9408719832" in readme
    info = json.loads(OBJECT_INFO.read_text())
    assert len(info) == 513 and info["IPAdapterFaceID"]["python_module"] == "custom_nodes.ComfyUI_IPAdapter_plus"
    assert ComfyUIDouble().object_info == info


def test_the_bundled_workflow_validates_against_the_real_servers_nodes():
    graph = json.loads(WORKFLOW.read_text())
    assert validate_prompt(load_object_info(), graph, lambda ref: True) == (200, {"node_errors": {}}, ["18"])
    # and its images are checked: not uploaded, not valid
    status, answer, _ = validate_prompt(load_object_info(), json.loads(WORKFLOW.read_text()), lambda ref: False)
    assert status == 400 and {e["type"] for n in answer["node_errors"].values() for e in n["errors"]} == {
        "custom_validation_failed"}


def test_the_bundled_workflows_model_names_are_exactly_the_servers_files():
    """Model-name combos list a server's own files: the bundled workflow names exactly the files
    the captured server had, so it validates there and the image contract names them."""
    info = load_object_info()
    named, offered = set(), set()
    for node in load_workflow().values():
        spec = info[node["class_type"]]["input"]
        for name, config in {**spec.get("required", {}), **spec.get("optional", {})}.items():
            options = config[0] if isinstance(config[0], list) else None
            if options and all(str(o).endswith(MODEL_SUFFIXES) for o in options):
                offered.update(options)
                if name in node["inputs"]:
                    named.add(node["inputs"][name])
    assert named == offered == {"sd15_illustration.safetensors", "control_v11p_sd15_canny.pth"}


# ---- broken graphs, one fault each, over HTTP ---------------------------------------------


def _set(node: str, name: str, value):
    return lambda g: g[node]["inputs"].__setitem__(name, value)


REJECTED = {
    # a combo value that is not an option; case matters
    "combo-case": (_set("6", "provider", "cuda"), "6", "value_not_in_list", "Value not in list",
                   "provider: 'cuda' not in ['CPU', 'CUDA', 'ROCM', 'DirectML', 'OpenVINO', 'CoreML']"),
    "combo-long": (_set("15", "sampler_name", "DPMPP_2M"), "15", "value_not_in_list", "Value not in list",
                   "sampler_name: 'DPMPP_2M' not in (list of length 42)"),
    "over-max": (_set("15", "denoise", 1.5), "15", "value_bigger_than_max", "Value 1.5 bigger than max of 1.0",
                 "denoise"),
    "under-min": (_set("15", "steps", 0), "15", "value_smaller_than_min", "Value 0 smaller than min of 1",
                  "steps"),
    "not-an-int": (_set("15", "steps", "abc"), "15", "invalid_input_type",
                   "Failed to convert an input value to a INT value",
                   "steps, abc, invalid literal for int() with base 10: 'abc'"),
    "wrong-link-type": (_set("12", "image", ["4", 0]), "12", "return_type_mismatch",
                        "Return type mismatch between linked nodes",
                        "image, received_type(MASK) mismatch input_type(IMAGE)"),
    "missing-input": (lambda g: g["15"]["inputs"].pop("cfg"), "15", "required_input_missing",
                      "Required input is missing", "cfg"),
    # reported on the node whose link is broken, found while its consumer validates it
    "missing-output-index": (_set("16", "samples", ["15", 3]), "16", "exception_during_inner_validation",
                             "Exception when validating inner node", "tuple index out of range"),
    "not-uploaded": (_set("2", "image", "bookjob/never-uploaded.png"), "2", "custom_validation_failed",
                     "Custom validation failed for node", "image - Invalid image file: bookjob/never-uploaded.png"),
}


@pytest.mark.parametrize("case", REJECTED)
def test_a_broken_graph_is_rejected_with_comfyuis_error(comfy, case):
    change, node, kind, message, details = REJECTED[case]
    graph = load_workflow()
    change(graph)
    status, answer = post(comfy.url, graph)
    assert status == 400
    assert answer["error"] == {"type": "prompt_outputs_failed_validation",
                               "message": "Prompt outputs failed validation", "details": "", "extra_info": {}}
    nid, class_type, error = only_error(answer)
    assert (nid, class_type) == (node, graph[node]["class_type"])
    assert (error["type"], error["message"], error["details"]) == (kind, message, details)
    assert answer["node_errors"][nid]["dependent_outputs"] == ["18"]
    assert set(error["extra_info"]) >= {"input_name"}
    assert comfy.received.prompts == []


ACCEPTED = {
    "combo-exact": _set("6", "provider", "CPU"),
    "at-max": _set("15", "denoise", 1.0),
    "at-min": _set("15", "steps", 1),
    "int-as-text": _set("5", "width", "768"),      # converted, as ComfyUI converts it
    "float-as-int": _set("15", "cfg", 7),
    "uploaded-subfolder": _set("2", "image", "bookjob/child.png"),
}


@pytest.mark.parametrize("case", ACCEPTED)
def test_the_boundary_values_beside_them_pass(comfy, case):
    comfy.files[("input", "bookjob", "child.png")] = comfy.files[("input", "", "child.png")]
    graph = load_workflow()
    ACCEPTED[case](graph)
    status, answer = post(comfy.url, graph)
    assert status == 200 and answer["node_errors"] == {} and answer["prompt_id"]


def test_a_converted_value_is_what_runs(comfy):
    graph = load_workflow()
    graph["5"]["inputs"].update(width="96", height=48)
    status, _ = post(comfy.url, graph)
    assert status == 200
    assert comfy.received.prompts[0]["prompt"]["5"]["inputs"]["width"] == 96  # int, as executed


def test_an_unknown_node_class_and_a_graph_without_output(comfy):
    graph = load_workflow()
    graph["15"]["class_type"] = "KSamplerTurbo"
    assert post(comfy.url, graph) == (400, {"error": {
        "type": "invalid_prompt", "message": "Cannot execute because node KSamplerTurbo does not exist.",
        "details": "Node ID '#15'", "extra_info": {}}, "node_errors": {}})
    graph = load_workflow()
    del graph["18"]
    assert post(comfy.url, graph) == (400, {"error": {
        "type": "prompt_no_outputs", "message": "Prompt has no outputs", "details": "",
        "extra_info": {}}, "node_errors": {}})


def test_a_model_the_server_lacks_is_not_in_its_list(comfy):
    comfy.object_info["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"][0] = ["sd15_other.safetensors"]
    status, answer = post(comfy.url, load_workflow())
    nid, _, error = only_error(answer)
    assert (status, nid, error["type"]) == (400, "1", "value_not_in_list")
    assert error["details"] == "ckpt_name: 'sd15_illustration.safetensors' not in ['sd15_other.safetensors']"
    assert error["extra_info"]["received_value"] == "sd15_illustration.safetensors"


def test_a_node_no_output_needs_is_neither_validated_nor_run(comfy):
    graph = load_workflow()
    graph["99"] = copy.deepcopy(graph["15"])
    graph["99"]["inputs"]["steps"] = "abc"
    status, answer = post(comfy.url, graph)
    assert (status, answer["node_errors"]) == (200, {})
