"""Headless Chromium for the tests that look at pages as a person would: Debian's ``chromium``
driven by playwright (its Python package only: playwright's own browser download is never
used). Where either is missing the tests skip, unless ``CLIPBERT_REQUIRE_BROWSER=1`` (set by
``.ci/run``, which installs both) makes that a failure."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM_CANDIDATES = ("chromium", "chromium-browser", "google-chrome")
# Chromium's own background traffic (updates, sync, Google lookups) is refused on a closed
# network, many connections at a time; these flags keep it quiet.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
SCREENSHOTS = Path(os.environ.get("CLIPBERT_SCREENSHOTS", "outputs/screenshots"))


def chromium_path() -> str | None:
    explicit = os.environ.get("CLIPBERT_CHROMIUM")
    if explicit:
        return explicit
    return next(filter(None, map(shutil.which, CHROMIUM_CANDIDATES)), None)


def unavailable(reason: str) -> None:
    """Skip, or fail where the browser is required (CI)."""
    if os.environ.get("CLIPBERT_REQUIRE_BROWSER") == "1":
        pytest.fail(f"CLIPBERT_REQUIRE_BROWSER=1 but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    """A headless Chromium for the session (playwright's sync API)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("playwright is not installed (pip install -e '.[dev]')")
    executable = chromium_path()
    if executable is None:
        unavailable("no Chromium on PATH (apt-get install chromium)")
    with sync_playwright() as driver:
        launched = driver.chromium.launch(
            executable_path=executable, headless=True, args=CHROMIUM_ARGS
        )
        yield launched
        launched.close()


@pytest.fixture
def page(browser) -> Iterator[object]:
    """A fresh page; console errors of the page are collected in ``page.errors``."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    opened = context.new_page()
    opened.errors = []
    opened.on("pageerror", lambda error: opened.errors.append(str(error)))
    yield opened
    context.close()


def screenshot(page, name: str) -> Path:
    """Save a full-page screenshot under ``SCREENSHOTS`` (CI keeps them) and return its path."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 1000, f"{path} is empty"
    return path
