"""ComfyUI face transfer: the production backend of step ``backgrounds`` (``--face-backend comfyui``).

A ComfyUI server runs the bundled API-format workflow ``workflows/faceid_controlnet.json``:
IP-Adapter FaceID (the child's photo) + a Canny ControlNet (the illustration's lines),
inpainting only the page's face slot. The server is a sidecar of the GPU pod
(``http://127.0.0.1:8188``; the pod waits for it with :func:`wait_ready`) or an in-cluster
service: ``--comfyui-url`` / ``$BOOKJOB_COMFYUI_URL``.

Per chunk the backend opens one :class:`~steps.backends.comfyui_client.ComfyUIClient` (one
HTTP connection, one websocket) and uploads the child's photo once; per face page it crops a
square around the face slot, uploads it and an elliptical mask, runs the graph and blends the
result back into the slot. Outside the slot the page keeps its exact pixels. How the server's
answers become errors is decided in :mod:`steps.backends.comfyui_errors`.

The workflow's inputs are found by node title (``_meta.title``), so the graph can be
re-exported from ComfyUI as long as the titles in :data:`TITLES` stay.
"""

from __future__ import annotations

import copy
import io
import json
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from steps.backends.comfyui_client import (
    BUNDLED,
    DEFAULT_CONNECT_TIMEOUT_S,
    DEFAULT_REQUEST_TIMEOUT_S,
    DEFAULT_TIMEOUT_S,
    ComfyUIClient,
    ComfyUIError,
    wait_ready,
)
from steps.backends.faces import head_crop
from steps.core.analysis import Analysis
from steps.core.errors import InputError, SetupError
from steps.core.settings import settings

WORKFLOW = Path(__file__).parent / "workflows" / "faceid_controlnet.json"
GENERATION_PX = 768            # the face-slot crop is generated at this size (a multiple of 8)
CHILD_MAX_PX = 1024            # the child's photo is uploaded at most this large

# Node titles of the workflow's named inputs and output.
TITLES = {
    "child_image": "bookjob: child image",
    "base_image": "bookjob: base image",
    "face_mask": "bookjob: face mask",
    "prompt": "bookjob: prompt",
    "negative_prompt": "bookjob: negative prompt",
    "sampler": "bookjob: sampler",
    "size": "bookjob: size",
    "result": "bookjob: result",
}
# What the client sets: value name -> (titled node, input name).
INPUTS = {
    "child_image": ("child_image", "image"),
    "base_image": ("base_image", "image"),
    "face_mask": ("face_mask", "image"),
    "prompt": ("prompt", "text"),
    "negative_prompt": ("negative_prompt", "text"),
    "seed": ("sampler", "seed"),
    "width": ("size", "width"),
    "height": ("size", "height"),
}

# ---- the workflow -----------------------------------------------------------------------


def load_workflow(path: str | os.PathLike[str] | None = None) -> dict:
    """The API-format graph (the bundled one by default), checked for the named inputs; a
    workflow file that is not usable is the operator's to fix (:class:`SetupError`)."""
    source = Path(path) if path else WORKFLOW
    try:
        graph = json.loads(source.read_text())
    except (OSError, ValueError) as e:
        raise SetupError(f"cannot read the ComfyUI workflow {source}: {e}") from e
    if not isinstance(graph, dict) or not all(isinstance(n, dict) and "class_type" in n
                                              for n in graph.values()):
        raise SetupError(f"{source} is not an API-format ComfyUI workflow "
                         "(export it with 'Export (API)')")
    nodes = node_ids(graph)
    for value, (node, field) in INPUTS.items():
        if field not in graph[nodes[node]].get("inputs", {}):
            raise SetupError(f"workflow {source}: node {TITLES[node]!r} has no input {field!r} "
                             f"for the {value}")
    return graph


def node_ids(graph: dict) -> dict[str, str]:
    """Named node -> node id, by title; every name in :data:`TITLES` must be there once."""
    found: dict[str, str] = {}
    for name, title in TITLES.items():
        ids = [nid for nid, node in graph.items() if node.get("_meta", {}).get("title") == title]
        if len(ids) != 1:
            raise SetupError(f"the ComfyUI workflow needs exactly one node titled {title!r} "
                               f"(found {len(ids)})")
        found[name] = ids[0]
    return found


def fill(workflow: dict, **values) -> dict:
    """A copy of the workflow with the named inputs set (see :data:`INPUTS`)."""
    graph = copy.deepcopy(workflow)
    nodes = node_ids(graph)
    for value, setting in values.items():
        node, field = INPUTS[value]
        graph[nodes[node]]["inputs"][field] = setting
    return graph


# ---- the face transfer ------------------------------------------------------------------


@dataclass(frozen=True)
class Region:
    """The square of the page that is generated, and the face ellipse inside it (page px)."""

    x: int
    y: int
    side: int
    center: tuple[float, float]
    axes: tuple[float, float]
    angle: float  # radians, of the eye line
    eye_distance: float


def slot_region(size: tuple[int, int], slot) -> Region:
    """A square around the face slot: about 4.4 eye distances wide, inside the page."""
    width, height = size
    (lx, ly), (rx, ry) = slot
    d = math.hypot(rx - lx, ry - ly)
    angle = math.atan2(ry - ly, rx - lx)
    down = (-math.sin(angle), math.cos(angle))
    cx, cy = (lx + rx) / 2 + 0.35 * d * down[0], (ly + ry) / 2 + 0.35 * d * down[1]
    side = max(8, min(round(4.4 * d), width, height))
    x = min(max(0, round(cx - side / 2)), width - side)
    y = min(max(0, round(cy - side / 2)), height - side)
    return Region(x, y, side, (cx, cy), (1.2 * d, 1.55 * d), angle, d)


def ellipse_mask(region: Region, px: int, grow: float = 0.0) -> np.ndarray:
    """The face ellipse in the region, drawn at ``px`` x ``px``: float 0/1."""
    k = px / region.side
    ys, xs = np.mgrid[0:px, 0:px].astype(np.float32) + 0.5
    u = xs / k - (region.center[0] - region.x)
    v = ys / k - (region.center[1] - region.y)
    c, s = math.cos(region.angle), math.sin(region.angle)
    a, b = region.axes[0] + grow, region.axes[1] + grow
    return (((u * c + v * s) / a) ** 2 + ((-u * s + v * c) / b) ** 2 <= 1).astype(np.float32)


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG", compress_level=1)
    return out.getvalue()


class ComfyUIFaceTransfer:
    """The ``comfyui`` face backend: one client (one connection) for a whole chunk."""

    def __init__(self, photo: np.ndarray, analysis: Analysis, *, url: str, job_id: str,
                 timeout_s: float = DEFAULT_TIMEOUT_S, workflow: str | None = None,
                 request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S,
                 connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S, poll_s: float = 1.0) -> None:
        self.workflow = load_workflow(workflow)
        self.output_node = node_ids(self.workflow)["result"]
        self.photo = photo
        self.analysis = analysis
        self.job_id = job_id
        self.client = ComfyUIClient(url, timeout_s=timeout_s, request_timeout_s=request_timeout_s,
                                    connect_timeout_s=connect_timeout_s, poll_s=poll_s,
                                    workflow=f"the face-transfer workflow {workflow}" if workflow
                                    else BUNDLED)
        self.client.open()
        self.child: str | None = None

    def close(self) -> None:
        self.client.close()

    def __call__(self, page: np.ndarray, request) -> np.ndarray:
        height, width = page.shape[:2]
        for eye in request.slot:
            if not (0 <= eye[0] < width and 0 <= eye[1] < height):
                raise InputError("face_slot_outside_page",
                                 f"Page {request.page}'s face slot eye {list(eye)} is outside its "
                                 f"{width}x{height} image; fix the page's face: in book.yaml.")
        if self.child is None:
            self.child = self.client.upload_image(f"{self.job_id}-child.png",
                                                  _png(head_crop(self.photo, self.analysis.face_box,
                                                                  CHILD_MAX_PX)))
        region = slot_region((width, height), request.slot)
        crop = Image.fromarray(page[region.y:region.y + region.side, region.x:region.x + region.side])
        base = crop.resize((GENERATION_PX, GENERATION_PX), Image.Resampling.LANCZOS)
        mask = Image.fromarray((ellipse_mask(region, GENERATION_PX) * 255).astype(np.uint8)).convert("RGB")
        stem = f"{self.job_id}-p{request.page:02d}"
        graph = fill(self.workflow,
                     child_image=self.child,
                     base_image=self.client.upload_image(f"{stem}-base.png", _png(base)),
                     face_mask=self.client.upload_image(f"{stem}-mask.png", _png(mask)),
                     prompt=request.prompt, negative_prompt=request.negative_prompt,
                     seed=int(request.seed), width=GENERATION_PX, height=GENERATION_PX)
        what = f"the face on page {request.page}"
        data = self.client.run(graph, self.output_node, what)
        try:
            result = Image.open(io.BytesIO(data))
            result.load()
        except Exception as e:  # noqa: BLE001 - a truncated or non-image answer
            raise ComfyUIError(f"ComfyUI returned no readable image for {what}: {e}") from e
        result = result.convert("RGB").resize((region.side, region.side), Image.Resampling.LANCZOS)
        # blend back with a soft edge; outside the (slightly grown) ellipse the page is untouched
        sigma = max(1.0, 0.06 * region.eye_distance)
        hard = Image.fromarray((ellipse_mask(region, region.side) * 255).astype(np.uint8))
        alpha = np.asarray(hard.filter(ImageFilter.GaussianBlur(sigma)), dtype=np.float32)[..., None] / 255
        out = page.copy()
        window = out[region.y:region.y + region.side, region.x:region.x + region.side]
        mixed = alpha * np.asarray(result, dtype=np.float32) + (1 - alpha) * window.astype(np.float32)
        window[...] = np.clip(mixed + 0.5, 0, 255).astype(np.uint8)
        return out


def start(photo: np.ndarray, analysis: Analysis, **options) -> ComfyUIFaceTransfer:
    """The face backend for a chunk; a sidecar that is still starting is waited for first
    (``$BOOKJOB_COMFYUI_READY_TIMEOUT`` seconds, set by the Argo template)."""
    ready_s = settings().comfyui_ready_timeout
    if ready_s > 0:
        wait_ready(options["url"], ready_s)
    return ComfyUIFaceTransfer(photo, analysis, **options)


def main(argv: list[str] | None = None) -> None:
    """``python -m steps.backends.comfyui wait-ready URL [--timeout S]``: exit 0 once ComfyUI answers."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m steps.backends.comfyui", description=main.__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    ready = sub.add_parser("wait-ready", help="wait until ComfyUI answers /system_stats")
    ready.add_argument("url", nargs="?", default=settings().comfyui_url)
    ready.add_argument("--timeout", type=float, default=300.0)
    args = p.parse_args(argv)
    if not args.url:
        p.error("give the ComfyUI URL or set BOOKJOB_COMFYUI_URL")
    try:
        stats = wait_ready(args.url, args.timeout)
    except ComfyUIError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    devices = ", ".join(d.get("name", "?") for d in stats.get("devices", [])) or "no devices listed"
    print(f"ComfyUI at {args.url} is ready ({devices})", file=sys.stderr)


if __name__ == "__main__":
    main()
