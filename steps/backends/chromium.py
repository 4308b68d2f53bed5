"""Headless Chromium driven through Playwright, behind a small synchronous façade.

The render step needs a handful of browser calls per page: load a document, evaluate a
function, screenshot a region, answer the page's requests. Playwright (its async API) runs on
an event loop in a daemon thread of the step; :class:`Browser` and :class:`Tab` hand each call
to that loop and wait for it with a deadline. So:

- :class:`Browser` returns at once: Playwright's driver and Chromium start (about 1–2 s) while
  the caller does other work (waits for the go-ahead, decodes its first page); the first call
  waits for them;
- every call has a deadline (Playwright has none for ``evaluate`` or protocol calls), and a
  browser that dies, or stops answering, raises :class:`BrowserError`, which the step reports
  as a transient failure, so the engines retry it;
- page scripts are off (``java_script_enabled=False``) while :meth:`Tab.evaluate` still runs
  our functions; every request of the page goes to ``on_request`` (answered from memory or
  blocked);
- the driver's temporary folder (Chromium's profile among it) is a folder of ours, removed
  on :meth:`Browser.close` even when Chromium or the driver crashed.

Screenshots go through a DevTools session of the page (``Page.captureScreenshot`` with
``optimizeForSpeed``: still lossless, about twice as fast as ``page.screenshot`` at print size).
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import errno
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Self

from steps.backends.browser import LAUNCH_ARGS, find_chromium
from steps.core.errors import SetupError, TransientError

CALL_TIMEOUT_S = 60.0
START_TIMEOUT_S = 60.0  # a loaded machine may take several seconds
CLOSE_TIMEOUT_S = 10.0
ERROR_PAGE_TIMEOUT_MS = 2000
NO_PLAYWRIGHT = ("Playwright is not installed: install bookjob's render extra "
                 "(pip install 'bookjob[render]').")

# A request the page makes -> (status, MIME type, body), or None to block it.
RequestHandler = Callable[[str], "tuple[int, str, bytes] | None"]

# The driver takes its environment (TMPDIR: where Chromium's profile goes) from os.environ
# when it starts; browsers starting in several threads take turns.
_ENVIRON = threading.Lock()


class BrowserError(TransientError):
    """Chromium failed, died or stopped answering."""


def _gone(error: Exception) -> bool:
    text = str(error)
    return (type(error).__name__ == "TargetClosedError" or "has been closed" in text
            or "connection closed" in text.lower())


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


class Browser:
    """One headless Chromium and its one tab. Use as a context manager."""

    def __init__(self, executable: str | None = None, on_request: RequestHandler | None = None,
                 timeout_s: float = CALL_TIMEOUT_S) -> None:
        executable = executable or find_chromium()
        if not Path(executable).is_file():
            raise FileNotFoundError(errno.ENOENT, "No Chromium executable", executable)
        try:
            from playwright.async_api import Error, async_playwright
        except ImportError:
            raise SetupError(NO_PLAYWRIGHT) from None
        self._error_type = Error
        self.timeout_s = timeout_s
        self.on_request = on_request
        self.tab = Tab(self)
        self._closed = False
        self._playwright = self._browser = self._page = self._cdp = None
        self._profile = tempfile.mkdtemp(prefix="bookjob-chromium-")
        self._loop = asyncio.new_event_loop()
        # a driver that died leaves futures nobody awaits: the calls report it, not asyncio
        self._loop.set_exception_handler(lambda loop, context: None)
        self._thread = threading.Thread(target=self._loop.run_forever, name="chromium", daemon=True)
        self._thread.start()
        self._started = asyncio.run_coroutine_threadsafe(
            self._start(async_playwright, executable), self._loop)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def _start(self, async_playwright, executable: str) -> None:
        with _ENVIRON:
            saved = os.environ.get("TMPDIR")
            os.environ["TMPDIR"] = self._profile
            try:
                self._playwright = await async_playwright().start()
            finally:
                if saved is None:
                    os.environ.pop("TMPDIR", None)
                else:
                    os.environ["TMPDIR"] = saved
        self._browser = await self._playwright.chromium.launch(
            executable_path=executable, args=LAUNCH_ARGS, timeout=self.timeout_s * 1000)
        context = await self._browser.new_context(java_script_enabled=False, device_scale_factor=1)
        await context.route("**/*", self._route)
        self._page = await context.new_page()
        self._page.set_default_timeout(self.timeout_s * 1000)
        self._cdp = await context.new_cdp_session(self._page)
        await self._cdp.send("Emulation.setDefaultBackgroundColorOverride",
                             {"color": {"r": 0, "g": 0, "b": 0, "a": 0}})

    async def _route(self, route) -> None:
        """Every request of the page: answered from memory, or blocked."""
        try:
            answer = self.on_request(route.request.url) if self.on_request else None
        except Exception:  # noqa: BLE001 - a request we cannot answer is blocked, never left hanging
            answer = None
        try:
            if answer is None:
                await route.abort("blockedbyclient")
            else:
                status, mime, body = answer
                await route.fulfill(status=status, headers={"Content-Type": mime}, body=body)
        except self._error_type:  # the page or the browser is gone: the waiting call says so
            pass

    def open_tab(self) -> Tab:
        """The one tab (JavaScript off, transparent background, every request to ``on_request``),
        once the browser is up."""
        self._wait_started()
        return self.tab

    def preload(self, url: str, size: tuple[int, int], function: str | None = None) -> None:
        """In the background, as soon as the browser is up: set the viewport to ``size``, load
        ``url``, evaluate ``function`` there and take a first (tiny) screenshot. Returns at
        once; the next call waits for it. Where it fails, the tab is left as it was, for the
        caller's own calls to redo (and report)."""
        before, tab = self._started, self.tab

        async def load() -> None:
            await asyncio.wrap_future(before)
            try:
                await asyncio.wait_for(self._preload(url, size, function), self.timeout_s)
            except (self._error_type, TimeoutError):
                return
            tab.viewport, tab.url = size, url

        self._started = asyncio.run_coroutine_threadsafe(load(), self._loop)

    async def _preload(self, url: str, size: tuple[int, int], function: str | None) -> None:
        await self._page.set_viewport_size({"width": size[0], "height": size[1]})
        await self._page.goto(url, wait_until="load")
        if function:
            await self._page.evaluate(function)
        await self._cdp.send("Page.captureScreenshot", {
            "format": "png", "clip": {"x": 0, "y": 0, "width": 1, "height": 1, "scale": 1}})

    def _wait_started(self) -> None:
        if self._closed:
            raise BrowserError("The browser was closed.")
        try:
            self._started.result(max(self.timeout_s, START_TIMEOUT_S))
        except concurrent.futures.TimeoutError:
            raise BrowserError(f"Chromium did not start within {max(self.timeout_s, START_TIMEOUT_S):g} s.") from None
        except self._error_type as e:
            raise BrowserError(f"Chromium did not start: {_first_line(e)}") from None

    def call(self, what: str, make: Callable[[], Any]) -> Any:
        """Run the coroutine ``make()`` on the browser's loop; its result within the deadline."""
        self._wait_started()
        future = asyncio.run_coroutine_threadsafe(make(), self._loop)
        try:
            return future.result(self.timeout_s)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise BrowserError(f"Chromium did not answer {what} within {self.timeout_s:g} s.") from None
        except self._error_type as e:
            if _gone(e):
                raise BrowserError(f"Chromium is gone ({_first_line(e)}); it may have crashed or "
                                   "run out of memory.") from None
            raise

    @property
    def pid(self) -> int | None:
        """Chromium's main process (found by its profile, which lies in our folder)."""
        for pid in descendants(os.getpid()):
            try:
                args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if (any(a.startswith(b"--user-data-dir=" + self._profile.encode()) for a in args)
                    and not any(a.startswith(b"--type=") for a in args)):
                return pid
        return None

    def close(self) -> None:
        """Close Chromium and the driver; kill them if they do not stop; remove the profile."""
        if self._closed:
            return
        self._closed = True
        try:
            self._started.result(CLOSE_TIMEOUT_S)  # a start under way finishes first
        except Exception:  # noqa: BLE001, S110 - closing anyway
            pass
        chromium = self.pid
        driver = _parent(chromium) if chromium else None

        async def stop() -> None:
            try:
                if self._browser is not None:
                    await self._browser.close()
            except self._error_type:
                pass
            if self._playwright is not None:
                await self._playwright.stop()

        try:
            asyncio.run_coroutine_threadsafe(stop(), self._loop).result(CLOSE_TIMEOUT_S)
        except Exception:  # noqa: BLE001 - a browser that will not stop is killed
            for pid in (chromium, driver):
                if pid:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except OSError:
                        pass
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(CLOSE_TIMEOUT_S)
        if not self._thread.is_alive():
            self._loop.close()
        shutil.rmtree(self._profile, ignore_errors=True)


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (Linux /proc)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        for task in Path(f"/proc/{current}/task").glob("*/children"):
            try:
                kids = [int(k) for k in task.read_text().split()]
            except OSError:
                continue
            found += kids
            todo += kids
    return found


def _parent(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


class Tab:
    """The browser's page: load documents, evaluate functions, take screenshots."""

    def __init__(self, browser: Browser) -> None:
        self.browser = browser
        self.url = "about:blank"
        self.viewport: tuple[int, int] | None = None

    def set_viewport(self, width: int, height: int) -> None:
        try:
            self.browser.call("set_viewport", lambda: self.browser._page.set_viewport_size(
                {"width": width, "height": height}))
        except self.browser._error_type as e:
            raise BrowserError(f"Chromium could not set its viewport: {_first_line(e)}") from None
        self.viewport = (width, height)

    def goto(self, url: str) -> None:
        """Load ``url`` and wait for its load event."""
        error_type = self.browser._error_type

        async def load() -> None:
            page = self.browser._page
            try:
                await page.goto(url, wait_until="load")
            except error_type as e:
                if not _gone(e):  # Chromium's error page comes next: the next load must not meet it
                    try:
                        await page.wait_for_url("chrome-error://**", timeout=ERROR_PAGE_TIMEOUT_MS)
                    except error_type:
                        pass
                raise

        try:
            self.browser.call("goto", load)
        except error_type as e:
            raise BrowserError(f"Chromium could not load {url}: {_first_line(e)}") from None
        self.url = url

    def evaluate(self, function: str, arg: Any = None) -> Any:
        """Call the JavaScript ``function`` with ``arg`` (JSON) in the page; its awaited value.

        This runs through the protocol, not as a page script, so it works with scripts off.
        Never wait on timers or animation frames in ``function``: with scripts off they never fire.
        """
        try:
            return self.browser.call("evaluate", lambda: self.browser._page.evaluate(function, arg))
        except self.browser._error_type as e:
            message = _first_line(e).removeprefix("Page.evaluate: ")
            raise BrowserError(f"JavaScript failed in the page: {message}") from None

    def screenshot(self, clip: tuple[int, int, int, int]) -> bytes:
        """PNG of the region (x, y, width, height), transparent where nothing is drawn."""
        x, y, width, height = clip
        params = {"format": "png", "clip": {"x": x, "y": y, "width": width, "height": height, "scale": 1},
                  "optimizeForSpeed": True}  # still lossless: faster zlib settings, larger PNG
        try:
            result = self.browser.call("screenshot", lambda: self.browser._cdp.send("Page.captureScreenshot", params))
        except self.browser._error_type as e:
            raise BrowserError(f"Chromium could not take a screenshot: {_first_line(e)}") from None
        return base64.b64decode(result["data"])
