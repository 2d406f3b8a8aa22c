"""The page as a visitor sees it, in Debian's chromium: readable in the light and the dark colour
scheme, charts that fit a page and a phone, tables and a chat nothing covers or cuts, a footer
without stray marks, every tab reachable in a narrow embed.

Screenshots of what the tests looked at are saved under test-output/polish/.
"""

from __future__ import annotations

import io
from contextlib import contextmanager

import pytest

from model_utils.store.demo_model import TRAINED_PASSAGE
from model_utils.ui.blocks import PAGE_CSS
from model_utils.ui.charts import NARROW, WIDE, Series, chart_caption, line_chart
from tools.screenshots import plot_curve

pytestmark = pytest.mark.slow  # a live server and a browser

DESKTOP, PHONE = {"width": 1280, "height": 900}, {"width": 390, "height": 844}
DEMO_STEPS = (0, 1, 16, 64, 256, 512, 1000, 2000, 3000)


@pytest.fixture(scope="module")
def url(demo_url):
    """The app as app.py launches it (its footer included): the session's `python app.py --demo` (conftest)."""
    return demo_url


@pytest.fixture
def shots(output_dir):
    folder = output_dir / "polish"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@contextmanager
def opened(browser, url, viewport=DESKTOP, scheme="light"):
    page = browser.new_page(viewport=viewport, color_scheme=scheme)
    try:
        page.goto(url)
        page.wait_for_selector("#chat-input textarea")
        yield page
    finally:
        page.close()


# Contrast ratio (WCAG 2) of each element's text against the first opaque background behind it.
CONTRASTS = """els => els.map(el => {
  const rgb = c => (c.match(/[\\d.]+/g) || []).map(Number);
  const lum = ([r, g, b]) => [r, g, b].map(v => { v /= 255; return v <= 0.03928 ? v / 12.92
                                                   : ((v + 0.055) / 1.055) ** 2.4; })
                                      .reduce((s, v, i) => s + v * [0.2126, 0.7152, 0.0722][i], 0);
  let bg = null;
  for (let e = el; e && !bg; e = e.parentElement) {
    const c = rgb(getComputedStyle(e).backgroundColor);
    if (c.length === 3 || c[3] > 0.5) bg = c.slice(0, 3);
  }
  bg = bg || [255, 255, 255];
  const [a, b] = [lum(rgb(getComputedStyle(el).color).slice(0, 3)), lum(bg)];
  return [el.innerText.slice(0, 20), (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05)];
})"""


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_every_coloured_view_is_readable_in_both_colour_schemes(browser, url, scheme, shots):
    """With the system theme dark, the page's text turns light; on the heatmaps' pastel cells it
    vanished. WCAG AA: a contrast ratio of at least 4.5 for text."""
    with opened(browser, url, scheme=scheme) as page:
        assert page.evaluate("document.body.classList.contains('dark')") == (scheme == "dark")
        plot_curve(page)
        views = {"score heatmap": "#score-heatmap span.tok", "learning grid": "#learned-heatmap td",
                 "their notes": "#score-heatmap .legend, #learned-heatmap .legend, #learned-heatmap .note"}
        for view, selector in views.items():
            ratios = page.eval_on_selector_all(selector, CONTRASTS)
            assert ratios, view
            worst = min(ratios, key=lambda r: r[1])
            assert worst[1] >= 4.5, f"{view} in {scheme}: {worst}"
        page.locator("#score-heatmap").screenshot(path=str(shots / f"heatmap-{scheme}.png"))
        page.locator("#learned-heatmap").screenshot(path=str(shots / f"learning-grid-{scheme}.png"))


CHART_TEXT = """svg => {
  const box = r => ({left: r.left, right: r.right, top: r.top, bottom: r.bottom});
  const all = s => [...svg.querySelectorAll(s)].map(e => box(e.getBoundingClientRect()));
  const frame = box(svg.getBoundingClientRect());
  const scale = frame.right > frame.left ? (frame.right - frame.left) / svg.viewBox.baseVal.width : 0;
  return {frame, xTicks: all('text.x-tick'), yTicks: all('text.y-tick'), yTitle: all('text.y-title')[0],
          fontPx: scale * +svg.dataset.font, labels: [...svg.querySelectorAll('text.x-tick')].map(e => e.textContent)};
}"""


def overlaps(a, b, gap=0.0):
    return a["left"] < b["right"] + gap and b["left"] < a["right"] + gap and a["top"] < b["bottom"] \
        and b["top"] < a["bottom"]


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
@pytest.mark.parametrize("largest", [1_000, 80_000], ids=["demo-range", "large-perplexities"])
def test_chart_text_is_readable_inside_the_chart_and_apart(browser, viewport, largest, shots):
    """The y title overlapped the tick labels at large perplexities; the last tick ('3,000') was cut at
    the right edge; the chart took half the width of a 1280-px page, and its text was ~6 px on a phone."""
    values = [largest / (1 + s) ** 0.45 for s in DEMO_STEPS]
    chart = line_chart([Series("demo-pythia-kjv", list(zip(DEMO_STEPS, values, strict=True)))], "perplexity",
                       "Perplexity over training")
    column = viewport["width"] - 130 if viewport is DESKTOP else viewport["width"] - 48  # the Score tab's column
    page = browser.new_page(viewport=viewport)
    try:
        page.set_content(f"<style>{PAGE_CSS}</style><div id='column' style='width:{column}px'>{chart}</div>")
        shown = [s for s in page.query_selector_all("svg.line-chart") if s.bounding_box()]
        assert len(shown) == 1, "one drawing shows at a time"
        text = shown[0].evaluate(CHART_TEXT)
        frame = text["frame"]
        assert frame["right"] - frame["left"] >= 0.95 * column, "the chart uses the column's width"
        assert text["fontPx"] >= 11, f"{text['fontPx']:.1f}-px text"
        for label in text["xTicks"] + text["yTicks"] + [text["yTitle"]]:
            assert frame["left"] <= label["left"] and label["right"] <= frame["right"] + 0.5, (label, frame)
        assert not any(overlaps(text["yTitle"], tick) for tick in text["yTicks"]), "y title on the tick labels"
        ticks = text["xTicks"]
        assert not any(overlaps(a, b, gap=2) for i, a in enumerate(ticks) for b in ticks[i + 1:]), text["labels"]
        assert set(text["labels"]) <= {f"{s:,}" for s in DEMO_STEPS} and text["labels"][-1] == "3,000"
        page.screenshot(path=str(shots / f"chart-{viewport['width']}-{largest}.png"), full_page=True)
    finally:
        page.close()


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_the_chart_png_has_a_title(browser, url, viewport, shots):
    from PIL import Image

    with opened(browser, url, viewport) as page:
        plot_curve(page)
        with page.expect_download() as download:
            page.click("#curve-png")
        png = Image.open(io.BytesIO(open(download.value.path(), "rb").read())).convert("L")
        png.save(shots / f"learning-curve-{viewport['width']}.png")
    layout = WIDE if viewport is DESKTOP else NARROW
    band = round((2 * 1.5 + 0.4) * layout.font)  # two lines: what, which model, when; the text's start
    assert png.size == (2 * layout.width, 2 * (layout.height + band))
    title = png.crop((0, 0, png.width, 2 * band))
    assert sum(1 for v in title.getdata() if v < 128) > 500, "the title band holds text"
    caption = chart_caption("Perplexity over training", ["demo-pythia-kjv"], TRAINED_PASSAGE.read_text()[:600])
    assert caption.startswith("Perplexity over training · demo-pythia-kjv · 20")


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_the_chat_label_and_buttons_cover_no_message(browser, url, viewport, shots):
    with opened(browser, url, viewport) as page:
        page.fill("#chat-input textarea", "Who was Joseph?")
        page.click("#chat-send")
        page.wait_for_function("document.querySelector('#chat-metrics').innerText.includes('tokens')", timeout=60000)
        page.locator("#chat-show-probs input").check()  # its colours show once the second reply is done
        page.fill("#chat-input textarea", "And his father?")
        page.click("#chat-send")
        page.wait_for_selector("#chat-heatmap span.tok", timeout=60000)
        # Measured at once (the chat scrolls itself as replies arrive): the scrolling box of messages starts
        # below the label and the buttons, so nothing scrolled in it passes under them; and the first
        # message sits inside that box, so scrolled to the top it shows whole.
        label, toolbar, messages, first, scrolled = page.evaluate("""[
            ...['#chatbot label', '#chatbot .top-panel', '#chatbot .bubble-wrap', '#chatbot .user-row']
               .map(s => document.querySelector(s).getBoundingClientRect()).map(r => ({top: r.top, bottom: r.bottom})),
            document.querySelector('#chatbot .bubble-wrap').scrollTop]""")
        assert messages["top"] >= max(label["bottom"], toolbar["bottom"]), (label, toolbar, messages)
        assert first["top"] - messages["top"] + scrolled >= 0, (first, messages, scrolled)
        page.screenshot(path=str(shots / f"chat-{viewport['width']}.png"), full_page=True)


# Per table: is any column cut off (the table wider than its box), is any header cut short or broken
# inside a word (a word wider than the cell it sits in)?
TABLE_FIT = """root => {
  const wrap = root.querySelector('.table-wrap'), table = root.querySelector('.header-table');
  const probe = document.createElement('span');
  probe.style.cssText = 'position:absolute;visibility:hidden;white-space:nowrap';
  const problems = [];
  for (const span of root.querySelectorAll('.header-cell span.text')) {
    const style = getComputedStyle(span);
    probe.style.font = style.font;
    span.parentElement.appendChild(probe);
    for (const word of span.textContent.trim().split(/\\s+/)) {
      probe.textContent = word;
      if (probe.getBoundingClientRect().width > span.clientWidth + 0.5) problems.push('word: ' + word);
    }
    probe.remove();
    if (span.scrollWidth > span.clientWidth + 0.5) problems.push('cut: ' + span.textContent);
  }
  const overflow = table.getBoundingClientRect().width - wrap.getBoundingClientRect().width;
  if (overflow > 1) problems.push(`table ${overflow.toFixed(0)} px wider than its box`);
  return problems;
}"""


def test_phone_tables_show_every_column_and_whole_header_words(browser, url, shots):
    """On a phone the alternatives table was cut ('top alte…') and headers broke mid-word ('perpl/exity')."""
    with opened(browser, url, PHONE) as page:
        page.get_by_role("tab", name="Completion").click()
        page.check("#show-probs input")
        page.click("#completion-generate")
        page.wait_for_selector("#completion-alternatives .virtual-row", timeout=60000)
        assert page.eval_on_selector("#completion-alternatives", TABLE_FIT) == []
        page.locator("#completion-alternatives").screenshot(path=str(shots / "phone-alternatives.png"))
        plot_curve(page, memorization=True)
        for table in ("#curve-table", "#memo-table"):
            assert page.eval_on_selector(table, TABLE_FIT) == [], table
            page.locator(table).screenshot(path=str(shots / f"phone-{table[1:]}.png"))


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_the_memorization_table_shows_its_last_row(browser, url, viewport):
    """A default curve's table fits whole: no inner scroll hides its last rows below the edge."""
    with opened(browser, url, viewport) as page:
        plot_curve(page, memorization=True)
        # all nine rows drawn, or an inner scroll (then the assertion below says so)
        page.wait_for_function("document.querySelectorAll('#memo-table .virtual-row').length >= 9 || (v => "
                               "v.scrollHeight > v.clientHeight + 1)(document.querySelector("
                               "'#memo-table .virtual-table-viewport'))")
        inner = page.eval_on_selector("#memo-table .virtual-table-viewport", "v => [v.scrollHeight, v.clientHeight]")
        assert inner[0] <= inner[1] + 1, inner
        assert "main (step3000)" in page.locator("#memo-table").inner_text()


def test_the_phone_footer_offers_the_api_and_no_stray_dot(browser, url):
    with opened(browser, url, PHONE) as page:
        footer = page.locator("footer")
        assert footer.inner_text().strip() == "Use via API"
        assert footer.get_by_text("Use via API").is_visible()


def test_every_tab_is_reachable_in_a_narrow_embed(browser, url, shots):
    """In a Space embed 300 px wide, the Compare tab (then also Benchmarks) hid behind a "…" menu."""
    page = browser.new_page(viewport={"width": 800, "height": 900})
    try:
        page.set_content(f'<iframe id="space" src="{url}" width="300" height="800"></iframe>')
        frame = page.frame_locator("#space")
        frame.locator("#chat-input textarea").wait_for()
        for tab in ("Chat", "Completion", "Score", "Compare", "Benchmarks"):
            assert frame.get_by_role("tab", name=tab, exact=True).is_visible(), tab
        frame.get_by_role("tab", name="Compare", exact=True).click()
        frame.locator("#compare-button").wait_for()
        page.screenshot(path=str(shots / "embed-300.png"))
    finally:
        page.close()


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_a_picker_filters_by_what_is_typed_into_it(browser, url, viewport):
    """Typing into the checkpoint picker replaces its shown value and filters the list (it used to append to
    "main", which matched nothing), and the value stays until an option is picked."""
    with opened(browser, url, viewport) as page:
        page.click("#checkpoint input")
        page.keyboard.type("step1")
        page.wait_for_function("document.querySelectorAll('[role=option]').length === 3")
        assert page.locator("[role=option]").all_inner_texts() == ["step1", "step16", "step1000"]
        page.locator("[role=option]", has_text="step1000").click()
        page.wait_for_function("document.querySelector('#checkpoint input').value === 'step1000'")
        page.wait_for_function("document.querySelector('#model-status').innerText.includes('step1000')")


def test_keys_typed_before_the_pages_timers_run_still_replace_the_pickers_text(browser, url):
    """Chromium runs typed keys before timers, so on a busy machine the keys typed right after a click on the picker
    can come before the page's timer that selects its text (seen once in a test run: "mainstep1", no option). With
    the page's timers held, as that machine held them, what is typed still replaces the text."""
    page = browser.new_page(viewport=DESKTOP)
    try:
        page.clock.install()
        page.goto(url)
        page.wait_for_selector("#chat-input textarea")
        page.clock.pause_at(page.evaluate("Date.now()") + 1000)  # no timer of the page runs until resume()
        page.click("#checkpoint input")
        page.keyboard.type("step1")
        typed = page.evaluate("document.querySelector('#checkpoint input').value")
        page.clock.resume()
        assert typed == "step1"
        page.wait_for_function("document.querySelectorAll('[role=option]').length === 3")
    finally:
        page.close()
