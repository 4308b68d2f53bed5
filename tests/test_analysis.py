"""The analysis record: the common prompt the face backend is given, the eyes, older records."""

from __future__ import annotations

import pytest

from steps.core.analysis import Analysis, prompt_for


@pytest.mark.parametrize("gender,who", [("girl", "girl"), ("boy", "boy"), ("unspecified", "child"),
                                        ("", "child"), ("Girl", "child")])
def test_the_common_prompt(gender, who):
    assert prompt_for(gender, "dark brown", "curly") == (
        f"child portrait, {who}, dark brown hair, curly hairstyle, high quality")


def test_eyes_and_keys_of_older_records():
    analysis = Analysis.model_validate({
        "source": "heuristic", "skin_tone": "light", "hair_color": "brown", "hair_style": "wavy",
        "eye_color": "blue", "photo_size": [640, 480], "face_box": [100, 80, 200, 220],
        "left_eye": [160.5, 170.0], "right_eye": [240.0, 171.5], "old_key": "ignored"})
    assert analysis.eyes == ((160.5, 170.0), (240.0, 171.5))
    assert not hasattr(analysis, "old_key")
    assert (analysis.gender, analysis.face_detected, analysis.faces_found) == ("unspecified", True, 1)
