"""steps.backends.typesetter against a real headless Chromium: placement, shrink-to-fit, escaping, scripts, fonts.

Chromium is required: without it these tests fail (they do not skip), since text rendering is
part of the book.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from steps.backends.typesetter import (
    ORIGIN,
    FontFile,
    TextBlock,
    TextRenderer,
    build_document,
    css_string,
    find_chromium,
)

# SIL Andika (OFL), as bundled with the demo book: no system font package needed.
ANDIKA = Path(__file__).resolve().parents[1] / "pipeline" / "demo" / "book" / "fonts"
WHITE = (255, 255, 255)


def _font_bytes(name: str) -> bytes:
    path = ANDIKA / name
    if not path.is_file():
        pytest.fail(f"Test font {path} is missing from the demo book.")
    return path.read_bytes()


@pytest.fixture(scope="module")
def renderer():
    try:
        exe = find_chromium()
    except RuntimeError as err:
        pytest.fail(f"The text tests need a real Chromium. {err}")
    # "BookFace" exists nowhere on the system: glyphs in that family can only come from these bytes.
    fonts = [FontFile("BookFace", _font_bytes("Andika-Regular.ttf")),
             FontFile("BookFace", _font_bytes("Andika-Bold.ttf"), weight="bold"),
             FontFile("Broken", b"OTTO" + bytes(200))]  # loaded (and failing) only where used
    with TextRenderer(fonts, executable_path=exe) as r:
        yield r


def render(r: TextRenderer, text: str, box=(50, 50, 700, 200), size=(800, 300), **kw) -> np.ndarray:
    kw.setdefault("font_family", "BookFace")
    kw.setdefault("font_size_px", 60)
    page = Image.new("RGB", size, WHITE)
    out = r.render(page, [TextBlock(text=text, box=box, **kw)])
    assert out.size == page.size and out.mode == "RGB"
    return np.asarray(out)


def ink(img: np.ndarray, threshold: int = 0) -> np.ndarray:
    """Pixels that differ from the white page by more than `threshold` in some channel."""
    return (255 - img.astype(int)).max(axis=2) > threshold


def bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    """x0, y0, x1, y1 (exclusive) of the True pixels."""
    ys, xs = np.nonzero(mask)
    assert len(xs), "no ink at all"
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def test_text_renders_inside_its_box(renderer):
    box = (120, 80, 300, 150)
    img = render(renderer, "Max and the dragon went far away", box=box, size=(640, 480))
    mask = ink(img)
    x, y, w, h = box
    assert mask[y:y + h, x:x + w].sum() > 500
    outside = mask.copy()
    outside[y:y + h, x:x + w] = False
    assert not outside.any()


def test_pages_of_different_sizes(renderer):
    for size in [(300, 900), (1000, 200)]:
        box = (size[0] - 250, size[1] - 150, 200, 100)
        mask = ink(render(renderer, "Hi", box=box, size=size))
        x0, y0, x1, y1 = bbox(mask)
        assert box[0] <= x0 and x1 <= box[0] + box[2] and box[1] <= y0 and y1 <= box[1] + box[3]


def test_colour_is_applied(renderer):
    img = render(renderer, "Max", color="#ff0000", font_size_px=120)
    darkest = img[ink(img, 225)]  # nearly full coverage: the glyph colour itself
    assert len(darkest) > 100
    assert (darkest[:, 0] > 230).all() and (darkest[:, 1] < 30).all() and (darkest[:, 2] < 30).all()


def test_long_text_shrinks_and_short_text_keeps_its_size(renderer):
    box = (20, 20, 300, 100)
    long = TextBlock("Once upon a time Max found a dragon egg under the old oak tree " * 2, box, "BookFace", 48)
    short = TextBlock("Max", box, "BookFace", 48)
    long_size, short_size = renderer.fit([long, short])
    assert short_size == 48
    assert 12 <= long_size < 48
    # The shrunk text really fits: its ink does not reach the bottom edge of the box (no clipping).
    mask = ink(np.asarray(renderer.render(Image.new("RGB", (400, 200), WHITE), [long])))
    assert bbox(mask)[3] < box[1] + box[3]


def test_text_that_cannot_fit_stops_at_the_floor_and_is_clipped(renderer):
    box = (10, 10, 80, 30)
    block = TextBlock("word " * 200, box, "BookFace", 40)
    assert renderer.fit([block]) == [10.0]  # 25% of 40
    mask = ink(np.asarray(renderer.render(Image.new("RGB", (200, 100), WHITE), [block])))
    assert bbox(mask)[3] <= box[1] + box[3] and mask[10:40, 10:90].any()


def test_markup_in_text_renders_literally(renderer):
    literal = bbox(ink(render(renderer, "<b>Max</b>"), 64))
    bold = bbox(ink(render(renderer, "Max", font_weight="bold"), 64))
    plain = bbox(ink(render(renderer, "Max"), 64))
    width = lambda b: b[2] - b[0]  # noqa: E731
    # Interpreted tags would give a bold "Max"; literal tags add seven visible characters.
    assert width(literal) > 1.8 * max(width(bold), width(plain))


def test_hostile_name_makes_no_request_and_renders_literally(renderer):
    served, blocked = len(renderer.served_requests), len(renderer.blocked_requests)
    name = ('<img src=http://evil.example/x.png><script>fetch("http://evil.example/s")</script>'
            '<link rel=stylesheet href="http://evil.example/c.css">')
    img = render(renderer, name, box=(10, 10, 780, 280), font_size_px=20)
    assert renderer.blocked_requests[blocked:] == []
    assert all(u.startswith(ORIGIN + "/") for u in renderer.served_requests[served:])
    x0, _, x1, _ = bbox(ink(img, 64))
    assert x1 - x0 > 600  # the whole string is drawn as text


def test_blocked_requests_are_logged(renderer):
    # Control for the test above: a request the page does make is aborted and recorded.
    render(renderer, "Max")
    renderer.tab.evaluate("() => fetch('https://evil.example/probe').catch(() => 0)")
    assert "https://evil.example/probe" in renderer.blocked_requests


def test_page_scripts_are_off_but_measuring_works(renderer):
    url = f"{ORIGIN}/probe.html"
    renderer._resources[url] = ("text/html", b"<title>t</title><script>document.title = 'ran'</script>")
    try:
        renderer.tab.goto(url)
    finally:
        del renderer._resources[url]
    assert renderer.tab.evaluate("() => document.title") == "t"
    assert renderer.tab.evaluate("() => 6 * 7") == 42


def test_cyrillic_and_arabic_have_real_glyphs(renderer):
    # Tofu draws every missing character as the same box, so two different strings of the same
    # length would render identically. The control shows that with unassigned code points.
    tofu_a, tofu_b = render(renderer, "\u0378\u0379\u0380"), render(renderer, "\u0381\u0382\u0383")
    assert ink(tofu_a).any() and np.array_equal(tofu_a, tofu_b)
    for a, b in [("Олена", "Ивана"), ("ليلى", "سارة")]:
        img_a, img_b = render(renderer, a), render(renderer, b)
        assert ink(img_a, 64).sum() > 300 and ink(img_b, 64).sum() > 300
        assert not np.array_equal(img_a, img_b)


def test_arabic_is_shaped_and_right_to_left(renderer):
    joined = render(renderer, "ليلى")
    isolated = render(renderer, "\u200c".join("ليلى"))  # ZWNJ stops the letters joining
    assert not np.array_equal(joined, isolated)
    # dir="auto" makes an Arabic paragraph right-to-left: its trailing "!" is drawn at the left,
    # exactly as an explicitly left-to-right "!" followed by the name.
    auto = render(renderer, "ليلى!")
    assert np.array_equal(auto, render(renderer, "\u200e!ليلى"))
    assert not np.array_equal(auto, render(renderer, "\u200eليلى!"))


def test_horizontal_and_vertical_alignment(renderer):
    box = (50, 50, 700, 200)
    left = bbox(ink(render(renderer, "Max", box=box)))
    right = bbox(ink(render(renderer, "Max", box=box, align="right")))
    centre = bbox(ink(render(renderer, "Max", box=box, align="center")))
    bottom = bbox(ink(render(renderer, "Max", box=box, valign="bottom")))
    assert left[0] < 60 and right[2] > 740
    assert abs((centre[0] + centre[2]) / 2 - 400) < 5
    assert bottom[1] > left[1] + 100 and bottom[3] <= 250


def test_newlines_are_kept(renderer):
    one_line = bbox(ink(render(renderer, "Max Max")))
    two_lines = bbox(ink(render(renderer, "Max\nMax")))
    assert two_lines[3] - two_lines[1] > 1.8 * (one_line[3] - one_line[1])


def test_book_font_is_used_and_comes_from_the_routed_url(renderer):
    with_font = render(renderer, "Max found a dragon", font_family="BookFace")
    # fetched through the route (once per renderer: the document stays open between pages),
    # at a URL named by its bytes
    fonts = {u for u in renderer.served_requests if "/fonts/" in u}
    assert any(re.fullmatch(re.escape(ORIGIN) + r"/fonts/0-[0-9a-f]{16}\.ttf", u) for u in fonts)
    without = render(renderer, "Max found a dragon", font_family="NoSuchFamily")
    assert not np.array_equal(with_font, without)


def test_rendering_is_deterministic(renderer):
    page = Image.new("RGB", (600, 400), (240, 230, 200))
    blocks = [TextBlock("Олена and ليلى", (10, 10, 580, 180), "BookFace", 50, color="#335577cc", align="center"),
              TextBlock("Max", (100, 150, 300, 200), "BookFace", 90, valign="middle", font_style="italic")]
    first, second = renderer.render(page, blocks), renderer.render(page, blocks)
    assert first.tobytes() == second.tobytes()
    assert first.tobytes() != page.tobytes()


def test_the_composite_is_pillows_alpha_composite_for_every_value():
    """composite() blends only where the layer is not transparent, with Pillow's integer
    arithmetic: every (text colour, page colour, alpha) gives Image.alpha_composite's pixel."""
    from steps.backends.typesetter import composite

    value = np.arange(256, dtype=np.uint8)
    src, dst, alpha = (a.reshape(-1) for a in np.meshgrid(value, value, value, indexing="ij"))
    side = 4096                                             # 256³ pixels, one for each triple
    layer = np.stack([src, 255 - src, src // 2 + 7, alpha], axis=1).reshape(side, side, 4)
    page = np.stack([dst, dst // 3, 255 - dst], axis=1).reshape(side, side, 3)
    expected = Image.alpha_composite(Image.fromarray(page).convert("RGBA"), Image.fromarray(layer, "RGBA"))
    blended = page.copy()
    composite(blended, (0, 0, side, side), layer)
    assert np.array_equal(blended, np.asarray(expected.convert("RGB")))
    # at an offset, only the region changes, and nothing where the layer is transparent
    canvas = np.full((20, 30, 3), 9, np.uint8)
    spot = np.zeros((5, 6, 4), np.uint8)
    spot[2, 3] = (200, 100, 50, 128)
    composite(canvas, (10, 4, 16, 9), spot)
    changed = np.argwhere((canvas != 9).any(axis=2))
    assert changed.tolist() == [[6, 13]] and canvas[6, 13].tolist() == [105, 55, 30]
    with pytest.raises(ValueError, match="contiguous"):
        composite(canvas[:, ::2], (0, 0, 6, 5), spot)   # a view it could not write through


def test_the_text_layer_sets_the_pages_text(renderer):
    """render() is text_layer() composited: text where the blocks are, the page elsewhere."""
    from steps.backends.typesetter import composite

    rng = np.random.default_rng(7)
    page = Image.fromarray(rng.integers(0, 256, (300, 800, 3), dtype=np.uint8))
    blocks = [TextBlock("Олена and Max", (40, 30, 700, 120), "BookFace", 60, color="#335577cc"),
              TextBlock("the end", (300, 200, 300, 80), "BookFace", 40, font_weight="bold")]
    drawn = np.asarray(renderer.render(page, blocks))
    region, layer = renderer.text_layer(blocks, page.size)
    assert layer.dtype == np.uint8 and layer.shape == (region[3] - region[1], region[2] - region[0], 4)
    pixels = np.array(page)
    composite(pixels, region, layer)
    assert np.array_equal(pixels, drawn)
    assert not np.array_equal(drawn, np.asarray(page))
    x0, y0, x1, y1 = region
    outside = np.ones(drawn.shape[:2], bool)
    outside[y0:y1, x0:x1] = False
    assert np.array_equal(drawn[outside], np.asarray(page)[outside])


def test_pages_set_together_get_the_pixels_they_get_alone(renderer):
    """text_layers() stacks several pages' text in one document and one screenshot (each page's
    boxes moved by whole pixels): every page gets the region and the pixels text_layer() gives
    it alone; pages without text get None, and what does not fit the page's height goes into
    another screenshot."""
    pages = [[TextBlock("Олена and Max", (40, 30, 700, 120), "BookFace", 60, color="#335577cc")],
             [],
             [TextBlock("the end", (300, 200, 300, 80), "BookFace", 40, font_weight="bold"),
              TextBlock("ليلى", (20, 150, 200, 100), "BookFace", 50, align="right")],
             [TextBlock("tall", (10, 10, 500, 280), "BookFace", 90)]]
    size = (800, 300)
    alone = [renderer.text_layer(blocks, size) for blocks in pages]
    loaded = renderer._pages_loaded
    together = renderer.text_layers(pages, size)
    assert renderer._pages_loaded - loaded == 2   # 120+150 rows fit in 300; the 280 do not
    assert together[1] is None and alone[1] is None
    for one, both in zip(alone, together):
        if one is not None:
            assert one[0] == both[0] and np.array_equal(one[1], both[1])
            assert one[1].any()


def test_zero_blocks_returns_a_copy_without_a_browser():
    page = Image.new("RGB", (50, 40), (1, 2, 3))
    out = TextRenderer([]).render(page, [])  # never entered: no browser exists
    assert out is not page and out.tobytes() == page.tobytes()


def test_css_values_cannot_break_out():
    evil = 'X"; } body { color: red } </style><script>alert(1)</script>'
    doc = build_document([TextBlock("a", (0, 0, 10, 10), evil, 10)], (10, 10), [])
    assert "<script" not in doc and "color: red" not in doc
    assert css_string('a"b\\c') == '"a\\22 b\\5c c"'
    with pytest.raises(ValueError):
        TextBlock("a", (0, 0, 10, 10), "F", 10, color="red;background:url(x)")
    with pytest.raises(ValueError):
        TextBlock("a", (0, 0, 10, 10), "F", 10, align="left;x:y")


def test_find_chromium_honours_the_environment(monkeypatch, tmp_path):
    missing = tmp_path / "no-chromium"
    monkeypatch.setenv("BOOKJOB_CHROMIUM", str(missing))
    with pytest.raises(RuntimeError, match="BOOKJOB_CHROMIUM"):
        find_chromium()
    exe = tmp_path / "chromium"
    exe.write_text("")
    monkeypatch.setenv("BOOKJOB_CHROMIUM", str(exe))
    assert find_chromium() == str(exe)
    monkeypatch.delenv("BOOKJOB_CHROMIUM")
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))  # no system browser
    monkeypatch.setenv("PLAYWRIGHT_BROWSERS_PATH", str(tmp_path))
    with pytest.raises(RuntimeError, match="install Debian's 'chromium' package"):
        find_chromium()
    (tmp_path / "bin").mkdir()
    system = tmp_path / "bin" / "chromium"
    system.write_text("")
    system.chmod(0o755)
    assert find_chromium() == str(system)  # no Playwright browser: the system's
    playwrights = tmp_path / "chromium-1" / "chrome-linux64" / "chrome"  # `playwright install chromium`
    playwrights.parent.mkdir(parents=True)
    playwrights.write_text("")
    assert find_chromium() == str(playwrights)  # Playwright's own, where one is installed


def test_a_broken_book_font_fails_loudly(renderer):
    with pytest.raises(RuntimeError, match="Broken"):
        renderer.fit([TextBlock("Max", (0, 0, 200, 100), "Broken", 20)])



def test_a_renderer_switched_to_another_books_fonts_keeps_its_browser_and_sets_with_them():
    """A worker's render step keeps its browser from one job to the next: switched to another
    book's fonts, it sets exactly what a fresh renderer with those fonts sets, and back."""
    exe = find_chromium()
    regular = [FontFile("BookFace", _font_bytes("Andika-Regular.ttf"))]
    bold = [FontFile("BookFace", _font_bytes("Andika-Bold.ttf"))]   # the same family, other bytes
    with TextRenderer(bold, executable_path=exe) as fresh:
        want_bold = render(fresh, "Max found a dragon")
    with TextRenderer(regular, executable_path=exe) as kept:
        want_regular = render(kept, "Max found a dragon")
        pid = kept._browser.pid
        kept.use_fonts(bold)
        assert np.array_equal(render(kept, "Max found a dragon"), want_bold)
        kept.use_fonts(regular)
        assert np.array_equal(render(kept, "Max found a dragon"), want_regular)
        assert kept._browser.pid == pid
    assert not np.array_equal(want_bold, want_regular)
