"""Which Chromium the render step drives, and the switches it starts with.

Lookup order: ``$BOOKJOB_CHROMIUM`` (``settings().chromium``), then the browser
``playwright install chromium`` put in Playwright's cache, then a ``chromium`` on the PATH
(Debian's package; the CPU image's). No Chromium at all is a :class:`SetupError` saying what
to install.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from steps.core.errors import SetupError
from steps.core.settings import settings

# What this workplace's machines and pods need, then what keeps a headless browser quiet,
# deterministic (sRGB screenshots) and free of background work. Playwright adds its own
# automation switches (and --headless) on top.
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--no-first-run",
               # pods get a 64 MiB /dev/shm, too small for print-size pages
               "--disable-dev-shm-usage",
               "--hide-scrollbars", "--mute-audio", "--force-color-profile=srgb",
               "--disable-extensions", "--disable-default-apps", "--disable-breakpad",
               "--disable-sync", "--no-default-browser-check", "--no-service-autorun",
               "--password-store=basic", "--use-mock-keychain", "--metrics-recording-only",
               "--disable-features=Translate,MediaRouter,OptimizationHints,AutofillServerCommunication"]
NO_CHROMIUM = ("No Chromium found: install Debian's 'chromium' package or set BOOKJOB_CHROMIUM "
               "to a Chromium executable.")


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
