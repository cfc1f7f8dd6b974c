"""Debian's chromium driven by Playwright, for the dashboard's browser tests and its page-load benchmark.

Playwright's own browser downloads need the internet; this uses the system's ``/usr/bin/chromium`` (package
``chromium``) instead, with the flags that keep it from calling out (no background networking, no component
updates) so that it starts quickly on a closed network.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]


def chromium_path() -> Path | None:
    """The system chromium (GANZHI_CHROMIUM overrides), or None when it is not installed."""
    configured = os.environ.get("GANZHI_CHROMIUM")
    found = configured or shutil.which("chromium") or shutil.which("chromium-browser")
    return Path(found) if found else None


def launch(playwright, path: Path):
    """A headless chromium browser (Playwright's sync API)."""
    return playwright.chromium.launch(executable_path=str(path), headless=True, args=CHROMIUM_ARGS)
