"""What a book costs on a cluster: pods, GPU pods, model loads, GPU-seconds — from the spec.

No cluster runs here, so these figures are counted, not measured: the pods come from the
pipeline spec (``pipeline.spec``: which steps run per pass, which per chunk, which on a GPU)
and the chunking (``steps.plan.chunks``); the seconds from :class:`CostModel`, whose
parameters are declared with their defaults below (override them to match a real cluster).

Two routing policies for the backgrounds step:

- ``before``: every backgrounds chunk is a GPU pod (what the template did before issue 12);
- ``after``: only a chunk's face-swap pages go to a GPU pod, and only when the face backend
  needs one (ComfyUI's sidecar); a chunk's other pages, and every page with the classic
  backend, are done on a CPU pod.

GPU-seconds "outside face transfer" are the seconds a GPU is held (pod start, model loads,
analysis, pages that need no face, classic face transfer done on a GPU pod's CPU) minus the
seconds ComfyUI spends transferring faces.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

POLICIES = ("before", "after")


@dataclass(frozen=True)
class CostModel:
    """Seconds per event on a GPU node (defaults: an L4-class GPU, models on a local volume)."""

    pod_start_s: float = 8.0        # container start to the step's work, image already pulled
    qwen_load_s: float = 25.0       # Qwen2-VL-2B-Instruct (bf16) from the image into GPU memory
    comfyui_load_s: float = 45.0    # ComfyUI sidecar up, SDXL + IP-Adapter + ControlNet loaded
    analysis_s: float = 4.0         # Qwen2-VL answering about one photo
    face_page_s: float = 15.0       # ComfyUI's graph for one face page: the face transfer itself
    classic_face_page_s: float = 2.0  # the classic (CPU) face transfer of one page
    plain_page_s: float = 0.5       # a page without a face: its base page checked and stored


def _chunks(pages: list[int], pages_per_task: int) -> list[list[int]]:
    from steps.plan import chunks

    return [[int(n) for n in c.split(",")] for c in chunks(pages, pages_per_task)]


def cluster_cost(face_pages: set[int], stage_pages: dict[str, list[int]], pages_per_task: int,
                 face_backend: str, analyzer: str, policy: str,
                 model: CostModel = CostModel()) -> dict:
    """Pods, GPU pods, model loads and GPU-seconds of a ``full`` job (every pass of it).

    ``face_pages``: the pages that need a face swap; ``stage_pages``: the pages of each pass
    (``{"prepay": [1, 2, 3], "postpay": [...]}``).
    """
    from pipeline.spec import steps_for

    if policy not in POLICIES:
        raise ValueError(f"policy must be one of {POLICIES}")
    comfy = face_backend == "comfyui"
    pods = gpu_pods = qwen_loads = comfy_loads = 0
    held = face_transfer = 0.0
    def gpu_pod(pages: list[int]) -> None:
        nonlocal pods, gpu_pods, comfy_loads, held, face_transfer
        pods += 1
        gpu_pods += 1
        held += model.pod_start_s
        if comfy:
            comfy_loads += 1
            held += model.comfyui_load_s
        for n in pages:
            if n not in face_pages:
                held += model.plain_page_s
            elif comfy:
                held += model.face_page_s
                face_transfer += model.face_page_s
            else:
                held += model.classic_face_page_s

    for stage, pages in stage_pages.items():
        for step in steps_for(stage):
            if not step.fan_out:
                pods += 1
                if step.resources == "gpu":  # analysis: its own GPU pod
                    gpu_pods += 1
                    held += model.pod_start_s
                    if analyzer == "qwen2-vl":
                        qwen_loads += 1
                        held += model.qwen_load_s + model.analysis_s
            elif step.resources == "gpu":
                # the spec's GPU fan-out step (`faces`): the face pages of a GPU face backend
                # (ComfyUI beside the pod), chunked like the stage; nothing otherwise
                if policy == "after" and comfy:
                    for chunk in _chunks([n for n in pages if n in face_pages], pages_per_task):
                        gpu_pod(chunk)
            else:
                for chunk in _chunks(pages, pages_per_task):
                    if policy == "before" and step.name == "backgrounds":
                        gpu_pod(chunk)   # before the routing: every chunk's backgrounds on a GPU
                    else:
                        pods += 1
    return {"pods": pods, "gpu_pods": gpu_pods, "qwen2_vl_loads": qwen_loads,
            "comfyui_loads": comfy_loads, "gpu_s_held": round(held, 1),
            "gpu_s_face_transfer": round(face_transfer, 1),
            "gpu_s_outside_face_transfer": round(held - face_transfer, 1)}


def book_shape(book) -> tuple[set[int], dict[str, list[int]]]:
    """(face pages, pages per pass) of a loaded manifest (``steps.core.manifest.Book``)."""
    return ({p.num for p in book.pages if p.needs_face_swap},
            {stage: book.stage_pages(stage) for stage in ("prepay", "postpay")})


def cluster_table(books: dict, model: CostModel = CostModel(), pages_per_task: int = 0,
                  face_backend: str = "comfyui", analyzer: str = "qwen2-vl") -> dict:
    """Both policies for each book (name -> Book), with the model's parameters."""
    out: dict = {"model": asdict(model), "pages_per_task": pages_per_task,
                 "face_backend": face_backend, "analyzer": analyzer, "books": {}}
    for name, book in books.items():
        faces, stages = book_shape(book)
        out["books"][name] = {"pages": len(book.pages), "face_pages": len(faces),
                              **{policy: cluster_cost(faces, stages, pages_per_task, face_backend,
                                                      analyzer, policy, model)
                                 for policy in POLICIES}}
    return out
