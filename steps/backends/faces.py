"""Classic (non-learned) face analysis and face transfer for the CPU steps.

* :func:`find_faces` finds frontal faces and their eyes with OpenCV's shipped
  Haar cascades (needs ``opencv-python-headless<5``: OpenCV 5 dropped them).
* :func:`describe` turns measured pixel colours into a small vocabulary
  (skin tone, hair colour and style, eye colour) for prompts and text.
* :func:`transfer_face` places the child's face from the photo into an
  illustration: similarity warp onto the slot's eyes, elliptical feathered
  mask, partial Reinhard colour matching in CIELAB, Poisson (seamless) blend.

Everything here is deterministic: the same inputs give byte-identical outputs.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

Point = tuple[float, float]
EyePair = tuple[Point, Point]

EST_EYES = ((0.30, 0.38), (0.70, 0.38))  # eye centres as fractions of the face box
EYE_CROP_W = 200  # face crops are resized to this width before eye detection
SEAMLESS_MAX_PX = 512  # larger ROIs get their Poisson correction solved downscaled
COLOR_STRENGTH = 0.5  # how far the face colours move toward the illustration
POISSON_STRENGTH = 0.5  # fraction of the seamless-clone correction applied
POISSON_CLIP = 60  # largest photo/illustration mismatch (levels) the correction follows
MAX_L_SHIFT, MAX_AB_SHIFT = 15.0, 10.0  # caps on the colour-matching shift (CIELAB units)


@dataclass(frozen=True)
class Face:
    box: tuple[int, int, int, int]  # x, y, w, h in original photo pixels
    left_eye: tuple[float, float]  # image-left eye (smaller x)
    right_eye: tuple[float, float]  # image-right eye (larger x)
    eyes_detected: bool  # False when estimated from face-box proportions


# --------------------------------------------------------------------------- detection

@lru_cache(maxsize=None)
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


def _resize(img: np.ndarray, scale: float) -> np.ndarray:
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
    crop = cv2.equalizeHist(_resize(crop, k))
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
    ycrcb = cv2.cvtColor(_resize(centre, min(1.0, 64 / max(centre.shape[:2]))), cv2.COLOR_RGB2YCrCb)
    skin = cv2.inRange(ycrcb, (0, 133, 77), (255, 173, 127))
    return float(np.count_nonzero(skin)) / skin.size


def find_faces(rgb: np.ndarray, work_px: int = 512) -> list[Face]:
    """All frontal faces in an RGB uint8 photo, largest first, in photo pixels."""
    gray_full = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)
    s = _work_scale(gray_full.shape, work_px)
    gray = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8)).apply(_resize(gray_full, s))
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

SKIN_TONES = ("fair", "light", "medium", "tan", "brown", "dark")
HAIR_COLORS = ("black", "dark brown", "brown", "light brown", "blonde", "red", "gray")
HAIR_STYLES = ("curly", "straight", "wavy")
EYE_COLORS = ("brown", "dark brown", "hazel", "green", "blue", "gray")


def _lab(pixels: np.ndarray) -> np.ndarray:
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
    L = _lab(patch)[:, 0]
    lo, hi = np.percentile(L, (10, 50))
    keep = (L >= lo) & (L <= hi)
    return patch[keep] if keep.any() else patch


def _background_colors(img: np.ndarray) -> list[np.ndarray]:
    """Median CIELAB colours of the top-left, top-centre and top-right blocks."""
    H, W = img.shape[:2]
    bh, bw = max(2, H // 10), max(2, W // 5)
    blocks = (img[:bh, :bw], img[:bh, (W - bw) // 2:(W + bw) // 2], img[:bh, W - bw:])
    return [np.median(_lab(b.reshape(-1, 3)), axis=0) for b in blocks]


def describe(rgb: np.ndarray, face: Face) -> dict[str, str]:
    """Measured colour words for one face: skin, hair (colour, style), eyes."""
    s = min(1.0, _work_scale(rgb.shape, 512))
    img = _resize(np.ascontiguousarray(rgb), s)
    H, W = img.shape[:2]
    x, y, w, h = (round(v * s) for v in face.box)
    eye_y = round((face.left_eye[1] + face.right_eye[1]) / 2 * s)

    # skin: cheeks/nose between the eye line and the mouth; drop shadows and highlights
    skin = _crop(img, x + w // 4, min(eye_y + h // 10, y + h // 2), x + 3 * w // 4, y + int(0.72 * h))
    skin_lab = _lab(skin)
    lo, hi = np.percentile(skin_lab[:, 0], (25, 90))
    skin = skin[(skin_lab[:, 0] >= lo) & (skin_lab[:, 0] <= hi)]
    skin_mean = _lab(skin).mean(axis=0)

    # hair: a band over the top of the face box, minus skin- and background-like pixels
    y0, y1 = max(0, y - int(0.35 * h)), max(1, y + h // 8)
    x0, x1 = max(0, x - w // 8), min(W, x + w + w // 8)
    band = img[y0:y1, x0:x1]
    band_lab = _lab(band).reshape(band.shape)
    hair_mask = np.linalg.norm(band_lab - skin_mean, axis=2) > 14
    for bg in _background_colors(img):
        hair_mask &= np.linalg.norm(band_lab - bg, axis=2) > 14
    if hair_mask.sum() < 20:  # nothing distinctive: take the darker half of the band
        hair_mask = band_lab[..., 0] <= np.median(band_lab[..., 0])
    hair = band[hair_mask]
    hair_lab = np.median(_lab(hair), axis=0)  # median: robust to shadows and shine
    style = _hair_style(cv2.cvtColor(band, cv2.COLOR_RGB2GRAY), hair_mask)

    # eyes: iris pixels from small patches at both eye centres
    r = max(1, round(0.04 * w))
    eyes = np.concatenate([_eye_patch(img, (ex * s, ey * s), r) for ex, ey in (face.left_eye, face.right_eye)])
    eye_mean = _lab(eyes).mean(axis=0)

    return {
        "skin_tone": _skin_tone(float(skin_mean[0])),
        "hair_color": _hair_color(*(float(v) for v in hair_lab)),
        "hair_style": style,
        "eye_color": _eye_color(*(float(v) for v in eye_mean)),
        "skin_rgb": _hex(skin),
        "hair_rgb": _hex(hair),
        "eye_rgb": _hex(eyes),
    }


# --------------------------------------------------------------------------- transfer

def similarity_from_eyes(src_eyes: EyePair, dst_eyes: EyePair) -> np.ndarray:
    """2x3 rotation + uniform scale + translation taking both src eyes onto dst eyes."""
    (sl, sr), (dl, dr) = np.asarray(src_eyes, np.float64), np.asarray(dst_eyes, np.float64)
    vs, vd = sr - sl, dr - dl
    norm = float(vs @ vs)
    if norm < 1e-12:
        raise ValueError("source eyes coincide")
    # complex division vd / vs gives scale*exp(i*angle) = a + ib
    a = (vd[0] * vs[0] + vd[1] * vs[1]) / norm
    b = (vd[1] * vs[0] - vd[0] * vs[1]) / norm
    rot = np.array([[a, -b], [b, a]])
    return np.hstack([rot, (dl - rot @ sl)[:, None]])


def _ellipse_mask(shape: tuple[int, int], center: np.ndarray, axes: tuple[float, float], angle: float) -> np.ndarray:
    """Filled uint8 (0/255) ellipse, drawn with sub-pixel precision."""
    mask = np.zeros(shape, np.uint8)
    f = 16  # cv2 fixed-point shift of 4 bits
    cv2.ellipse(mask, (round(center[0] * f), round(center[1] * f)), (round(axes[0] * f), round(axes[1] * f)),
                angle, 0, 360, 255, -1, cv2.LINE_8, 4)
    return mask


def _feather(mask: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian-blurred 0..1 float mask; wide blurs run downscaled (the result is smooth)."""
    k = min(1.0, 6.0 / sigma)
    small = cv2.resize(mask, None, fx=k, fy=k, interpolation=cv2.INTER_AREA) if k < 1 else mask
    ks = 2 * math.ceil(3 * sigma * k) + 1
    soft = cv2.GaussianBlur(small.astype(np.float32) * np.float32(1 / 255), (ks, ks), sigma * k)
    return cv2.resize(soft, mask.shape[::-1], interpolation=cv2.INTER_LINEAR) if k < 1 else soft


def _match_colors(face: np.ndarray, face_mask: np.ndarray, page: np.ndarray, ring: np.ndarray) -> np.ndarray:
    """Partial Reinhard transfer in CIELAB of the masked face toward the ring's statistics."""
    step = max(1, round(math.sqrt(face_mask.size / 250_000)))  # statistics from a sparse grid
    src_px, dst_px = face[::step, ::step][face_mask[::step, ::step]], page[::step, ::step][ring[::step, ::step]]
    if len(src_px) < 10 or len(dst_px) < 10:
        return face
    src, dst = _lab(src_px), _lab(dst_px)
    mu_s, sd_s = src.mean(axis=0), src.std(axis=0) + 1e-3
    mu_d, sd_d = dst.mean(axis=0), dst.std(axis=0) + 1e-3
    # move mean and spread part of the way, within limits: a face on a blue sky must stay a face
    gain = (1 + COLOR_STRENGTH * (np.clip(sd_d / sd_s, 0.7, 1.4) - 1)).astype(np.float32)
    shift = COLOR_STRENGTH * (mu_d - mu_s)
    shift[0] = np.clip(shift[0], -MAX_L_SHIFT, MAX_L_SHIFT)
    shift[1:] *= min(1.0, MAX_AB_SHIFT / (float(np.hypot(*shift[1:])) + 1e-6))
    offset = (mu_s + shift - mu_s * gain).astype(np.float32)  # (x - mu_s) * gain + mu_s + shift
    lab = cv2.cvtColor(face.astype(np.float32) * np.float32(1 / 255), cv2.COLOR_RGB2LAB)
    rgb = cv2.cvtColor(lab * gain + offset, cv2.COLOR_LAB2RGB)
    return np.clip(rgb * 255 + 0.5, 0, 255).astype(np.uint8)


def _seamless(src: np.ndarray, dst: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Partial Poisson blend: src plus POISSON_STRENGTH of cv2.seamlessClone's correction.

    NORMAL_CLONE replaces the face's tone by the illustration's at the mask
    edge, and anything in the photo there (collar, background) bleeds far into
    the face.  The correction is linear in that edge mismatch, so cloning
    half-range copies (no clipping at 0/255) and adding back a fraction keeps
    the child's own look.  Large regions solve the (smooth) correction
    downscaled, which keeps this fast.
    """
    pad = 2  # the mask must not touch the border
    src_p, dst_p = (cv2.copyMakeBorder(a, pad, pad, pad, pad, cv2.BORDER_REPLICATE) for a in (src, dst))
    mask_p = cv2.copyMakeBorder(mask, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0)
    k = min(1.0, SEAMLESS_MAX_PX / max(mask_p.shape))
    size = (round(mask_p.shape[1] * k), round(mask_p.shape[0] * k))
    s_half, d_half = ((_resize(a, k) >> 1).astype(np.int16) + 64 for a in (src_p, dst_p))
    # bound the edge mismatch: the correction is harmonic, so it is bounded by it too
    d_half = (s_half + np.clip(d_half - s_half, -POISSON_CLIP // 2, POISSON_CLIP // 2)).astype(np.uint8)
    s_half = s_half.astype(np.uint8)
    m_small = cv2.resize(mask_p, size, interpolation=cv2.INTER_NEAREST) if k < 1 else mask_p.copy()
    m_small[[0, -1], :] = 0
    m_small[:, [0, -1]] = 0
    delta = 2 * (_clone(s_half, d_half, m_small).astype(np.float32) - s_half)
    if k < 1:
        delta = cv2.resize(delta, mask_p.shape[::-1], interpolation=cv2.INTER_LINEAR)
    out = np.clip(src_p + POISSON_STRENGTH * delta + 0.5, 0, 255).astype(np.uint8)
    return out[pad:-pad, pad:-pad]


def _clone(src: np.ndarray, dst: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """NORMAL_CLONE of same-sized src into dst, placed in place (OpenCV alters mask: pass a copy)."""
    if not mask.any():
        return dst.copy()
    x, y, w, h = cv2.boundingRect(mask)
    # OpenCV places the mask's bounding box at (p - size // 2): pick p so it stays put
    return cv2.seamlessClone(src, dst, mask, (x + w // 2, y + h // 2), cv2.NORMAL_CLONE)


def transfer_face(page: np.ndarray, photo: np.ndarray, photo_eyes: EyePair, slot_eyes: EyePair,
                  blend: str = "seamless") -> np.ndarray:
    """Paste the photo's face into the page so its eyes land on the slot's eyes.

    Only a region of interest around the slot is processed; the rest of the
    returned copy equals the page exactly.  blend is "seamless" or "alpha".
    """
    if blend not in ("seamless", "alpha"):
        raise ValueError(f"unknown blend {blend!r}")
    (lx, ly), (rx, ry) = slot_eyes
    eye_l, eye_r = np.array([lx, ly], np.float64), np.array([rx, ry], np.float64)
    d = float(np.linalg.norm(eye_r - eye_l))
    if d < 2:
        raise ValueError("slot eyes are too close together")
    u = (eye_r - eye_l) / d
    down = np.array([-u[1], u[0]])
    center = (eye_l + eye_r) / 2 + 0.35 * d * down
    axes = (1.05 * d, 1.40 * d)
    angle = math.degrees(math.atan2(u[1], u[0]))
    sigma = 0.12 * d
    ring_w = 0.30 * d

    # region of interest: the ellipse's bounding box plus feather and ring, clipped to the page
    ex = math.hypot(axes[0] * u[0], axes[1] * down[0])
    ey = math.hypot(axes[0] * u[1], axes[1] * down[1])
    margin = 3 * sigma + ring_w + 4
    H, W = page.shape[:2]
    x0, x1 = max(0, math.floor(center[0] - ex - margin)), min(W, math.ceil(center[0] + ex + margin))
    y0, y1 = max(0, math.floor(center[1] - ey - margin)), min(H, math.ceil(center[1] + ey + margin))
    out = page.copy()
    if x1 - x0 < 4 or y1 - y0 < 4:
        return out
    roi = np.ascontiguousarray(page[y0:y1, x0:x1])
    shape, origin = roi.shape[:2], np.array([x0, y0], np.float64)

    # warp the photo straight into ROI coordinates
    m = similarity_from_eyes(photo_eyes, slot_eyes)
    m[:, 2] -= origin
    size = (shape[1], shape[0])
    warped = cv2.warpAffine(np.ascontiguousarray(photo), m, size, flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_REFLECT)
    valid = cv2.warpAffine(np.full(photo.shape[:2], 255, np.uint8), m, size, flags=cv2.INTER_NEAREST,
                           borderMode=cv2.BORDER_CONSTANT, borderValue=0)

    c = center - origin
    hard = _ellipse_mask(shape, c, axes, angle) & valid
    outer = _ellipse_mask(shape, c, (axes[0] + 3 * sigma + ring_w, axes[1] + 3 * sigma + ring_w), angle)
    ring = (outer > 0) & (_ellipse_mask(shape, c, (axes[0] + sigma, axes[1] + sigma), angle) == 0)
    warped = _match_colors(warped, hard > 0, roi, ring)

    alpha = _feather(hard, sigma)[..., None]
    face = _seamless(warped, roi, hard) if blend == "seamless" else warped
    mixed = alpha * face.astype(np.float32) + (1 - alpha) * roi.astype(np.float32)
    out[y0:y1, x0:x1] = np.clip(mixed + 0.5, 0, 255).astype(np.uint8)
    return out
