"""Screenshots of the real page, as a visitor sees it: every tab at 1280x900 and 390x844 (phone).

    python tools/screenshots.py [OUTPUT_DIR]     # default: test-output/screens

Starts `app.py --demo` in-process (offline), drives Debian's chromium with Playwright, uses each tab
once, and writes PNGs. docs/screenshot.png (the README's picture) is the 1280-wide Compare tab.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SIZES = {"desktop": (1280, 900), "phone": (390, 844)}


def use_tabs(page, out: Path, size: str) -> dict:
    """Use every tab once; return what overflowed sideways, per tab."""
    overflow = {}

    def shot(name):
        page.screenshot(path=str(out / f"{size}-{name}.png"), full_page=True)
        overflow[name] = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")

    page.get_by_text("Sampling").first.click()  # the controls, open
    page.wait_for_selector("#max-new-tokens input[type=number]")
    shot("sampling")
    page.get_by_text("Sampling").first.click()
    page.fill("#chat-input textarea", "Who was Joseph?")
    page.click("#chat-send")
    page.wait_for_function("document.querySelector('#chat-metrics').innerText.includes('tokens')", timeout=60000)
    shot("chat")
    page.get_by_role("tab", name="Completion").click()
    page.check("#show-probs input")
    page.click("#completion-generate")
    page.wait_for_function("document.querySelector('#completion-metrics').innerText.includes('tokens')",
                           timeout=60000)
    page.wait_for_selector("#completion-heatmap span.tok", timeout=30000)
    shot("completion")
    page.get_by_role("tab", name="Score", exact=True).click()
    page.click("#score-button")
    page.wait_for_selector("#score-heatmap span.tok", timeout=60000)
    page.click("#curve-button")
    page.wait_for_selector("#curve-plot svg circle", timeout=120000)
    shot("score")
    page.get_by_role("tab", name="Compare").click()
    page.click("#compare-button")
    page.wait_for_function(
        "[0,1,2].every(i => document.querySelector('#compare-metrics-' + i).innerText.includes('tokens'))",
        timeout=120000)
    shot("compare")
    return overflow


def main() -> int:
    from playwright.sync_api import sync_playwright

    import app
    from model_utils.settings import Settings

    out = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "test-output" / "screens"
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as cache:
        with app.running(Settings(demo=True, device="cpu", cache_dir=cache)) as (url, _):
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=shutil.which("chromium"), headless=True,
                                            args=["--no-sandbox", "--disable-gpu"])
                for size, (w, h) in SIZES.items():
                    page = browser.new_page(viewport={"width": w, "height": h})
                    page.goto(url)
                    page.wait_for_selector("#chat-input textarea")
                    print(size, "sideways overflow (px):", use_tabs(page, out, size))
                    page.close()
                browser.close()
    docs = ROOT / "docs"
    docs.mkdir(exist_ok=True)
    shutil.copy(out / "desktop-compare.png", docs / "screenshot.png")
    print("wrote", out, "and", docs / "screenshot.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
