"""The CPU backends: the ``heuristic`` analyzer and the ``classic`` face transfer.

* :func:`analyze_heuristic`: the largest face and its eyes (:mod:`steps.backends.faces`), hair,
  eye and skin colour from measured pixels, gender as given by the parent.
* :class:`ClassicFaceTransfer` / :func:`transfer_face`: the child's face from the photo placed
  into an illustration: similarity warp onto the slot's eyes, elliptical feathered mask,
  partial Reinhard colour matching in CIELAB, Poisson (seamless) blend.

Everything here is deterministic: the same inputs give byte-identical outputs.
"""
from __future__ import annotations

import math
from typing import Any

import cv2
import numpy as np

from steps.backends.base import FaceRequest
from steps.backends.faces import EyePair, describe, find_faces, lab, rescale
from steps.core.analysis import Analysis, prompt_for
from steps.core.errors import InputError

MIN_FACE_FRACTION = 0.06  # of the photo's shorter side
MIN_FACE_PX = 40
SEAMLESS_MAX_PX = 512  # larger ROIs get their Poisson correction solved downscaled
COLOR_STRENGTH = 0.5  # how far the face colours move toward the illustration
POISSON_STRENGTH = 0.5  # fraction of the seamless-clone correction applied
POISSON_CLIP = 60  # largest photo/illustration mismatch (levels) the correction follows
MAX_L_SHIFT, MAX_AB_SHIFT = 15.0, 10.0  # caps on the colour-matching shift (CIELAB units)


# --------------------------------------------------------------------------- analysis

def analyze_heuristic(photo: np.ndarray, gender: str, **_options: Any) -> Analysis:
    """The measured analysis of a photo; no usable face is an :class:`InputError`."""
    faces = find_faces(photo)
    if not faces:
        raise InputError("no_face", "No face was found in the photo; send a well-lit photo in "
                                    "which the child's face is clearly visible and looks at the camera.")
    face = faces[0]
    shorter = min(photo.shape[:2])
    if max(face.box[2], face.box[3]) < max(MIN_FACE_PX, MIN_FACE_FRACTION * shorter):
        raise InputError("face_too_small", "The face in the photo is too small to use; send a "
                                           "closer photo in which the face fills more of the picture.")
    features = describe(photo, face)
    return Analysis(
        source="heuristic", face_detected=True, faces_found=len(faces),
        photo_size=(int(photo.shape[1]), int(photo.shape[0])),
        face_box=tuple(int(v) for v in face.box),
        left_eye=tuple(round(float(v), 2) for v in face.left_eye),
        right_eye=tuple(round(float(v), 2) for v in face.right_eye),
        eyes_detected=face.eyes_detected, gender=gender, **features,
        prompt=prompt_for(gender, features["hair_color"], features["hair_style"]))


# --------------------------------------------------------------------------- face transfer

class ClassicFaceTransfer:
    """Eye-aligned face transfer on the CPU; the photo is decoded once per chunk.
    Deterministic: prompts and seeds do not change its output."""

    def __init__(self, photo: np.ndarray, analysis: Analysis, **_options: Any) -> None:
        self.photo = photo
        self.eyes = analysis.eyes
        # One thread: a job's steps share the cores (one machine) or run in one-CPU pods, and
        # OpenCV's pool, spinning while it waits, only added work (16 pages: 0.136 CPU-s a page
        # with it, 0.118 without, the wall time no longer).
        cv2.setNumThreads(1)

    def __call__(self, page: np.ndarray, request: FaceRequest) -> np.ndarray:
        return transfer_face(page, self.photo, self.eyes, request.slot)

    def close(self) -> None:
        pass


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
    step = max(1, round(math.sqrt(face_mask.size / 40_000)))  # statistics from a sparse grid
    src_px, dst_px = face[::step, ::step][face_mask[::step, ::step]], page[::step, ::step][ring[::step, ::step]]
    if len(src_px) < 10 or len(dst_px) < 10:
        return face
    src, dst = lab(src_px), lab(dst_px)
    mu_s, sd_s = src.mean(axis=0), src.std(axis=0) + 1e-3
    mu_d, sd_d = dst.mean(axis=0), dst.std(axis=0) + 1e-3
    # move mean and spread part of the way, within limits: a face on a blue sky must stay a face
    gain = (1 + COLOR_STRENGTH * (np.clip(sd_d / sd_s, 0.7, 1.4) - 1)).astype(np.float32)
    shift = COLOR_STRENGTH * (mu_d - mu_s)
    shift[0] = np.clip(shift[0], -MAX_L_SHIFT, MAX_L_SHIFT)
    shift[1:] *= min(1.0, MAX_AB_SHIFT / (float(np.hypot(*shift[1:])) + 1e-6))
    offset = (mu_s + shift - mu_s * gain).astype(np.float32)  # (x - mu_s) * gain + mu_s + shift
    face_lab = cv2.cvtColor(face.astype(np.float32) * np.float32(1 / 255), cv2.COLOR_RGB2LAB)
    rgb = cv2.cvtColor(face_lab * gain + offset, cv2.COLOR_LAB2RGB)
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
    s_half, d_half = ((rescale(a, k) >> 1).astype(np.int16) + 64 for a in (src_p, dst_p))
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
