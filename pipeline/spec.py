"""The one description of the book pipeline, from which both engines are made.

A step is a program (``python -m steps.<name>``) with arguments templated on the pipeline's
parameters, a resource class (``gpu`` or ``cpu``), the steps it waits for, the store keys it
reads and writes, and whether it runs once per stage pass or once per chunk of pages.

A job runs in passes: ``prepay`` (analyse, then make the prepay pages and the preview) and
``postpay`` (make the other pages and the book, reusing the analysis). Stage ``full`` is both
passes in one run.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from steps.core.settings import Settings

# Parameters of a job, with their defaults ("" = required). Names are the engines' keys;
# Argo spells them with dashes (job_id -> job-id).
_DEFAULTS = Settings.model_fields
PARAMETERS: dict[str, str] = {
    "job_id": "",
    "book": "",
    "stage": "prepay",
    "store": "",
    "photo_key": "",
    "child_name": "",
    "child_age": "",
    "child_gender": "unspecified",
    "randomize_seed": "false",
    "skip_analysis": "false",    # "true": the prepay pass runs no analyze step (already analysed)
    "pages_per_task": "0",
    "analyzer": _DEFAULTS["analyzer"].default,
    "analyzer_model": "",        # "" = not set: the step falls back to $BOOKJOB_ANALYZER_MODEL
    "face_backend": _DEFAULTS["face_backend"].default,
    "comfyui_url": "",           # "" = not set: the step falls back to $BOOKJOB_COMFYUI_URL
}
# Placeholders filled by the engine while it runs, not by the user.
RUNTIME = {"pass_stage", "pages", "chunks_file", "export_dir", "workflow_status", "failures"}

# The compiled WorkflowTemplate's name; Argo spells parameter and template names with dashes.
TEMPLATE_NAME = "book-job"


def argo_name(name: str) -> str:
    """``job_id`` -> ``job-id``."""
    return name.replace("_", "-")


PASSES = {"analyze": ("analyze",), "prepay": ("prepay",), "postpay": ("postpay",), "full": ("prepay", "postpay")}

COMMON = ("--store", "{store}", "--job-id", "{job_id}", "--book", "{book}")


@dataclass(frozen=True)
class Step:
    name: str
    resources: str                       # "gpu" | "cpu"
    args: tuple[str, ...]
    depends: tuple[str, ...] = ()
    per_chunk: bool = False              # once per chunk of pages, not once per pass
    passes: tuple[str, ...] = ("prepay", "postpay")
    retries: int = 2
    reads: tuple[str, ...] = ()
    writes: tuple[str, ...] = ()
    outputs: dict[str, str] = field(default_factory=dict)  # output name -> placeholder

    @property
    def module(self) -> str:
        return f"steps.{self.name}"

    def argv(self, values: dict[str, str]) -> list[str]:
        """The step's arguments with every placeholder filled from ``values``."""
        return [arg.format_map(values) for arg in self.args]


PAGES = "layout/{job_id}/pages/"

PIPELINE: tuple[Step, ...] = (
    Step("analyze", "gpu", COMMON + (
        "--photo-key", "{photo_key}", "--name", "{child_name}", "--age", "{child_age}",
        "--gender", "{child_gender}", "--analyzer", "{analyzer}",
        "--analyzer-model", "{analyzer_model}"),
        passes=("analyze", "prepay"), retries=3,
        reads=("{photo_key}", "book.yaml"),
        writes=("jobs/{job_id}/job.json", "jobs/{job_id}/analysis.json")),
    Step("plan", "cpu", COMMON + (
        "--stage", "{pass_stage}", "--pages-per-task", "{pages_per_task}",
        "--randomize-seed", "{randomize_seed}", "--out", "{chunks_file}"),
        depends=("analyze",),
        reads=("jobs/{job_id}/job.json", "book.yaml"),
        writes=("jobs/{job_id}/job.json",),
        outputs={"chunks": "{chunks_file}"}),
    Step("backgrounds", "gpu", COMMON + (
        "--pages", "{pages}", "--face-backend", "{face_backend}",
        "--comfyui-url", "{comfyui_url}"),
        depends=("plan",), per_chunk=True,
        reads=("jobs/{job_id}/job.json", "{photo_key}"),
        writes=(PAGES + "page_XX_bg.png",)),
    Step("render", "cpu", COMMON + ("--pages", "{pages}", "--export", "{export_dir}"),
         depends=("backgrounds",), per_chunk=True,
         reads=(PAGES + "page_XX_bg.png",),
         writes=(PAGES + "page_XX.png",)),
    Step("assemble", "cpu", COMMON + ("--stage", "{pass_stage}", "--export", "{export_dir}"),
         depends=("render",),
         reads=(PAGES,),
         writes=("layout/{job_id}/preview.pdf", "layout/{job_id}/book.pdf")),
    Step("finalize", "cpu", COMMON + ("--stage", "{pass_stage}"),
         depends=("assemble",),
         reads=("jobs/{job_id}/job.json",),
         writes=("jobs/{job_id}/job.json",)),
)


# Runs when a job ends (Argo's onExit; the local engine after a failed step): a job that did
# not succeed is marked analysis_failed / generation_failed with the failing step and reason.
ON_EXIT = Step("on_exit", "cpu", (
    "--store", "{store}", "--job-id", "{job_id}", "--workflow-status", "{workflow_status}",
    "--failures", "{failures}"),
    passes=(), reads=("jobs/{job_id}/job.json",), writes=("jobs/{job_id}/job.json",))


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


def step(name: str) -> Step:
    return next(s for s in PIPELINE if s.name == name)
