"""The one description of the book pipeline, from which both engines are made.

A step is a program (``python -m steps.<module>``) with arguments templated on the pipeline's
parameters, a resource class (``gpu`` or ``cpu``), the steps it waits for, and whether it runs
once per pass or once per item of a list a step before it wrote (``fan_out``). Both engines
walk :data:`PIPELINE`: the local engine in :func:`steps_for` order, the Argo compiler as a DAG
made from ``depends`` (``pipeline.argo``); neither knows a step by its name.

A job runs in passes: ``analyze`` (only the analysis), ``prepay`` (analyse unless asked not
to, then make the prepay pages and the preview) and ``postpay`` (make the other pages and the
book, reusing the analysis). Stage ``full`` is prepay then postpay in one run.

Pages go to a GPU only when they need one: ``plan`` writes two lists, the chunks of every page
(``chunks``, CPU pods: backgrounds and text) and the chunks of the face pages whose face
backend runs on the cluster's GPU (``face_chunks``, the ``faces`` step; empty with the
classic backend, with ComfyUI reached by URL, on a CPU-only cluster and in the local engine).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from steps.core.settings import Settings

# Parameters of a job, with their defaults ("" = required). Names are the engines' keys;
# Argo spells them with dashes (job_id -> job-id). Every entry becomes a template parameter.
_DEFAULTS = Settings.model_fields
PARAMETERS: dict[str, str] = {
    "job_id": "",
    "book": "",
    "stage": "prepay",
    "store": "",
    # The child: only for `argo submit -p child-name=…` (CI), whose first step creates the
    # record from them. A job made by `bookjob submit` or BookJobs is in the records first,
    # and its workflow leaves these empty: every step reads the child from the record.
    "photo_key": "",
    "child_name": "",
    "child_age": "",
    "child_gender": "",          # "" = the record's, else unspecified
    "language": "",              # "" = the record's, else the book's first language
    "dedication": "",
    "randomize_seed": "false",
    "skip_analysis": "false",    # "true": the prepay pass runs no analyze step (already analysed)
    "pages_per_task": "0",
    "analyzer": _DEFAULTS["analyzer"].default,
    "analyzer_model": "",        # "" = not set: the step falls back to $BOOKJOB_ANALYZER_MODEL
    "face_backend": _DEFAULTS["face_backend"].default,
    "comfyui_url": "",           # "" = not set: the step falls back to $BOOKJOB_COMFYUI_URL
}

# The compiled WorkflowTemplate's name; Argo spells parameter and template names with dashes.
TEMPLATE_NAME = "book-job"


def argo_name(name: str) -> str:
    """``job_id`` -> ``job-id``."""
    return name.replace("_", "-")


# stage -> its passes, in order
PASSES: dict[str, tuple[str, ...]] = {
    "analyze": ("analyze",), "prepay": ("prepay",), "postpay": ("postpay",),
    "full": ("prepay", "postpay")}
STAGES = list(PASSES)

COMMON = ("--store", "{store}", "--job-id", "{job_id}", "--book", "{book}")


@dataclass(frozen=True)
class Export:
    """A file a step leaves under its export folder for the Argo UI to preview."""

    name: str
    path: str          # under the export folder ("" = the folder itself)


@dataclass(frozen=True)
class Step:
    name: str
    args: tuple[str, ...]
    resources: str = "cpu"               # "gpu" | "cpu": the kind of pod
    depends: tuple[str, ...] = ()
    entry: str = ""                      # the program's module; default: steps.<name>
    fan_out: str = ""                    # once per item of this list (an output of a step before)
    passes: tuple[str, ...] = ("prepay", "postpay")
    retries: int = 2
    outputs: dict[str, str] = field(default_factory=dict)  # output list -> placeholder of its file
    exports: tuple[Export, ...] = ()
    sidecar: str = ""                    # needs this server beside it (it holds the pod's GPU)
    skip_if: str = ""                    # a parameter: the step does not run when it is "true"
    # one machine: may go while the chunk's step before it still makes pages (``--after``)
    pages_ahead: bool = False

    @property
    def module(self) -> str:
        return self.entry or f"steps.{self.name}"

    @property
    def per_chunk(self) -> bool:
        return bool(self.fan_out)

    def placeholders(self) -> list[str]:
        return [n for arg in self.args for n in re.findall(r"\{(\w+)\}", arg)]

    def argv(self, values: dict[str, str]) -> list[str]:
        """The step's arguments with every placeholder filled from ``values``."""
        return [arg.format_map(values) for arg in self.args]

    def skipped(self, params: dict[str, str]) -> bool:
        return bool(self.skip_if) and str(params.get(self.skip_if, "")).lower() == "true"


FACE_ARGS = ("--face-backend", "{face_backend}", "--comfyui-url", "{comfyui_url}",
             "--gpu-face-backends", "{gpu_face_backends}")

PIPELINE: tuple[Step, ...] = (
    Step("analyze", COMMON + (
        "--photo-key", "{photo_key}", "--name", "{child_name}", "--age", "{child_age}",
        "--gender", "{child_gender}", "--language", "{language}",
        "--dedication={dedication}",  # one argument: free text may start with '-'
        "--analyzer", "{analyzer}",
        "--analyzer-model", "{analyzer_model}"),
        resources="gpu", passes=("analyze", "prepay"), retries=3, skip_if="skip_analysis"),
    Step("plan", COMMON + (
        "--stage", "{pass_stage}", "--pages-per-task", "{pages_per_task}",
        "--randomize-seed", "{randomize_seed}", "--out", "{chunks_file}",
        "--face-out", "{face_chunks_file}", "--face-backend", "{face_backend}",
        "--gpu-face-backends", "{gpu_face_backends}"),
        depends=("analyze",),
        outputs={"chunks": "{chunks_file}", "face_chunks": "{face_chunks_file}"}),
    # the face pages whose backend runs on the GPU; the sidecar holds it
    Step("faces", COMMON + ("--pages", "{pages}", "--only-faces", "true") + FACE_ARGS,
         resources="gpu", entry="steps.backgrounds", depends=("plan",),
         fan_out="face_chunks", sidecar="comfyui"),
    # every other page's background (and the face pages of a CPU backend)
    Step("backgrounds", COMMON + ("--pages", "{pages}", "--only-faces", "false") + FACE_ARGS,
         depends=("plan", "faces"), fan_out="chunks"),
    Step("render", COMMON + ("--pages", "{pages}", "--export", "{export_dir}"),
         depends=("backgrounds",), fan_out="chunks", exports=(Export("pages", ""),),
         pages_ahead=True),
    Step("assemble", COMMON + ("--stage", "{pass_stage}", "--export", "{export_dir}"),
         depends=("render",),
         exports=(Export("preview", "preview.pdf"), Export("book", "book.pdf"))),
    Step("finalize", COMMON + ("--stage", "{pass_stage}"), depends=("assemble",)),
)


# Runs when a job ends (Argo's onExit; the local engine after a failed step): a job that did
# not succeed is marked analysis_failed / generation_failed with the failing step and reason.
ON_EXIT = Step("on_exit", (
    "--store", "{store}", "--job-id", "{job_id}", "--workflow-status", "{workflow_status}",
    "--failures", "{failures}"),
    passes=())


def steps_for(pass_stage: str) -> list[Step]:
    """The steps of one pass, in dependency order (each after all it depends on)."""
    chosen = {s.name: s for s in PIPELINE if pass_stage in s.passes}
    ordered: list[Step] = []
    done: set[str] = set()
    while len(ordered) < len(chosen):
        ready = [s for s in chosen.values() if s.name not in done
                 and all(d in done or d not in chosen for d in s.depends)]
        if not ready:
            raise ValueError("the pipeline has a dependency cycle")
        for step in ready:
            ordered.append(step)
            done.add(step.name)
    return ordered


def passes() -> list[str]:
    """Every pass, in the order the stages run them."""
    return list(dict.fromkeys(p for ps in PASSES.values() for p in ps))
