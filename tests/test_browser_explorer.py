"""The model explorer in a real browser: it opens ready (the model's feature layer chosen and
its tiles rendered as one batched job), its layer table shows convolutions until asked for
every layer and cuts nothing off, it fits a phone, the enlarged channel comes into view, and
the keyboard reaches and works its rows and tiles. Uses test_browser's server and browser;
screenshots go to test-artifacts/."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests import test_browser
from tests.test_browser import ARTIFACTS, CHROMIUM

# test_browser's fixtures: its server on 24 generated images indexed with the tiny model
# (layers stem, stem_act, block, block_act, head, head_act, pool, fc; feature layer
# head_act), and Debian's chromium.
server = test_browser.server
browser = test_browser.browser

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(),
    reason="Debian's chromium is not installed (.ci/run installs it: apt-get install chromium)")

CONVOLUTIONS_AND_FEATURES = ["stem", "block", "head", "head_act"]


@pytest.fixture(params=[(1440, 900), (390, 844)], ids=["laptop", "phone"])
def page(browser: Any, server: str, request: pytest.FixtureRequest) -> Iterator[Any]:
    width, height = request.param
    # bypass_csp: Playwright's waits are scripts evaluated from strings, which the page's
    # own policy refuses (that policy is tested in test_web_api and test_browser).
    context = browser.new_context(viewport={"width": width, "height": height},
                                  bypass_csp=True)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(server)
    page.locator("#results .result").first.wait_for()
    page.size_name = "phone" if width < 500 else "laptop"
    yield page
    context.close()
    assert not errors, f"script errors in the page: {errors}"


def _shot(page: Any, name: str, full: bool = False) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"explorer-{name}-{page.size_name}.png"),
                    full_page=full)


def _open_explorer(page: Any) -> None:
    page.click("#tabs button[data-view=explore]")
    page.locator("#layer-table tbody tr.chosen").wait_for()
    page.wait_for_function(
        "document.querySelectorAll('#channel-grid .channel').length > 0 && "
        "!document.querySelector('#channel-grid .channel.pending')", timeout=120_000)


def _overflow(page: Any) -> int:
    return int(page.evaluate(
        "Math.max(0, document.documentElement.scrollWidth - window.innerWidth)"))


def _clipped(page: Any) -> list[str]:
    """Gives the explorer's table cells whose text does not fit them, and tables wider
    than their box."""
    return list(page.evaluate("""() => {
        const out = [];
        for (const td of document.querySelectorAll('#view-explore th, #view-explore td')) {
            if (td.scrollWidth > td.clientWidth + 1) out.push(`${td.textContent} cell`);
        }
        for (const table of document.querySelectorAll('#view-explore table')) {
            const box = table.parentElement;
            if (table.offsetWidth > box.clientWidth + 1) out.push(`${table.id} table`);
        }
        return out;
    }"""))


def _axe(page: Any, what: str) -> None:
    """Fails on axe-core's serious or critical findings in the explorer's view."""
    from axe_playwright_python.sync_playwright import Axe

    found = Axe().run(page, context={"include": [["#view-explore"]]}).response["violations"]
    bad = [(v["id"], [n["target"] for n in v["nodes"]][:3]) for v in found
           if v["impact"] in ("serious", "critical")]
    assert not bad, f"axe: serious or critical violations in {what}: {bad}"


def _layers(page: Any) -> list[str]:
    return list(page.evaluate(
        "[...document.querySelectorAll('#layer-table tbody tr')].map(r => r.dataset.layer)"))


def test_the_explorer_opens_ready_and_fits(page: Any) -> None:
    _open_explorer(page)
    chosen = page.locator("#layer-table tbody tr.chosen")
    assert chosen.get_attribute("data-layer") == "head_act"  # the model's feature layer
    assert page.evaluate("location.hash") == "#explore/tiny/head_act"
    tiles = page.locator("#channel-grid .channel")
    assert tiles.count() == 30
    assert page.evaluate("[...document.querySelectorAll('#channel-grid img')]"
                         ".every(i => i.complete && i.naturalWidth > 0)")
    assert page.locator("#render-progress").is_hidden()  # done: no bar left behind
    assert _layers(page) == CONVOLUTIONS_AND_FEATURES
    assert "4 of 9" in page.locator("#layer-count").inner_text()
    assert _overflow(page) == 0, page.evaluate("document.documentElement.scrollWidth")
    assert _clipped(page) == []
    _axe(page, "the explorer as opened")
    _shot(page, "opened")
    _shot(page, "opened-full", full=True)

    page.check("#layer-all")
    _shot(page, "all-layers", full=True)
    assert len(_layers(page)) == 9 and "stem_act" in _layers(page) and "fc" in _layers(page)
    assert _overflow(page) == 0 and _clipped(page) == []
    page.uncheck("#layer-all")
    assert _layers(page) == CONVOLUTIONS_AND_FEATURES

    tiles.nth(7).click()  # the enlarged channel comes into view
    page.wait_for_function("location.hash === '#explore/tiny/head_act/7'")
    page.wait_for_function("document.querySelector('#channel-big').naturalWidth > 0")
    page.locator("#channel-top .card").first.wait_for(timeout=60_000)
    # The smooth scroll takes its time on a loaded machine: wait until it has arrived.
    page.wait_for_function("""() => { const r = document.querySelector('#channel-big')
        .getBoundingClientRect(); return r.top >= 0 && r.bottom <= innerHeight + 1; }""",
                           timeout=10_000)
    box = page.locator("#channel-big").bounding_box()
    viewport = page.viewport_size
    # (within a pixel: layout positions are fractional)
    assert 0 <= box["y"] and box["y"] + box["height"] <= viewport["height"] + 1, box
    assert _overflow(page) == 0
    _axe(page, "the explorer with a channel enlarged")
    _shot(page, "channel")


def test_a_new_layer_renders_as_one_batched_job(page: Any) -> None:
    _open_explorer(page)
    page.click("#layer-table tbody tr[data-layer='stem']")
    page.wait_for_function("location.hash === '#explore/tiny/stem'")
    assert page.locator("#channel-grid .channel").count() == 8  # stem has 8 channels
    page.wait_for_function("!document.querySelector('#channel-grid .channel.pending')",
                           timeout=120_000)
    jobs = page.evaluate("fetch('/api/renders').then(r => r.json())")
    assert jobs["jobs"] == []  # nothing left running behind the page


def test_tab_reaches_rows_and_tiles_and_keys_work_them(page: Any) -> None:
    _open_explorer(page)
    page.focus("#tabs button[data-view=explore]")
    reached: list[str] = []
    for _ in range(60):
        page.keyboard.press("Tab")
        reached.append(page.evaluate("""(() => { const e = document.activeElement;
            if (e.closest('#model-list tbody')) return 'model-row';
            if (e.closest('#layer-table tbody')) return 'layer-row';
            if (e.closest('#channel-grid')) return 'tile';
            return e.id || e.tagName; })()"""))
        if reached[-1] == "tile":
            break
    assert {"model-row", "layer-row", "tile"} <= set(reached), reached
    # One stop per list: the tiles come after a single layer row.
    assert reached.count("layer-row") == 1 and reached.count("model-row") == 1
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")
    assert page.evaluate("document.activeElement.dataset.channel") == "2"
    page.keyboard.press("Enter")
    page.wait_for_function("location.hash === '#explore/tiny/head_act/2'")
    page.locator("#channel-detail").wait_for(state="visible")

    page.focus("#layer-table tbody tr.chosen")
    page.keyboard.press("ArrowUp")  # from head_act to head
    assert page.evaluate("document.activeElement.dataset.layer") == "head"
    page.keyboard.press("Enter")
    page.wait_for_function("location.hash === '#explore/tiny/head'")
    assert page.locator("#channel-grid .channel").count() == 30
    _shot(page, "keyboard")
