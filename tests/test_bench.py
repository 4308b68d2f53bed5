"""`make bench` keeps working: its baselines measure what they claim (real Chromium)."""

from __future__ import annotations

import numpy as np
from PIL import Image

from bench.run import DEMO, full_page_screenshot, pods_per_stage
from steps.core.manifest import load_book
from steps.core.messages import Child
from steps.render import blocks_for, book_fonts
from steps.backends.typesetter import TextRenderer


def test_the_full_page_baseline_makes_the_same_page_as_the_text_layer():
    loaded = load_book(str(DEMO / "book"))
    blocks = blocks_for(loaded.book, loaded.book.page(2), Child("Mia", 6, "girl"), "en")
    background = Image.open(DEMO / "book" / "pages" / "02.png").convert("RGB")
    with TextRenderer(book_fonts(loaded)) as renderer:
        layer = np.asarray(renderer.render(background, blocks), dtype=int)
        full = np.asarray(full_page_screenshot(renderer, background, blocks), dtype=int)
    plain = np.asarray(background, dtype=int)
    assert full.shape == layer.shape
    text = np.abs(layer - plain).max(axis=2) > 64       # where the text is
    assert text.sum() > 10_000
    assert np.abs(full - plain).max(axis=2)[text].mean() > 64   # the baseline drew it too
    assert np.abs(full - layer).mean() < 1.0             # and the same page, give or take rounding


def test_pods_per_stage_are_counted_from_the_spec():
    pods = pods_per_stage()
    assert pods["4"] == pods["24"] == {"prepay": 6, "postpay": 5}
