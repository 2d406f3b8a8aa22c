"""The page a visitor gets from the main command (`python app.py`, no flags) on a server that cannot reach
the Hub and has nothing downloaded: it opens on the demo model, says why in words meant for visitors, and the
first message is answered. Chromium (Debian's) against the real app, in-process; screenshots for people in
light and dark, at 1280 and 390 px wide."""


import pytest

from model_utils.settings import Settings
from model_utils.store.hub import bound_requests

from hub_server import BlackHole
from live_app import running_app

pytestmark = pytest.mark.slow  # a live server and a browser


@pytest.fixture(scope="module")
def offline_url(tmp_path_factory):
    from huggingface_hub import constants

    hole = BlackHole()
    patch = pytest.MonkeyPatch()
    patch.setattr(constants, "ENDPOINT", hole.url)
    patch.setattr(constants, "HF_HUB_CACHE", str(tmp_path_factory.mktemp("empty-hf-cache")))
    settings = Settings(cache_dir=str(tmp_path_factory.mktemp("cache")), device="cpu", hub_timeout=1)
    try:
        with running_app(settings) as (url, _):
            yield url
    finally:
        patch.undo()
        hole.close()
        bound_requests()  # as conftest set it up


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("width, height", [(1280, 900), (390, 844)])
def test_offline_the_page_opens_on_the_demo_model_and_says_why(browser, offline_url, scheme, width, height,
                                                               output_dir):
    page = browser.new_page(viewport={"width": width, "height": height}, color_scheme=scheme)
    try:
        page.goto(offline_url)
        page.wait_for_selector("#chat-input textarea")
        notice = page.locator("#startup-notice").inner_text()
        assert "The demo model is selected" in notice and "pythia-160m" in notice and "cannot be reached" in notice
        assert page.locator("#model-picker input").input_value().startswith("demo-pythia-kjv")
        assert "King James Bible" in page.locator("#model-status").inner_text()
        page.fill("#chat-input textarea", "And God said")
        page.click("#chat-send")
        page.wait_for_function("document.querySelector('#chat-metrics').innerText.includes('tokens')",
                               timeout=60000)
        assert "demo-pythia-kjv" in page.locator("#chat-metrics").inner_text()
        assert page.locator("#chat-notice").inner_text().strip() == ""
        text = page.locator("body").inner_text()
        assert "--demo" not in text and "python app.py" not in text, "no advice for operators on the page"
        assert page.evaluate("document.documentElement.scrollWidth - window.innerWidth") <= 0
        page.screenshot(path=str(output_dir / f"offline-default-{scheme}-{width}.png"), full_page=True)
    finally:
        page.close()
