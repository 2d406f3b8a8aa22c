"""The page's Stop, Undo and Clear in a real browser (Debian's chromium, Playwright) against the live app:
a reply stopped while it waits behind other visitors never starts; Undo and Clear during a reply leave
exactly what they say. One decoding slot (max_batch_size 1, one worker), so a second request waits in
Gradio's queue; the slow model (conftest) makes a long reply last seconds."""

from __future__ import annotations

import time

import pytest
from gradio_client import Client
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from model_utils.settings import Settings

from conftest import SLOW
from live_app import running_app

pytestmark = pytest.mark.slow  # a live server and a browser

HANG = 60  # seconds a step may take on a loaded 2-core machine before the test counts it as stuck


@pytest.fixture(scope="module")
def live(slow_checkpoint, model_cache):
    settings = Settings(model_dir=str(slow_checkpoint), cache_dir=str(model_cache), device="cpu",
                        max_batch_size=1, workers=1)
    with running_app(settings) as (url, engine):
        Client(url, verbose=False).predict(prompt="warm up", max_new_tokens=2, api_name="/complete")  # converts it
        yield url, engine


@pytest.fixture
def page(browser):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    yield page
    page.close()


def scheduler(engine):
    with engine.open(SLOW) as model:
        return model.scheduler


def wait_until(condition, message: str) -> None:
    """Poll a condition the server brings about, with a deadline."""
    deadline = time.monotonic() + HANG
    while not condition():
        assert time.monotonic() < deadline, message
        time.sleep(0.05)


def wait_until_idle(engine) -> None:
    with engine.open(SLOW) as model:
        generator = model.generator
    wait_until(lambda: generator.num_active_batches == 0, "decoding went on")


def open_app(page, url, max_new_tokens: int | None = None):
    page.goto(url)
    page.wait_for_selector("#chat-input textarea")
    if max_new_tokens is not None:
        set_max_new_tokens(page, max_new_tokens)


def set_max_new_tokens(page, n: int):
    if not page.locator("#max-new-tokens").is_visible():
        page.get_by_text("Sampling").first.click()
    number = page.locator("#max-new-tokens input[type=number]")
    number.fill(str(n))
    number.press("Enter")


def text_of(page, selector: str) -> str:
    return page.locator(selector).inner_text()


def box(page) -> str:
    return page.locator("#chat-input textarea").input_value()


def rows(page, kind: str) -> list[str]:
    return page.locator(f"#chatbot .{kind}-row").all_inner_texts()


def wait_for_text(page, selector: str, text: str, timeout_s: float = HANG):
    page.wait_for_function("([s, t]) => document.querySelector(s).innerText.includes(t)", arg=[selector, text],
                           timeout=timeout_s * 1000)


def send_then_click(page, message: str, button: str):
    """Send, then click ``button`` as soon as the message was accepted (the reply is being handed to the queue
    and cannot have started): a visitor's "Send, then Stop/Undo at once", without a test-side delay deciding
    the race."""
    page.fill("#chat-input textarea", message)
    with page.expect_response(lambda r: "/run/predict" in r.url):  # the message's acceptance
        page.click("#chat-send")
    page.click(button)


def send_behind(page, message: str, busy) -> None:
    """Send ``message`` while ``busy`` holds the only slot; return once the page shows the reply waiting in
    Gradio's queue. The click counts once the page's message is accepted; a reply that never shows as queued
    fails with what the page read and whether the other visitor's reply was still running."""
    page.fill("#chat-input textarea", message)
    with page.expect_response(lambda r: "/run/predict" in r.url):  # the message's acceptance
        page.click("#chat-send")
    try:
        wait_for_text(page, "#chatbot", "queue")
    except PlaywrightTimeout:
        other = "had ended" if busy.done() else "was still running"
        raise AssertionError(f"the reply never showed as queued; the other visitor's reply {other}; the chat "
                             f"read {text_of(page, '#chatbot')[-300:]!r}, the metrics "
                             f"{text_of(page, '#chat-metrics')!r}") from None


def busy_with_another_visitor(url):
    """Another visitor's long completion holds the only decoding slot (until cancelled). min_tokens: sampled from a
    random model, it could draw the end-of-text token early and end (CI once: "the other visitor's reply had
    ended" before the page's message was queued behind it); now it runs its 1,024 tokens unless cancelled."""
    job = Client(url, verbose=False).submit(prompt="Once upon a time", max_new_tokens=1024, min_tokens=1024, top_k=0,
                                            top_p=1.0, temperature=1.0, api_name="/complete")
    wait_until(lambda: job.outputs(), "the other visitor's reply never started")
    return job


def test_stop_while_queued_behind_another_visitor_the_reply_never_starts(page, live, output_dir):
    url, engine = live
    open_app(page, url)
    busy = busy_with_another_visitor(url)
    rows_before = scheduler(engine).stats.rows
    send_behind(page, "Are you there?", busy)
    page.click("#chat-stop")
    wait_for_text(page, "#chat-metrics", "before the reply started")
    assert box(page) == "Are you there?" and rows(page, "user") == [], "the message is back in the box"
    page.wait_for_function("!document.querySelector('#chatbot').innerText.includes('queue')")
    shoot_all(page, output_dir, "stop-while-queued", "#chat-metrics")
    busy.cancel()
    wait_until_idle(engine)
    # the queue is first in, first out: a later request runs only after the stopped one would have
    Client(url, verbose=False).predict(prompt="after", max_new_tokens=3, api_name="/complete")
    assert scheduler(engine).stats.rows == rows_before + 1, "the stopped reply must never start"
    # its turn in the queue came and went: it changed nothing, and nothing says "Error"
    page.wait_for_function("!document.querySelector('#chatbot').innerText.includes('queue')")
    assert box(page) == "Are you there?" and rows(page, "user") == [] and rows(page, "bot") == []
    assert no_error_badge(page)
    # and the next Send is answered (the stopped one is not still holding the page's reply event)
    set_max_new_tokens(page, 8)
    page.click("#chat-send")
    wait_for_text(page, "#chat-metrics", "tokens/s")
    assert len(rows(page, "user")) == 1 and len(rows(page, "bot")) == 1


def no_error_badge(page) -> bool:
    return page.locator("[data-testid=status-tracker] .error").count() == 0


def test_stop_right_after_send_is_not_lost(page, live):
    url, engine = live
    open_app(page, url, max_new_tokens=1024)
    send_then_click(page, "Tell me a long story.", "#chat-stop")
    # either it had not started (the message is back) or it stops at its next token
    page.wait_for_function("/stopped by you/i.test(document.querySelector('#chat-metrics').innerText)",
                           timeout=HANG * 1000)
    wait_until_idle(engine)
    metrics = text_of(page, "#chat-metrics")
    assert "new-token limit" not in metrics, metrics
    if "before the reply started" in metrics:
        assert box(page) == "Tell me a long story." and rows(page, "user") == []
    else:
        assert int(metrics.split(" token")[0].replace(",", "")) < 1024


def long_reply_under_way(page):
    page.fill("#chat-input textarea", "Tell me a long story.")
    page.click("#chat-send")
    page.wait_for_function("() => { const rows = document.querySelectorAll('#chatbot .bot-row');"
                           " return rows.length && rows[rows.length-1].innerText.length > 40; }", timeout=HANG * 1000)


@pytest.mark.parametrize("moment", ["while it is written", "while it waits behind another visitor",
                                    "right after Send"])
def test_undo_during_a_reply_takes_the_turn_back_for_good(page, live, moment, output_dir):
    url, engine = live
    open_app(page, url, max_new_tokens=1024)
    rows_before, tokens_before = scheduler(engine).stats.rows, scheduler(engine).stats.tokens
    busy = busy_with_another_visitor(url) if moment == "while it waits behind another visitor" else None
    if moment == "right after Send":
        send_then_click(page, "Tell me a long story.", "#chat-undo")
    elif moment == "while it is written":
        long_reply_under_way(page)
        page.click("#chat-undo")
    else:
        send_behind(page, "Tell me a long story.", busy)
        # The page takes the turn back at once; the Undo reaches the server after (its queue/join). Wait for it to
        # be in the server's hands before the other visitor's reply is cancelled below: otherwise, on busy cores,
        # the freed slot could go to the reply before the Undo arrived (CI once: it started, and was stopped at
        # its next token by the Undo, nothing of it shown), which is a race of the test's own making.
        with page.expect_response(lambda r: "/queue/join" in r.url):
            page.click("#chat-undo")
    page.wait_for_function("document.querySelector('#chat-input textarea').value === 'Tell me a long story.'")
    page.wait_for_function("document.querySelectorAll('#chatbot .message-row').length === 0")
    if busy is not None:
        busy.cancel()
        wait_until_idle(engine)
        # first in, first out: once a later request ran, the undone one would have run before it
        Client(url, verbose=False).predict(prompt="after", max_new_tokens=3, api_name="/complete")
        assert scheduler(engine).stats.rows == rows_before + 2, "the undone reply must never start"
    wait_until_idle(engine)
    assert rows(page, "user") == [] and rows(page, "bot") == [], "the undone turn came back"
    if busy is None:
        assert scheduler(engine).stats.tokens - tokens_before < 1024, "Undo must stop the reply"
    # Send again: exactly one exchange, not the undone one back and a duplicate
    set_max_new_tokens(page, 8)
    page.click("#chat-send")
    wait_for_text(page, "#chat-metrics", "tokens/s")
    assert rows(page, "user") == ["Tell me a long story."] and len(rows(page, "bot")) == 1
    assert box(page) == "" and no_error_badge(page)
    if moment == "while it is written":
        shoot_all(page, output_dir, "undo-then-send", "#chat-metrics")


@pytest.mark.parametrize("control", ["#chat-clear", "#chatbot button[aria-label='Clear']"],
                         ids=["Clear", "the chat's trash icon"])
def test_clear_during_a_reply_leaves_an_empty_chat(page, live, control):
    url, engine = live
    open_app(page, url, max_new_tokens=1024)
    long_reply_under_way(page)
    page.click(control)
    page.wait_for_function("document.querySelectorAll('#chatbot .message-row').length === 0")
    wait_until_idle(engine)
    set_max_new_tokens(page, 8)
    page.fill("#chat-input textarea", "Second")
    page.click("#chat-send")
    wait_for_text(page, "#chat-metrics", "tokens/s")
    assert rows(page, "user") == ["Second"] and len(rows(page, "bot")) == 1, "nothing of the cleared reply came back"
    assert no_error_badge(page)


def test_the_chats_trash_icon_also_clears_the_metrics_line(page, live):
    url, _ = live
    open_app(page, url, max_new_tokens=8)
    page.fill("#chat-input textarea", "Hello")
    page.click("#chat-send")
    wait_for_text(page, "#chat-metrics", "tokens/s")
    page.click("#chatbot button[aria-label='Clear']")
    page.wait_for_function("document.querySelector('#chat-metrics').innerText.trim() === ''")
    assert rows(page, "user") == []


def shoot_all(page, output_dir, name: str, selector: str) -> None:
    """The page as it stands, at 1280x900 and 390x844, light and dark, scrolled to ``selector``."""
    for view, size in {"desktop": {"width": 1280, "height": 900}, "phone": {"width": 390, "height": 844}}.items():
        page.set_viewport_size(size)
        for scheme in ("light", "dark"):
            page.emulate_media(color_scheme=scheme)
            # Gradio picks its theme once, at load, by a class on <body>: switch it as Gradio does
            page.evaluate("(dark) => document.body.classList.toggle('dark', dark)", scheme == "dark")
            page.locator(selector).scroll_into_view_if_needed()
            page.screenshot(path=str(output_dir / f"visitor-{name}-{view}-{scheme}.png"))
    page.set_viewport_size({"width": 1280, "height": 900})
    page.emulate_media(color_scheme="light")
    page.evaluate("document.body.classList.remove('dark')")


# -- back-to-back clicks while the server is busy (issue 25: Send then Undo lost the second message) ---------------
class HeldAcceptance:
    """Holds the page's acceptance of a message (its /run/predict call) as a busy server would: either the request
    (Stop or Undo, clicked after it, reaches the server first) or its answer (the server accepts it first, the
    page hears of it late). ``release`` lets it go."""

    def __init__(self, page, hold: str):
        self.page, self.hold, self.held = page, hold, []
        page.route("**/run/predict", self._route)

    def _route(self, route):
        if self.hold == "answer":
            self.held.append((route, route.fetch()))
        else:
            self.held.append((route, None))

    def wait_held(self):
        wait_until(lambda: self.page.evaluate("1") and self.held, "the acceptance never left the page")
        assert len(self.held) == 1

    def release(self):
        for route, answer in self.held:
            route.fulfill(response=answer) if answer is not None else route.continue_()
        self.page.unroute("**/run/predict")


def first_exchange(page, live_url):
    open_app(page, live_url, max_new_tokens=8)
    page.fill("#chat-input textarea", "First")
    page.click("#chat-send")
    wait_for_text(page, "#chat-metrics", "tokens/s")
    return rows(page, "bot")


def settle(url, engine, busy):
    """Let the other visitor go, and let a later request through: by then every queued reply had its turn."""
    busy.cancel()
    wait_until_idle(engine)
    Client(url, verbose=False).predict(prompt="after", max_new_tokens=3, api_name="/complete")
    wait_until_idle(engine)


@pytest.mark.parametrize("hold", ["request", "answer"], ids=["undo-reaches-the-server-first", "send-answered-late"])
def test_send_then_undo_back_to_back_while_busy_loses_nothing(page, live, hold):
    url, engine = live
    bots = first_exchange(page, url)
    busy = busy_with_another_visitor(url)
    held = HeldAcceptance(page, hold)
    page.fill("#chat-input textarea", "Second")
    page.click("#chat-send")
    held.wait_held()
    page.click("#chat-undo")
    page.wait_for_function("document.querySelector('#chat-input textarea').value === 'Second'")
    assert rows(page, "user") == ["First"] and rows(page, "bot") == bots, "Undo took back the new message only"
    held.release()
    rows_before = scheduler(engine).stats.rows
    settle(url, engine, busy)
    assert scheduler(engine).stats.rows == rows_before + 1, "the undone message was never answered"
    assert box(page) == "Second" and rows(page, "user") == ["First"] and rows(page, "bot") == bots
    assert no_error_badge(page)


@pytest.mark.parametrize("hold", ["request", "answer"], ids=["stop-reaches-the-server-first", "send-answered-late"])
def test_send_then_stop_back_to_back_while_busy_gives_the_message_back(page, live, hold):
    url, engine = live
    bots = first_exchange(page, url)
    busy = busy_with_another_visitor(url)
    held = HeldAcceptance(page, hold)
    page.fill("#chat-input textarea", "Second")
    page.click("#chat-send")
    held.wait_held()
    page.click("#chat-stop")
    held.release()
    wait_for_text(page, "#chat-metrics", "before the reply started")
    rows_before = scheduler(engine).stats.rows
    settle(url, engine, busy)
    assert scheduler(engine).stats.rows == rows_before + 1, "the stopped message was never answered"
    assert box(page) == "Second" and rows(page, "user") == ["First"] and rows(page, "bot") == bots
    assert no_error_badge(page)


def test_undo_then_send_back_to_back_while_busy_answers_the_message_once(page, live):
    url, engine = live
    first_exchange(page, url)
    busy = busy_with_another_visitor(url)
    page.click("#chat-undo")
    page.click("#chat-send")  # at once: Undo put "First" back in the box, Send sends it again
    page.wait_for_function("document.querySelector('#chat-input textarea').value === ''")
    assert rows(page, "user") == ["First"] and rows(page, "bot") == []
    busy.cancel()
    wait_for_text(page, "#chat-metrics", "tokens/s")
    wait_until_idle(engine)
    assert rows(page, "user") == ["First"] and len(rows(page, "bot")) == 1 and box(page) == ""
    assert no_error_badge(page)


def test_every_click_at_once_in_a_row_keeps_every_typed_word(page, live):
    """Send, Undo, Send, Stop, Retry, Clear, Send, Undo as fast as the browser clicks, while the server is busy:
    at the end every message typed is in the chat or in the box."""
    url, engine = live
    open_app(page, url, max_new_tokens=8)
    busy = busy_with_another_visitor(url)
    page.fill("#chat-input textarea", "one")
    for button in ("#chat-send", "#chat-undo", "#chat-send", "#chat-stop", "#chat-retry", "#chat-clear"):
        page.click(button)
    page.fill("#chat-input textarea", "two")
    page.click("#chat-send")
    page.click("#chat-undo")
    settle(url, engine, busy)
    shown = " ".join(rows(page, "user")) + " " + box(page)
    assert "two" in shown, f"the chat read {rows(page, 'user')}, the box {box(page)!r}"
    assert no_error_badge(page)
