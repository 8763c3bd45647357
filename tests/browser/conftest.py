"""Fixtures for the end-to-end tests of the web playground: Debian's chromium (never a download)
driven by Playwright, against the same real gunicorn as tests/service.

Without /usr/bin/chromium the tests skip, unless CI is set: CI installs it
(`apt-get install -y chromium`), so there a missing browser is a failure.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

# The service fixtures, reused: the app (to see which routes exist), the real gunicorn, MNIST.
from tests.service.conftest import app, digits, server, settings  # noqa: F401

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "test-artifacts"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="session")
def browser():
    if not CHROMIUM.exists():
        reason = f"{CHROMIUM} is missing; install Debian's chromium (apt-get install -y chromium)"
        if os.environ.get("CI"):
            pytest.fail(reason + " (CI is set: CI installs it, so this is a failure)")
        pytest.skip(reason)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield launched
        launched.close()


class Console:
    """Console errors and uncaught exceptions of a page. An HTTP error answer is logged by the
    browser itself ("Failed to load resource ... 422"): a test that provokes one allows it."""

    def __init__(self):
        self.errors: list[str] = []
        self.allowed: list[re.Pattern] = []

    def allow(self, pattern: str) -> None:
        self.allowed.append(re.compile(pattern))

    def unexpected(self) -> list[str]:
        return [e for e in self.errors if not any(p.search(e) for p in self.allowed)]


@pytest.fixture
def console() -> Console:
    return Console()


def open_page(browser, base: str, console: Console, name: str, **context_options):
    context = browser.new_context(**context_options)
    page = context.new_page()
    page.on("console", lambda message: message.type == "error" and console.errors.append(
        f"{message.text} ({message.location.get('url')})"))
    page.on("pageerror", lambda error: console.errors.append(f"uncaught: {error}"))
    page.main_response = page.goto(base + "/")
    page.wait_for_selector("body[data-ready=true]")
    page.artifact = ARTIFACTS / f"{name}.png"
    return context, page


@pytest.fixture
def page(browser, server, console, request):
    """The playground, loaded, on a desktop-sized screen; a screenshot is saved after the test
    and the test fails on any console error it did not allow."""
    ARTIFACTS.mkdir(exist_ok=True)
    context, page = open_page(browser, server.base, console, request.node.name,
                              viewport={"width": 1280, "height": 900})
    yield page
    page.screenshot(path=page.artifact, full_page=True)
    context.close()
    assert console.unexpected() == []
