"""The web page in a real browser (Debian's chromium driven by Playwright) against a real
server on loopback: each view loads, its controls work, and errors show in the page.
Screenshots go to test-artifacts/ at the repository root."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import ROOT, labeled_folder, make_image

from semsearch.evaluate.sweep import run_sweep
from semsearch.session import Session

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = ROOT / "test-artifacts"

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(),
    reason="Debian's chromium is not installed (.ci/run installs it: apt-get install chromium)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def _serving(app: Any) -> Iterator[str]:
    """Runs the app with uvicorn on a free loopback port in a thread; gives its address."""
    import uvicorn

    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from tests.conftest import TINY, TINY2

    from semsearch.config import resolve
    from semsearch.models.registry import default_registry
    from semsearch.web.app import create_app

    tmp = tmp_path_factory.mktemp("browser")
    registry = default_registry()
    registry.register(TINY)
    registry.register(TINY2)
    # A cache of its own: the explorer renders channels into it, which other tests' tiny
    # sessions (sharing the session-wide cache) must not find.
    config = resolve({"db": str(tmp / "web.db"), "cache_dir": str(tmp / "cache"), "model": "tiny",
                      "expand_k": 0, "batch_size": 8}, env={})
    session = Session(config, registry=registry)
    root = labeled_folder(tmp / "photos", 24, classes=3)
    session.index(str(root))
    run_sweep(session, str(root), models=["tiny"], layers=["block", "head", "head_act"],
              poolings=["avg", "gem"], metrics=["cosine", "euclidean"])
    with _serving(create_app(config, session=session)) as url:
        yield url
    session.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                     args=["--no-sandbox", "--disable-background-networking"])
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any, server: str) -> Iterator[Any]:
    # Playwright evaluates its waits as strings; the page's CSP (tested in test_web_api)
    # would refuse them.
    context = browser.new_context(viewport={"width": 1400, "height": 900}, bypass_csp=True)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(server)
    yield page
    context.close()
    assert not errors, f"script errors in the page: {errors}"


def _shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))


def test_search_view_starts_on_the_first_image_and_follows_the_controls(page: Any) -> None:
    results = page.locator("#results .result")
    results.first.wait_for()
    assert results.count() == 15
    selected = page.locator("#gallery .thumb.selected")
    assert selected.count() == 1
    first = page.locator("#gallery .thumb").first
    assert selected.get_attribute("data-id") == first.get_attribute("data-id")
    info = page.locator("#query")
    assert "weighted score" in info.inner_text() and "class: class0" in info.inner_text()
    assert page.locator("#results .marker.same").count() >= 1
    bar = page.locator("#results .result .bar .fill").first.evaluate("e => e.style.width")
    assert bar.endswith("%") and 0 < float(bar[:-1]) <= 100
    _shot(page, "search")

    first_title = page.locator("#query .query-title").inner_text()
    page.locator("#gallery").focus()
    page.keyboard.press("ArrowRight")
    page.wait_for_function(
        f"document.querySelector('#query .query-title').textContent !== {first_title!r}")
    second = page.locator("#gallery .thumb").nth(1).get_attribute("data-id")
    assert page.locator("#gallery .thumb.selected").get_attribute("data-id") == second

    page.select_option("#metric", "euclidean")
    page.wait_for_function("document.querySelector('#query').textContent.includes('euclidean')")
    page.select_option("#layer", "block")
    page.wait_for_function("document.querySelector('#query').textContent.includes('tiny@block/')")
    assert page.locator("#results .result").count() == 15

    page.check("#advanced-toggle")
    page.fill("#k", "5")
    page.locator("#k").dispatch_event("change")
    page.wait_for_function("document.querySelectorAll('#results .result').length === 5")
    _shot(page, "search-advanced")


def test_compare_view_shows_layer_charts_and_the_leaderboard(page: Any) -> None:
    page.locator("#results .result").first.wait_for()
    page.click("#tabs button[data-view=compare]")
    page.locator("#charts svg.chart").first.wait_for()
    assert page.locator("#charts svg.chart").count() == 1
    assert page.locator("#charts .dot.best").count() == 1
    assert "best:" in page.locator("#charts figcaption").inner_text()
    rows = page.locator("#leaderboard tbody tr")
    assert rows.count() == 3 * 2 * 2
    assert page.locator("#charts .line-own").count() == 1  # the selected image's own scores
    _shot(page, "compare")
    rows.first.click()  # a leaderboard row switches the feature set
    model_layer = page.locator("#layer").input_value()
    assert model_layer == rows.first.locator("td").nth(2).inner_text()


def test_map_view_hovers_and_clicks_through_to_search(page: Any, server: str) -> None:
    page.locator("#results .result").first.wait_for()
    page.click("#tabs button[data-view=map]")
    page.wait_for_function(
        "document.querySelector('#map-title').textContent.includes('24 images')",
        timeout=120_000)
    assert page.locator("#map-legend li").count() == 3
    made = page.evaluate("fetch('/api/collections/1/map').then(r => r.json())")
    box = page.locator("#map-canvas").bounding_box()
    i = 5
    x = box["x"] + (20 + made["x"][i] * 860) * box["width"] / 900
    y = box["y"] + (20 + (1 - made["y"][i]) * 560) * box["height"] / 600
    page.mouse.move(x, y)
    tip = page.locator("#map-tip")
    tip.wait_for(state="visible")
    assert tip.inner_text().strip().startswith("class")
    hovered = int(tip.get_attribute("data-id"))
    _shot(page, "map")
    page.mouse.wheel(0, -300)  # zoom in: the page stays responsive
    page.click("#map-next-layer")
    page.wait_for_function(
        "!document.querySelector('#map-title').textContent.includes('computing')",
        timeout=120_000)
    assert "tiny@" in page.locator("#map-title").inner_text()
    page.click("#map-reset")
    made = page.evaluate(
        "fetch('/api/collections/1/map?feature_set=' + encodeURIComponent("
        "document.querySelector('#map-title').textContent.split(':')[0])).then(r => r.json())")
    j = made["ids"].index(hovered) if hovered in made["ids"] else 0
    x = box["x"] + (20 + made["x"][j] * 860) * box["width"] / 900
    y = box["y"] + (20 + (1 - made["y"][j]) * 560) * box["height"] / 600
    page.mouse.move(x, y)
    tip.wait_for(state="visible")
    clicked = int(tip.get_attribute("data-id"))
    page.mouse.click(x, y)
    page.locator("#view-search").wait_for(state="visible")
    page.wait_for_function(
        f"document.querySelector('#gallery .thumb.selected')?.dataset.id === '{clicked}'")


def test_live_search_by_upload_and_a_refused_url(page: Any, tmp_path: Path) -> None:
    page.locator("#results .result").first.wait_for()
    page.click("#tabs button[data-view=live]")
    photo = make_image(tmp_path / "mine.jpg", seed=77, size=(120, 90))
    page.set_input_files("#file", str(photo))
    page.locator("#live-results .result").first.wait_for()
    assert page.locator("#live-results .result").count() == 15
    text = page.locator("#live-query").inner_text()
    assert "mine.jpg" in text and "embedding" in text and "ms" in text
    _shot(page, "live-upload")
    page.fill("#url", "http://169.254.169.254/latest/meta-data/")
    page.click("#url-form button")
    error = page.locator("#error")
    error.wait_for(state="visible")
    assert "refusing to fetch from 169.254.169.254" in error.inner_text()
    _shot(page, "live-refused-url")
    not_image = tmp_path / "fake.jpg"
    not_image.write_text("<script>alert(1)</script>")
    page.set_input_files("#file", str(not_image))
    page.wait_for_function("document.querySelector('#error').textContent.includes('not an image')")


def test_model_explorer_from_a_shared_link(page: Any, server: str) -> None:
    page.goto(f"{server}/#explore/tiny/block")
    page.locator("#model-list tbody tr.chosen").wait_for()
    assert page.locator("#model-list tbody tr.chosen td").first.inner_text() == "tiny"
    assert page.locator("#layer-table tbody tr.chosen td").nth(1).inner_text() == "block"
    tiles = page.locator("#channel-grid .channel")
    assert tiles.count() == 16  # the layer's channels (fewer than 30)
    tiles.nth(2).click()
    page.wait_for_function("location.hash === '#explore/tiny/block/2'")
    big = page.locator("#channel-big")
    page.wait_for_function("document.querySelector('#channel-big').naturalWidth > 0",
                           timeout=120_000)
    assert big.is_visible()
    page.locator("#channel-top .card").first.wait_for(timeout=60_000)
    assert page.locator("#channel-top .card").count() == 9
    page.wait_for_function("document.querySelector('#channel-top img').naturalWidth > 0")
    _shot(page, "explorer")
    page.click("#layer-table tbody tr[data-layer='head_act']")
    page.wait_for_function("location.hash === '#explore/tiny/head_act'")
    assert page.locator("#channel-grid .channel").count() == 30


def test_why_similar_from_a_search_result(page: Any) -> None:
    page.locator("#results .result").first.wait_for()
    page.locator("#results .why-button").nth(1).click()
    modal = page.locator("#why")
    modal.wait_for(state="visible")
    page.wait_for_function("document.querySelector('#why-query').naturalWidth > 0")
    page.wait_for_function("document.querySelector('#why-result-cam').naturalWidth > 0")
    assert "cosine similarity" in page.locator("#why-title").inner_text()
    assert page.locator("#why-query-classes li").count() == 5
    _shot(page, "why")
    page.keyboard.press("Escape")
    modal.wait_for(state="hidden")


def test_words_without_an_imagenet_classifier_get_a_message(page: Any) -> None:
    page.locator("#results .result").first.wait_for()
    page.click("#tabs button[data-view=live]")
    page.fill("#text-query", "red sports car")
    page.click("#text-form button")
    error = page.locator("#error")
    error.wait_for(state="visible")
    assert "reads an ImageNet classifier" in error.inner_text()
    page.fill("#text-query", "   ")
    page.click("#text-form button")
    page.wait_for_function(
        "document.querySelector('#error').textContent.includes('Type one or more words')")


MARKUP_LABEL = "<img src=x onerror=alert(1)>"
MARKUP_NAMES = ("<svg onload=alert(2)>.png", "\"><script>alert(3)</script>.png",
                "';alert(4);'.png", "x' onmouseover='alert(5).png")


@pytest.fixture(scope="module")
def markup_server(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> Iterator[str]:
    # A collection whose class folder and file names are markup, shown all over the page.
    from tests.conftest import TINY

    from semsearch.config import resolve
    from semsearch.models.registry import default_registry
    from semsearch.web.app import create_app

    tmp = tmp_path_factory.mktemp("markup")
    registry = default_registry()
    registry.register(TINY)
    config = resolve({"db": str(tmp / "web.db"), "cache_dir": str(cache_dir), "model": "tiny",
                      "expand_k": 0}, env={})
    session = Session(config, registry=registry)
    root = tmp / "photos"
    for i, name in enumerate(MARKUP_NAMES):
        make_image(root / MARKUP_LABEL / name, seed=i)
        make_image(root / "plain" / f"{i}.png", seed=10 + i)
    session.index(str(root))
    with _serving(create_app(config, session=session)) as url:
        yield url
    session.close()


def test_file_names_and_labels_are_shown_as_text_never_run(browser: Any,
                                                          markup_server: str) -> None:
    # Without bypass_csp: the page's own policy is in force, as for a user.
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(markup_server)
    page.locator("#results .result").first.wait_for()
    page.locator("#gallery .thumb").nth(3).click()
    page.locator("#results .result").first.wait_for()
    for thumb in page.locator("#gallery .thumb").all()[:4]:
        thumb.hover()
    page.click("#tabs button[data-view=map]")
    # Locator waits, not wait_for_function: the page's policy forbids evaluating strings.
    page.locator("#map-title", has_text="8 images").wait_for(timeout=120_000)
    page.click("#tabs button[data-view=search]")
    injected = page.evaluate(
        "document.querySelectorAll('script:not([src]), [onerror], [onload], [onmouseover], "
        "svg').length")
    shown = page.locator("body").inner_text()
    _shot(page, "markup-names")
    context.close()
    assert dialogs == [] and injected == 0
    assert MARKUP_LABEL in shown
