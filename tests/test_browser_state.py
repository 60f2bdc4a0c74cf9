"""State you can share, and the fixes around it, in a real browser (Debian's chromium, as in
test_browser.py): the address holds the collection, feature set, metric, image and view;
Focus on, a model change, the leaderboard, why? on live results and on DBA-ranked results;
stale results dimmed, placeholders for broken images, controls that keep their width, and
the scroll position of a new query. Screenshots at 1440x900 and 390x844 go to
test-artifacts/."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from tests import test_browser as shared
from tests.conftest import labeled_folder, make_image
from tests.test_browser import CHROMIUM, _serving, _shot

from semsearch.evaluate.sweep import run_sweep
from semsearch.featureset import FeatureSet
from semsearch.session import Session

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(),
    reason="Debian's chromium is not installed (.ci/run installs it: apt-get install chromium)")

browser = shared.browser  # the same chromium fixture, one per module
WIDE = {"width": 1440, "height": 900}
PHONE = {"width": 390, "height": 844}


def _catalogue(tmp: Path, cache_dir: Path, expand_k: int) -> tuple[Session, Path, Path]:
    """Gives a session on two collections: `other` (indexed first, so the oldest; tiny's
    head_act and block) and `photos`, with tiny's block, head and head_act layers and tiny2's
    block and head_act."""
    from tests.conftest import TINY, TINY2

    from semsearch.config import resolve
    from semsearch.models.registry import default_registry

    registry = default_registry()
    registry.register(TINY)
    registry.register(TINY2)
    config = resolve({"db": str(tmp / "web.db"), "cache_dir": str(cache_dir), "model": "tiny",
                      "expand_k": expand_k, "batch_size": 8}, env={})
    session = Session(config, registry=registry)
    other = labeled_folder(tmp / "other", 6, classes=2)
    session.index(str(other))
    session.index(str(other), feature_set=FeatureSet.parse("tiny@block/avg"))
    root = labeled_folder(tmp / "photos", 24, classes=3)
    session.index(str(root))
    run_sweep(session, str(root), models=["tiny2"], layers=["block", "head_act"],
              poolings=["gem"], metrics=["cosine"])
    run_sweep(session, str(root), models=["tiny"], layers=["block", "head", "head_act"],
              poolings=["avg", "gem"], metrics=["cosine", "euclidean"])
    return session, root, other


def _served(folder: Path, cache_dir: Path, expand_k: int) -> Iterator[str]:
    """Serves a catalogue as `semsearch serve photos` does: photos is the default collection."""
    from semsearch.web.app import create_app

    session, root, _ = _catalogue(folder, cache_dir, expand_k=expand_k)
    with _serving(create_app(session.config, session=session,
                             default_collection=str(root))) as url:
        yield url
    session.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> Iterator[str]:
    yield from _served(tmp_path_factory.mktemp("state"), cache_dir, expand_k=0)


@pytest.fixture(scope="module")
def dba_server(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> Iterator[str]:
    # Searches ranked with database-side augmentation: the cards' numbers include it.
    yield from _served(tmp_path_factory.mktemp("dba"), cache_dir, expand_k=3)


def _open(browser: Any, address: str, viewport: dict[str, int] = WIDE
          ) -> tuple[Any, Any, list[str]]:
    """Gives a new context, its page opened at address, and the page's script errors."""
    # Playwright evaluates its waits as strings; the page's CSP would refuse them.
    context = browser.new_context(viewport=viewport, bypass_csp=True)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(address)
    return context, page, errors


@pytest.fixture
def page(browser: Any, server: str) -> Iterator[Any]:
    context, page, errors = _open(browser, server)
    page.locator("#results .result").first.wait_for()
    yield page
    context.close()
    assert not errors, f"script errors in the page: {errors}"


def _shown(page: Any, name: str) -> None:
    """Takes a screenshot once the first result's thumbnail is drawn."""
    page.wait_for_function("[...document.querySelectorAll('.results img')].some("
                           "(img) => img.offsetParent && img.naturalWidth > 0)")
    _shot(page, name)


def _asked(page: Any) -> dict[str, str]:
    """Gives what the page's address says, one value per key."""
    return {key: values[0] for key, values in parse_qs(urlsplit(page.url).query).items()}


def _cards(page: Any) -> list[tuple[str, str]]:
    """Gives the result cards shown: (image id, similarity text)."""
    return [(card.get_attribute("data-id"), card.locator(".similarity").inner_text())
            for card in page.locator("#results .result").all()]


def _selected(page: Any) -> str:
    return page.locator("#gallery .thumb.selected").get_attribute("data-id")


def _wait_query(page: Any, text: str) -> None:
    page.wait_for_function(f"document.querySelector('#query').textContent.includes({text!r})")


def test_the_served_collection_opens_and_the_address_names_what_is_shown(page: Any) -> None:
    # `other` is the oldest collection; the served one is photos.
    assert page.locator("#collection option:checked").inner_text().startswith("photos")
    assert page.locator("#gallery .thumb").count() == 24
    asked = _asked(page)
    assert asked["fs"] == "tiny@head_act/gem" and asked["metric"] == "cosine"
    assert asked["image"] == _selected(page)
    assert "tiny@head_act/gem" in page.url  # readable: @ and / are not escaped


def test_a_reload_restores_the_view_feature_set_metric_and_image(page: Any) -> None:
    chosen = page.locator("#gallery .thumb").nth(7)
    chosen.click()
    page.wait_for_function("document.querySelector('#gallery .thumb.selected')?.dataset.id === "
                           f"{chosen.get_attribute('data-id')!r}")
    page.select_option("#layer", "block")
    _wait_query(page, "tiny@block/")
    page.select_option("#metric", "euclidean")
    _wait_query(page, "euclidean")
    shown = (page.locator("#layer").input_value(), page.locator("#pooling").input_value())
    page.click("#tabs button[data-view=compare]")
    page.locator("#leaderboard tbody tr").first.wait_for()
    assert _asked(page)["view"] == "compare"
    page.reload()
    page.locator("#leaderboard tbody tr").first.wait_for()
    assert page.locator("#view-compare").is_visible() and page.locator("#view-search").is_hidden()
    assert (page.locator("#layer").input_value(), page.locator("#pooling").input_value()) == shown
    assert page.locator("#metric").input_value() == "euclidean"
    page.click("#tabs button[data-view=search]")
    _wait_query(page, "euclidean")
    assert _selected(page) == chosen.get_attribute("data-id")
    assert f"tiny@block/{shown[1]}" in page.locator("#query").inner_text()


def test_a_pasted_address_opens_the_same_state_and_back_steps_back(
        browser: Any, server: str) -> None:
    # The other collection, a feature set, a metric and an image, as someone sent them.
    listing = _json(browser, server, "/api/collections")
    other = next(c for c in listing if c["name"] == "other")
    images = _json(browser, server, f"/api/collections/{other['id']}/images")["images"]
    address = (f"{server}/?collection={other['id']}&fs=tiny@block/avg&metric=euclidean"
               f"&image={images[3]['id']}")
    context, page, errors = _open(browser, address)
    _wait_query(page, "tiny@block/avg")
    assert page.locator("#collection option:checked").inner_text().startswith("other")
    assert _selected(page) == str(images[3]["id"])
    assert page.locator("#metric").input_value() == "euclidean"
    assert (page.locator("#layer").input_value(), page.locator("#pooling").input_value()) == (
        "block", "avg")
    _shown(page, "state-pasted-address")
    # Back and Forward step through what was chosen.
    page.locator("#gallery .thumb").nth(1).click()
    page.wait_for_function(f"document.querySelector('#gallery .thumb.selected').dataset.id === "
                           f"{str(images[1]['id'])!r}")
    page.click("#tabs button[data-view=compare]")
    page.locator("#view-compare").wait_for(state="visible")
    page.go_back()
    page.locator("#view-search").wait_for(state="visible")
    assert _selected(page) == str(images[1]["id"])
    page.go_back()
    page.wait_for_function(f"document.querySelector('#gallery .thumb.selected').dataset.id === "
                           f"{str(images[3]['id'])!r}")
    page.go_forward()
    page.wait_for_function(f"document.querySelector('#gallery .thumb.selected').dataset.id === "
                           f"{str(images[1]['id'])!r}")
    # Nonsense in the address falls back to what there is, without a script error.
    page.goto(f"{server}/?collection=999&fs=nope@x/gem&metric=manhattan&image=abc&view=zzz")
    page.locator("#results .result").first.wait_for()
    assert page.locator("#collection option:checked").inner_text().startswith("photos")
    assert page.locator("#metric").input_value() == "cosine"
    context.close()
    assert not errors, errors


def _json(browser: Any, server: str, path: str) -> Any:
    context = browser.new_context()
    try:
        return context.request.get(server + path).json()
    finally:
        context.close()


def test_the_explorer_s_links_still_work_and_keep_the_rest(page: Any, server: str) -> None:
    page.goto(f"{server}/?fs=tiny@block/gem#explore/tiny/head")
    page.locator("#layer-table tbody tr.chosen").wait_for()
    assert page.locator("#layer-table tbody tr.chosen td").nth(1).inner_text() == "head"
    assert page.locator("#layer").input_value() == "block"
    page.click("#tabs button[data-view=search]")
    _wait_query(page, "tiny@block/gem")
    assert "#" not in page.url
    page.go_back()
    page.locator("#view-explore").wait_for(state="visible")


def test_focus_on_changes_the_results(page: Any) -> None:
    before = _cards(page)
    page.check("#advanced-toggle")
    page.fill("#focus", "goldfish")
    page.press("#focus", "Enter")
    _wait_query(page, "focus on goldfish")
    after = _cards(page)
    assert len(after) == 15 and after != before
    assert _asked(page)["focus"] == "goldfish"
    page.reload()
    _wait_query(page, "focus on goldfish")
    assert page.locator("#focus").input_value() == "goldfish"
    assert page.locator("#focus").is_visible()  # the advanced options open to show it
    page.fill("#focus", "")
    page.press("#focus", "Enter")
    page.wait_for_function("!document.querySelector('#query').textContent.includes('focus on')")
    assert _cards(page) == before


def test_a_model_change_keeps_the_layer_or_takes_the_model_s_feature_layer(page: Any) -> None:
    page.select_option("#layer", "block")
    _wait_query(page, "tiny@block/")
    width = page.locator("#layer").bounding_box()["width"]
    page.select_option("#model", "tiny2")
    _wait_query(page, "tiny2@block/gem")  # tiny2 has block
    assert page.locator("#layer").input_value() == "block"
    page.select_option("#model", "tiny")
    page.select_option("#layer", "head")
    _wait_query(page, "tiny@head/")
    page.select_option("#model", "tiny2")
    # tiny2 has no head: its feature layer, not its first layer (block).
    _wait_query(page, "tiny2@head_act/gem")
    assert page.locator("#layer").input_value() == "head_act"
    assert page.locator("#layer").bounding_box()["width"] == width  # the bar did not shift


def test_a_leaderboard_row_opens_search_with_its_configuration_by_keyboard(page: Any) -> None:
    page.click("#tabs button[data-view=compare]")
    rows = page.locator("#leaderboard tbody tr.clickable")
    rows.first.wait_for()
    rows.first.focus()
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement === document.querySelectorAll("
                         "'#leaderboard tbody tr.clickable')[1]")
    row = rows.nth(1)
    cells = [cell.inner_text() for cell in row.locator("td").all()]
    layer, pooling, metric = cells[2], cells[3], cells[4]
    page.keyboard.press("Enter")
    page.locator("#view-search").wait_for(state="visible")
    _wait_query(page, f"@{layer}/{pooling}, {metric}")
    assert (page.locator("#layer").input_value(), page.locator("#metric").input_value()) == (
        layer, metric)
    assert _asked(page).get("view") is None and _asked(page)["metric"] == metric


def _why_text(page: Any, card: Any) -> tuple[str, str]:
    """Opens the card's why? and gives (the card's similarity, the dialog's title)."""
    number = card.locator(".similarity").inner_text()
    card.locator(".why-button").click()
    page.locator("#why").wait_for(state="visible")
    page.wait_for_function("document.querySelector('#why-title').textContent.includes('%')")
    page.wait_for_function("document.querySelector('#why-query').naturalWidth > 0")
    return number, page.locator("#why-title").inner_text()


def _percentages(text: str) -> list[str]:
    return re.findall(r"\d+\.\d%", text)


def test_card_and_why_show_the_same_number(page: Any) -> None:
    number, title = _why_text(page, page.locator("#results .result").nth(2))
    # Plain cosine: the card's number is the pair's, and the dialog says so.
    assert _percentages(title) == [number], title
    assert "as ranked" in title
    _shot(page, "state-why-cosine")


@pytest.mark.parametrize("viewport", [WIDE, PHONE], ids=["1440", "390"])
def test_with_dba_the_card_s_number_and_the_pair_s_are_both_labelled(
        browser: Any, dba_server: str, viewport: dict[str, int]) -> None:
    context, page, errors = _open(browser, dba_server, viewport)
    page.locator("#results .result").first.wait_for()
    assert "DBA k=3" in page.locator("#query").inner_text()
    number, title = _why_text(page, page.locator("#results .result").nth(1))
    shown = _percentages(title)
    assert shown[0] == number and len(shown) == 2, title
    assert f"{number} as ranked (cosine + DBA k=3) ·" in title
    assert f"cosine similarity {shown[1]} between these two images' own vectors" in title
    page.wait_for_function("document.querySelector('#why-result-cam').naturalWidth > 0")
    _shot(page, f"state-why-dba-{viewport['width']}")
    context.close()
    assert not errors, errors


def test_why_on_a_live_result_by_the_uploaded_image(page: Any, tmp_path: Path) -> None:
    page.click("#tabs button[data-view=live]")
    photo = make_image(tmp_path / "mine.jpg", seed=77, size=(120, 90))
    page.set_input_files("#file", str(photo))
    page.locator("#live-results .result").first.wait_for()
    buttons = page.locator("#live-results .why-button")
    assert buttons.count() == 15
    number, title = _why_text(page, page.locator("#live-results .result").nth(0))
    assert number in title and "cosine similarity" in title
    page.wait_for_function("document.querySelector('#why-query-cam').naturalWidth > 0")
    assert page.locator("#why-query-classes li").count() == 5
    assert page.locator("#why-result-classes li").count() == 5
    assert page.locator("#why-result-caption").inner_text().startswith("result 1:")
    _shot(page, "state-why-live")
    page.keyboard.press("Escape")
    # Words have no query image to explain.
    page.fill("#text-query", "goldfish")
    page.click("#text-form button")
    page.locator("#error").wait_for(state="visible")  # tiny has no ImageNet classifier


def test_stale_results_are_dimmed_and_broken_images_have_a_placeholder(page: Any) -> None:
    held: list[Any] = []
    page.route("**/api/collections/*/search?*", lambda route: held.append(route))
    page.locator("#gallery .thumb").nth(4).click()
    page.wait_for_function("document.querySelector('#results').classList.contains('stale')")
    assert page.locator("#results").get_attribute("aria-busy") == "true"
    assert page.locator("#results .result").count() == 15  # the old ones, dimmed
    page.wait_for_function("getComputedStyle(document.querySelector('#results')).opacity < 0.5")
    _shot(page, "state-stale")
    for _ in range(100):  # the route is handed over while the page waits
        if held:
            break
        page.wait_for_timeout(50)
    assert held
    for route in held:
        route.continue_()
    page.unroute("**/api/collections/*/search?*")
    page.wait_for_function("!document.querySelector('#results').classList.contains('stale')")
    assert page.locator("#results").get_attribute("aria-busy") == "false"
    # A thumbnail the server cannot give shows a placeholder, not a broken-image icon.
    page.route("**/api/images/*/thumbnail?size=160", lambda route: route.fulfill(status=503))
    page.locator("#gallery .thumb").nth(5).click()
    page.locator("#results:not(.stale)").wait_for()
    page.wait_for_function("document.querySelectorAll('#results img.broken').length > 0")
    broken = page.locator("#results img.broken").first
    page.wait_for_function("document.querySelector('#results img.broken').naturalWidth > 0")
    assert broken.get_attribute("src") == "/static/broken.svg"
    assert broken.get_attribute("alt")  # still named for screen readers


def test_a_new_query_starts_at_the_top(browser: Any, server: str) -> None:
    context, page, errors = _open(browser, server, PHONE)
    page.locator("#results .result").first.wait_for()
    card = page.locator("#results .result").nth(12)
    card.scroll_into_view_if_needed()  # the results' own scroll, or the page's
    assert page.evaluate("document.querySelector('#results').scrollTop > 0 || "
                         "document.querySelector('#query').getBoundingClientRect().top < 0")
    picked = card.get_attribute("data-id")
    card.click()
    page.wait_for_function("document.querySelector('#gallery .thumb.selected').dataset.id === "
                           f"{picked!r}")
    page.locator("#results:not(.stale)").wait_for()
    assert page.evaluate("document.querySelector('#query').getBoundingClientRect().top") >= 0
    assert page.evaluate("document.querySelector('#results').scrollTop") == 0
    _shown(page, "state-new-query-390")
    context.close()
    assert not errors, errors


@pytest.mark.parametrize("viewport", [WIDE, PHONE], ids=["1440", "390"])
def test_screens(browser: Any, server: str, viewport: dict[str, int]) -> None:
    # What the views look like opened from an address, at both sizes.
    context, page, errors = _open(
        browser, f"{server}/?fs=tiny@block/avg&metric=euclidean&view=compare", viewport)
    page.locator("#leaderboard tbody tr").first.wait_for()
    _shot(page, f"state-compare-{viewport['width']}")
    page.click("#tabs button[data-view=search]")
    _wait_query(page, "tiny@block/avg")
    _shown(page, f"state-search-{viewport['width']}")
    context.close()
    assert not errors, errors
