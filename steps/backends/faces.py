"""Face detection and measurement, shared by the analyzers and the face backends.

* :func:`find_faces` finds frontal faces and their eyes with OpenCV's shipped
  Haar cascades (needs ``opencv-python-headless<5``: OpenCV 5 dropped them).
* :func:`describe` turns measured pixel colours into a small vocabulary
  (skin tone, hair colour and style, eye colour) for prompts and text.
* :func:`head_crop`: the child's head and shoulders, for the model-backed backends.

Everything here is deterministic: the same inputs give byte-identical outputs.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache

import cv2
import numpy as np
from PIL import Image

from steps.core.analysis import SKIN_TONES

Point = tuple[float, float]
EyePair = tuple[Point, Point]

EST_EYES = ((0.30, 0.38), (0.70, 0.38))  # eye centres as fractions of the face box
EYE_CROP_W = 200  # face crops are resized to this width before eye detection


@dataclass(frozen=True)
class Face:
    box: tuple[int, int, int, int]  # x, y, w, h in original photo pixels
    left_eye: tuple[float, float]  # image-left eye (smaller x)
    right_eye: tuple[float, float]  # image-right eye (larger x)
    eyes_detected: bool  # False when estimated from face-box proportions


# --------------------------------------------------------------------------- detection

@cache
def _cascade(name: str) -> cv2.CascadeClassifier:
    """Load (once) one of OpenCV's shipped Haar cascades."""
    if not hasattr(cv2, "CascadeClassifier"):
        raise RuntimeError("this OpenCV has no Haar cascades; install opencv-python-headless<5")
    clf = cv2.CascadeClassifier(cv2.data.haarcascades + name)
    if clf.empty():
        raise RuntimeError(f"could not load Haar cascade {name}")
    return clf


def _work_scale(shape: tuple[int, ...], work_px: int) -> float:
    """Scale so the longer side is work_px; small images only grow to work_px/2."""
    long_side = max(shape[0], shape[1])
    if long_side > work_px:
        return work_px / long_side
    return max(1.0, (work_px / 2) / long_side)


def rescale(img: np.ndarray, scale: float) -> np.ndarray:
    if scale == 1.0:
        return img
    size = (max(1, round(img.shape[1] * scale)), max(1, round(img.shape[0] * scale)))
    return cv2.resize(img, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)


def _detect_boxes(gray: np.ndarray) -> list[tuple[int, int, int, int]]:
    min_side = max(24, int(0.06 * max(gray.shape)))
    for name in ("haarcascade_frontalface_default.xml", "haarcascade_frontalface_alt2.xml"):
        found = _cascade(name).detectMultiScale(
            gray, scaleFactor=1.1, minNeighbors=4, minSize=(min_side, min_side))
        if len(found):
            return [tuple(int(v) for v in b) for b in found]
    return []


def _pick_eye_pair(cands: list[tuple[float, float]]) -> EyePair | None:
    """Best (left, right) pair of eye centres given in face-box fractions."""
    best, best_score = None, math.inf
    (elx, ely), (erx, ery) = EST_EYES
    for lx, ly in cands:
        for rx, ry in cands:
            if not (lx < 0.5 < rx and 0.22 <= rx - lx <= 0.65 and abs(ly - ry) <= 0.12):
                continue
            score = (lx - elx) ** 2 + (rx - erx) ** 2 + (ly - ely) ** 2 + (ry - ery) ** 2 + (ly - ry) ** 2
            if score < best_score:
                best, best_score = ((lx, ly), (rx, ry)), score
    return best


def _find_eyes(gray: np.ndarray, box: tuple[int, int, int, int]) -> EyePair | None:
    """Eye centres (face-box fractions) searched in the upper half of the box."""
    x, y, w, h = box
    crop = gray[y:y + h // 2, x:x + w]
    if crop.size == 0:
        return None
    k = EYE_CROP_W / w
    crop = cv2.equalizeHist(rescale(crop, k))
    min_eye = max(12, EYE_CROP_W // 10)
    for name in ("haarcascade_eye.xml", "haarcascade_eye_tree_eyeglasses.xml"):
        found = _cascade(name).detectMultiScale(
            crop, scaleFactor=1.05, minNeighbors=3, minSize=(min_eye, min_eye),
            maxSize=(EYE_CROP_W // 3, EYE_CROP_W // 3))
        cands = sorted(((ex + ew / 2) / k / w, (ey + eh / 2) / k / h) for ex, ey, ew, eh in found)
        pair = _pick_eye_pair(cands)
        if pair is not None:
            return pair
    return None


MIN_SKIN_FRACTION = 0.35


def _skin_fraction(crop: np.ndarray) -> float:
    """Share of skin-coloured pixels (a wide YCrCb range, all skin tones) in the box's centre."""
    h, w = crop.shape[:2]
    centre = np.ascontiguousarray(crop[h // 5:h - h // 5, w // 5:w - w // 5])
    if centre.size == 0:
        return 0.0
    ycrcb = cv2.cvtColor(rescale(centre, min(1.0, 64 / max(centre.shape[:2]))), cv2.COLOR_RGB2YCrCb)
    skin = cv2.inRange(ycrcb, (0, 133, 77), (255, 173, 127))
    return float(np.count_nonzero(skin)) / skin.size


def find_faces(rgb: np.ndarray, work_px: int = 512) -> list[Face]:
    """All frontal faces in an RGB uint8 photo, largest first, in photo pixels."""
    gray_full = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)
    s = _work_scale(gray_full.shape, work_px)
    gray = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8)).apply(rescale(gray_full, s))
    faces = []
    for bx, by, bw, bh in _detect_boxes(gray):
        x, y = max(0, round(bx / s)), max(0, round(by / s))
        w = max(1, min(gray_full.shape[1], round((bx + bw) / s)) - x)
        h = max(1, min(gray_full.shape[0], round((by + bh) / s)) - y)
        pair = _find_eyes(gray_full, (x, y, w, h))
        if pair is None and _skin_fraction(rgb[y:y + h, x:x + w]) < MIN_SKIN_FRACTION:
            continue  # no eyes and hardly any skin: a sun, a ball, a patterned shirt
        (lu, lv), (ru, rv) = pair or EST_EYES
        left, right = (float(x + lu * w), float(y + lv * h)), (float(x + ru * w), float(y + rv * h))
        faces.append(Face((x, y, w, h), left, right, pair is not None))
    return sorted(faces, key=lambda f: (-f.box[2] * f.box[3], f.box[0], f.box[1]))


# --------------------------------------------------------------------------- description



def lab(pixels: np.ndarray) -> np.ndarray:
    """N x 3 RGB uint8 -> N x 3 CIELAB (L 0..100, a/b about -127..127)."""
    rgb = pixels.reshape(-1, 1, 3).astype(np.float32) / 255.0
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB).reshape(-1, 3)


def _hex(pixels: np.ndarray) -> str:
    r, g, b = (int(round(v)) for v in pixels.reshape(-1, 3).mean(axis=0))
    return f"#{r:02x}{g:02x}{b:02x}"


def _skin_tone(L: float) -> str:
    for tone, floor in zip(SKIN_TONES, (72, 64, 56, 46, 34)):
        if L >= floor:
            return tone
    return "dark"


def _hair_color(L: float, a: float, b: float) -> str:
    chroma, hue = math.hypot(a, b), math.degrees(math.atan2(b, a))
    if chroma < 8 and L >= 50:
        return "gray"
    if chroma >= 20 and hue < 55 and L >= 25:
        return "red"
    for color, floor in zip(("blonde", "light brown", "brown", "dark brown"), (60, 45, 34, 24)):
        if L >= floor:
            return color
    return "black"


def _eye_color(L: float, a: float, b: float) -> str:
    if b < -3 and L >= 25:
        return "blue"
    if math.hypot(a, b) < 6:
        return "gray" if L >= 40 else "dark brown"
    if a < 1 and b > 4:
        return "green"
    if L >= 45 and b > 12:
        return "hazel"
    return "brown" if L >= 30 else "dark brown"


def _hair_style(gray: np.ndarray, mask: np.ndarray) -> str:
    """Heuristic texture call from the structure tensor of the hair band.

    Coherence (0..1) says how parallel the strands are locally; orientation
    entropy (0..1) says how much that direction varies across the band.
    Incoherent texture is called curly; coherent with one direction straight;
    coherent but turning wavy.  Tuned on photos ~100 px face width; rough.
    """
    g = gray.astype(np.float32)
    gx = cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=3)
    jxx, jyy, jxy = (cv2.GaussianBlur(m, (0, 0), 2) for m in (gx * gx, gy * gy, gx * gy))
    trace = jxx + jyy
    coherence = np.sqrt((jxx - jyy) ** 2 + 4 * jxy ** 2) / (trace + 1e-6)
    mag, ang = cv2.cartToPolar(gx, gy)
    sel = mask & (mag > 20)
    if sel.sum() < 30:
        return "straight"  # too smooth to see any texture
    coh = float((coherence[mask] * trace[mask]).sum() / (trace[mask].sum() + 1e-6))
    bins = (ang[sel] % np.pi / np.pi * 12).astype(int) % 12
    p = np.bincount(bins, weights=mag[sel], minlength=12)
    p = p[p > 0] / p.sum()
    entropy = float(-(p * np.log(p)).sum() / np.log(12))
    if coh < 0.5:
        return "curly"
    return "straight" if entropy < 0.6 else "wavy"


def _crop(img: np.ndarray, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    """Pixels (N x 3) of a rectangle clipped to the image; never empty."""
    H, W = img.shape[:2]
    x0, y0 = min(max(0, x0), W - 1), min(max(0, y0), H - 1)
    return img[y0:max(y0 + 1, min(H, y1)), x0:max(x0 + 1, min(W, x1))].reshape(-1, 3)


def _eye_patch(rgb: np.ndarray, center: Point, r: int) -> np.ndarray:
    """The darker half (iris) of a square patch at an eye centre, minus the pupil/lashes."""
    x, y = round(center[0]), round(center[1])
    patch = _crop(rgb, x - r, y - r, x + r + 1, y + r + 1)
    L = lab(patch)[:, 0]
    lo, hi = np.percentile(L, (10, 50))
    keep = (L >= lo) & (L <= hi)
    return patch[keep] if keep.any() else patch


def _background_colors(img: np.ndarray) -> list[np.ndarray]:
    """Median CIELAB colours of the top-left, top-centre and top-right blocks."""
    H, W = img.shape[:2]
    bh, bw = max(2, H // 10), max(2, W // 5)
    blocks = (img[:bh, :bw], img[:bh, (W - bw) // 2:(W + bw) // 2], img[:bh, W - bw:])
    return [np.median(lab(b.reshape(-1, 3)), axis=0) for b in blocks]


def describe(rgb: np.ndarray, face: Face) -> dict[str, str]:
    """Measured colour words for one face: skin, hair (colour, style), eyes."""
    s = min(1.0, _work_scale(rgb.shape, 512))
    img = rescale(np.ascontiguousarray(rgb), s)
    H, W = img.shape[:2]
    x, y, w, h = (round(v * s) for v in face.box)
    eye_y = round((face.left_eye[1] + face.right_eye[1]) / 2 * s)

    # skin: cheeks/nose between the eye line and the mouth; drop shadows and highlights
    skin = _crop(img, x + w // 4, min(eye_y + h // 10, y + h // 2), x + 3 * w // 4, y + int(0.72 * h))
    skin_lab = lab(skin)
    lo, hi = np.percentile(skin_lab[:, 0], (25, 90))
    skin = skin[(skin_lab[:, 0] >= lo) & (skin_lab[:, 0] <= hi)]
    skin_mean = lab(skin).mean(axis=0)

    # hair: a band over the top of the face box, minus skin- and background-like pixels
    y0, y1 = max(0, y - int(0.35 * h)), max(1, y + h // 8)
    x0, x1 = max(0, x - w // 8), min(W, x + w + w // 8)
    band = img[y0:y1, x0:x1]
    band_lab = lab(band).reshape(band.shape)
    hair_mask = np.linalg.norm(band_lab - skin_mean, axis=2) > 14
    for bg in _background_colors(img):
        hair_mask &= np.linalg.norm(band_lab - bg, axis=2) > 14
    if hair_mask.sum() < 20:  # nothing distinctive: take the darker half of the band
        hair_mask = band_lab[..., 0] <= np.median(band_lab[..., 0])
    hair = band[hair_mask]
    hair_lab = np.median(lab(hair), axis=0)  # median: robust to shadows and shine
    style = _hair_style(cv2.cvtColor(band, cv2.COLOR_RGB2GRAY), hair_mask)

    # eyes: iris pixels from small patches at both eye centres
    r = max(1, round(0.04 * w))
    eyes = np.concatenate([_eye_patch(img, (ex * s, ey * s), r) for ex, ey in (face.left_eye, face.right_eye)])
    eye_mean = lab(eyes).mean(axis=0)

    return {
        "skin_tone": _skin_tone(float(skin_mean[0])),
        "hair_color": _hair_color(*(float(v) for v in hair_lab)),
        "hair_style": style,
        "eye_color": _eye_color(*(float(v) for v in eye_mean)),
        "skin_rgb": _hex(skin),
        "hair_rgb": _hex(hair),
        "eye_rgb": _hex(eyes),
    }


# --------------------------------------------------------------------------- crops

def head_crop(photo: np.ndarray, box: tuple[int, int, int, int], max_side: int) -> Image.Image:
    """The child's head and shoulders around the face box, at most ``max_side`` a side (what
    the Qwen2-VL analyzer looks at and what the ComfyUI face backend is given)."""
    x, y, w, h = box
    height, width = photo.shape[:2]
    image = Image.fromarray(photo).crop((max(0, int(x - 0.6 * w)), max(0, int(y - 0.8 * h)),
                                         min(width, int(x + 1.6 * w)), min(height, int(y + 1.6 * h))))
    if max(image.size) > max_side:
        image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return image
