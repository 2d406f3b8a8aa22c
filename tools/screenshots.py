"""Screenshots of the real page, as a visitor sees it: every tab at 1280x900 and 390x844 (phone),
in the light and the dark colour scheme, and the README's picture.

    python tools/screenshots.py [OUTPUT_DIR]     # default: test-output/screens
    python tools/screenshots.py --smoke [OUTPUT_DIR]   # seconds: the Chat tab at 1280 px, light (default: a temp dir)

Starts `app.py --demo` in-process (offline), drives Debian's chromium with Playwright, uses each tab
once, and writes OUTPUT_DIR/{desktop,phone}-{light,dark}-{tab}.png, plus docs/screenshot.png (the
README's picture: the whole Compare tab at 1280 px, light). ``--smoke`` never writes docs/screenshot.png.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SIZES = {"desktop": (1280, 900), "phone": (390, 844)}
THEMES = ("light", "dark")  # Gradio follows the browser's prefers-color-scheme
HERO = ROOT / "docs" / "screenshot.png"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def plot_curve(page, memorization: bool = False) -> None:
    """On the Score tab: score the demo's training passage, plot it across the demo's checkpoints, and (with
    ``memorization``) test whether each checkpoint reproduces it. The browser tests use it too."""
    from model_utils.store.demo_model import TRAINED_PASSAGE

    page.get_by_role("tab", name="Score", exact=True).click()
    page.fill("#score-text textarea", TRAINED_PASSAGE.read_text()[:600])
    page.click("#score-button")
    page.wait_for_selector("#score-heatmap span.tok", timeout=60000)
    page.click("#curve-button")
    page.wait_for_selector("#learned-heatmap table td", timeout=120000)
    if memorization:
        page.get_by_text("Memorization: does the model reproduce this text?").click()
        page.click("#memo-button")
        page.wait_for_selector("#memo-table .virtual-row", timeout=120000)


def use_chat(page, shot) -> None:
    """One Chat turn, then ``shot("chat")``: what --smoke takes."""
    page.fill("#chat-input textarea", "Who was Joseph?")
    page.click("#chat-send")
    page.wait_for_function("document.querySelector('#chat-metrics').innerText.includes('tokens')", timeout=60000)
    shot("chat")


def use_tabs(page, shot) -> None:
    """Use every tab once, calling ``shot(name)`` after each."""
    page.get_by_text("Sampling").first.click()  # the controls, open
    page.wait_for_selector("#max-new-tokens input[type=number]")
    shot("sampling")
    page.get_by_text("Sampling").first.click()
    page.fill("#chat-input textarea", "Who was Joseph?")
    page.click("#chat-send")
    page.wait_for_function("document.querySelector('#chat-metrics').innerText.includes('tokens')", timeout=60000)
    page.locator("#chat-show-probs input").check()  # the second reply's tokens, coloured, once it is done
    page.fill("#chat-input textarea", "And who was his father?")
    page.click("#chat-send")
    page.wait_for_selector("#chat-heatmap span.tok", timeout=60000)
    shot("chat")
    page.get_by_role("tab", name="Completion").click()
    page.check("#show-probs input")
    page.click("#completion-generate")
    page.wait_for_function("document.querySelector('#completion-metrics').innerText.includes('tokens')",
                           timeout=60000)
    page.wait_for_selector("#completion-heatmap span.tok", timeout=30000)
    shot("completion")
    plot_curve(page, memorization=True)
    shot("score")
    page.get_by_role("tab", name="Compare").click()
    page.click("#compare-button")
    page.wait_for_function(
        "[0,1,2].every(i => document.querySelector('#compare-metrics-' + i).innerText.includes('tokens'))",
        timeout=120000)
    shot("compare")
    page.get_by_role("tab", name="Benchmarks").click()  # the demo's own task, 100 documents per checkpoint
    page.fill("#benchmark-limit input", "100")
    page.click("#benchmark-run")
    page.wait_for_function("document.querySelector('#benchmark-status').innerText.includes('done')", timeout=300000)
    shot("benchmarks")


def main() -> int:
    from playwright.sync_api import sync_playwright

    import app
    from model_utils.settings import Settings

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, nargs="?", help="where the pictures go (default: test-output/screens; "
                        "--smoke: a temporary folder)")
    parser.add_argument("--smoke", action="store_true", help="seconds: the Chat tab at 1280 px, light only")
    args = parser.parse_args()
    smoke = args.smoke
    out = args.out or (Path(tempfile.mkdtemp(prefix="pythia-smoke-")) if smoke else ROOT / "test-output" / "screens")
    out.mkdir(parents=True, exist_ok=True)
    HERO.parent.mkdir(exist_ok=True)
    sizes = {"desktop": SIZES["desktop"]} if smoke else SIZES
    with tempfile.TemporaryDirectory() as cache:
        with app.running(Settings(demo=True, device="cpu", cache_dir=cache)) as (url, _):
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=shutil.which("chromium"), headless=True,
                                            args=CHROMIUM_ARGS)
                for size, (w, h) in sizes.items():
                    for theme in THEMES[:1] if smoke else THEMES:
                        page = browser.new_page(viewport={"width": w, "height": h}, color_scheme=theme)
                        page.goto(url)
                        page.wait_for_selector("#chat-input textarea")
                        overflow = {}

                        def shot(name, page=page, prefix=f"{size}-{theme}", overflow=overflow):
                            page.screenshot(path=str(out / f"{prefix}-{name}.png"), full_page=True)
                            overflow[name] = page.evaluate("document.documentElement.scrollWidth - innerWidth")
                            if (prefix, name) == ("desktop-light", "compare") and not smoke:  # whole or not at all
                                partial = HERO.with_suffix(".part")
                                shutil.copy(out / f"{prefix}-{name}.png", partial)
                                os.replace(partial, HERO)

                        (use_chat if smoke else use_tabs)(page, shot)
                        print(size, theme, "sideways overflow (px):", overflow)
                        page.close()
                browser.close()
    print("wrote", out, *([] if smoke else ["and", HERO]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
