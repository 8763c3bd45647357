"""The unit page of the playground, in headless chromium against the real gunicorn: opened from
an activation bar, an atlas tile and the keyboard, it shows what the API says about the unit
(picture, dataset examples, fire rate, fidelity, conv1's raw kernel, a dense neuron's classes),
dead units are marked as dead, and a bundle built before dataset examples says what it lacks."""
from __future__ import annotations

import re

from tests.browser.conftest import ARTIFACTS, open_page
from tests.browser.test_playground import SEVEN, draw, expect_prediction, image_loaded
from tests.service.conftest import gunicorn_env, serving
from tests.service.http import Client
from tests.service.reference import MODEL_DIR
from tests.service.test_filters import old_bundle


def _unit(server, layer: str, k: int) -> dict:
    return server.get(f"/filters/{layer}/{k}/examples").json()


def _listing(server, layer: str) -> list[dict]:
    return server.get(f"/filters/{layer}").json()["filters"]


def _open_from_bar(page, layer: str, k: int) -> None:
    page.get_by_role("button", name=re.compile(rf"^{layer} filter {k}\b")).click()
    page.wait_for_function("(name) => document.getElementById('inspector-heading').textContent"
                           ".startsWith(name)", arg=f"{layer} ", timeout=10_000)


def _examples_shown(page, server, layer: str, k: int) -> dict:
    """Waits for the sprite; returns the unit's JSON after checking the page shows its numbers."""
    unit = _unit(server, layer, k)
    image_loaded(page, "#examples-image")
    assert page.get_attribute("#examples-image", "src").endswith(f"/filters/{layer}/{k}/examples")
    sprite = server.get(f"/filters/{layer}/{k}/examples", headers={"Accept": "image/png"}).body
    width = int.from_bytes(sprite[16:20], "big")          # the PNG's IHDR width
    assert page.evaluate("() => document.getElementById('examples-image').naturalWidth") == width
    labels = page.locator("#examples-caption .examples li").all_inner_texts()
    assert labels == [f"{e['label']} · {e['degree']:.2f}" for e in unit["examples"]]
    facts = page.inner_text("#unit-facts")
    assert f"of the {unit['digits']['count']} training digits" in facts
    if unit["fidelity"]:
        assert f"({unit['best_degree']:.2f})" in facts
    return unit


def test_a_bar_opens_the_unit_page_with_its_dataset_examples(page, server):
    k = next(k for k, entry in enumerate(_listing(server, "conv2"))
             if not entry["dead"] and entry["fidelity"])
    draw(page, *SEVEN)
    expect_prediction(page, "7")
    _open_from_bar(page, "conv2", k)
    assert page.inner_text("#inspector-heading") == f"conv2 filter {k}"
    image_loaded(page, "#filter-image")
    assert f"/filters/conv2/{k}" in page.get_attribute("#filter-image", "src")
    _examples_shown(page, server, "conv2", k)
    assert "receptive field" in page.inner_text("#examples-caption")
    assert page.locator("#unit-dead").is_hidden() and page.locator("#unit-missing").is_hidden()
    assert page.locator("#unit-weights").is_hidden() and page.locator("#unit-pushes").is_hidden()


def test_an_atlas_tile_of_conv1_shows_its_raw_kernel(page, server):
    page.select_option("#atlas-layer", "conv1")
    page.locator("#atlas").get_by_role("button", name="conv1 filter 5", exact=True).click()
    unit = _examples_shown(page, server, "conv1", 5)
    cells = page.locator("#weights-grid .kernel span").all_inner_texts()
    assert cells == [f"{w:.2f}" for row in unit["weights"][0] for w in row]
    # The shading is the weight's sign: the largest weight is the lightest cell, the smallest the
    # darkest (a weight within a shade of it may share its cell's shade: 8-bit colours).
    shades = page.evaluate("() => [...document.querySelectorAll('#weights-grid span')]"
                           ".map(s => Number(getComputedStyle(s).backgroundColor.match(/\\d+/)[0]))")
    flat = [w for row in unit["weights"][0] for w in row]
    assert shades[flat.index(max(flat))] == max(shades)
    assert shades[flat.index(min(flat))] == min(shades)
    assert shades[flat.index(max(flat))] > shades[flat.index(min(flat))]


def test_a_dense_neurons_page_shows_the_classes_it_votes_for(page, server):
    k = next(k for k, entry in enumerate(_listing(server, "dense1")) if not entry["dead"])
    draw(page, *SEVEN)
    expect_prediction(page, "7")
    _open_from_bar(page, "dense1", k)
    assert page.inner_text("#inspector-heading") == f"dense1 neuron {k}"
    unit = _examples_shown(page, server, "dense1", k)
    for direction, sign in (("up", "+"), ("down", "−")):
        shown = page.locator(f"#pushes-{direction} li").all_inner_texts()
        assert [text.split()[0] for text in shown] == [p["class"] for p in unit["pushes"][direction]]
    assert page.locator("#unit-weights").is_hidden()


def test_a_dead_unit_is_marked_dead_with_its_evidence(page, server):
    layer, k, reason = next((layer, k, entry["dead"]) for layer in ("conv2", "dense1")
                            for k, entry in enumerate(_listing(server, layer)) if entry["dead"])
    bar = page.get_by_role("button", name=re.compile(rf"^{layer} filter {k}\b"))
    assert "dead" in bar.get_attribute("class") and bar.get_attribute("aria-label").endswith("(dead)")
    page.select_option("#atlas-layer", layer)
    tile = page.locator("#atlas").get_by_role("button", name=f"{layer} filter {k} (dead)", exact=True)
    assert "dead" in tile.inner_text()
    tile.click()
    page.locator("#unit-dead").wait_for(state="visible")
    assert page.inner_text("#unit-dead") == f"Dead unit: {reason}."
    assert "Fires on 0% of the" in page.inner_text("#unit-facts")
    # Its "best" digits all leave it at 0: an arbitrary pick, not shown as examples.
    assert page.locator("#examples-figure").is_hidden()
    assert "does not make it fire either" in page.inner_text("#filter-caption")


def test_the_unit_page_from_the_keyboard(page, server):
    page.get_by_role("button", name=re.compile(r"^conv2 filter 1\b")).focus()
    page.keyboard.press("Enter")
    page.wait_for_function("() => document.activeElement.id === 'inspector-heading'")
    assert page.inner_text("#inspector-heading") == "conv2 filter 1"
    _examples_shown(page, server, "conv2", 1)


def test_the_unit_page_on_a_phone(browser, server, console):
    context, page = open_page(browser, server.base, console, "unit-page-phone",
                              viewport={"width": 390, "height": 844}, has_touch=True,
                              is_mobile=True, device_scale_factor=2)
    try:
        page.select_option("#atlas-layer", "conv1")
        page.locator("#atlas").get_by_role("button", name="conv1 filter 5", exact=True).click()
        _examples_shown(page, server, "conv1", 5)
        assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")
        page.locator("#inspector").screenshot(path=ARTIFACTS / "unit-page-phone.png")
    finally:
        context.close()
    assert console.unexpected() == []


def test_an_older_bundle_says_what_is_missing(browser, console, tmp_path):
    """Beside the default bundle, one built before dataset examples: its unit pages show the
    picture and say that the bundle must be rebuilt for the rest."""
    models = tmp_path / "models"
    models.mkdir()
    (models / "mnist-cnn").symlink_to(MODEL_DIR)
    old_bundle(models / "old", "mnist-old")
    env = gunicorn_env(CNNLENS_MODELS_DIR=str(models), CNNLENS_WORKERS="1")
    with serving(env, tmp_path / "gunicorn.log") as (_, base):
        context, page = open_page(browser, base, console, "unit-page-old-bundle",
                                  viewport={"width": 1280, "height": 900})
        try:
            page.select_option("#model", "mnist-old")
            page.wait_for_function("() => document.querySelector('#atlas .tile img')?.src"
                                   ".includes('model=mnist-old')")
            listing = Client(base).get("/filters/conv2?model=mnist-old").json()["filters"]
            # A unit whose picture never made it fire, if there is one: the page says so.
            k = next((entry["index"] for entry in listing if entry["objective"] == 0), 1)
            page.select_option("#atlas-layer", "conv2")
            page.locator("#atlas").get_by_role("button", name=f"conv2 filter {k}", exact=True).click()
            image_loaded(page, "#filter-image")
            missing = page.locator("#unit-missing")
            missing.wait_for(state="visible")
            assert "built before dataset examples" in missing.inner_text()
            assert "rebuild it" in missing.inner_text()
            if listing[k]["objective"] == 0:
                assert "never made it fire (objective 0)" in page.inner_text("#unit-facts")
            assert page.locator("#examples-figure").is_hidden() and page.locator("#unit-dead").is_hidden()
            page.screenshot(path=ARTIFACTS / "unit-page-old-bundle.png", full_page=True)
        finally:
            context.close()
    assert console.unexpected() == []
