"""Tests for steps.backends.faces: Haar face/eye detection, colour words, classic face transfer."""
from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

cv2 = pytest.importorskip("cv2")

from steps.backends import faces  # noqa: E402
from steps.backends.classic import similarity_from_eyes, transfer_face  # noqa: E402
from steps.backends.faces import Face, describe, find_faces  # noqa: E402
from steps.core import analysis  # noqa: E402

PHOTO = Path(__file__).parents[1] / "pipeline/demo/photo.jpg"
SKY = (135, 200, 235)


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return np.asarray(Image.open(PHOTO).convert("RGB"))


@pytest.fixture(scope="module")
def face(photo: np.ndarray) -> Face:
    found = find_faces(photo)
    assert len(found) == 1
    return found[0]


def eyes(f: Face) -> tuple[tuple[float, float], tuple[float, float]]:
    return f.left_eye, f.right_eye


# --------------------------------------------------------------------------- find_faces

def test_finds_the_astronauts_face_and_eyes(face: Face) -> None:
    x, y, w, h = face.box
    assert 150 < x + w / 2 < 300 and 60 < y + h / 2 < 180  # her face, not the flag or the patch
    assert 60 < w < 160 and 60 < h < 160
    assert face.eyes_detected
    (lx, ly), (rx, ry) = face.left_eye, face.right_eye
    for ex, ey in (face.left_eye, face.right_eye):
        assert x < ex < x + w and y < ey < y + h / 2 + 1
    assert lx < x + w / 2 < rx
    assert 0.3 * w < rx - lx < 0.65 * w
    assert abs(ry - ly) < 0.15 * (rx - lx)  # roughly level


def test_coordinates_are_in_original_pixels(photo: np.ndarray, face: Face) -> None:
    big = cv2.resize(photo, (1024, 1024), interpolation=cv2.INTER_CUBIC)
    found = find_faces(big)
    assert found, "the upscaled photo still has a face"
    f2 = found[0]
    assert abs(f2.box[0] - 2 * face.box[0]) < 0.1 * f2.box[2]
    assert abs(f2.box[2] - 2 * face.box[2]) < 0.15 * f2.box[2]
    for a, b in ((f2.left_eye, face.left_eye), (f2.right_eye, face.right_eye)):
        assert math.dist(a, (2 * b[0], 2 * b[1])) < 0.06 * f2.box[2]


def test_deterministic(photo: np.ndarray, face: Face) -> None:
    assert find_faces(photo) == [face]


@pytest.mark.parametrize("kind", ["blank", "noise", "gradient"])
def test_no_faces_in_featureless_images(kind: str) -> None:
    if kind == "blank":
        img = np.full((480, 640, 3), 200, np.uint8)
    elif kind == "noise":
        img = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    else:
        img = np.repeat(np.linspace(0, 255, 640, dtype=np.uint8)[None, :, None], 480, 0).repeat(3, 2)
    assert find_faces(img) == []


def test_rotated_photo_gives_no_such_face(photo: np.ndarray, face: Face) -> None:
    rotated = find_faces(np.ascontiguousarray(np.rot90(photo)))
    assert rotated != [face]


def test_several_faces_largest_first(photo: np.ndarray) -> None:
    canvas = np.full((700, 1100, 3), 230, np.uint8)
    crop = photo[20:220, 130:320]  # head and shoulders
    canvas[50:310, 50:297] = cv2.resize(crop, (247, 260))
    canvas[200:600, 500:880] = cv2.resize(crop, (380, 400))
    found = find_faces(canvas)
    assert len(found) == 2
    assert found[0].box[2] > found[1].box[2]
    assert found[0].box[0] > 450 and found[1].box[0] < 250
    assert all(f.eyes_detected for f in found)


def test_eyes_estimated_when_not_found(photo: np.ndarray, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(faces, "_find_eyes", lambda gray, box: None)
    (f,) = find_faces(photo)
    x, y, w, h = f.box
    assert not f.eyes_detected
    assert f.left_eye == pytest.approx((x + 0.30 * w, y + 0.38 * h))
    assert f.right_eye == pytest.approx((x + 0.70 * w, y + 0.38 * h))


# --------------------------------------------------------------------------- describe

def test_describe_vocabulary_and_astronaut(photo: np.ndarray, face: Face) -> None:
    d = describe(photo, face)
    assert d["skin_tone"] in analysis.SKIN_TONES
    assert d["hair_color"] in analysis.HAIR_COLORS
    assert d["hair_style"] in analysis.HAIR_STYLES
    assert d["eye_color"] in analysis.EYE_COLORS
    for key in ("skin_rgb", "hair_rgb", "eye_rgb"):
        assert re.fullmatch(r"#[0-9a-f]{6}", d[key]), d
    # Eileen Collins: fair skin, light/mid brown hair, dark eyes
    assert d["skin_tone"] in {"fair", "light", "medium"}
    assert d["hair_color"] in {"light brown", "brown", "blonde"}
    assert d["eye_color"] in {"brown", "dark brown", "hazel"}
    r, g, b = (int(d["skin_rgb"][i:i + 2], 16) for i in (1, 3, 5))
    assert r > g > b  # skin is warm
    assert describe(photo, face) == d


def test_describe_follows_the_pixels(photo: np.ndarray, face: Face) -> None:
    darker = (photo.astype(np.float32) * 0.45).astype(np.uint8)
    d_light, d_dark = describe(photo, face), describe(darker, face)
    order = analysis.SKIN_TONES
    assert order.index(d_dark["skin_tone"]) > order.index(d_light["skin_tone"]) + 1


@pytest.mark.parametrize(("word", "lab"), [
    ("fair", (80, 0, 0)), ("medium", (60, 0, 0)), ("dark", (25, 0, 0)),
])
def test_skin_tone_scale(word: str, lab: tuple[float, float, float]) -> None:
    assert faces._skin_tone(lab[0]) == word


@pytest.mark.parametrize(("word", "lab"), [
    ("black", (15, 1, 2)), ("blonde", (70, 3, 25)), ("red", (45, 25, 30)), ("gray", (70, 1, 2)),
])
def test_hair_color_words(word: str, lab: tuple[float, float, float]) -> None:
    assert faces._hair_color(*lab) == word


@pytest.mark.parametrize(("word", "lab"), [
    ("blue", (50, -2, -15)), ("green", (45, -8, 12)), ("dark brown", (22, 8, 15)),
])
def test_eye_color_words(word: str, lab: tuple[float, float, float]) -> None:
    assert faces._eye_color(*lab) == word


def test_hair_style_heuristic() -> None:
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[0:60, 0:160]
    noise = rng.normal(0, 8, (60, 160))
    straight = np.clip(128 + 60 * np.sin(0.9 * xx + 0.2 * yy) + noise, 0, 255).astype(np.uint8)
    wavy = np.clip(128 + 60 * np.sin(0.9 * xx + 3 * np.sin(0.25 * yy)) + noise, 0, 255).astype(np.uint8)
    curly = np.full((60, 160), 100, np.uint8)
    for _ in range(90):
        cx, cy, r = int(rng.integers(0, 160)), int(rng.integers(0, 60)), int(rng.integers(3, 8))
        cv2.circle(curly, (cx, cy), r, 200, 1)
    everywhere = np.ones((60, 160), bool)
    assert faces._hair_style(straight, everywhere) == "straight"
    assert faces._hair_style(wavy, everywhere) == "wavy"
    assert faces._hair_style(cv2.GaussianBlur(curly, (3, 3), 0), everywhere) == "curly"


# --------------------------------------------------------------------------- similarity

@pytest.mark.parametrize("angle", [0.0, 17.0, -40.0, 90.0, 180.0])
def test_similarity_maps_eyes_exactly(angle: float) -> None:
    src = ((201.5, 100.25), (246.75, 102.8))
    t = math.radians(angle)
    mid, half = np.array([900.0, 1300.0]), 160 * np.array([math.cos(t), math.sin(t)])
    dst = (tuple(mid - half), tuple(mid + half))
    m = similarity_from_eyes(src, dst)
    assert m.shape == (2, 3)
    pts = np.hstack([np.array(src), np.ones((2, 1))]) @ m.T
    assert np.allclose(pts, np.array(dst))
    a, b, c, d = m[0, 0], m[0, 1], m[1, 0], m[1, 1]
    assert a == pytest.approx(d) and b == pytest.approx(-c)  # no shear, uniform scale
    assert math.hypot(a, c) == pytest.approx(320 / math.dist(*src))
    turn = math.degrees(math.atan2(c, a)) - (angle - math.degrees(math.atan2(2.55, 45.25)))
    assert (turn + 180) % 360 - 180 == pytest.approx(0, abs=1e-6)


def test_similarity_rejects_coincident_eyes() -> None:
    with pytest.raises(ValueError):
        similarity_from_eyes(((5, 5), (5, 5)), ((0, 0), (10, 0)))


# --------------------------------------------------------------------------- transfer_face

def slot_at(cx: float, cy: float, d: float, angle: float = 0.0) -> tuple[tuple[float, float], tuple[float, float]]:
    t = math.radians(angle)
    hx, hy = d / 2 * math.cos(t), d / 2 * math.sin(t)
    return (cx - hx, cy - hy), (cx + hx, cy + hy)


def sky_page(size: int) -> np.ndarray:
    page = np.empty((size, size, 3), np.uint8)
    page[:] = SKY
    return page


def expected_face(photo: np.ndarray, face: Face, slot, shape) -> np.ndarray:
    m = similarity_from_eyes(eyes(face), slot)
    return cv2.warpAffine(photo, m, (shape[1], shape[0]), flags=cv2.INTER_LINEAR)


def inner_patch(img: np.ndarray, slot, d: float) -> np.ndarray:
    """The face core: a box around the point 0.35*d below the eye midpoint (axis-aligned slots)."""
    (lx, ly), (rx, ry) = slot
    cx, cy = (lx + rx) / 2, (ly + ry) / 2 + 0.35 * d
    r = int(0.5 * d)
    return img[int(cy) - r:int(cy) + r, int(cx) - r:int(cx) + r].astype(np.float32)


def test_transfer_places_the_face_in_the_slot(photo: np.ndarray, face: Face) -> None:
    page = sky_page(900)
    before = page.copy()
    slot = slot_at(450, 400, 160)
    out = transfer_face(page, photo, eyes(face), slot)
    assert out.shape == page.shape and out.dtype == np.uint8
    assert np.array_equal(page, before), "input page must not be modified"
    # far outside the mask: exactly the illustration
    assert np.array_equal(out[:60], page[:60]) and np.array_equal(out[:, :60], page[:, :60])
    assert np.array_equal(out[-60:], page[-60:]) and np.array_equal(out[:, -60:], page[:, -60:])
    # at the eye midpoint: changed, and now like the photo's face rather than the sky
    mid = out[395:406, 445:456].astype(np.float32).mean(axis=(0, 1))
    want = expected_face(photo, face, slot, page.shape)[395:406, 445:456].astype(np.float32).mean(axis=(0, 1))
    assert np.abs(mid - np.array(SKY)).sum() > 60
    assert np.abs(mid - want).sum() < 0.8 * np.abs(np.array(SKY) - want).sum()
    # the face's structure (eyes, nose, mouth) is there, upright and in place
    got = cv2.cvtColor(out, cv2.COLOR_RGB2GRAY)
    ref = cv2.cvtColor(expected_face(photo, face, slot, page.shape), cv2.COLOR_RGB2GRAY)
    corr = np.corrcoef(inner_patch(got, slot, 160).ravel(), inner_patch(ref, slot, 160).ravel())[0, 1]
    assert corr > 0.85


@pytest.mark.parametrize("angle", [25.0, -35.0])
def test_transfer_follows_a_rotated_eye_line(photo: np.ndarray, face: Face, angle: float) -> None:
    page = sky_page(900)
    slot = slot_at(450, 420, 150, angle)
    out = transfer_face(page, photo, eyes(face), slot)
    ref = expected_face(photo, face, slot, page.shape)
    mask = np.zeros(page.shape[:2], np.uint8)
    cv2.circle(mask, (450, 420), 90, 1, -1)  # eyes and nose of the rotated face
    got_g, ref_g = (cv2.cvtColor(a, cv2.COLOR_RGB2GRAY)[mask > 0].astype(np.float32) for a in (out, ref))
    assert np.corrcoef(got_g, ref_g)[0, 1] > 0.85
    # an upright (unrotated) paste would not match nearly as well
    upright = expected_face(photo, face, slot_at(450, 420, 150), page.shape)
    up_g = cv2.cvtColor(upright, cv2.COLOR_RGB2GRAY)[mask > 0].astype(np.float32)
    assert np.corrcoef(got_g, up_g)[0, 1] < np.corrcoef(got_g, ref_g)[0, 1] - 0.1


@pytest.mark.parametrize("blend", ["seamless", "alpha"])
def test_transfer_at_the_page_corner(photo: np.ndarray, face: Face, blend: str) -> None:
    page = sky_page(800)
    slot = slot_at(40, 30, 120, -15)
    out = transfer_face(page, photo, eyes(face), slot, blend=blend)
    assert out.shape == page.shape
    assert not np.array_equal(out[:60, :80], page[:60, :80])
    assert np.array_equal(out[500:], page[500:]) and np.array_equal(out[:, 500:], page[:, 500:])


@pytest.mark.parametrize("d", [40, 600])
def test_transfer_small_and_large_eye_distances(photo: np.ndarray, face: Face, d: int) -> None:
    page = sky_page(2480)
    out = transfer_face(page, photo, eyes(face), slot_at(1240, 1000, d))
    assert not np.array_equal(out[995:1006, 1235:1246], page[995:1006, 1235:1246])
    # the feathered ellipse reaches 1.05d + 3 * 0.12d above the eyes and 1.41d to each side
    top, left = int(1000 - 1.45 * d) - 8, int(1240 - 1.45 * d) - 8
    assert top > 0 and left > 0
    assert np.array_equal(out[:top], page[:top])
    assert np.array_equal(out[:, :left], page[:, :left])
    assert np.array_equal(out[:, -left:], page[:, -left:])


def test_transfer_is_deterministic_and_blends_differ(photo: np.ndarray, face: Face) -> None:
    page = sky_page(700)
    cv2.circle(page, (350, 380), 170, (245, 205, 170), -1)
    slot = slot_at(350, 330, 130, 8)
    a = transfer_face(page, photo, eyes(face), slot)
    b = transfer_face(page, photo, eyes(face), slot)
    assert a.tobytes() == b.tobytes()
    c = transfer_face(page, photo, eyes(face), slot, blend="alpha")
    assert c.tobytes() == transfer_face(page, photo, eyes(face), slot, blend="alpha").tobytes()
    assert not np.array_equal(a, c)
    with pytest.raises(ValueError):
        transfer_face(page, photo, eyes(face), slot, blend="poisson")


def test_transfer_on_a_print_size_page(photo: np.ndarray, face: Face) -> None:
    page = sky_page(2480)
    cv2.ellipse(page, (1240, 1300), (260, 320), 0, 0, 360, (245, 205, 170), -1)
    out = transfer_face(page, photo, eyes(face), slot_at(1240, 1200, 200))
    assert out.shape == (2480, 2480, 3)
    assert np.array_equal(out[:600], page[:600])
