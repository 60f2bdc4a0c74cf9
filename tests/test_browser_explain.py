"""What the page explains, in a real browser (test_browser.py's server and chromium): each
view's introduction, dismissed and still dismissed after a reload; a "what is this?" worked
with the keyboard; the feature set's human name with its exact string one click away; and
tags below the confidence threshold hidden until asked. Screenshots at 1440x900 and 390x844
go to test-artifacts/."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.test_browser import CHROMIUM, _shot, browser, server  # noqa: F401  (fixtures)

from semsearch.query.text_model import TAG_MIN_SCORE

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(),
    reason="Debian's chromium is not installed (.ci/run installs it: apt-get install chromium)")

VIEWS = ("search", "compare", "map", "live", "explore")
SIZES = {"wide": (1440, 900), "phone": (390, 844)}
TINY_TITLE = "random-weight test network, last layer, GeM pooling"


def _context(browser: Any, size: str) -> Any:  # noqa: F811
    width, height = SIZES[size]
    # bypass_csp: Playwright's waits are evaluated strings, which the page's policy refuses.
    return browser.new_context(viewport={"width": width, "height": height}, bypass_csp=True)


@pytest.fixture(params=list(SIZES))
def page(request: pytest.FixtureRequest, browser: Any, server: str) -> Iterator[Any]:  # noqa: F811
    context = _context(browser, request.param)
    page = context.new_page()
    page.size = request.param
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(server)
    page.locator("#results .result").first.wait_for()
    yield page
    context.close()
    assert not errors, f"script errors in the page: {errors}"


def test_each_view_has_an_introduction_that_stays_dismissed(page: Any, server: str) -> None:  # noqa: F811
    for view in VIEWS:
        page.click(f"#tabs button[data-view={view}]")
        body = page.locator(f"#view-{view} .intro-body")
        body.wait_for(state="visible")
        assert len(body.inner_text()) > 80
        toggle = page.locator(f"#view-{view} .intro-toggle")
        assert toggle.get_attribute("aria-expanded") == "true"
        _shot(page, f"explain-intro-{view}-{page.size}")
    page.click("#tabs button[data-view=search]")
    page.click("#view-search .intro-dismiss")
    page.locator("#view-search .intro-body").wait_for(state="hidden")
    toggle = page.locator("#view-search .intro-toggle")
    assert toggle.get_attribute("aria-expanded") == "false"
    assert page.evaluate("document.activeElement.classList.contains('intro-toggle')")

    page.reload()
    page.locator("#results .result").first.wait_for()
    assert page.locator("#view-search .intro-body").is_hidden()
    assert page.locator("#view-search .intro-toggle").get_attribute("aria-expanded") == "false"
    page.click("#tabs button[data-view=compare]")
    page.locator("#view-compare .intro-body").wait_for(state="visible")  # only Search's went
    page.click("#tabs button[data-view=search]")
    _shot(page, f"explain-intro-dismissed-{page.size}")
    # And it can be read again.
    page.click("#view-search .intro-toggle")
    page.locator("#view-search .intro-body").wait_for(state="visible")


def test_what_is_this_opens_and_closes_with_the_keyboard(page: Any) -> None:
    page.focus("#layer")
    page.keyboard.press("Tab")
    button = page.locator("#controls .whatis[data-topic=layer]")
    assert page.evaluate("document.activeElement.dataset.topic") == "layer"
    assert button.get_attribute("aria-expanded") == "false"
    panel = page.locator("#" + button.get_attribute("aria-controls"))
    assert panel.is_hidden()
    page.keyboard.press("Enter")
    panel.wait_for(state="visible")
    assert button.get_attribute("aria-expanded") == "true"
    assert "layer" in panel.inner_text() and panel.get_attribute("role") == "note"
    _shot(page, f"explain-whatis-layer-{page.size}")
    page.keyboard.press("Escape")
    panel.wait_for(state="hidden")
    assert button.get_attribute("aria-expanded") == "false"
    page.keyboard.press("Space")
    panel.wait_for(state="visible")
    page.keyboard.press("Space")
    panel.wait_for(state="hidden")

    # The weighted score beside the query, and the metric.
    for topic, words in (("score", "15"), ("metric", "Cosine")):
        button = page.locator(f"#query .whatis[data-topic={topic}]")
        button.focus()
        page.keyboard.press("Enter")
        panel = page.locator("#" + button.get_attribute("aria-controls"))
        panel.wait_for(state="visible")
        assert words in panel.inner_text()
    _shot(page, f"explain-whatis-query-{page.size}")
    # With database-side augmentation, the metric line says so and explains it.
    def with_dba(route: Any) -> None:
        body = route.fetch().json()
        body.update(metric="cosine + DBA k=10", metric_title="cosine, with database-side "
                    "augmentation over 10 neighbours")
        route.fulfill(status=200, content_type="application/json", body=json.dumps(body))

    page.route("**/api/collections/*/search?*", with_dba)
    page.locator("#gallery .thumb").nth(1).click()
    dba = page.locator("#query .whatis[data-topic=metric-dba]")
    dba.wait_for()
    assert "over 10 neighbours" in page.locator("#query .metric-title").inner_text()
    assert page.locator("#query .fs-line .whatis").count() == 1  # one "?" for the line
    dba.click()
    panel = page.locator("#" + dba.get_attribute("aria-controls"))
    assert "Cosine" in panel.inner_text() and "nearest neighbours" in panel.inner_text()
    page.unroute("**/api/collections/*/search?*")
    # Every control's "?" is a real button with a name.
    for topic in ("layer", "pooling", "metric"):
        button = page.locator(f"#controls .whatis[data-topic={topic}]")
        assert button.evaluate("b => b.tagName") == "BUTTON"
        assert button.get_attribute("aria-label").startswith("What is")


def test_the_human_name_is_shown_with_the_exact_string_copied_in_one_click(
        page: Any) -> None:
    line = page.locator("#query .fs-line")
    assert line.locator(".fs-title").inner_text() == TINY_TITLE
    assert line.locator(".metric-title").inner_text() == "cosine"
    exact = line.locator(".fs-exact code")
    assert exact.is_visible() and exact.inner_text() == "tiny@head_act/gem, cosine"
    # The human name comes first; the exact string is the smaller line under it.
    name_size = line.locator(".fs-title").evaluate("e => parseFloat(getComputedStyle(e).fontSize)")
    code_size = exact.evaluate("e => parseFloat(getComputedStyle(e).fontSize)")
    assert code_size < name_size
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    copy = line.locator(".fs-copy")
    assert copy.get_attribute("aria-label") == "copy the exact name"
    copy.click()
    page.wait_for_function("document.querySelector('#query .fs-copy').textContent === 'copied'")
    assert page.evaluate("navigator.clipboard.readText()") == "tiny@head_act/gem, cosine"
    _shot(page, f"explain-exact-name-{page.size}")
    page.select_option("#layer", "block")
    page.wait_for_function(
        "document.querySelector('#query .fs-title').textContent.includes('layer 3 of 9')")


def test_low_confidence_tags_are_hidden_until_asked(page: Any) -> None:
    tags = [{"word": "sandal", "score": 0.97, "confident": True},
            {"word": "clogs", "score": 0.72, "confident": True},
            {"word": "sneaker", "score": 0.64, "confident": False},
            {"word": "diaper", "score": 0.6, "confident": False}]
    assert all(t["confident"] == (t["score"] >= TAG_MIN_SCORE) for t in tags)
    # The tiny network has no ImageNet classifier; the page's handling of real scores is
    # what is tested here.
    page.route("**/api/images/*/tags*", lambda route: route.fulfill(
        status=200, content_type="application/json", body=json.dumps(tags)))
    page.locator("#gallery .thumb").nth(2).click()
    line = page.locator("#query .tags")
    line.wait_for()
    shown = line.inner_text()
    assert "sandal 97%" in shown and "clogs 72%" in shown
    assert "diaper" not in shown and "sneaker" not in shown
    toggle = line.locator(".tags-toggle")
    assert toggle.inner_text() == "show all 4"
    toggle.click()
    page.wait_for_function(
        "document.querySelector('#query .tags').innerText"
        ".includes('weak: sneaker 64%, diaper 60%')")
    assert toggle.get_attribute("aria-expanded") == "true"
    _shot(page, f"explain-tags-{page.size}")

    weak_only = [dict(t, confident=False, score=0.5) for t in tags]
    page.unroute("**/api/images/*/tags*")
    page.route("**/api/images/*/tags*", lambda route: route.fulfill(
        status=200, content_type="application/json", body=json.dumps(weak_only)))
    page.locator("#gallery .thumb").nth(3).click()
    page.wait_for_function(
        "document.querySelector('#query .tags')?.innerText.includes('none confident')")
    assert "sandal" not in page.locator("#query .tags").inner_text()


def test_a_fresh_browser_shows_the_introduction_again(browser: Any, server: str) -> None:  # noqa: F811
    # Dismissal lives in the browser's storage: another browser profile has its own.
    context = _context(browser, "wide")
    page = context.new_page()
    page.goto(server)
    page.locator("#view-search .intro-body").wait_for(state="visible")
    context.close()

