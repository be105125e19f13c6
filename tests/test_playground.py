"""The playground page in a real browser: the system's Chromium (tests/system-packages.sh installs it) driven by
Playwright against a real `tango-rt serve` on the tiny fixture, with an API key and the fast preset as the
server's default. What a user does: give the key (a wrong one shows the 401's message), type a prompt and press
Enter (the clip the page plays is the one the API gives for the same request), drag a span on the waveform (the
inpaint request carries its seconds), stream a long clip, reload (the history is still there), delete, and see
the page on a phone's width. Screenshots go to $TANGO_RT_SCREENSHOTS when set (docs/ holds the README's)."""

from __future__ import annotations

import base64
import io
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("torch")
soundfile = pytest.importorskip("soundfile")
sync_api = pytest.importorskip("playwright.sync_api")

from serving_helpers import GENERATE, ServerProcess  # noqa: E402

KEY = "playground-key"
CHROMIUM = next((p for p in ("/usr/lib/chromium/chromium", shutil.which("chromium"), shutil.which("chromium-browser"))
                 if p and Path(p).exists()), None)
# headless in a container: no sandbox (root), no GPU, no first-run or network chatter; audio may start unprompted
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--no-first-run", "--autoplay-policy=no-user-gesture-required"]
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium: run tests/system-packages.sh")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    key = tmp_path_factory.mktemp("key") / "key"
    key.write_text(KEY)
    srv = ServerProcess("--api-key-file", str(key), "--preset", "fast", "--max-duration", "20",
                        headers={"X-API-Key": KEY})
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.terminate()


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, server):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(server.url + "/")
    yield page
    context.close()
    assert not errors, f"the page raised: {errors}"


def _give_key(page, key: str) -> None:
    page.wait_for_selector("#key-dialog[open]")
    page.fill("#key-input", key)
    page.press("#key-input", "Enter")


def _cards(page) -> int:
    return page.locator("article.card").count()


def _clip_bytes(page, card) -> bytes:
    """The audio the page plays, read back from its blob URL."""
    encoded = card.locator("audio").evaluate(
        """async (audio) => {
            const bytes = new Uint8Array(await (await fetch(audio.src)).arrayBuffer());
            let raw = ""; for (const b of bytes) raw += String.fromCharCode(b); return btoa(raw);
        }""")
    return base64.b64decode(encoded)


def _samples(data: bytes) -> np.ndarray:
    return soundfile.read(io.BytesIO(data), dtype="int16")[0]


def _shot(page, name: str) -> None:
    folder = os.environ.get("TANGO_RT_SCREENSHOTS")
    if folder:
        page.screenshot(path=str(Path(folder) / name), full_page=True)


def test_the_page_is_open_and_the_api_is_not(server):
    import httpx

    bare = httpx.Client(base_url=server.url)
    assert bare.get("/").status_code == 200 and "playground.js" in bare.get("/").text
    assert bare.get("/ui/playground.js").headers["content-type"].startswith("text/javascript")
    assert bare.get("/ui/..%2Fsettings.py").status_code == 404 and bare.get("/ui/nothing.js").status_code == 404
    assert bare.get("/v1/models").status_code == 401  # the page is open; what it calls is not
    assert "/" not in server.client.get("/openapi.json").json()["paths"]


def test_a_wrong_key_says_so_and_the_right_one_loads_the_model(page):
    _give_key(page, "not-the-key")
    page.wait_for_selector("#error:not([hidden])")
    assert "401 unauthorized" in page.inner_text("#error") and "API key" in page.inner_text("#error")
    _give_key(page, KEY)  # a 401 opens the dialog again
    page.wait_for_function("document.querySelector('#model').textContent.includes('torch')")
    assert page.locator("#error").is_hidden()
    assert page.locator("#preset option", has_text="turbo").count() == 1
    assert "server default (fast)" in page.inner_text("#preset")


def test_enter_makes_the_clip_the_api_makes_and_draws_it(page, server):
    _give_key(page, KEY)
    page.fill("#duration", "1")
    page.fill("#seed", "7")
    page.fill("#prompt", "rain on a tin roof")
    page.press("#prompt", "Enter")
    card = page.locator("article.card").first
    card.locator("canvas.wave[data-drawn]").wait_for()
    assert "1.00 s" in card.locator(".meta").inner_text() and "seed 7" in card.locator(".meta").inner_text()
    direct = server.client.post(GENERATE, json={"prompt": "rain on a tin roof", "duration": 1, "seed": 7})
    assert np.array_equal(_samples(_clip_bytes(page, card)), _samples(direct.content))
    duration = card.locator("audio").evaluate(
        "a => new Promise(r => a.readyState >= 1 ? r(a.duration) : a.addEventListener('loadedmetadata', "
        "() => r(a.duration)))")
    assert duration == pytest.approx(1.0, abs=1e-3)
    inked = card.locator("canvas.wave").evaluate(
        "c => c.getContext('2d').getImageData(0, 0, c.width, c.height).data.filter((v, i) => i % 4 == 3 && v)"
        ".length")
    assert inked > card.locator("canvas.wave").evaluate("c => c.width")  # more than a flat line
    request = card.locator("pre.request").text_content()
    assert '"seed": 7' in request and '"duration": 1' in request
    _shot(page, "playground-desktop.png")


def test_a_dragged_span_is_regenerated_and_the_history_survives_a_reload(page):
    _give_key(page, KEY)
    page.fill("#duration", "2")
    page.fill("#prompt", "a dog barks twice")
    page.press("#prompt", "Enter")
    wave = page.locator("article.card canvas.wave[data-drawn]").first
    wave.wait_for()
    box = wave.bounding_box()
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] * 0.25, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.5, y, steps=5)
    page.mouse.up()
    before = _cards(page)
    with page.expect_request(lambda r: r.url.endswith(GENERATE) and r.method == "POST") as sent:
        page.locator("article.card .inpaint").first.click()
    body = sent.value.post_data_json
    (start, end), = body["inpaint"]
    assert start == pytest.approx(0.5, abs=0.03) and end == pytest.approx(1.0, abs=0.03) and body["audio"]
    page.wait_for_function(f"document.querySelectorAll('article.card').length > {before}")
    assert "(inpainted)" in page.locator("article.card .title").first.inner_text()
    total = _cards(page)
    page.reload()
    page.wait_for_function(f"document.querySelectorAll('article.card').length == {total}")
    page.locator("article.card .delete").first.click()
    page.wait_for_function(f"document.querySelectorAll('article.card').length == {total - 1}")
    page.reload()
    page.wait_for_function(f"document.querySelectorAll('article.card').length == {total - 1}")


def test_a_long_clip_streams_and_plays_whole_on_a_phone(browser, server):
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    page = context.new_page()
    page.goto(server.url + "/")
    _give_key(page, KEY)
    page.fill("#duration", "12")
    page.fill("#prompt", "wind through pine trees")
    with page.expect_response(lambda r: r.url.endswith(GENERATE)) as answered:
        page.press("#prompt", "Enter")
    assert answered.value.request.post_data_json["stream"] is True
    card = page.locator("article.card", has_text="wind through pine trees").first
    card.locator("canvas.wave[data-drawn]").wait_for(timeout=120_000)
    meta = card.locator(".meta").inner_text()
    assert "12.00 s" in meta and "streamed" in meta and f"seed {answered.value.headers['x-seed']}" in meta
    card.locator(".reuse-seed").click()  # the server's fresh seed, exactly (a JSON number a browser keeps)
    assert page.input_value("#seed") == answered.value.headers["x-seed"]
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # nothing wider than the phone
    _shot(page, "playground-phone.png")
    context.close()
