"""`make bench` keeps working: its baselines measure what they claim (real Chromium)."""

from __future__ import annotations

import numpy as np
from PIL import Image

from bench.run import DEMO, full_page_screenshot, pods_per_stage
from steps.backends.typesetter import TextRenderer
from steps.core.manifest import load_book
from steps.core.messages import Child
from steps.render import blocks_for, book_fonts


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


def test_the_cluster_cost_model_counts_pods_loads_and_gpu_seconds_by_hand():
    """Two passes: prepay [1, 2] (page 1 has a face), postpay [3, 4, 5] (page 5 has a face),
    two pages per chunk. Counted by hand from the spec: per pass plan, assemble, finalize
    (analyze in prepay only), per chunk backgrounds + render, and per chunk of face pages
    `faces` (on a GPU pod, for ComfyUI only, after the routing)."""
    from bench.cluster import CostModel, cluster_cost

    m = CostModel(pod_start_s=1, qwen_load_s=10, comfyui_load_s=100, analysis_s=2,
                  face_page_s=1000, classic_face_page_s=5, plain_page_s=0.5)
    stages = {"prepay": [1, 2], "postpay": [3, 4, 5]}
    faces = {1, 5}
    # chunks: [1,2] | [3,4] [5]; CPU pods: 2 plans, 2 assembles, 2 finalizes, 3 renders = 9
    before = cluster_cost(faces, stages, 2, "comfyui", "qwen2-vl", "before", m)
    assert before["pods"] == 9 + 1 + 3 and before["gpu_pods"] == 1 + 3
    assert before["qwen2_vl_loads"] == 1 and before["comfyui_loads"] == 3
    # analyze 1+10+2; each backgrounds pod 1+100; pages 2, 3, 4 plain; 1 and 5 face transfer
    assert before["gpu_s_held"] == 13 + 3 * 101 + 3 * 0.5 + 2 * 1000
    assert before["gpu_s_outside_face_transfer"] == 13 + 3 * 101 + 3 * 0.5
    # after: every chunk's backgrounds on a CPU pod ([1,2], [3,4], [5]: 3), and the face pages
    # of each pass on a `faces` GPU pod ([1], [5]: 2)
    after = cluster_cost(faces, stages, 2, "comfyui", "qwen2-vl", "after", m)
    assert after["pods"] == 9 + 1 + 3 + 2 and after["gpu_pods"] == 1 + 2
    assert after["comfyui_loads"] == 2
    assert after["gpu_s_outside_face_transfer"] == 13 + 2 * 101
    # the classic backend needs no GPU for backgrounds at all after routing
    classic = cluster_cost(faces, stages, 2, "classic", "heuristic", "after", m)
    assert classic["gpu_pods"] == 1 and classic["comfyui_loads"] == classic["qwen2_vl_loads"] == 0
    assert classic["gpu_s_held"] == 1
    classic_before = cluster_cost(faces, stages, 2, "classic", "heuristic", "before", m)
    assert classic_before["gpu_pods"] == 4 and classic_before["gpu_s_held"] == 1 + 3 * 1 + 3 * 0.5 + 2 * 5


def test_the_records_query_figure_counts_what_it_lists(tmp_path):
    """bench/records.py fills each backend and lists the prepay_ready fifth of its jobs."""
    from bench.records import main

    figures = main(50)
    for backend in ("store", "sqlite", "postgresql"):
        assert figures[backend]["jobs"] == 50 and figures[backend]["listed"] == 10, figures
        assert figures[backend]["cli_s"] > figures[backend]["query_s"] > 0
