"""steps.backends.chromium against a real headless Chromium driven by Playwright: requests
answered or blocked, deadlines, a dying browser, and cleaning up after itself.

Playwright's ``page.evaluate`` and CDP calls have no timeout of their own (playwright-python
``_impl/_page.py``, v1.65: ``evaluate`` takes no ``timeout``), hence the façade's deadlines.
"""

from __future__ import annotations

import os
import signal
from io import BytesIO
from pathlib import Path

import pytest
from PIL import Image

from steps.backends.browser import find_chromium
from steps.backends.chromium import Browser, BrowserError


@pytest.fixture
def chromium() -> str:
    try:
        return find_chromium()
    except RuntimeError as err:
        pytest.fail(f"The browser tests need a real Chromium. {err}")


def test_a_tab_evaluates_loads_and_screenshots(chromium):
    pages = {"https://book.invalid/a.html": (200, "text/html", b"<body style='margin:0'>"
                                            b"<div style='width:30px;height:20px;background:#f00'></div>")}
    asked: list[str] = []

    def answer(url: str):
        asked.append(url)
        return pages.get(url)

    with Browser(chromium, on_request=answer) as browser:
        tab = browser.open_tab()
        assert tab.evaluate("(x) => x.a * 6", {"a": 7}) == 42
        assert tab.evaluate("async () => 'later'") == "later"
        tab.set_viewport(60, 40)
        tab.goto("https://book.invalid/a.html")
        assert tab.url == "https://book.invalid/a.html"
        with pytest.raises(BrowserError, match="could not load"):
            tab.goto("https://elsewhere.invalid/b.html")  # not answered: blocked
        assert asked == ["https://book.invalid/a.html", "https://elsewhere.invalid/b.html"]
        tab.goto("https://book.invalid/a.html")
        shot = Image.open(BytesIO(tab.screenshot((0, 0, 60, 40)))).convert("RGBA")
        assert shot.size == (60, 40)
        assert shot.getpixel((10, 10)) == (255, 0, 0, 255)
        assert shot.getpixel((50, 30))[3] == 0  # transparent where nothing is drawn
        with pytest.raises(BrowserError, match="JavaScript failed.*boom"):
            tab.evaluate("() => { throw new Error('boom') }")


def test_a_browser_that_stops_answering_hits_the_deadline(chromium):
    with Browser(chromium, timeout_s=1.5) as browser:
        tab = browser.open_tab()
        with pytest.raises(BrowserError, match="did not answer evaluate within 1.5 s"):
            tab.evaluate("() => new Promise(() => {})")


def test_a_browser_that_dies_is_an_error_not_a_hang(chromium):
    browser = Browser(chromium)
    try:
        browser.open_tab()
        os.kill(browser.pid, signal.SIGKILL)
        with pytest.raises(BrowserError, match="Chromium exited|Chromium is gone"):
            browser.tab.evaluate("() => 1")
    finally:
        browser.close()


def test_closing_stops_the_browser_and_removes_its_profile(chromium):
    browser = Browser(chromium)
    browser.open_tab()
    profile, pid = Path(browser._profile), browser.pid
    assert profile.is_dir() and pid is not None
    browser.close()
    assert not Path(f"/proc/{pid}").exists() and not profile.exists()
    browser.close()  # twice is harmless


def test_a_missing_executable_fails_at_once(tmp_path, monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where the profile would go
    with pytest.raises(OSError):
        Browser(str(tmp_path / "no-chromium"))
    assert not list(tmp_path.glob("bookjob-chromium-*"))
