"""The Benchmarks tab in a real browser, on the offline demo model: Run grows the chart checkpoint by checkpoint,
Stop keeps the finished points, a reload gets them back at once, the CSV, PNG and results JSON download, and a phone
shows it without sideways scrolling."""

from __future__ import annotations

import faulthandler
import json
import re

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from model_utils.settings import Settings

from live_app import running_app

pytestmark = pytest.mark.slow  # a live server and a browser

# documents per checkpoint: a few seconds each, so that Stop, which reaches the server through Gradio's queue (seconds
# on a loaded 2-core machine), lands while checkpoints remain
LIMIT = "600"


@pytest.fixture(scope="module")
def demo_url(tmp_path_factory):
    with running_app(Settings(demo=True, cache_dir=str(tmp_path_factory.mktemp("bench-page")), device="cpu")) as (
            url, _):
        yield url


def open_tab(page, url):
    page.goto(url)
    page.get_by_role("tab", name="Benchmarks", exact=True).click()
    page.wait_for_selector("#benchmark-run")
    page.fill("#benchmark-limit input", LIMIT)


PROBLEMS: dict[int, list[str]] = {}  # per page: what its console, its scripts and its requests said went wrong


def new_page(browser, **options):
    """A page whose console errors, script errors and failed requests are kept for a failure's message."""
    page = browser.new_page(**options)
    problems = PROBLEMS.setdefault(id(page), [])
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text[:300]}") if m.type in (
        "error", "warning") else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {str(e)[:500]}"))
    page.on("requestfailed", lambda r: problems.append(f"request failed: {r.method} {r.url[-80:]} {r.failure}"))
    page.on("response", lambda r: problems.append(f"HTTP {r.status}: {r.request.method} {r.url[-80:]}") if (
        r.status >= 400) else None)
    return page


def wait_for_status(page, words: list[str], timeout_ms: int, output_dir) -> None:
    """Until the status line says one of ``words``. If it never does, the test fails with what the page shows, the
    page's console errors and failed requests, and where the server's threads were (its app runs in this process):
    a hang names its place. (This wait timed out 1 run in about 20: the job had ended, and the stream of updates
    ended on one taken before its end -- Benchmarks.run read ``finished`` after yielding; fixed, with a test in
    tests/test_benchmarks.py.)"""
    try:
        page.wait_for_function("(words) => words.some((w) => "
                               "document.querySelector('#benchmark-status').innerText.includes(w))",
                               arg=words, timeout=timeout_ms)
    except PlaywrightTimeout:
        stacks = output_dir / "benchmarks-stuck-threads.txt"
        with open(stacks, "w") as f:
            faulthandler.dump_traceback(file=f, all_threads=True)
        page.screenshot(path=str(output_dir / "benchmarks-stuck.png"), full_page=True)
        job = "\n\n".join(b for b in stacks.read_text().split("\n\n")
                          if ("benchmarks.py" in b or "score" in b) and "wait_for_status" not in b)
        problems = "\n".join(PROBLEMS.get(id(page), [])[-30:])
        pytest.fail(f"the status never said {words}: {page.locator('#benchmark-status').inner_text()!r}, notice "
                    f"{page.locator('#benchmark-notice').inner_text()!r}; the page's problems:\n{problems}\n"
                    f"the job's threads ({stacks}; none: the job ended):\n{job[:6000]}")


def finished(page) -> int:
    match = re.search(r"(\d+) of (\d+)", page.locator("#benchmark-status").inner_text())
    return int(match.group(1)) if match else 0


def test_run_grows_the_chart_stop_keeps_it_and_a_reload_brings_it_back(browser, demo_url, output_dir):
    page = new_page(browser, viewport={"width": 1200, "height": 1100})
    try:
        open_tab(page, demo_url)
        page.click("#benchmark-run")
        page.wait_for_selector("#benchmark-charts svg.wide circle.point", timeout=120000)  # the first checkpoint
        page.click("#benchmark-stop")
        wait_for_status(page, ["stopped", "done"], 120000, output_dir)
        assert "stopped" in page.locator("#benchmark-status").inner_text(), "every checkpoint finished before Stop"
        kept = finished(page)
        assert 1 <= kept < 9, page.locator("#benchmark-status").inner_text()
        assert page.locator("#benchmark-charts svg.wide circle.point").count() == kept  # acc of each finished one
        table = page.locator("#benchmark-table").inner_text()
        assert "step0" in table and "kjv_lambada" in table and "stopped" in table
        page.screenshot(path=str(output_dir / "benchmarks-stopped.png"), full_page=True)

        open_tab(page, demo_url)  # a reload: the kept points come back before anything is evaluated
        page.click("#benchmark-run")
        page.wait_for_function(f"document.querySelector('#benchmark-status').innerText.includes('{kept} from "
                               "earlier runs')", timeout=60000)
        wait_for_status(page, ["done"], 300000, output_dir)
        assert finished(page) == 9
        assert page.locator("#benchmark-charts svg.wide circle.point").count() == 9
        # +-1 standard error at each checkpoint that got anything right (0 +- 0 has no bar)
        assert page.locator("#benchmark-charts svg.wide line.error-bar").count() >= 5
        with page.expect_download() as download:
            page.click("#benchmark-csv")
        rows = open(download.value.path()).read().splitlines()
        assert rows[0] == "model,revision,step,task,metric,value,stderr" and len(rows) == 1 + 9 * 2
        with page.expect_download() as download:
            page.click("#benchmark-json")
        results = json.load(open(download.value.path()))
        assert [r["revision"] for r in results][::8] == ["step0", "main"]
        assert results[0]["results"]["acc,none"] < 0.01 < 0.1 < results[-1]["results"]["acc,none"]  # it learned
        with page.expect_download() as download:
            page.click("#benchmark-png")
        assert open(download.value.path(), "rb").read(8) == b"\x89PNG\r\n\x1a\n"
        page.screenshot(path=str(output_dir / "benchmarks-done.png"), full_page=True)
    finally:
        page.close()


def test_the_tab_fits_a_phone(browser, demo_url, output_dir):
    """(After the test above: the same curve, kept, comes back at once.)"""
    page = new_page(browser, viewport={"width": 390, "height": 844})
    try:
        open_tab(page, demo_url)
        page.click("#benchmark-run")
        wait_for_status(page, ["done"], 300000, output_dir)
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{overflow}px sideways"
        page.screenshot(path=str(output_dir / "benchmarks-phone.png"), full_page=True)
    finally:
        page.close()


def test_the_documents_box_left_empty_evaluates_every_document(browser, demo_url, output_dir):
    """The tab's default Run: "Documents per task" shows nothing and means every document. (Gradio's number field
    showed an empty value as 0, sent 0, and the Run was refused: "Value 0 is less than minimum value 1.")"""
    page = new_page(browser, viewport={"width": 1200, "height": 1100})
    try:
        page.goto(demo_url)
        page.get_by_role("tab", name="Benchmarks", exact=True).click()
        box = page.locator("#benchmark-limit input")
        box.wait_for()
        assert box.input_value() == "" and box.get_attribute("placeholder") == "every document"
        page.click("#benchmark-run")
        page.wait_for_selector("#benchmark-charts svg.wide circle.point", timeout=120000)  # the first checkpoint
        page.click("#benchmark-stop")
        wait_for_status(page, ["stopped", "done"], 120000, output_dir)
        assert page.locator("[data-testid=status-tracker] .error").count() == 0
        with page.expect_download() as download:
            page.click("#benchmark-json")
        first = json.load(open(download.value.path()))[0]
        assert first["limit"] is None and first["n-samples"]["kjv_lambada"]["effective"] == 706, first["n-samples"]
        page.fill("#benchmark-limit input", "ten")  # a word: refused in words, and nothing runs
        page.click("#benchmark-run")
        page.wait_for_function("document.querySelector('#benchmark-notice').innerText.includes('whole number')",
                               timeout=60000)
    finally:
        page.close()
