"""The renderer treats text as text: markup, stylesheets and addresses in a page's text (or in a
child's name) make no request and are drawn literally. Real Chromium.

Each hostile text has a control: the same thing delivered as markup (what a missing escape
would do) does make a request, which the renderer blocks and records. So a test here fails
if escaping breaks, and the control fails if the probe could never have made a request.
"""

from __future__ import annotations

import pytest
from PIL import Image

from steps.backends.typesetter import ORIGIN, FontFile, TextBlock, TextRenderer, find_chromium
from tests.helpers import ANDIKA

EVIL = "https://evil.example"

# text -> the markup a broken escape would have produced from it
HOSTILE = {
    "img": (f"<img src={EVIL}/img.png>", None),
    "link": (f'<link rel="stylesheet" href="{EVIL}/link.css">', None),
    "inline url()": (f'<div style="background:url({EVIL}/url.png)">x</div>', None),
    "bare url()": (f"background: url({EVIL}/bare.png)",
                     f"<style>body{{background: url({EVIL}/bare.png)}}</style>"),
    "@import": (f'@import url("{EVIL}/import.css");', f'<style>@import url("{EVIL}/import.css");</style>'),
    "style element": (f"</style><style>@import url({EVIL}/style.css)</style>", None),
    "@font-face": (f"@font-face{{font-family:x;src:url({EVIL}/f.woff)}} .t{{font-family:x}}",
                   f"<style>@font-face{{font-family:x;src:url({EVIL}/f.woff)}} "
                   f"body{{font-family:x}}</style>x"),
    "iframe": (f"<iframe src={EVIL}/frame.html></iframe>", None),
    "svg image": (f'<svg><image href="{EVIL}/svg.png" width="9" height="9"/></svg>', None),
    "video poster": (f"<video poster={EVIL}/poster.png></video>", None),
}

ELEMENTS = "img, link, iframe, svg, video, object, script, base, meta[http-equiv]"


@pytest.fixture(scope="module")
def renderer():
    try:
        exe = find_chromium()
    except RuntimeError as err:
        pytest.fail(f"The renderer tests need a real Chromium. {err}")
    with TextRenderer([FontFile("Book", ANDIKA.read_bytes())], executable_path=exe) as r:
        yield r


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_text_makes_no_request_and_renders_literally(renderer, case):
    text, markup = HOSTILE[case]
    served, blocked = len(renderer.served_requests), len(renderer.blocked_requests)
    block = TextBlock(text, (10, 10, 980, 180), "Book", 24)
    page = Image.new("RGB", (1000, 200), (255, 255, 255))
    out = renderer.render(page, [block])
    assert renderer.blocked_requests[blocked:] == []
    assert all(u.startswith(ORIGIN + "/") for u in renderer.served_requests[served:])
    # the document holds exactly the text, as text: no element was made from it
    dom = renderer.tab.evaluate(
        f"() => [document.querySelector('.t').textContent, "
        f"document.querySelectorAll('{ELEMENTS}').length, document.querySelectorAll('style').length]")
    assert dom == [text, 0, 2]  # the renderer's own two style sheets, nothing from the text
    assert out.tobytes() != page.tobytes()  # and it was drawn

    # control: delivered as markup, the same thing asks the network (and is blocked)
    url = f"{ORIGIN}/control.html"
    renderer._resources[url] = ("text/html", (markup or f"<body>{text}</body>").encode())
    try:
        renderer.tab.goto(url)
    finally:
        del renderer._resources[url]
    assert any(u.startswith(EVIL) for u in renderer.blocked_requests[blocked:]), renderer.blocked_requests


def test_limits_are_stated_and_enforced():
    """The manifest limits (page count, page size, text length) are in the README's manifest
    section, with the numbers the code enforces."""
    from steps.core import manifest
    from tests.helpers import ROOT

    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## The book manifest"):]
    section = section[:section.index("\n## ", 10)]
    assert manifest.MAX_PAGES == 99 and "at most 99 pages" in section
    assert manifest.MAX_SIDE_PX == 10_000 and "64–10000 px a side" in section
    assert manifest.MAX_PAGE_PIXELS == 50_000_000 and "50 million pixels" in section
    assert manifest.MAX_TEXT == 2_000 and "at most 2000 characters" in section
    assert manifest.MAX_TEXT_LAYERS == 20 and "at most 20 text layers" in section
    assert manifest.MAX_MANIFEST_BYTES == 1_000_000 and "1 MB" in section
