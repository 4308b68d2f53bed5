"""Qwen2-VL photo analysis: the production analyzer of step ``analyze`` (``--analyzer qwen2-vl``).

The flow, per photo:

1. the heuristic detector checks that there is a usable face (no face: exit 3 before any model
   is loaded) and measures the face box and eyes, which the face transfer needs, and the
   colours, which are the fallback;
2. Qwen2-VL (transformers, weights from a local directory given by ``--analyzer-model`` or
   ``$BOOKJOB_ANALYZER_MODEL``, never downloaded; bf16 on CUDA, fp32 on CPU; loaded once per
   process) sees the child's head and shoulders and one question asking for strict JSON;
3. the answer's JSON is extracted, validated with pydantic and its words normalised to the
   heuristic backend's vocabularies (:data:`steps.backends.faces.SKIN_TONES` …);
4. an invalid answer is shown back to the model with the reason, once; a second invalid
   answer makes the analysis fall back to the measured features, with the reasons in
   ``analysis.warnings`` and ``analysis.source = "heuristic-fallback"``. A model's bad day
   never fails a job.

Decoding is greedy with a bounded number of new tokens. The processor is image-only: the
stock ``Qwen2VLProcessor`` also loads a video processor, which needs torchvision; here the
tokenizer and the PIL/numpy image processor (``Qwen2VLImageProcessorPil``) are loaded
separately and joined in :class:`ImageOnlyQwen2VLProcessor` (built on first use, so this
module imports without torch).
"""

from __future__ import annotations

import json
import os
import re
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError, field_validator

from steps.backends.classic import analyze_heuristic
from steps.backends.faces import head_crop
from steps.core.analysis import (
    EYE_COLORS,
    HAIR_COLORS,
    HAIR_STYLES,
    SKIN_TONES,
    Analysis,
    Features,
    prompt_for,
    prompt_gender,
)

MAX_NEW_TOKENS = 160
MAX_IMAGE_SIDE = 448          # the head-and-shoulders crop the model sees, at most this large
MAX_MODEL_PROMPT = 300        # characters of the model's own description kept
GENDER_WORDS = ("girl", "boy", "unspecified")

QUESTION = (
    "Look at the child in this photo and describe them for an illustrator. Answer with one "
    "JSON object and nothing else, with exactly these keys: "
    '"face_detected" (true if a child\'s face is clearly visible, else false), '
    '"gender" ("girl", "boy" or "unspecified"), '
    f'"hair_color" (one of {", ".join(HAIR_COLORS)}), '
    f'"hair_style" (one of {", ".join(HAIR_STYLES)}), '
    f'"eye_color" (one of {", ".join(EYE_COLORS)}), '
    f'"skin_tone" (one of {", ".join(SKIN_TONES)}), '
    '"prompt" (at most 25 words describing the child\'s appearance).')
RETRY = ("That answer could not be used: {problem}. Answer again with only the JSON object, "
         "exactly the keys asked for and only the allowed words.")

# Words a model likes to use, mapped to the vocabularies.
SYNONYMS: dict[str, dict[str, str]] = {
    "hair_color": {"blond": "blonde", "golden": "blonde", "fair": "blonde", "auburn": "red",
                   "ginger": "red", "strawberry blonde": "red", "copper": "red", "grey": "gray",
                   "silver": "gray", "white": "gray", "brunette": "brown", "chestnut": "brown",
                   "dark": "dark brown", "jet black": "black", "light": "light brown"},
    "hair_style": {"curls": "curly", "coily": "curly", "kinky": "curly", "afro": "curly",
                   "ringlets": "curly", "waves": "wavy", "sleek": "straight", "flat": "straight"},
    "eye_color": {"grey": "gray", "amber": "hazel", "black": "dark brown", "dark": "dark brown",
                  "light brown": "hazel", "brownish": "brown", "bluish": "blue", "greenish": "green"},
    "skin_tone": {"pale": "fair", "very fair": "fair", "porcelain": "fair", "light brown": "tan",
                  "olive": "tan", "beige": "light", "medium brown": "brown", "deep": "dark",
                  "very dark": "dark", "dark brown": "dark", "black": "dark", "white": "light"},
    "gender": {"female": "girl", "male": "boy", "unknown": "unspecified",
               "neutral": "unspecified", "child": "unspecified"},
}
VOCABULARIES = {"hair_color": HAIR_COLORS, "hair_style": HAIR_STYLES, "eye_color": EYE_COLORS,
                "skin_tone": SKIN_TONES, "gender": GENDER_WORDS}


def normalise(field: str, value: object) -> str:
    """A model's word for ``field`` in the heuristic backend's vocabulary; ValueError if none."""
    if not isinstance(value, str):
        raise ValueError(f"must be a string, not {type(value).__name__}")
    words = re.sub(r"[\s_\-]+", " ", value.strip().lower()).strip(" .")
    vocabulary, synonyms = VOCABULARIES[field], SYNONYMS[field]
    if words in vocabulary:
        return words
    if words in synonyms:
        return synonyms[words]
    # a phrase holding one of the words: the longest match wins ("light brown wavy" -> light brown)
    padded = f" {words} "
    found = [w for w in (*vocabulary, *synonyms) if f" {w} " in padded]
    if found:
        best = max(found, key=len)
        return best if best in vocabulary else synonyms[best]
    raise ValueError(f"{value[:40]!r} is not one of {', '.join(vocabulary)}")


class Answer(BaseModel):
    """The model's JSON answer, validated and normalised."""

    model_config = ConfigDict(extra="ignore")

    face_detected: StrictBool
    gender: str
    hair_color: str
    hair_style: str
    eye_color: str
    skin_tone: str
    prompt: str = Field(max_length=2000)

    @field_validator("gender", "hair_color", "hair_style", "eye_color", "skin_tone", mode="before")
    @classmethod
    def _vocabulary(cls, value: object, info) -> str:
        return normalise(info.field_name, value)

    @field_validator("face_detected")
    @classmethod
    def _a_face(cls, value: bool) -> bool:
        if not value:
            raise ValueError("the model saw no face, but the detector found one")
        return value


def extract_json(text: str) -> dict:
    """The JSON object in a model's answer (code fences and chatter around it are ignored)."""
    start = text.find("{")
    if start < 0:
        raise ValueError("the answer holds no JSON object")
    decoder = json.JSONDecoder()
    for end in range(start, len(text)):
        if text[end] != "{":
            continue
        try:
            value, _ = decoder.raw_decode(text, end)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    raise ValueError("the answer's JSON is not valid")


def parse_answer(text: str) -> Answer:
    """Extract, validate and normalise; ValueError with a short reason if it cannot be used."""
    data = extract_json(text)
    try:
        return Answer.model_validate(data)
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(map(str, err['loc'])) or 'answer'}: "
                             f"{err['msg'].removeprefix('Value error, ')}" for err in e.errors()[:4])
        raise ValueError(problems) from None


# ---- the model --------------------------------------------------------------------------


@dataclass
class Loaded:
    """A model and its processor, loaded once per process."""

    path: str
    model: Any
    processor: Any
    device: str
    dtype: Any


_CACHE: dict[str, Loaded] = {}
_CACHE_LOCK = threading.Lock()
LOADS: list[str] = []   # every model directory loaded by this process, in order (for tests, logs)


def _torch():
    try:
        import torch
        import transformers
    except ImportError as e:
        raise RuntimeError(f"the qwen2-vl analyzer needs torch and transformers ({e}); install "
                           "bookjob[gpu] (pip install -e '.[gpu]') or use --analyzer heuristic") from e
    return torch, transformers


_PROCESSOR_CLASS = None


def image_only_processor_class():
    """``Qwen2VLProcessor`` without its video processor (which needs torchvision)."""
    global _PROCESSOR_CLASS
    if _PROCESSOR_CLASS is None:
        from transformers.models.qwen2_vl.processing_qwen2_vl import Qwen2VLProcessor

        class ImageOnlyQwen2VLProcessor(Qwen2VLProcessor):
            """Tokenizer + image processor; images only (its attributes are these two)."""

            def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
                super().__init__(image_processor, tokenizer, None, chat_template=chat_template, **kwargs)

        _PROCESSOR_CLASS = ImageOnlyQwen2VLProcessor
    return _PROCESSOR_CLASS


def _chat_template(path: Path, tokenizer) -> str:
    jinja = path / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text()
    as_json = path / "chat_template.json"
    if as_json.is_file():
        return json.loads(as_json.read_text())["chat_template"]
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.chat_template
    raise RuntimeError(f"the Qwen2-VL model at {path} has no chat template "
                       "(chat_template.jinja, chat_template.json or in tokenizer_config.json)")


def load(model_dir: str | os.PathLike[str]) -> Loaded:
    """Model and processor from a local directory, once per process."""
    path = Path(model_dir).expanduser().resolve()
    key = str(path)
    with _CACHE_LOCK:
        if key in _CACHE:
            return _CACHE[key]
        if not (path / "config.json").is_file():
            raise RuntimeError(f"no Qwen2-VL model at {path} (config.json is missing): bake the "
                               "weights into the image or mount them, and pass --analyzer-model "
                               "or BOOKJOB_ANALYZER_MODEL")
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing is ever downloaded
        torch, transformers = _torch()
        from transformers import AutoTokenizer, Qwen2VLForConditionalGeneration, Qwen2VLImageProcessorPil

        cuda = torch.cuda.is_available()
        device, dtype = ("cuda", torch.bfloat16) if cuda else ("cpu", torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        image_processor = Qwen2VLImageProcessorPil.from_pretrained(path, local_files_only=True)
        processor = image_only_processor_class()(image_processor=image_processor, tokenizer=tokenizer,
                                                  chat_template=_chat_template(path, tokenizer))
        model = Qwen2VLForConditionalGeneration.from_pretrained(path, local_files_only=True, dtype=dtype)
        model = model.to(device).eval()
        LOADS.append(key)
        print(f"qwen2-vl: loaded {path} on {device} ({str(dtype).removeprefix('torch.')})",
              file=sys.stderr, flush=True)
        _CACHE[key] = Loaded(key, model, processor, device, dtype)
        return _CACHE[key]


def generate(loaded: Loaded, image: Image.Image, turns: list[tuple[str, str]]) -> str:
    """Greedy answer to a conversation about one image: turns of (question, earlier answer)."""
    torch, _ = _torch()
    messages: list[dict] = []
    for i, (question, answer) in enumerate(turns):
        content = ([{"type": "image"}] if i == 0 else []) + [{"type": "text", "text": question}]
        messages.append({"role": "user", "content": content})
        if answer is not None:
            messages.append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
    text = loaded.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    inputs = loaded.processor(text=[text], images=[image], return_tensors="pt").to(loaded.device)
    with torch.inference_mode():
        out = loaded.model.generate(**inputs, max_new_tokens=MAX_NEW_TOKENS, do_sample=False,
                                    num_beams=1)
    new_tokens = out[:, inputs["input_ids"].shape[1]:]
    return loaded.processor.batch_decode(new_tokens, skip_special_tokens=True)[0]


def analyze_qwen(photo: np.ndarray, gender: str, model_dir: str | os.PathLike[str] = "",
                 **_options: Any) -> Analysis:
    """The analysis of a photo with Qwen2-VL, falling back to the measured features."""
    measured = analyze_heuristic(photo, gender)  # no face: InputError before any model loads
    loaded = load(model_dir)
    image = head_crop(photo, measured.face_box, MAX_IMAGE_SIDE)
    warnings: list[str] = []
    turns: list[tuple[str, str | None]] = [(QUESTION, None)]
    answer = None
    for attempt in (1, 2):
        text = generate(loaded, image, turns)
        try:
            answer = parse_answer(text)
            break
        except ValueError as e:
            warnings.append(f"qwen2-vl answer {attempt} was not usable: {e}")
            turns = [(QUESTION, text[:2000]), (RETRY.format(problem=str(e)[:300]), None)]
    if answer is None:
        warnings.append("used the measured features instead of the model's")
        print("qwen2-vl: " + "; ".join(warnings), file=sys.stderr, flush=True)
        return measured.model_copy(update={"source": "heuristic-fallback",
                                           "analyzer_model": loaded.path, "warnings": warnings})
    features = {f: getattr(answer, f) for f in Features.model_fields}
    return measured.model_copy(update={
        "source": "qwen2-vl", "analyzer_model": loaded.path,
        "measured": Features(**{f: getattr(measured, f) for f in Features.model_fields}),
        **features,
        "model_gender": answer.gender,
        "model_prompt": " ".join(answer.prompt.split())[:MAX_MODEL_PROMPT],
        "warnings": warnings,
        # the parent's choice of gender stands, else the model's; built as in the old system
        "prompt": prompt_for(prompt_gender(gender, answer.gender), features["hair_color"],
                             features["hair_style"])})
