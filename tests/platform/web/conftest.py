"""Browser fixtures: Debian's chromium driven by Playwright for Python, against a real ``corral serve``
(in this process, embedded mode, keys required) on a free port.

The browser is never downloaded: Playwright launches ``/usr/bin/chromium`` (``CORRAL_TEST_CHROMIUM``
to use another). Without it, or without Playwright, the browser tests skip with the reason — unless
``CORRAL_REQUIRE_BROWSER=1`` (CI sets it), which makes that a failure. Every page's console errors and
uncaught exceptions fail the test. Screenshots go to ``CORRAL_TEST_SCREENSHOTS`` (default: a folder
under pytest's temporary directory).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import clear_caches
from tests.platform.conftest import serve_app

CHROMIUM = os.environ.get("CORRAL_TEST_CHROMIUM", "/usr/bin/chromium")


def _missing(reason: str) -> None:
    if os.environ.get("CORRAL_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{reason} (CORRAL_REQUIRE_BROWSER=1)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("playwright is not installed (the dev extra)")
    if not (Path(CHROMIUM).is_file() or shutil.which(CHROMIUM)):
        _missing(f"no chromium at {CHROMIUM}: `apt-get install -y chromium`")
    from corral.platform.web.assets import missing_assets

    if missing_assets():
        _missing(f"the dashboard's front-end files are not installed ({', '.join(missing_assets())}): "
                 "run `make install`")
    with sync_playwright() as p:
        # --no-sandbox: CI containers run as root, where chromium's sandbox cannot start.
        launched = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                     args=["--no-sandbox", "--disable-dev-shm-usage"])
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = os.environ.get("CORRAL_TEST_SCREENSHOTS")
    out = Path(folder) if folder else tmp_path_factory.getbasetemp() / "screenshots"
    out.mkdir(parents=True, exist_ok=True)
    return out


@pytest.fixture
def web_server(corral_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """``corral serve`` (embedded, keys required) on a free port; paths under the test folder may be
    ingested by admin keys."""
    monkeypatch.setenv("CORRAL_AUTH", "required")
    monkeypatch.setenv("CORRAL_INGEST_ALLOWED_ROOTS", json.dumps([str(tmp_path)]))
    monkeypatch.setenv("CORRAL_CHAT_MAX_NEW_TOKENS", "24")
    clear_caches()
    with serve_app() as url:
        yield url


@dataclass
class Tab:
    """A browser page with its console errors collected, and screenshots named by the story."""

    page: Any
    base: str
    shots: Path
    errors: list[str] = field(default_factory=list)
    allowed: list[str] = field(default_factory=list)  # console errors a story expects (e.g. a 401)
    failed: list[str] = field(default_factory=list)  # requests answered 4xx/5xx, to say which failed

    def go(self, path: str) -> Any:
        return self.page.goto(self.base + path)

    def shot(self, name: str) -> Path:
        width = self.page.viewport_size["width"]
        path = self.shots / f"{name}-{width}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path

    def unexpected_errors(self) -> list[str]:
        return [e for e in self.errors if not any(a in e for a in self.allowed)]


@pytest.fixture
def open_tab(browser: Any, web_server: str, shots: Path) -> Iterator[Callable[..., Tab]]:
    """Opens pages at a viewport width (1440 or 360 px); after the test, none may have logged an
    error to the console or thrown."""
    contexts: list[Any] = []
    tabs: list[Tab] = []

    def _open(width: int = 1440, height: int = 900) -> Tab:
        context = browser.new_context(viewport={"width": width, "height": height})
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(30_000)
        tab = Tab(page, web_server, shots)
        page.on("console", lambda msg: tab.errors.append(f"console: {msg.text}")
                if msg.type == "error" else None)
        page.on("pageerror", lambda exc: tab.errors.append(f"uncaught: {exc}"))
        page.on("response", lambda r: tab.failed.append(f"{r.status} {r.request.method} {r.url}")
                if r.status >= 400 else None)
        tabs.append(tab)
        return tab

    yield _open
    for context in contexts:
        context.close()
    problems = [e for tab in tabs for e in tab.unexpected_errors()]
    failed = [f for tab in tabs for f in tab.failed]
    assert not problems, ("the browser console reported errors:\n" + "\n".join(problems)
                          + "\nrequests that failed:\n" + "\n".join(failed))
