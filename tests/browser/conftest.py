"""Playwright driving the system's Chromium against the portal on a live server.

Without /usr/bin/chromium (``apt-get install -y chromium``) every browser test is skipped, with
a warning that says so, unless ``REQUIRE_BROWSER_TESTS`` is set (as ``.ci/run`` does): then
they fail, so that CI never passes without them. Browsers are never downloaded. Screenshots
go to a temporary folder, or to ``$SCREENSHOTS_DIR`` when set
(``SCREENSHOTS_DIR=docs/screenshots`` refreshes the committed set).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support.queue import Task

CHROMIUM = Path("/usr/bin/chromium")
MISSING = (
    f"BROWSER TESTS SKIPPED: {CHROMIUM} not found. Install it with `apt-get install -y chromium` "
    "to run the staff portal in a real browser."
)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        if os.environ.get("REQUIRE_BROWSER_TESTS"):
            pytest.fail(f"REQUIRE_BROWSER_TESTS is set, but {CHROMIUM} was not found.")
        warnings.warn(MISSING, stacklevel=1)
        pytest.skip(MISSING)
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop running in this thread; the test's own ORM
    # calls are still synchronous.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            yield chromium
        finally:
            chromium.close()


@dataclass
class ConsoleLog:
    """JavaScript errors of every page a test opened: console errors and uncaught exceptions."""

    errors: list[str] = field(default_factory=list)


@pytest.fixture
def console() -> ConsoleLog:
    return ConsoleLog()


@pytest.fixture
def page(browser: Any, console: ConsoleLog) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1680, "height": 1000}, device_scale_factor=1)
    tab = context.new_page()
    tab.on(
        "console", lambda msg: console.errors.append(f"console: {msg.text}") if msg.type == "error" else None
    )
    tab.on("pageerror", lambda exc: console.errors.append(f"pageerror: {exc}"))
    try:
        yield tab
    finally:
        context.close()
    assert console.errors == [], console.errors


@pytest.fixture
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = os.environ.get("SCREENSHOTS_DIR")
    folder = Path(target) if target else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(autouse=True)
def _browser_settings(settings: Any, enqueued: list[Task]) -> list[Task]:
    """Fast password hashing; tasks are recorded (``enqueued``), never sent."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    return enqueued
