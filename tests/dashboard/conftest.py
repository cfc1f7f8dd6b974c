"""The dashboard in a real browser: Debian's chromium (package ``chromium``, installed by scripts/test when
missing) driven by Playwright, against the API served by the session's uvicorn on real PostgreSQL."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from ganzhi.browser import chromium_path, launch


@pytest.fixture(scope="module")
def browser(api_url: str):
    """Module-scoped, and after the API: while Playwright's sync API runs, its event loop is the thread's, so
    nothing else may call asyncio.run (the session's broker fixtures do) until it is closed."""
    from playwright.sync_api import sync_playwright

    path = chromium_path()
    if path is None:
        pytest.exit("chromium is not installed; scripts/test installs it (apt-get install chromium)", returncode=3)
    with sync_playwright() as playwright:
        browser = launch(playwright, path)
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def artefacts(tmp_path_factory) -> Path:
    """Where screenshots go: GANZHI_TEST_ARTEFACTS, else a temporary directory (printed in the test's output)."""
    configured = os.environ.get("GANZHI_TEST_ARTEFACTS")
    directory = Path(configured) / "dashboard" if configured else tmp_path_factory.mktemp("dashboard-screens")
    directory.mkdir(parents=True, exist_ok=True)
    return directory


@pytest.fixture
def contexts(browser) -> Iterator[list]:
    """Browser contexts made by the test (``contexts.append``), closed after it."""
    made: list = []
    yield made
    for context in made:
        context.close()
