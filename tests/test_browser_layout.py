"""The page on a phone and on desktops, in a real browser: every view fits the window in width,
passes axe-core's serious and critical checks, and works from the keyboard (Tab reaches every
result card, the "why?" dialog takes focus, gives it back and closes with Escape), and the
map takes touch pan and pinch. Uses test_browser's server (a small generated collection) and
browser, and for the fit and axe checks also iconic200's real photos; screenshots go to
test-artifacts/."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from tests import test_browser
from tests.conftest import dataset, make_image
from tests.test_browser import ARTIFACTS, CHROMIUM, _serving

from semsearch.evaluate.sweep import run_sweep
from semsearch.session import Session

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(),
    reason="Debian's chromium is not installed (.ci/run installs it: apt-get install chromium)")

# test_browser's fixtures, as they are: its real server on a small generated collection (24
# images in 3 classes, indexed and compared with the tiny model), and Debian's chromium.
server = test_browser.server
browser = test_browser.browser

SIZES = {"phone": (390, 844), "laptop": (1440, 900), "desktop": (1920, 1080)}
CHECKED = ("phone", "laptop")  # every check runs at these; the widest only for the fit
VIEWS = ("search", "compare", "map", "live")


@pytest.fixture(scope="module")
def iconic(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> Iterator[str]:
    """A server on iconic200's 200 real photos in 10 classes (their names and sizes are the
    page's real content), indexed and compared with the tiny model; gives its address."""
    from tests.conftest import TINY

    from semsearch.config import resolve
    from semsearch.models.registry import default_registry
    from semsearch.web.app import create_app

    root = dataset("iconic200")
    tmp = tmp_path_factory.mktemp("iconic")
    registry = default_registry()
    registry.register(TINY)
    config = resolve({"db": str(tmp / "web.db"), "cache_dir": str(cache_dir), "model": "tiny",
                      "expand_k": 0, "batch_size": 16}, env={})
    session = Session(config, registry=registry)
    session.index(str(root))
    run_sweep(session, str(root), models=["tiny"], layers=["block", "head_act"],
              poolings=["gem"], metrics=["cosine", "euclidean"])
    with _serving(create_app(config, session=session)) as url:
        yield url
    session.close()


COLLECTIONS = {"generated": ("server", 24), "iconic200": ("iconic", 200)}
Opener = Callable[..., Any]


@pytest.fixture
def pages(browser: Any, request: pytest.FixtureRequest) -> Iterator[Opener]:
    """Gives open(size, collection="generated", pixels=1): a page of that size (a name in
    SIZES) on that collection's server, `pixels` device pixels to a CSS pixel, showing the
    first image's results. Fails the test on a script error in any of the pages."""
    contexts: list[Any] = []
    errors: list[str] = []

    def open_page(size: str, collection: str = "generated", pixels: float = 1) -> Any:
        fixture, images = COLLECTIONS[collection]
        width, height = SIZES[size]
        # bypass_csp: Playwright's waits and axe are scripts evaluated from strings, which the
        # page's own policy refuses (that policy is tested in test_web_api and test_browser).
        context = browser.new_context(viewport={"width": width, "height": height},
                                      device_scale_factor=pixels, bypass_csp=True,
                                      has_touch=size == "phone")
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(request.getfixturevalue(fixture))
        page.locator("#results .result").first.wait_for(timeout=60_000)
        page.size_name, page.images = size, images
        return page

    yield open_page
    for context in contexts:
        context.close()
    assert not errors, f"script errors in the page: {errors}"


def _shot(page: Any, name: str) -> None:
    """Saves a full-page screenshot once the images in the window have loaded (those below
    it load lazily, as the page is scrolled, and stay blank in a full-page shot)."""
    from playwright.sync_api import TimeoutError as Slow

    ARTIFACTS.mkdir(exist_ok=True)
    try:
        page.wait_for_function("""[...document.images].every((img) => img.complete
            || !img.offsetParent || img.getBoundingClientRect().top > innerHeight)""",
                               timeout=15_000)
    except Slow:
        pass  # the shot is still worth taking; what it shows says what was missing
    page.screenshot(path=str(ARTIFACTS / f"layout-{name}-{page.size_name}.png"), full_page=True)


def _overflow(page: Any) -> int:
    """Gives how many CSS pixels the page is wider than the window (0 when it fits)."""
    return int(page.evaluate(
        "Math.max(0, document.documentElement.scrollWidth - window.innerWidth)"))


def _wider_than_window(page: Any) -> list[str]:
    """Gives the elements that reach past the window's right edge, to say what overflows."""
    return list(page.evaluate("""() => [...document.querySelectorAll('body *')]
        .filter((e) => e.offsetParent !== null && e.getBoundingClientRect().right > innerWidth + 1)
        .slice(0, 8).map((e) => `${e.tagName.toLowerCase()}#${e.id}.${e.className}`
            + ` right=${Math.round(e.getBoundingClientRect().right)}`)"""))


def _open(page: Any, view: str, tmp_path: Path) -> None:
    """Switches to a view and waits until it shows its content."""
    page.click(f"#tabs [data-view={view}]")
    page.locator(f"#view-{view}").wait_for(state="visible")
    if view == "search":
        page.locator("#results .result").first.wait_for()
        page.check("#advanced-toggle")  # every control in sight
    elif view == "compare":
        page.locator("#leaderboard tbody tr").first.wait_for()
    elif view == "map":
        page.locator("#map-title", has_text=f"{page.images} images").wait_for(timeout=120_000)
    elif view == "live":
        photo = make_image(tmp_path / "mine.jpg", seed=77, size=(120, 90))
        page.set_input_files("#file", str(photo))
        page.locator("#live-results .result").first.wait_for()


def _axe(page: Any, what: str) -> None:
    """Runs axe-core on the page; fails on serious or critical violations, prints the rest."""
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page)
    violations = results.response["violations"]
    for v in violations:
        where = ", ".join(" ".join(node["target"]) for node in v["nodes"][:5])
        print(f"axe {what} [{page.size_name}] {v['impact']}: {v['id']}: {v['help']} ({where})")
    bad = [v["id"] for v in violations if v["impact"] in ("serious", "critical")]
    assert not bad, f"axe finds serious or critical violations in {what}: {bad}"


@pytest.mark.parametrize("collection", ["generated",
                                        pytest.param("iconic200", marks=pytest.mark.real)])
@pytest.mark.parametrize("size", SIZES)
def test_every_view_fits_the_window_and_passes_axe(pages: Opener, size: str, collection: str,
                                                     tmp_path: Path) -> None:
    page = pages(size, collection)
    for view in VIEWS:
        _open(page, view, tmp_path)
        assert _overflow(page) == 0, (view, _wider_than_window(page))
        _shot(page, f"{view}-{collection}")
        if size in CHECKED:
            _axe(page, f"the {view} view of {collection}")


def _tab_to(page: Any, selector: str, total: int | None = None, limit: int = 200) -> list[str]:
    """Presses Tab from the view's tab until focus has been in `total` of the elements the
    selector finds (all by default), or `limit` times; gives the data-id of each one reached,
    in order."""
    total = page.locator(selector).count() if total is None else total
    reached: list[str] = []
    page.locator("#tabs [aria-selected=true]").focus()
    for _ in range(limit):
        page.keyboard.press("Tab")
        inside = page.evaluate(
            f"document.activeElement.closest({selector!r})?.dataset.id ?? null")
        if inside is not None and inside not in reached:
            reached.append(inside)
            if len(reached) == total:
                break
    return reached


@pytest.mark.parametrize("size", CHECKED)
def test_tab_reaches_every_result_card_and_enter_searches_with_it(pages: Opener, size: str,
                                                                   tmp_path: Path) -> None:
    page = pages(size)
    cards = page.locator("#results .result")
    ids = [c.get_attribute("data-id") for c in cards.all()]
    assert _tab_to(page, "#results .result") == ids
    # Focus is on the last card: Enter searches with it, and a visible outline shows where.
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline not in ("none", "")
    page.keyboard.press("Enter")
    page.wait_for_function(
        f"document.querySelector('#gallery .selected')?.dataset.id === '{ids[-1]}'")
    # The new results take the focus's place: on the first card, not fallen to the page.
    page.wait_for_function("document.activeElement === "
                           "document.querySelector('#results .result button')")
    _open(page, "live", tmp_path)
    live = [c.get_attribute("data-id") for c in page.locator("#live-results .result").all()]
    assert _tab_to(page, "#live-results .result") == live


@pytest.mark.parametrize("size", CHECKED)
def test_gallery_and_leaderboard_work_from_the_keyboard(pages: Opener, size: str) -> None:
    page = pages(size)
    first, second = page.locator("#gallery .thumb").all()[:2]
    # One stop for the whole gallery, its selected image (a listbox: the arrows move in it)
    assert _tab_to(page, "#gallery .thumb", total=1) == [first.get_attribute("data-id")]
    in_gallery = "document.querySelector('#gallery').contains(document.activeElement)"
    page.keyboard.press("Tab")
    assert not page.evaluate(in_gallery)
    page.keyboard.press("Shift+Tab")
    assert page.evaluate(in_gallery)
    page.keyboard.press("ArrowRight")  # the arrows move the selection, and focus with it
    page.wait_for_function(
        f"document.activeElement.dataset.id === '{second.get_attribute('data-id')}'")
    assert "selected" in (second.get_attribute("class") or "")
    page.keyboard.press("Enter")
    page.locator("#results .result").first.wait_for()

    page.click("#tabs [data-view=compare]")
    rows = page.locator("#leaderboard tbody tr.clickable")
    rows.first.wait_for()
    layer = rows.nth(3).locator("td").nth(2).inner_text()
    rows.nth(3).focus()
    page.keyboard.press("Enter")  # as a click: searches with that row's feature set
    page.wait_for_function(f"document.querySelector('#layer').value === '{layer}'")


@pytest.mark.parametrize("size", CHECKED)
def test_why_dialog_takes_focus_returns_it_and_closes(pages: Opener, size: str) -> None:
    page = pages(size)
    why = page.locator("#results .why-button").nth(1)
    why.focus()
    page.keyboard.press("Enter")
    modal = page.locator("#why")
    modal.wait_for(state="visible")
    assert page.evaluate("document.querySelector('#why').contains(document.activeElement)")
    page.wait_for_function("document.querySelector('#why-result-cam').naturalWidth > 0")
    close = page.locator("#why-close")
    box = close.bounding_box()
    width, height = SIZES[page.size_name]
    assert box and 0 <= box["x"] and box["x"] + box["width"] <= width
    assert 0 <= box["y"] and box["y"] + box["height"] <= height
    assert _overflow(page) == 0, _wider_than_window(page)
    page.screenshot(path=str(ARTIFACTS / f"layout-why-{page.size_name}.png"))
    for _ in range(6):  # Tab stays inside the open dialog
        page.keyboard.press("Tab")
        assert page.evaluate("document.querySelector('#why').contains(document.activeElement)")
    _axe(page, "the why? dialog")
    page.keyboard.press("Escape")
    modal.wait_for(state="hidden")
    assert page.evaluate("document.activeElement === document.querySelectorAll("
                         "'#results .why-button')[1]")
    why.click()  # and the close button closes it too, giving focus back
    modal.wait_for(state="visible")
    close.click()
    modal.wait_for(state="hidden")
    assert page.evaluate("document.activeElement === document.querySelectorAll("
                         "'#results .why-button')[1]")


def _map_view(page: Any) -> dict[str, float]:
    """Gives the map's zoom and shift as drawn, once the frames asked for have been drawn."""
    return {k: float(v) for k, v in page.locator("#map-canvas").evaluate(
        """c => new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(() =>
            done({scale: c.dataset.scale, dx: c.dataset.dx, dy: c.dataset.dy}))))""").items()}


def test_map_fills_the_width_and_takes_touch_pan_and_pinch(pages: Opener, tmp_path: Path) -> None:
    page = pages("phone", pixels=3)  # as a phone's screen
    _open(page, "map", tmp_path)
    canvas = page.locator("#map-canvas")
    # The view's introduction stands above the map: touches go where the map is on screen.
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    assert box and box["width"] >= 390 - 40  # the window less the page's margins
    ratio = page.evaluate("devicePixelRatio")
    assert ratio == 3
    # sharp: a canvas pixel for each of the screen's (device pixels snap, hence the 1)
    assert abs(canvas.evaluate("c => c.width") - box["width"] * ratio) <= 1
    cdp = page.context.new_cdp_session(page)
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2

    def touch(kind: str, points: list[tuple[float, float]]) -> None:
        cdp.send("Input.dispatchTouchEvent", {"type": kind, "touchPoints": [
            {"x": x, "y": y, "id": i} for i, (x, y) in enumerate(points)]})

    before = _map_view(page)
    touch("touchStart", [(cx, cy)])
    for step in range(1, 6):
        touch("touchMove", [(cx + 8 * step, cy + 4 * step)])
    touch("touchEnd", [])
    panned = _map_view(page)
    assert panned["scale"] == before["scale"] and panned["dx"] > before["dx"] + 20
    touch("touchStart", [(cx - 20, cy), (cx + 20, cy)])
    for step in range(1, 6):
        touch("touchMove", [(cx - 20 - 10 * step, cy), (cx + 20 + 10 * step, cy)])
    touch("touchEnd", [])
    pinched = _map_view(page)
    assert pinched["scale"] > 2 * panned["scale"]  # fingers 40 px apart, then 140
    _shot(page, "map-pinched")
    page.click("#map-reset")
    assert _map_view(page)["scale"] == 1
    canvas.focus()  # and the keyboard: + zooms about the middle, an arrow pans
    page.keyboard.press("+")
    page.keyboard.press("ArrowLeft")
    keyed = _map_view(page)
    assert keyed["scale"] == 1.25 and keyed["dx"] == pytest.approx(-box["width"] / 8 + 60, abs=1)
    page.keyboard.press("0")
    assert _map_view(page) == {"scale": 1, "dx": 0, "dy": 0}
    # A finger has no hover: a tap on a point shows its image, a second tap searches with it.
    made = page.evaluate("fetch('/api/collections/1/map').then(r => r.json())")
    i = 5
    x = box["x"] + box["width"] * (20 + made["x"][i] * 860) / 900
    y = box["y"] + box["height"] * (20 + (1 - made["y"][i]) * 560) / 600
    touch("touchStart", [(x, y)])
    touch("touchEnd", [])
    tip = page.locator("#map-tip")
    tip.wait_for(state="visible")
    assert tip.get_attribute("data-id") == str(made["ids"][i])
    tip_box = tip.bounding_box()
    assert tip_box and tip_box["x"] + tip_box["width"] <= 390  # kept inside the window
    _shot(page, "map-tapped")
    touch("touchStart", [(x, y)])
    touch("touchEnd", [])
    page.locator("#view-search").wait_for(state="visible")
    page.wait_for_function(
        f"document.querySelector('#gallery .selected')?.dataset.id === '{made['ids'][i]}'")
