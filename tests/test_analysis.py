"""The analysis record: the common prompt the face backend is given, the eyes, older records."""

from __future__ import annotations

import pytest

from steps.core.analysis import Analysis, GenerationRetry, child_prompt, prompt_for, prompt_gender


@pytest.mark.parametrize("gender,who", [("girl", "girl"), ("boy", "boy"), ("unspecified", "child"),
                                        ("", "child"), ("Girl", "child")])
def test_the_common_prompt(gender, who):
    assert prompt_for(gender, "dark brown", "curly") == (
        f"child portrait, {who}, dark brown hair, curly hairstyle, high quality")


OLDER = {"source": "heuristic", "skin_tone": "light", "hair_color": "brown", "hair_style": "wavy",
         "eye_color": "blue", "photo_size": [640, 480], "face_box": [100, 80, 200, 220],
         "left_eye": [160.5, 170.0], "right_eye": [240.0, 171.5]}


@pytest.mark.parametrize("parent,model,word", [
    ("girl", "boy", "girl"), ("boy", "girl", "boy"),          # the parent's choice wins
    ("unspecified", "girl", "girl"), ("", "boy", "boy"),      # else what the model saw
    ("unspecified", None, "child"), ("unspecified", "unclear", "child"), ("Boy", "GIRL", "child"),
])
def test_the_prompt_takes_the_parents_gender_then_the_models(parent, model, word):
    assert prompt_gender(parent, model) == word
    analysis = Analysis.model_validate({**OLDER, "gender": parent, "model_gender": model,
                                        "hair_color": "red", "hair_style": "curly"})
    assert child_prompt(analysis) == (f"child portrait, {word}, red hair, curly hairstyle, "
                                      "high quality")


def test_a_regeneration_starts_from_nothing():
    assert GenerationRetry().model_dump() == {"randomize_seed": False, "count": 0, "seeds": {},
                                              "pages": []}
    first, second = Analysis.model_validate(OLDER), Analysis.model_validate(OLDER)
    first.generation_retry.pages.append(2)
    first.warnings.append("blurry")
    assert second.generation_retry.pages == [] and second.warnings == []   # nothing shared


def test_eyes_and_keys_of_older_and_newer_records():
    # Keys this version does not know are kept (a newer bookjob's fields survive an update);
    # the heuristic's measured features are only the features.
    analysis = Analysis.model_validate({**OLDER, "future_key": "kept",
                                        "generation_retry": {"count": 2, "future": 1}})
    assert analysis.eyes == ((160.5, 170.0), (240.0, 171.5))
    assert analysis.model_extra == {"future_key": "kept"}
    assert analysis.model_dump()["future_key"] == "kept"
    assert (analysis.gender, analysis.face_detected, analysis.faces_found) == ("unspecified", True, 1)
    assert (analysis.eyes_detected, analysis.skin_rgb, analysis.prompt) == (True, "", "")
    assert (analysis.analyzer_model, analysis.measured, analysis.model_gender) == (None, None, None)
    assert analysis.generation_retry.count == 2 and analysis.generation_retry.model_extra == {"future": 1}
    measured = Analysis.model_validate({**OLDER, "measured": {**OLDER, "old": 1}}).measured
    assert measured is not None and measured.hair_color == "brown" and not hasattr(measured, "old")
