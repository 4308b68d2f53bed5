"""Headless Chromium driven over the DevTools protocol on a pipe.

The render step needs a handful of browser calls per page: load a document, evaluate a
function, screenshot a region, answer the page's requests. It speaks the Chrome DevTools
Protocol (CDP) to Chromium directly, over the pipe Chromium opens with
``--remote-debugging-pipe`` (fd 3 in, fd 4 out, messages are JSON ending in a NUL byte) — the
same transport Playwright uses under its Node.js driver. Without the driver a browser is ready
in about a third of the time (see README, "Speed"), which a render step pays on every run.

:class:`Browser` launches Chromium (returning at once; the first call waits for it) and opens
one :class:`Tab`. Every call has a deadline; a browser that dies or stops answering raises
:class:`BrowserError`, which the step reports as a crash, so the engines retry it.
"""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from steps.core.errors import SetupError, TransientError
from steps.core.settings import settings

# What this workplace's machines and pods need, then what keeps a headless browser quiet,
# deterministic (sRGB screenshots) and free of background work.
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--no-first-run",
               # pods get a 64 MiB /dev/shm, too small for print-size pages
               "--disable-dev-shm-usage",
               "--headless", "--hide-scrollbars", "--mute-audio", "--force-color-profile=srgb",
               "--disable-extensions", "--disable-default-apps", "--disable-breakpad",
               "--disable-sync", "--no-default-browser-check", "--no-service-autorun",
               "--password-store=basic", "--use-mock-keychain", "--metrics-recording-only",
               "--disable-features=Translate,MediaRouter,OptimizationHints,AutofillServerCommunication"]
NO_CHROMIUM = ("No Chromium found: install Debian's 'chromium' package or set BOOKJOB_CHROMIUM "
               "to a Chromium executable.")
CALL_TIMEOUT_S = 60.0

# A request the page makes -> (status, MIME type, body), or None to block it.
RequestHandler = Callable[[str], "tuple[int, str, bytes] | None"]


class BrowserError(TransientError):
    """Chromium failed, died or stopped answering."""


def _playwright_chromium() -> str | None:
    """The browser `playwright install chromium` put in Playwright's cache, if any (Linux, macOS)."""
    base = os.environ.get("PLAYWRIGHT_BROWSERS_PATH", "")
    if not base or base == "0":
        cache = Path.home() / "Library" / "Caches" if sys.platform == "darwin" else Path.home() / ".cache"
        base = str(Path(os.environ.get("XDG_CACHE_HOME", cache)) / "ms-playwright")
    patterns = ["chromium-*/chrome-linux*/chrome",
                "chromium-*/chrome-mac*/Chromium.app/Contents/MacOS/Chromium",
                "chromium-*/chrome-mac*/Google Chrome for Testing.app/Contents/MacOS/Google Chrome for Testing"]
    found = sorted(p for pattern in patterns for p in Path(base).glob(pattern) if p.is_file())
    return str(found[-1]) if found else None


def find_chromium() -> str:
    """The Chromium to launch: $BOOKJOB_CHROMIUM, else Playwright's own if one is installed,
    else the system's."""
    env = settings().chromium
    if env:
        if not Path(env).is_file():
            raise SetupError(f"BOOKJOB_CHROMIUM is set to {env!r}, but no such file exists; "
                             "point it at a Chromium executable or unset it.")
        return env
    found = _playwright_chromium()
    if found:
        return found
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    raise SetupError(NO_CHROMIUM)


class Browser:
    """One headless Chromium and its one tab. Use as a context manager."""

    def __init__(self, executable: str | None = None, on_request: RequestHandler | None = None,
                 timeout_s: float = CALL_TIMEOUT_S) -> None:
        self.timeout_s = timeout_s
        self.on_request = on_request
        self._profile = tempfile.mkdtemp(prefix="bookjob-chromium-")
        to_browser_r, self._out = os.pipe()
        self._in, from_browser_w = os.pipe()
        try:
            self._process = subprocess.Popen(
                [executable or find_chromium(), *LAUNCH_ARGS, "--remote-debugging-pipe",
                 f"--user-data-dir={self._profile}", "about:blank"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                # Python's own descriptors are not inheritable: only fd 3 and 4 reach Chromium.
                close_fds=False, preexec_fn=lambda: _pipe_fds(to_browser_r, from_browser_w))
        except BaseException:
            for fd in (self._out, self._in):
                os.close(fd)
            shutil.rmtree(self._profile, ignore_errors=True)
            raise
        finally:
            os.close(to_browser_r)
            os.close(from_browser_w)
        self._buffer = b""
        self._next_id = 0
        self._events: list[dict] = []
        self.tab: Tab | None = None

    def __enter__(self) -> "Browser":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open_tab(self) -> "Tab":
        """The one tab: JavaScript off, transparent background, every request to ``on_request``."""
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        self.tab = Tab(self, session)
        self.tab.setup()
        return self.tab

    # ---- the protocol --------------------------------------------------------------------

    def send(self, method: str, params: dict | None = None, session: str | None = None) -> int:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        data = json.dumps(message).encode() + b"\0"
        try:
            while data:
                data = data[os.write(self._out, data):]
        except OSError as e:
            raise BrowserError(f"Chromium is gone ({e.strerror}); it may have crashed.") from None
        return self._next_id

    def call(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        """Send one command and wait for its answer, serving requests meanwhile."""
        wanted = self.send(method, params, session)
        deadline = time.monotonic() + self.timeout_s
        while True:
            message = self._receive(deadline, method)
            if message.get("id") == wanted:
                if "error" in message:
                    raise BrowserError(f"Chromium refused {method}: {message['error'].get('message')}")
                return message.get("result", {})
            if "method" in message:
                self._event(message)

    def wait_for(self, event: str, session: str | None = None) -> dict:
        """Wait for the next ``event`` (of ``session``), serving requests meanwhile."""
        deadline = time.monotonic() + self.timeout_s
        while True:
            for i, message in enumerate(self._events):
                if message["method"] == event and message.get("sessionId") == session:
                    del self._events[: i + 1]
                    return message.get("params", {})
            message = self._receive(deadline, event)
            if "method" in message:
                self._event(message)

    def _event(self, message: dict) -> None:
        if message["method"] != "Fetch.requestPaused":
            self._events.append(message)
            del self._events[:-100]  # only recent events are ever waited for
            return
        params, session = message["params"], message.get("sessionId")
        url = params["request"]["url"]
        # The tab's icon is the browser's own request, not the page's (Playwright drops it too).
        answer = None if url.endswith("/favicon.ico") or not self.on_request else self.on_request(url)
        if answer is None:
            self.send("Fetch.failRequest", {"requestId": params["requestId"],
                                            "errorReason": "BlockedByClient"}, session)
        else:
            status, mime, body = answer
            self.send("Fetch.fulfillRequest", {
                "requestId": params["requestId"], "responseCode": status,
                "responseHeaders": [{"name": "Content-Type", "value": mime}],
                "body": base64.b64encode(body).decode()}, session)

    def _receive(self, deadline: float, waiting_for: str) -> dict:
        """The next message; a screenshot's arrives in many reads, joined once at its end."""
        parts = [self._buffer]
        while b"\0" not in parts[-1]:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._in], [], [], left)[0]:
                self._buffer = b"".join(parts)
                raise BrowserError(f"Chromium did not answer {waiting_for} within {self.timeout_s:g} s.")
            chunk = os.read(self._in, 1 << 20)
            if not chunk:
                raise BrowserError(f"Chromium exited (code {self._process.poll()}) while we waited "
                                   f"for {waiting_for}; it may have run out of memory.")
            parts.append(chunk)
        message, self._buffer = b"".join(parts).split(b"\0", 1)
        return json.loads(message)

    def close(self) -> None:
        """Stop Chromium (SIGTERM: ~30 ms, a third of what Browser.close takes; nothing in its
        throwaway profile needs saving), kill it if it does not stop, remove the profile."""
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        for fd in (self._out, self._in):
            try:
                os.close(fd)
            except OSError:
                pass
        self._out = self._in = -1
        shutil.rmtree(self._profile, ignore_errors=True)


def _pipe_fds(to_browser: int, from_browser: int) -> None:
    """In the child, before exec: the pipe ends where Chromium expects them (fd 3 and 4)."""
    a, b = os.dup(to_browser), os.dup(from_browser)
    os.dup2(a, 3)
    os.dup2(b, 4)


class Tab:
    """A page of the browser: load documents, evaluate functions, take screenshots."""

    def __init__(self, browser: Browser, session: str) -> None:
        self.browser = browser
        self.session = session
        self.url = "about:blank"

    def call(self, method: str, params: dict | None = None) -> dict:
        return self.browser.call(method, params, self.session)

    def setup(self) -> None:
        for method, params in (
                ("Page.enable", {}),
                ("Emulation.setScriptExecutionDisabled", {"value": True}),
                ("Emulation.setDefaultBackgroundColorOverride", {"color": {"r": 0, "g": 0, "b": 0, "a": 0}}),
                ("Fetch.enable", {"patterns": [{"urlPattern": "*"}]})):
            self.call(method, params)

    def set_viewport(self, width: int, height: int) -> None:
        self.call("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})

    def goto(self, url: str) -> None:
        """Load ``url`` and wait for its load event."""
        result = self.call("Page.navigate", {"url": url})
        if result.get("errorText"):
            raise BrowserError(f"Chromium could not load {url}: {result['errorText']}")
        self.browser.wait_for("Page.loadEventFired", self.session)
        self.url = url

    def evaluate(self, function: str, arg: Any = None) -> Any:
        """Call the JavaScript ``function`` with ``arg`` (JSON) in the page; its awaited value.

        This runs through the protocol, not as a page script, so it works with scripts off.
        """
        result = self.call("Runtime.evaluate", {
            "expression": f"({function})({json.dumps(arg)})", "awaitPromise": True,
            "returnByValue": True})
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            raise BrowserError("JavaScript failed in the page: "
                               + details.get("exception", {}).get("description", details.get("text", "")))
        return result["result"].get("value")

    def screenshot(self, clip: tuple[int, int, int, int]) -> bytes:
        """PNG of the region (x, y, width, height), transparent where nothing is drawn."""
        x, y, width, height = clip
        result = self.call("Page.captureScreenshot", {
            "format": "png", "clip": {"x": x, "y": y, "width": width, "height": height, "scale": 1},
            "optimizeForSpeed": True})  # still lossless: faster zlib settings, larger PNG
        return base64.b64decode(result["data"])
