"""Shared fixtures: a small book nobody wrote by hand, portraits, a real S3 endpoint (moto)."""

from __future__ import annotations

import io
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "pipeline" / "demo"
DEMO_PHOTO = DEMO / "photo.jpg"
ANDIKA = DEMO / "book" / "fonts" / "Andika-Regular.ttf"


@pytest.fixture(scope="session")
def demo_photo() -> Path:
    return DEMO_PHOTO


@pytest.fixture(scope="session")
def portrait(tmp_path_factory) -> Path:
    """Another portrait: the demo photo mirrored, cropped off-centre and at another size."""
    image = Image.open(DEMO_PHOTO).transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    image = image.crop((40, 0, 500, 420)).resize((690, 630), Image.Resampling.LANCZOS)
    path = tmp_path_factory.mktemp("portrait") / "child.png"
    image.save(path)
    return path


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


@pytest.fixture
def book(tmp_path) -> Path:
    return make_book(tmp_path / "book")


def png_bytes(image: Image.Image, **kw) -> bytes:
    out = io.BytesIO()
    image.save(out, format=kw.pop("format", "PNG"), **kw)
    return out.getvalue()


# ---- a real S3 endpoint ------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def s3_endpoint():
    """A moto S3 server on loopback; the AWS environment points at it for the whole session."""
    port = _free_port()
    try:
        import moto.server  # noqa: F401
    except ImportError:
        pytest.fail("moto[server] is not installed: run `make setup`.")
    proc = subprocess.Popen([sys.executable, "-m", "tests.s3_server", str(port)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            urllib.request.urlopen(url + "/moto-api/", timeout=1)
            break
        except OSError:
            time.sleep(0.1)
    else:
        proc.kill()
        pytest.fail("moto_server did not start")
    saved = {k: os.environ.get(k) for k in ("AWS_ENDPOINT_URL_S3", "AWS_ACCESS_KEY_ID",
                                            "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")}
    os.environ.update(AWS_ENDPOINT_URL_S3=url, AWS_ACCESS_KEY_ID="test",
                      AWS_SECRET_ACCESS_KEY="test", AWS_DEFAULT_REGION="us-east-1")
    yield url
    proc.terminate()
    proc.wait(10)
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture
def bucket(s3_endpoint) -> str:
    import boto3

    name = f"test-{uuid.uuid4().hex[:12]}"
    boto3.client("s3").create_bucket(Bucket=name)
    return name


# ---- counts the hardening tests report (inputs tried, kills survived, updates kept) ------


@pytest.fixture
def count(record_property):
    """``count("kills_injected")``: add to a total shown at the end of the run (works with -n)."""

    def add(name: str, n: int = 1) -> None:
        record_property(f"count:{name}", n)

    return add


def pytest_terminal_summary(terminalreporter):
    totals: dict[str, int] = {}
    for outcome in ("passed", "failed"):
        for report in terminalreporter.stats.get(outcome, []):
            for name, value in getattr(report, "user_properties", []):
                if name.startswith("count:") and getattr(report, "when", "") == "call":
                    totals[name[6:]] = totals.get(name[6:], 0) + int(value)
    if totals:
        terminalreporter.write_sep("-", "hardening counts")
        for name, value in sorted(totals.items()):
            terminalreporter.write_line(f"{name.replace('_', ' ')}: {value}")


# ---- one uninterrupted prepay run, to compare crashed and faulted runs with -------------

CHILD_ARGS = ("--name", "Олена", "--age", "5", "--gender", "girl")


@pytest.fixture(scope="session")
def small_book(tmp_path_factory) -> Path:
    return make_book(tmp_path_factory.mktemp("small") / "book", size=(600, 400))


@pytest.fixture(scope="session")
def prepay_reference(small_book, tmp_path_factory) -> dict:
    """Job ``ref``: the prepay stage of ``small_book`` for the demo photo and CHILD_ARGS, on a
    local store: its ``root``, ``outputs`` (layout files by name) and ``record``."""
    import json

    root = tmp_path_factory.mktemp("reference") / "store"
    done = subprocess.run([sys.executable, "-m", "pipeline.cli", "run", str(small_book),
                           "--photo", str(DEMO_PHOTO), *CHILD_ARGS, "--job-id", "ref",
                           "--store", str(root)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    layout = root / "layout" / "ref"
    record = json.loads((root / "jobs/ref/job.json").read_text())
    assert record["status"] == "prepay_ready" and len(record["artifacts"]) == 5
    return {"root": root, "record": record,
            "outputs": {p.relative_to(layout).as_posix(): p.read_bytes()
                        for p in sorted(layout.rglob("*")) if p.is_file() and not p.name.startswith(".")}}
