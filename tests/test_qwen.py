"""The ``qwen2-vl`` analyzer: the production loading and generation code on a tiny, randomly
initialised Qwen2-VL that a fixture builds and saves here (no download, no GPU)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from steps.backends import qwen
from steps.backends.classic import analyze_heuristic
from steps.backends.faces import head_crop
from steps.core.analysis import prompt_for
from steps.core.errors import InputError
from steps.core.images import load_photo
from tests.doubles.tiny_qwen import CHAT_TEMPLATE, tiny_qwen  # noqa: F401 - the session fixture
from tests.helpers import DEMO_PHOTO

FEATURES = ("skin_tone", "hair_color", "hair_style", "eye_color")


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return load_photo(DEMO_PHOTO.read_bytes())


@pytest.fixture
def loaded(tiny_qwen):
    return qwen.load(tiny_qwen)


class Recorder:
    """Wraps the model's generate: counts calls and keeps the prompts it was given."""

    def __init__(self, loaded, answers: list[str] | None = None) -> None:
        self.loaded, self.answers, self.prompts, self.kwargs = loaded, answers, [], []
        self.real = loaded.model.generate

    def __call__(self, **inputs):
        import torch

        tokenizer = self.loaded.processor.tokenizer
        self.prompts.append(tokenizer.decode(inputs["input_ids"][0]))
        self.kwargs.append(inputs)
        if self.answers is None:
            return self.real(**inputs)
        answer = self.answers[len(self.prompts) - 1]
        ids = tokenizer.encode(answer, add_special_tokens=False) + [tokenizer.convert_tokens_to_ids("<|im_end|>")]
        return torch.cat([inputs["input_ids"], torch.tensor([ids])], dim=1)


def answer(**fields) -> str:
    base = {"face_detected": True, "gender": "girl", "hair_color": "brown", "hair_style": "straight",
            "eye_color": "blue", "skin_tone": "light", "prompt": "a smiling girl"}
    return json.dumps({**base, **fields})


def test_loads_on_cpu_in_fp32_without_torchvision(loaded, tiny_qwen):
    import torch

    assert loaded.device == "cpu" and loaded.dtype == torch.float32
    assert next(loaded.model.parameters()).dtype == torch.float32
    assert not loaded.model.training
    assert type(loaded.processor.image_processor).__name__ == "Qwen2VLImageProcessorPil"
    assert not hasattr(loaded.processor, "video_processor")
    assert "torchvision" not in sys.modules
    with pytest.raises(ImportError):
        import torchvision  # noqa: F401 - the environment must not have it
    assert qwen.load(tiny_qwen) is loaded  # cached


def test_random_model_garbage_is_retried_once_then_falls_back(loaded, photo, tiny_qwen, monkeypatch):
    recorder = Recorder(loaded)  # the real generate of the random model
    monkeypatch.setattr(loaded.model, "generate", recorder)
    result = qwen.analyze_qwen(photo, "girl", tiny_qwen).model_dump(mode="json")
    measured = analyze_heuristic(photo, "girl").model_dump(mode="json")

    assert len(recorder.prompts) == 2
    first, second = recorder.prompts
    assert first.count("<|image_pad|>") > 4 and "<|vision_start|>" in first
    assert "Answer with one JSON object" in first
    assert "That answer could not be used" in second and "Answer with one JSON object" in second
    for kwargs in recorder.kwargs:  # greedy, bounded, with the image
        assert kwargs["do_sample"] is False and kwargs["max_new_tokens"] == qwen.MAX_NEW_TOKENS
        assert tuple(kwargs["image_grid_thw"].shape) == (1, 3)
        assert kwargs["pixel_values"].dtype.is_floating_point

    assert result["source"] == "heuristic-fallback"
    assert result["analyzer_model"] == str(Path(tiny_qwen).resolve())
    assert len(result["warnings"]) == 3
    assert result["warnings"][0].startswith("qwen2-vl answer 1 was not usable")
    assert result["warnings"][2] == "used the measured features instead of the model's"
    for key in (*FEATURES, "face_box", "left_eye", "right_eye", "prompt", "gender"):
        assert result[key] == measured[key], key


def test_a_well_formed_answer_is_parsed_validated_and_normalised(loaded, photo, tiny_qwen, monkeypatch):
    chatty = ("Sure! Here is the description:\n```json\n"
              + answer(gender="Female", hair_color="Blond", hair_style="big curls",
                       eye_color="grey", skin_tone="Olive", prompt="A  cheerful\nchild, freckles")
              + "\n```\nLet me know if you need more.")
    recorder = Recorder(loaded, [chatty])
    monkeypatch.setattr(loaded.model, "generate", recorder)
    result = qwen.analyze_qwen(photo, "unspecified", tiny_qwen).model_dump(mode="json")

    assert len(recorder.prompts) == 1
    assert result["source"] == "qwen2-vl" and result["warnings"] == []
    assert {k: result[k] for k in FEATURES} == {"skin_tone": "tan", "hair_color": "blonde",
                                               "hair_style": "curly", "eye_color": "gray"}
    # the parent's "unspecified" stands; the model's guess is only recorded
    assert result["gender"] == "unspecified" and result["model_gender"] == "girl"
    # the parent chose no gender: the prompt takes the model's (the text keeps "unspecified")
    assert result["prompt"] == prompt_for("girl", "blonde", "curly")
    assert result["model_prompt"] == "A cheerful child, freckles"
    measured = analyze_heuristic(photo, "unspecified").model_dump(mode="json")
    assert result["measured"] == {k: measured[k] for k in FEATURES}
    assert result["face_box"] == measured["face_box"] and result["left_eye"] == measured["left_eye"]


@pytest.mark.parametrize("bad,reason", [
    (answer(hair_color="purple"), "hair_color: 'purple' is not one of"),
    (answer(face_detected=False), "the model saw no face"),
    (answer(face_detected="yes"), "face_detected"),
    (json.dumps({"face_detected": True, "gender": "boy"}), "hair_color: Field required"),
    ('{"face_detected": true, "hair_color": "brown",', "JSON is not valid"),
])
def test_an_invalid_answer_is_shown_back_once(loaded, photo, tiny_qwen, monkeypatch, bad, reason):
    recorder = Recorder(loaded, [bad, answer(hair_color="light-brown", skin_tone="Fair")])
    monkeypatch.setattr(loaded.model, "generate", recorder)
    result = qwen.analyze_qwen(photo, "boy", tiny_qwen).model_dump(mode="json")

    assert len(recorder.prompts) == 2
    assert bad in recorder.prompts[1]  # the model sees its own answer ...
    assert reason in recorder.prompts[1]  # ... and why it could not be used
    assert result["source"] == "qwen2-vl"
    assert result["hair_color"] == "light brown" and result["skin_tone"] == "fair"
    assert len(result["warnings"]) == 1 and reason in result["warnings"][0]
    assert result["prompt"] == prompt_for("boy", "light brown", "straight")


def test_two_invalid_answers_fall_back(loaded, photo, tiny_qwen, monkeypatch):
    recorder = Recorder(loaded, [answer(eye_color="violet"), "I cannot help with that."])
    monkeypatch.setattr(loaded.model, "generate", recorder)
    result = qwen.analyze_qwen(photo, "girl", tiny_qwen).model_dump(mode="json")
    assert result["source"] == "heuristic-fallback"
    assert "'violet' is not one of" in result["warnings"][0]
    assert "no JSON object" in result["warnings"][1]


def test_the_model_is_loaded_once_per_process(loaded, photo, tiny_qwen, monkeypatch):
    monkeypatch.setattr(loaded.model, "generate", Recorder(loaded, [answer()] * 3))
    for _ in range(3):
        assert qwen.analyze_qwen(photo, "girl", tiny_qwen).model_dump(mode="json")["source"] == "qwen2-vl"
    assert qwen.LOADS.count(str(Path(tiny_qwen).resolve())) == 1


def test_no_face_fails_before_any_model_loads(tmp_path):
    landscape = np.zeros((480, 640, 3), np.uint8)
    landscape[:240] = (120, 180, 240)
    landscape[240:] = (90, 170, 90)
    loads = list(qwen.LOADS)
    with pytest.raises(InputError) as caught:
        qwen.analyze_qwen(landscape, "girl", tmp_path / "no-model-here")
    assert caught.value.reason == "no_face"
    assert qwen.LOADS == loads


def test_a_missing_model_or_torch_is_a_clear_error(photo, tmp_path, monkeypatch):
    with pytest.raises(RuntimeError, match="no Qwen2-VL model at .*config.json is missing"):
        qwen.analyze_qwen(photo, "girl", tmp_path / "empty")
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text("{}")
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(RuntimeError, match=r"needs torch and transformers .*bookjob\[gpu\]"):
        qwen.load(tmp_path / "m")


def test_chat_template_from_a_checkpoint_s_chat_template_json(tmp_path):
    (tmp_path / "chat_template.json").write_text(json.dumps({"chat_template": CHAT_TEMPLATE}))
    assert qwen._chat_template(tmp_path, tokenizer=None) == CHAT_TEMPLATE
    (tmp_path / "chat_template.json").unlink()
    with pytest.raises(RuntimeError, match="has no chat template"):
        qwen._chat_template(tmp_path, tokenizer=None)


@pytest.mark.parametrize("field,word,expected", [
    ("hair_color", "Dark Brown", "dark brown"), ("hair_color", "light brown wavy", "light brown"),
    ("hair_color", "auburn", "red"), ("hair_color", "strawberry-blonde", "red"),
    ("hair_style", "Wavy.", "wavy"), ("hair_style", "tight coily", "curly"),
    ("eye_color", "dark brown", "dark brown"), ("eye_color", "Amber", "hazel"),
    ("skin_tone", "very fair", "fair"), ("skin_tone", "medium", "medium"),
    ("gender", "Male", "boy"),
])
def test_vocabulary_normalisation(field, word, expected):
    assert qwen.normalise(field, word) == expected


@pytest.mark.parametrize("field,word", [("hair_style", "braids"), ("eye_color", "red"),
                                        ("skin_tone", 3), ("gender", "")])
def test_words_outside_the_vocabulary_are_refused(field, word):
    with pytest.raises(ValueError):
        qwen.normalise(field, word)


def test_json_extraction():
    assert qwen.extract_json('x {"a": 1} y {"b": 2}') == {"a": 1}
    assert qwen.extract_json('{bad} then {"ok": true}') == {"ok": True}
    with pytest.raises(ValueError, match="no JSON object"):
        qwen.extract_json("no braces")
    with pytest.raises(ValueError, match="not valid"):
        qwen.extract_json('{"a": [1, 2}')


def test_the_model_sees_the_child_s_head_not_the_whole_photo(photo):
    measured = analyze_heuristic(photo, "girl").model_dump(mode="json")
    crop = head_crop(photo, measured["face_box"], qwen.MAX_IMAGE_SIDE)
    assert max(crop.size) <= qwen.MAX_IMAGE_SIDE
    x, y, w, h = measured["face_box"]
    H, W = photo.shape[:2]
    box = (max(0, int(x - 0.6 * w)), max(0, int(y - 0.8 * h)), min(W, int(x + 1.6 * w)), min(H, int(y + 1.6 * h)))
    assert box[1] < y and box[3] > y + h  # room for the hair above and the chin below
    assert crop.size[0] / crop.size[1] == pytest.approx((box[2] - box[0]) / (box[3] - box[1]), rel=0.02)
    assert crop.size != (W, H)
