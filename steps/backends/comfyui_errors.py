r"""What ComfyUI's answers mean for a job: whose problem each one is, and so which error it becomes.

A face-transfer failure has one of three owners, and the exit code tells the engines which:

================================================  =====================  ==============  ====
ComfyUI says                                      whose problem          error           exit
================================================  =====================  ==============  ====
``InsightFace: No face detected.``                the job (its photo)    InputError      3
``PIL.UnidentifiedImageError`` (an upload)        the job (its photo)    InputError      3
missing/corrupt model, missing node dependency    the server's operator  SetupError      1
(``SafetensorError … header too small``,
``ClipVision/IPAdapter/LoRA model not found.``,
``No module named 'insightface'``)
``POST /prompt`` 400 (any ``node_errors``,        the operator           SetupError      1
unknown node class, a model name it lacks)
out of memory (``torch.OutOfMemoryError``,        nobody: a bad moment   ComfyUIError    1
CUDA OOM text), ``execution_interrupted``
anything else at execution                        unknown: not the job   ComfyUIError    1
================================================  =====================  ==============  ====

Why a graph ComfyUI rejects is the operator's and not the book's: the graph is bookjob's
bundled workflow or the operator's ``BOOKJOB_COMFYUI_WORKFLOW``, and the job only fills in
values that cannot fail validation (uploaded image names, prompt strings, a seed in range, a
fixed size). So a rejection always means the workflow does not fit that server -- a node class
it lacks, a model file it does not have, a value of the wrong type or range in the file. Exit 3
would mark the child's book as bad input, never retried, and send the parent a message about
their book; retrying it with another photo would fail the same way for every job until the
operator fixes the server or the workflow. Exit 1 with one line naming the node, the input and
what to install or change is what the operator needs.

Execution errors are judged by what the server really sends (``execution.py``: an
``execution_error`` carries ``exception_type`` as ``module.Qualname`` and ``exception_message``
as ``"{error}\\n{tips}"``; ``execution_interrupted`` is a message of its own). Only the error part
of the message is shown (ComfyUI's tips and trailing newline are dropped). Anything not known to
be the job's fault is not blamed on the job: unknown failures are retried like a passing one.
"""

from __future__ import annotations

from steps.core.errors import InputError, SetupError, TransientError

MODEL_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin", ".onnx", ".gguf", ".sft")
MODELS = "the server's models (the bookjob-comfyui image reads them from /models/comfyui)"
# What a broken installation says at execution (IPAdapterPlus.py / utils.py, comfy/sd.py, torch).
INSTALLATION_TYPES = ("SafetensorError", "ModuleNotFoundError", "ImportError", "FileNotFoundError",
                      "UnpicklingError")
INSTALLATION_TEXTS = ("Error while deserializing header", "model not found", "No module named",
                      "insightface model is required", "invalid IPAdapter model",
                      "Could not detect model type", "PytorchStreamReader failed", "invalid load key",
                      "Error(s) in loading state_dict", "Torch not compiled with CUDA enabled")
OUT_OF_MEMORY_TYPES = ("torch.OutOfMemoryError", "torch.cuda.OutOfMemoryError")
OUT_OF_MEMORY_TEXTS = ("out of memory", "DefaultCPUAllocator: not enough memory")
NO_FACE = "InsightFace: No face detected."


class ComfyUIError(TransientError):
    """ComfyUI could not be reached or failed for a passing reason: retried."""


class ComfyUITimeout(ComfyUIError):
    """ComfyUI did not finish in time: retried."""


def first_line(message: object, limit: int = 300) -> str:
    r"""The error part of ComfyUI's ``"{error}\\n{tips}"``: one line, whitespace collapsed."""
    text = str(message or "").strip().split("\n", 1)[0]
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _problems(answer: dict) -> list[tuple[str, str, dict]]:
    """(node id, class type, error) for every error in a ``node_errors`` answer."""
    found = []
    nodes = answer.get("node_errors")
    for nid, info in (nodes.items() if isinstance(nodes, dict) else []):
        for error in (info.get("errors") or []) if isinstance(info, dict) else []:
            if isinstance(error, dict):
                found.append((str(nid), str(info.get("class_type", "?")), error))
    return found


def _describe(error: dict, problems: list[tuple[str, str, dict]]) -> str:
    text = first_line(error.get("message") or error.get("type") or "invalid prompt")
    shown = [f"node {nid} ({kind}) {first_line(e.get('message'))}: {first_line(e.get('details'))}"
             for nid, kind, e in problems[:3]]
    if not shown and error.get("details"):
        shown = [first_line(error["details"])]
    more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
    return "; ".join([text, *shown]) + more


def rejection(answer: dict, *, server: str, workflow: str, uploaded: set[str]) -> SetupError:
    """A ``POST /prompt`` that ComfyUI refused: always the operator's (see the module docstring)."""
    error = answer.get("error") if isinstance(answer.get("error"), dict) else {}
    problems = _problems(answer)
    if error.get("type") == "invalid_prompt":  # an unknown node class: a custom node is missing
        return SetupError(f"ComfyUI at {server} cannot run {workflow}: {first_line(error.get('message'))} "
                          f"({first_line(error.get('details'))}); install that custom node on the server "
                          "or use a workflow made of the nodes it has.")
    models = [(nid, kind, e) for nid, kind, e in problems if e.get("type") == "value_not_in_list"
              and str((e.get("extra_info") or {}).get("received_value", "")).lower().endswith(MODEL_SUFFIXES)]
    if models:
        nid, kind, e = models[0]
        extra = e.get("extra_info") or {}
        more = f" (and {len(models) - 1} more)" if len(models) > 1 else ""
        return SetupError(f"ComfyUI at {server} has no model {extra.get('received_value')!r} for "
                          f"{extra.get('input_name')} of node {nid} ({kind}){more}, which {workflow} "
                          f"names; add it to {MODELS}, or name a file the server has in the workflow.")
    lost = [(nid, e) for nid, _, e in problems if e.get("type") == "custom_validation_failed"
            and any(ref in str(e.get("details", "")) for ref in uploaded)]
    if lost:
        nid, e = lost[0]
        return SetupError(f"ComfyUI at {server} does not find an image bookjob has just uploaded (node {nid}: "
                          f"{first_line(e.get('details'))}): the upload and the prompt reached different "
                          "ComfyUI servers, or its input directory is not kept; point each pod at one server "
                          "(the sidecar) or give the servers one input directory.")
    return SetupError(f"ComfyUI at {server} rejected {workflow}: {_describe(error, problems)}; fix the "
                      "workflow (BOOKJOB_COMFYUI_WORKFLOW) for this server's nodes and models.")


def _out_of_memory(kind: str, raw: str) -> bool:
    return kind in OUT_OF_MEMORY_TYPES or any(t.lower() in raw.lower() for t in OUT_OF_MEMORY_TEXTS)


def _installation(kind: str, message: str) -> bool:
    return kind.rsplit(".", 1)[-1] in INSTALLATION_TYPES or any(t in message for t in INSTALLATION_TEXTS)


def execution_error(kind: str, data: dict, what: str, *, server: str) -> Exception:
    """An ``execution_error`` / ``execution_interrupted`` message as the error it means."""
    where = f"node {data.get('node_id')} ({data.get('node_type')})"
    if kind == "execution_interrupted":
        return ComfyUIError(f"ComfyUI interrupted {what} at {where} (its /interrupt was called)")
    exception = str(data.get("exception_type") or "")
    raw = str(data.get("exception_message") or "")
    message = first_line(raw)
    shown = message if exception in ("", "Exception") else f"{exception}: {message}"
    if _out_of_memory(exception, raw):
        return ComfyUIError(f"ComfyUI ran out of memory on {what} at {where}: {shown}")
    if message == NO_FACE:
        return InputError("comfyui_no_face", "The face model on the ComfyUI server (InsightFace) found no "
                                             "face in the child's photo; upload a photo with the face clearly "
                                             "visible, facing the camera and well lit.")
    if exception.endswith("UnidentifiedImageError"):
        return InputError("comfyui_unreadable_image", f"ComfyUI could not read an image of {what} ({message}); "
                                                      "upload the photo again as a JPEG or PNG.")
    if _installation(exception, message):
        return SetupError(f"ComfyUI at {server} cannot run the face transfer: {where} failed with {shown}; "
                          f"fix {MODELS} or install what its image lacks.")
    return ComfyUIError(f"ComfyUI failed on {what} at {where}: {shown}")
