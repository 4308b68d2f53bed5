"""The analysis of the child's photo (``jobs/{job_id}/analysis.json`` and the record's ``analysis``).

Every analyzer returns one :class:`Analysis`: where the face is (the face transfer needs the
eyes), the child's features in small fixed vocabularies, and the common prompt the GPU face
backend is given. Records written by older versions carry extra keys; they are ignored.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

SKIN_TONES = ("fair", "light", "medium", "tan", "brown", "dark")
HAIR_COLORS = ("black", "dark brown", "brown", "light brown", "blonde", "red", "gray")
HAIR_STYLES = ("curly", "straight", "wavy")
EYE_COLORS = ("brown", "dark brown", "hazel", "green", "blue", "gray")


class Features(BaseModel):
    """What an illustrator needs to know, as measured from pixels or answered by a model."""

    model_config = ConfigDict(extra="ignore")

    skin_tone: str
    hair_color: str
    hair_style: str
    eye_color: str


class Analysis(Features):
    source: str                                   # heuristic | qwen2-vl | heuristic-fallback
    face_detected: bool = True
    faces_found: int = 1
    photo_size: tuple[int, int]                   # width, height
    face_box: tuple[int, int, int, int]           # x, y, w, h in photo pixels
    left_eye: tuple[float, float]                 # the image-left eye, photo pixels
    right_eye: tuple[float, float]
    eyes_detected: bool = True
    gender: str = "unspecified"                   # the parent's choice
    skin_rgb: str = ""
    hair_rgb: str = ""
    eye_rgb: str = ""
    prompt: str = ""                              # the child's common prompt
    # qwen2-vl
    analyzer_model: str | None = None
    measured: Features | None = None              # the heuristic's features, when a model answered
    model_gender: str | None = None
    model_prompt: str | None = None
    warnings: list[str] = Field(default_factory=list)
    inputs_sha256: str | None = None              # what it was made from (skip-unchanged)

    @property
    def eyes(self) -> tuple[tuple[float, float], tuple[float, float]]:
        return self.left_eye, self.right_eye


def prompt_for(gender: str, hair_color: str, hair_style: str) -> str:
    """The old system's common prompt, e.g. ``child portrait, girl, dark brown hair, curly
    hairstyle, high quality``."""
    who = gender if gender in ("girl", "boy") else "child"
    return f"child portrait, {who}, {hair_color} hair, {hair_style} hairstyle, high quality"
