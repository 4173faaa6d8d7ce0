"""The web page in a real browser (headless system Chromium driven by Playwright) against a real gateway
process, with the worker and the four services of the stack running the job; and the image route over HTTP."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from playwright.async_api import Browser, ConsoleMessage, Page

from tests.browser import chromium

from .conftest import KEYS

EXAMPLES = Path(__file__).parents[2] / "examples" / "caption_pairs.jsonl"
STEPS = {"generate", "pair_filter", "proposals", "difference_areas", "region_labels", "difference_caption"}
# a few seconds a pair alone; over a minute for three on a busy two-core machine
JOB_TIMEOUT_MS = 180_000

# Installed on the page before Start: the job may move faster than any poll, so the page's own DOM changes
# are recorded, and the test reads the largest count each step showed.
RECORD_STEPS = """() => {
  window.seenSteps = {};
  const note = () => {
    for (const row of document.querySelectorAll("#steps [data-step]")) {
      const count = Number(row.dataset.count);
      if (count > 0) window.seenSteps[row.dataset.step] = Math.max(window.seenSteps[row.dataset.step] || 0, count);
    }
  };
  new MutationObserver(note).observe(document.getElementById("steps"), {
    subtree: true, childList: true, attributes: true, attributeFilter: ["data-count"],
  });
}"""
IMAGES_LOADED = """(card) => {
  const images = [...card.querySelectorAll("img[data-testid=pair-image]")];
  return images.length === 2 && images.every((image) => image.complete && image.naturalWidth > 0);
}"""


def example_lines(count: int) -> list[str]:
    return EXAMPLES.read_text().splitlines()[:count]


def auth(who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[who]}"}


@pytest_asyncio.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as launched:
        yield launched


@pytest_asyncio.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context(accept_downloads=True)
    opened = await context.new_page()
    try:
        yield opened
    finally:
        await context.close()


async def test_the_page_runs_a_job_and_shows_progress_funnel_gallery_and_exports(page: Page, gateway_url: str) -> None:
    failures: list[str] = []
    page.on("pageerror", lambda error: failures.append(f"uncaught: {error}"))
    page.on("console", lambda message: _note_console_error(message, failures))
    await page.goto(f"{gateway_url}/")

    await page.fill("#api-key", KEYS["alice"])
    await page.fill("#pairs", "\n".join(example_lines(3)))
    await page.evaluate(RECORD_STEPS)
    await page.click("#start")
    await page.wait_for_selector("#state[data-state=done]", timeout=JOB_TIMEOUT_MS)

    seen_steps: dict[str, int] = await page.evaluate("window.seenSteps")
    assert seen_steps, "no step ever showed a waiting or running pair"
    assert set(seen_steps) <= STEPS and all(1 <= count <= 3 for count in seen_steps.values())
    assert await page.text_content("#done") == "3" and await page.text_content("#total") == "3"
    assert await page.locator("#target-box").is_hidden()  # a job without target_accepted shows none
    accepted = int(await page.text_content("#accepted") or "")
    rejected = int(await page.text_content("#rejected") or "")
    assert accepted + rejected == 3 and accepted >= 1
    assert await page.get_attribute("#steps [data-step=generate]", "data-count") == "0"  # nothing left waiting

    bars = page.locator("#funnel [data-testid=funnel-bar]")
    assert await bars.count() >= 1
    counts = await bars.evaluate_all("(bars) => bars.map((bar) => Number(bar.dataset.count))")
    assert sum(counts) == 3
    assert await bars.first.get_attribute("data-key") == "accepted"

    cards = page.locator("[data-testid=gallery-card]")
    await cards.first.wait_for(timeout=30_000)
    assert await cards.count() == 3
    sample = page.locator("[data-testid=gallery-card][data-status=accepted]").first
    await page.wait_for_function(IMAGES_LOADED, arg=await sample.element_handle(), timeout=30_000)
    sources = await sample.locator("img").evaluate_all("(images) => images.map((image) => image.src)")
    assert len(sources) == 2 and all(source.startswith("blob:") for source in sources)
    assert await sample.locator("[data-testid=box]").count() >= 1
    assert "crop cosine" in (await sample.locator("[data-testid=box]").first.get_attribute("title") or "")
    captions = [text.strip() for text in await sample.locator("[data-testid=caption]").all_text_contents()]
    assert captions and all(captions)
    rejections = page.locator("[data-testid=gallery-card][data-status=rejected] [data-testid=rejection]")
    assert await rejections.count() == rejected
    assert all(text.startswith("rejected at ") for text in await rejections.all_text_contents())

    async with page.expect_download() as started:
        await page.click("#export-jsonl")
    download = await started.value
    saved = await download.path()
    records = [json.loads(line) for line in Path(saved).read_text().splitlines() if line.strip()]
    assert {record["pair_id"] for record in records} == {json.loads(line)["id"] for line in example_lines(3)}
    assert download.suggested_filename.endswith(".jsonl")

    await page.reload()  # the key comes back from localStorage, the job from the address
    assert await page.input_value("#api-key") == KEYS["alice"]
    await page.wait_for_selector("#state[data-state=done]", timeout=30_000)
    await page.locator("[data-testid=gallery-card]").first.wait_for(timeout=30_000)

    assert await page.is_hidden("#error")
    assert not failures, failures


async def test_the_page_runs_a_job_of_single_captions(page: Page, gateway_url: str) -> None:
    failures: list[str] = []
    page.on("pageerror", lambda error: failures.append(f"uncaught: {error}"))
    await page.goto(f"{gateway_url}/")
    await page.fill("#api-key", KEYS["alice"])
    await page.fill("#pairs", example_lines(1)[0])
    await page.fill("#captions", "A dog on the grass\n\nTwo cats sleeping on a sofa")
    await page.click("#start")  # both boxes filled: said before anything is sent
    await page.wait_for_selector("#error:not([hidden])")
    assert "not both" in (await page.text_content("#error") or "")
    await page.fill("#pairs", "")
    await page.fill("#rewrites", "2")
    await page.click("#start")
    await page.wait_for_selector("#state[data-state=done]", timeout=JOB_TIMEOUT_MS)
    assert await page.text_content("#total") == "4"  # two captions, two rewrites each
    cards = page.locator("[data-testid=gallery-card]")
    await cards.first.wait_for(timeout=30_000)
    ids = sorted(await cards.evaluate_all("(cards) => cards.map((card) => card.dataset.pairId)"))
    assert ids == ["l1-r0", "l1-r1", "l2-r0", "l2-r1"]  # caption n, rewrite k
    assert not failures, failures


def _note_console_error(message: ConsoleMessage, failures: list[str]) -> None:
    if message.type == "error":
        failures.append(f"console: {message.text}")


async def test_the_page_shows_the_error_of_a_wrong_key(page: Page, gateway_url: str) -> None:
    await page.goto(f"{gateway_url}/")
    await page.fill("#api-key", "not-a-key")
    await page.fill("#pairs", example_lines(1)[0])
    await page.click("#start")
    error = page.locator("#error")
    await error.wait_for(state="visible", timeout=10_000)
    assert "401" in (await error.text_content() or "") and "unknown API key" in (await error.text_content() or "")
    assert await page.is_hidden("#job-section")


async def test_the_page_reports_a_bad_line_before_sending(page: Page, gateway_url: str) -> None:
    await page.goto(f"{gateway_url}/")
    await page.fill("#pairs", example_lines(1)[0] + "\n{not json")
    await page.click("#start")
    await page.locator("#error").wait_for(state="visible", timeout=10_000)
    assert "line 2" in (await page.text_content("#error") or "")


def test_the_image_route_serves_a_jobs_png_to_its_owner_only(gateway_url: str) -> None:
    with httpx.Client(base_url=gateway_url, timeout=30) as client:
        pair = json.loads(example_lines(1)[0])
        created = client.post("/v1/jobs", json={"pairs": [pair]}, headers=auth("alice"))
        assert created.status_code == 202, created.text
        job_id = created.json()["id"]
        deadline = time.monotonic() + JOB_TIMEOUT_MS / 1000
        while client.get(f"/v1/jobs/{job_id}", headers=auth("alice")).json()["state"] != "done":
            assert time.monotonic() < deadline, "the job did not finish"
            time.sleep(0.5)
        record = client.get(f"/v1/jobs/{job_id}/samples", headers=auth("alice")).json()["items"][0]
        name = record["image_source"].removeprefix("images/")

        image = client.get(f"/v1/jobs/{job_id}/images/{name}", headers=auth("alice"))
        assert image.status_code == 200 and image.headers["content-type"] == "image/png"
        assert image.content.startswith(b"\x89PNG\r\n\x1a\n")

        unknown = client.get(f"/v1/jobs/{job_id}/images/{'0' * 64}.png", headers=auth("alice"))
        assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "not_found"
        assert client.get(f"/v1/jobs/{job_id}/images/{name}", headers=auth("bob")).status_code == 403
        assert client.get(f"/v1/jobs/{job_id}/images/{name}").status_code == 401
        for bad in ("..%2Fmanifest.json", "manifest.json", name.upper(), f"{name[:-4]}.jpg"):
            answer = client.get(f"/v1/jobs/{job_id}/images/{bad}", headers=auth("alice"))
            assert answer.status_code in (404, 422), (bad, answer.status_code)
            assert "error" in answer.json()

        page = client.get("/")
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        assert "default-src 'self'" in page.headers["content-security-policy"]
        assert client.get("/static/app.js").headers["content-type"].startswith("text/javascript")
        assert client.get("/static/index.html").status_code == 404  # only the page's own assets, by name


@pytest.mark.parametrize("which", ["gateway", "similarity"])
async def test_the_api_docs_list_the_operations_with_nothing_loaded_from_elsewhere(
    page: Page, gateway_url: str, stack: dict, which: str
) -> None:
    base = gateway_url if which == "gateway" else stack["urls"][which]
    outside: list[str] = []
    local = (base, f"blob:{base}", "data:")  # ReDoc runs a worker from a blob of the page's own origin
    outside: dict[str, str | None] = {}  # URL elsewhere -> why it failed (none: it was answered)
    page.on("request", lambda request: None if request.url.startswith(local) else outside.setdefault(request.url, None))
    page.on(
        "requestfailed",
        lambda request: outside.__setitem__(request.url, request.failure) if request.url in outside else None,
    )
    await page.goto(f"{base}/docs")
    operations = page.locator(".opblock-summary-path")
    await operations.first.wait_for(timeout=30_000)
    paths = set(await operations.all_text_contents())
    assert ("/v1/jobs" if which == "gateway" else "/v1/cosine") in {path.replace("\u200b", "") for path in paths}
    await page.goto(f"{base}/redoc")
    await page.locator("[data-section-id]").first.wait_for(timeout=30_000)
    await page.wait_for_load_state("networkidle")
    # ReDoc's bundle asks a CDN for its logo: the page's policy stops it in the browser, before any network
    assert all(failure in {"csp", "net::ERR_BLOCKED_BY_CSP"} for failure in outside.values()), outside


async def test_the_page_lists_your_jobs_and_opens_one(page: Page, gateway_url: str) -> None:
    with httpx.Client(base_url=gateway_url, timeout=30) as client:
        pair = json.loads(example_lines(1)[0])
        created = client.post("/v1/jobs", json={"pairs": [pair]}, headers=auth("bob"))
        assert created.status_code == 202, created.text
        job_id = created.json()["id"]
    await page.goto(f"{gateway_url}/")
    await page.fill("#api-key", KEYS["bob"])
    await page.dispatch_event("#api-key", "change")
    row = page.locator(f"#jobs tr[data-job-id='{job_id}']")
    await row.wait_for(timeout=30_000)
    await page.select_option("#jobs-state", "cancelled")
    await row.wait_for(state="detached", timeout=10_000)
    assert await page.is_visible("#jobs-empty")
    await page.select_option("#jobs-state", "")
    await row.locator("a").click()
    await page.wait_for_selector("#state[data-state=done]", timeout=JOB_TIMEOUT_MS)
    assert await page.text_content("#job-id") == job_id


async def test_the_gallery_filters_searches_and_shows_a_pair_large(
    page: Page, gateway_url: str, tmp_path: Path
) -> None:
    from PIL import Image, ImageStat

    with httpx.Client(base_url=gateway_url, timeout=30) as client:
        pairs = [json.loads(line) for line in example_lines(3)]
        job_id = client.post("/v1/jobs", json={"pairs": pairs}, headers=auth("alice")).json()["id"]
    await page.goto(f"{gateway_url}/")
    await page.fill("#api-key", KEYS["alice"])
    await page.goto(f"{gateway_url}/#job={job_id}")
    await page.reload()
    await page.wait_for_selector("#state[data-state=done]", timeout=JOB_TIMEOUT_MS)
    cards = page.locator("[data-testid=gallery-card]")
    await cards.first.wait_for(timeout=30_000)
    assert await cards.count() == 3
    accepted = int(await page.text_content("#accepted") or "0")

    await page.select_option("#gallery-outcome", "accepted")
    await page.wait_for_function(f"() => document.querySelectorAll('[data-testid=gallery-card]').length === {accepted}")
    await page.select_option("#gallery-outcome", "")
    await page.fill("#gallery-search", pairs[1]["id"])
    await page.wait_for_function("() => document.querySelectorAll('[data-testid=gallery-card]').length === 1")
    assert await cards.first.get_attribute("data-pair-id") == pairs[1]["id"]
    await page.fill("#gallery-search", "")
    await page.wait_for_function("() => document.querySelectorAll('[data-testid=gallery-card]').length === 3")

    first = page.locator("[data-testid=gallery-card][data-status=accepted]").first
    await page.wait_for_function(IMAGES_LOADED, arg=await first.element_handle(), timeout=30_000)
    small = await first.locator(".frame").first.bounding_box()
    name = await first.get_attribute("data-pair-id")
    await first.click()
    zoom = page.locator("#zoom")
    await zoom.wait_for(state="visible")
    large = await zoom.locator(".frame").first.bounding_box()
    assert small and large and large["width"] > 1.5 * small["width"]
    assert await zoom.locator("[data-testid=box]").count() >= 2  # the boxes on both images
    labels = await zoom.locator("[data-testid=region] .labels").all_text_contents()
    assert labels and all(" → " in text for text in labels)  # both labels of each region
    shot = tmp_path / "zoomed.png"
    await zoom.locator(".frame").first.screenshot(path=str(shot))
    picture = Image.open(shot).convert("L")
    assert picture.width >= large["width"] - 2 and ImageStat.Stat(picture).stddev[0] > 5  # an image, drawn large

    await page.keyboard.press("ArrowRight")
    assert await zoom.locator("[data-testid=gallery-card]").get_attribute("data-pair-id") != name
    await page.keyboard.press("Escape")
    await zoom.wait_for(state="hidden")
