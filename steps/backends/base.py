"""What a backend is, and which ones there are (imported only when chosen).

An :class:`Analyzer` turns the child's photo into an :class:`~steps.core.analysis.Analysis`;
a :class:`FaceTransfer` is made once per chunk (one photo decode, one model or connection for
all its pages) and puts the child's face into each face page's slot. The registries map the
names users type (``--analyzer``, ``--face-backend``) to ``module:factory``; the module is
imported on first use, so choosing ``classic`` never imports what ``comfyui`` needs.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import numpy as np

    from steps.core.analysis import Analysis

Point = tuple[int, int]


@dataclass(frozen=True)
class FaceRequest:
    """One face page for a face backend (the page image, at print size, goes beside it)."""

    page: int
    slot: tuple[Point, Point]          # (left_eye, right_eye) in page pixels
    prompt: str
    negative_prompt: str
    seed: int


class Analyzer(Protocol):
    def __call__(self, photo: np.ndarray, gender: str, **options: Any) -> Analysis: ...


class FaceTransfer(Protocol):
    def __call__(self, page: np.ndarray, request: FaceRequest) -> np.ndarray: ...

    def close(self) -> None: ...


class FaceTransferFactory(Protocol):
    def __call__(self, photo: np.ndarray, analysis: Analysis, **options: Any) -> FaceTransfer: ...


ANALYZERS = {"heuristic": "steps.backends.classic:analyze_heuristic",
             "qwen2-vl": "steps.backends.qwen:analyze_qwen"}
FACE_TRANSFERS = {"classic": "steps.backends.classic:ClassicFaceTransfer",
                  "comfyui": "steps.backends.comfyui:start"}


def _load(registry: dict[str, str], name: str) -> Any:
    module, _, attribute = registry[name].partition(":")
    return getattr(importlib.import_module(module), attribute)


def analyzer(name: str) -> Analyzer:
    """The analyzer called ``name`` (a key of :data:`ANALYZERS`)."""
    found: Analyzer = _load(ANALYZERS, name)
    return found


def face_transfer(name: str) -> FaceTransferFactory:
    """The face-transfer factory called ``name`` (a key of :data:`FACE_TRANSFERS`)."""
    found: FaceTransferFactory = _load(FACE_TRANSFERS, name)
    return found
