"""Browser fixtures: Debian's chromium driven by Playwright against a real uvicorn process, a guard
that records every request leaving the server's origin, and a folder for screenshots."""

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, expect, sync_playwright

from tests.conftest import REPO, LiveServer

CHROMIUM = Path(os.environ.get("LANDMARKS_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Screenshots and other artefacts of the browser tests (git-ignored); docs/page.png is one of them.
ARTIFACTS = Path(os.environ.get("LANDMARKS_TEST_ARTIFACTS", REPO / "test-artifacts")) / "web"
# Inference shares two cores with everything else on CI: allow for a slow answer.
expect.set_options(timeout=60_000)


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="session")
def browser(playwright: Playwright) -> Iterator[Browser]:
    if not CHROMIUM.is_file():
        pytest.fail(
            f"no chromium at {CHROMIUM}: install Debian's package (apt-get install -y chromium) "
            "or point LANDMARKS_CHROMIUM at a Chromium binary",
            pytrace=False,
        )
    browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
    yield browser
    browser.close()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@dataclass
class OriginGuard:
    """Every request a page makes, and those that leave ``origin`` (blocked, so none gets out)."""

    origin: str
    requests: list[str] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)

    def watch(self, context: BrowserContext) -> None:
        context.on("request", lambda request: self.requests.append(request.url))
        context.route("**/*", self._route)

    def _route(self, route) -> None:
        url = route.request.url
        parts = urlsplit(url)
        if f"{parts.scheme}://{parts.netloc}" == self.origin or parts.scheme in ("data", "blob"):
            route.continue_()
        else:
            self.foreign.append(url)
            route.abort()


@dataclass
class BrowserTab:
    page: Page
    guard: OriginGuard
    console: list[str]


def open_tab(browser: Browser, server: LiveServer, **context_options) -> tuple[BrowserContext, BrowserTab]:
    context = browser.new_context(base_url=server.url, accept_downloads=True, **context_options)
    guard = OriginGuard(server.url)
    guard.watch(context)
    page = context.new_page()
    console: list[str] = []
    page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
    page.on("pageerror", lambda error: console.append(f"pageerror: {error}"))
    return context, BrowserTab(page, guard, console)


@pytest.fixture
def tab(browser: Browser, live_server: LiveServer) -> Iterator[BrowserTab]:
    """A fresh desktop-sized tab (its own context: storage, cookies) on the live service."""
    context, opened = open_tab(browser, live_server, viewport={"width": 1280, "height": 900})
    yield opened
    context.close()


@pytest.fixture
def phone_tab(browser: Browser, live_server: LiveServer) -> Iterator[BrowserTab]:
    """A phone-sized tab: 390x844 CSS pixels, touch, mobile viewport handling."""
    context, opened = open_tab(
        browser,
        live_server,
        viewport={"width": 390, "height": 844},
        device_scale_factor=2,
        is_mobile=True,
        has_touch=True,
    )
    yield opened
    context.close()
