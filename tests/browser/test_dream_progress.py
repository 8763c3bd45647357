"""The playground's dream, streamed: a progress bar, the picture as it evolves, and Cancel, which
closes the connection and so stops the dream on the server (its log says so), in Debian's
chromium against a real gunicorn whose limits allow a dream long enough to watch."""
from __future__ import annotations

import re

import pytest

from tests.browser.conftest import ARTIFACTS, open_page
from tests.browser.test_playground import deep_dream_on_a_seven, dream_done, image_loaded
from tests.service.conftest import gunicorn_env, serving, wait_for

STOPPED = re.compile(r"dream stopped after (\d+) of 1000 steps: the client went away")


@pytest.fixture
def long_dreams(tmp_path):
    """A gunicorn allowing 1,000-step dreams (about half a minute at the drawing's size); its log."""
    log = tmp_path / "gunicorn.log"
    env = gunicorn_env(CNNLENS_MAX_DREAM_STEPS="1000", CNNLENS_MAX_DREAM_WORK="1000000000",
                       CNNLENS_DREAM_TIME_BUDGET="300", CNNLENS_TIMEOUT="320")
    with serving(env, log) as (_, base):
        yield base, log


def test_a_dream_shows_its_progress_and_cancel_stops_it(browser, console, long_dreams):
    base, log = long_dreams
    ARTIFACTS.mkdir(exist_ok=True)
    context, page = open_page(browser, base, console, "dream_progress",
                              viewport={"width": 1280, "height": 900})
    try:
        deep_dream_on_a_seven(page, steps="1000")

        assert page.is_visible("#dream-progress") and page.is_visible("#dream-cancel")
        assert page.is_disabled("#dream")
        page.wait_for_function("() => document.getElementById('dream-progress').value >= 2",
                               timeout=30_000)
        assert page.get_attribute("#dream-progress", "max") == "1000"
        assert page.inner_text("#dream-status").startswith("Octave 1 of 1, step ")
        image_loaded(page, "#dream-after")            # the first preview
        first = page.get_attribute("#dream-after", "src")
        assert first.startswith("data:image/png;base64,")
        assert page.inner_text("#dream-after-caption") == "so far"
        page.wait_for_function("(old) => document.getElementById('dream-after').src !== old",
                               arg=first, timeout=30_000)   # the picture evolves
        assert page.is_hidden("#dream-download")      # no download before the result
        page.screenshot(path=ARTIFACTS / "dream_progress_running.png", full_page=True)

        page.click("#dream-cancel")
        page.wait_for_function("() => document.getElementById('dream-status').textContent"
                               ".startsWith('Cancelled after ')", timeout=10_000)
        assert page.is_enabled("#dream") and page.is_hidden("#dream-cancel")
        assert page.is_hidden("#dream-progress")
        assert wait_for(lambda: STOPPED.search(log.read_text()), seconds=15), log.read_text()
        assert int(STOPPED.search(log.read_text()).group(1)) < 1000

        # The slot is free again: a short dream runs to its result.
        page.fill("#dream-steps", "8")
        page.click("#dream")
        dream_done(page)
        assert page.inner_text("#dream-status").endswith("in 8 steps")
        assert page.inner_text("#dream-after-caption") == "after"
        page.screenshot(path=page.artifact, full_page=True)
    finally:
        context.close()
    assert console.unexpected() == []
