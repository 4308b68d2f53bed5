"""Shared helpers of the tests: where things are, a small book nobody wrote by hand, images as bytes."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import yaml
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "pipeline" / "demo"
DEMO_PHOTO = DEMO / "photo.jpg"
ANDIKA = DEMO / "book" / "fonts" / "Andika-Regular.ttf"


CHILD_ARGS = ("--name", "Олена", "--age", "5", "--gender", "girl")


def _illustration(size: tuple[int, int], seed: int) -> Image.Image:
    """A simple flat-colour scene: sky gradient, a hill, a sun."""
    w, h = size
    sky = np.linspace([120, 180, 240], [220, 240, 255], h).astype(np.uint8)
    image = Image.fromarray(np.repeat(sky[:, None, :], w, axis=1))
    draw = ImageDraw.Draw(image)
    draw.ellipse((-w // 4, int(h * 0.65), w + w // 4, h * 2), fill=(90 + 20 * seed, 170, 90))
    draw.ellipse((int(w * 0.78), int(h * 0.08), int(w * 0.92), int(h * 0.08) + int(w * 0.14)),
                 fill=(255, 210, 80))
    return image


def _head(image: Image.Image, left_eye, right_eye) -> None:
    """A plain skin-toned head with a hair cap where the face slot is."""
    d = right_eye[0] - left_eye[0]
    cx, cy = (left_eye[0] + right_eye[0]) / 2, left_eye[1] + 0.3 * d
    draw = ImageDraw.Draw(image)
    draw.ellipse((cx - 1.5 * d, cy - 1.9 * d, cx + 1.5 * d, cy + 1.3 * d), fill=(110, 70, 40))
    draw.ellipse((cx - 1.3 * d, cy - 1.7 * d, cx + 1.3 * d, cy + 1.7 * d), fill=(236, 196, 160))
    draw.rectangle((cx - 1.1 * d, cy + 1.6 * d, cx + 1.1 * d, image.height), fill=(200, 60, 70))


def make_book(folder: Path, *, size=(900, 600), base_ext="png") -> Path:
    """A four-page landscape book: faces on pages 1 and 3, text on 1, 2 and 4, prepay 1-2."""
    (folder / "pages").mkdir(parents=True, exist_ok=True)
    (folder / "fonts").mkdir(exist_ok=True)
    shutil.copy(ANDIKA, folder / "fonts" / "Andika-Regular.ttf")
    w, h = size
    slots = {1: ((int(w * 0.42), int(h * 0.40)), (int(w * 0.50), int(h * 0.40))),
             3: ((int(w * 0.20), int(h * 0.45)), (int(w * 0.30), int(h * 0.43)))}
    pages = []
    for num in range(1, 5):
        # Base images at half size: the pipeline must scale them to the print size.
        image = _illustration(size, num)
        if num in slots:
            _head(image, *slots[num])
        image = image.resize((w // 2, h // 2), Image.Resampling.LANCZOS)
        image.save(folder / "pages" / f"p{num}.{base_ext}")
        page = {"num": num, "base": f"pages/p{num}.{base_ext}",
                "needs_face_swap": num in slots}
        if num in slots:
            page["face"] = {"left_eye": list(slots[num][0]), "right_eye": list(slots[num][1])}
        if num != 3:
            page["text_layers"] = [{
                "text": {1: "{child_name} is {child_age} today!",
                         2: "A page without a face, for {child_name}.",
                         4: "The end. Sleep well, {child_name}."}[num],
                "box": [int(w * 0.05), int(h * 0.05), int(w * 0.6), int(h * 0.22)],
                "style": {"font_family": "Andika", "font_size_px": 48, "color": "#1a1a40",
                          "align": "left", "valign": "middle"}}]
        pages.append(page)
    manifest = {"id": "test-landscape", "title": "A Test Book",
                "output": {"page_size_px": [w, h], "dpi": 150}, "prepay_pages": [1, 2],
                "fonts": [{"family": "Andika", "src": "fonts/Andika-Regular.ttf"}],
                "pages": pages}
    (folder / "book.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False, allow_unicode=True))
    return folder


def png_bytes(image: Image.Image, **kw) -> bytes:
    out = io.BytesIO()
    image.save(out, format=kw.pop("format", "PNG"), **kw)
    return out.getvalue()
