"""The report and the gallery worked through in a real browser (headless system Chromium, Playwright): filters,
search, the large view of a pair with its boxes and labels (checked on a screenshot), keys; nothing fetched."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from PIL import Image
from playwright.async_api import Browser, Page

from spotdiff.exports import read_records
from spotdiff.gallery import render_gallery
from spotdiff.report import render_report, store_image_bytes
from spotdiff.storage import ArtifactStore
from tests.browser import chromium
from tests.test_report import make_run_dir


@pytest_asyncio.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as launched:
        yield launched


@pytest_asyncio.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    opened = await context.new_page()
    try:
        yield opened
    finally:
        await context.close()


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return make_run_dir(tmp_path)


def written(run_dir: Path, which: str) -> Path:
    records = read_records(run_dir)
    if which == "report":
        page = render_report(records, store_image_bytes(ArtifactStore(str(run_dir))))
    else:
        page = render_gallery(records)
    target = run_dir / f"{which}.html"  # the gallery's images are relative to the run folder
    target.write_text(page, encoding="utf-8")
    return target


async def shown(page: Page) -> list[str]:
    return await page.locator("#cards > .card:visible").evaluate_all("(cards) => cards.map((card) => card.id)")


@pytest.mark.parametrize("which", ["report", "gallery"])
async def test_filters_and_search_narrow_the_cards(page: Page, run_dir: Path, which: str) -> None:
    outside: list[str] = []
    page.on(
        "request", lambda request: None if request.url.startswith(("file:", "data:")) else outside.append(request.url)
    )
    await page.goto(written(run_dir, which).as_uri())
    assert await page.text_content("#shown") == "7 of 7 shown"
    await page.select_option("#filter-outcome", "rejected")
    assert len(await shown(page)) == 5
    await page.select_option("#filter-reason", "pair_filter:pair_too_similar")
    assert sorted(await shown(page)) == ["alike-2", "too-alike"]
    await page.fill("#filter-search", "alike-2")
    assert await shown(page) == ["alike-2"] and await page.text_content("#shown") == "1 of 7 shown"
    await page.select_option("#filter-outcome", "")
    await page.select_option("#filter-reason", "")
    await page.fill("#filter-search", "MUG")  # a word of a difference caption, any case
    assert await shown(page) == ["cup-mug"]
    rule = page.locator("#too-alike [data-testid=rule]")
    assert await rule.text_content() == "pair too similar: pair_cosine 0.9912 against min 0.7, max 0.98"
    assert outside == []


async def test_a_pair_seen_large_with_its_boxes_and_labels_and_the_keys(
    page: Page, run_dir: Path, tmp_path: Path
) -> None:
    await page.goto(written(run_dir, "report").as_uri())
    small = await page.locator("#dog-cat .frame").first.bounding_box()
    await page.click("#dog-cat")
    zoom = page.locator("#zoom")
    await zoom.wait_for(state="visible")
    large_frame = zoom.locator(".frame").first
    large = await large_frame.bounding_box()
    assert small and large and large["width"] > 1.5 * small["width"]
    assert await zoom.locator(".box").count() == 2  # one box on each image
    text = await zoom.text_content() or ""
    assert "a brown dog" in text and "a grey cat" in text and "dog-cat" in text

    shot = tmp_path / "zoomed.png"
    await zoom.screenshot(path=str(shot))
    image = Image.open(io.BytesIO(shot.read_bytes())).convert("RGB")
    left, right = await zoom.locator(".frame img").evaluate_all(
        "(images) => images.map((image) => { const r = image.getBoundingClientRect(); return [r.x, r.y, r.width]; })"
    )
    origin = await zoom.bounding_box()
    assert origin is not None

    def colour_at(frame: list[float]) -> tuple[int, ...]:
        x = int(frame[0] - origin["x"] + frame[2] * 0.9)  # inside the image, away from its box
        y = int(frame[1] - origin["y"] + 4)
        return image.getpixel((x, y))  # type: ignore[return-value]

    red, blue = colour_at(left), colour_at(right)
    assert red[0] > 200 and red[2] < 60, red  # the source image (red), drawn large
    assert blue[2] > 200 and blue[0] < 60, blue  # the target image (blue)

    await page.keyboard.press("ArrowRight")  # the cards' order: accepted by id, then rejected by id
    assert "alike-2" in (await zoom.text_content() or "")
    await page.keyboard.press("ArrowLeft")
    assert "dog-cat" in (await zoom.text_content() or "")
    await page.keyboard.press("Escape")
    await zoom.wait_for(state="hidden")
    assert await page.evaluate("document.activeElement.id") == "dog-cat"
    await page.keyboard.press("k")
    assert await page.evaluate("document.activeElement.id") == "cup-mug"
    await page.keyboard.press("Enter")
    await zoom.wait_for(state="visible")
    assert "cup-mug" in (await zoom.text_content() or "")
