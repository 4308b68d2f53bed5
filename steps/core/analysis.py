"""The analysis of the child's photo (``jobs/{job_id}/analysis.json`` and the record's ``analysis``).

Every analyzer returns one :class:`Analysis`: where the face is (the face transfer needs the
eyes), the child's features in small fixed vocabularies, and the common prompt the GPU face
backend is given. A model's answer is read for the features alone (extra keys ignored); the
record's analysis keeps every key it carries, also those a newer bookjob added.
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


class GenerationRetry(BaseModel):
    """Regeneration as the old clients knew it (``analysis.generation_retry``): the shop (or
    ``--randomize-seed``) sets ``randomize_seed``; the next prepay run draws fresh seeds,
    counts it and resets the flag."""

    model_config = ConfigDict(extra="allow")

    randomize_seed: bool = False
    count: int = 0                                # regenerations so far
    # The seed each face page was generated with, by page number ("5": 1234), as last used.
    seeds: dict[str, int] = Field(default_factory=dict)
    pages: list[int] = Field(default_factory=list)  # only these pages (empty: every prepay page)


class Analysis(Features):
    model_config = ConfigDict(extra="allow")   # a newer bookjob's fields are kept

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
    generation_retry: GenerationRetry = Field(default_factory=GenerationRetry)

    @property
    def eyes(self) -> tuple[tuple[float, float], tuple[float, float]]:
        return self.left_eye, self.right_eye


def prompt_gender(parent: str, model: str | None) -> str:
    """The gender word of the prompt: the parent's choice if given, else what the model
    (Qwen2-VL) saw, else ``child``. The text variable ``child_gender`` keeps the parent's."""
    for choice in (parent, model):
        if choice in ("girl", "boy"):
            return choice
    return "child"


def child_prompt(analysis: Analysis) -> str:
    """The child's common prompt, its gender chosen by :func:`prompt_gender`."""
    return prompt_for(prompt_gender(analysis.gender, analysis.model_gender), analysis.hair_color,
                      analysis.hair_style)


def prompt_for(gender: str, hair_color: str, hair_style: str) -> str:
    """The old system's common prompt, e.g. ``child portrait, girl, dark brown hair, curly
    hairstyle, high quality``."""
    who = gender if gender in ("girl", "boy") else "child"
    return f"child portrait, {who}, {hair_color} hair, {hair_style} hairstyle, high quality"
