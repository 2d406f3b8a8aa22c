"""One greedy API client cannot starve the Space's visitors: its rows are capped (--max-client-rows), so a browser
visitor who arrives while it floods the OpenAI route with parallel n-choice requests still gets a decoding lane
within the admission policy's bound: the first token comes as soon as without the greedy client, give or take
the few decoding steps the policy lets a newcomer wait.

Measured side by side in one test: the visitor's time to first token on the idle server (the page's own
latency: its queue, the prompt, the streaming interval), then while the greedy client decodes. The greedy rows'
tokens are the step clock (each decoding row receives one token per step). Allowed: the idle latency, doubled
because the greedy batch now takes one of the machine's two cores, plus the policy's wait for an extra batch
(wait_steps x OVERFLOW_PATIENCE steps, engine/batching.py). The same test without the cap shows the bound is the
cap's doing: the greedy rows then fill every lane for a whole reply.
"""

from __future__ import annotations

import statistics
import threading
import time

import httpx
import pytest
from test_browser import open_app

from model_utils.engine.batching import OVERFLOW_PATIENCE
from model_utils.settings import Settings

from conftest import SLOW
from live_app import running_app

pytestmark = [pytest.mark.slow, pytest.mark.alone]  # a live server, a browser and a load; first tokens timed

WAIT_STEPS = 4  # the default --wait-steps
POLICY_STEPS = WAIT_STEPS * OVERFLOW_PATIENCE  # the longest a newcomer waits for an extra batch
GREEDY_REQUESTS, CHOICES = 8, 4  # 32 rows asked at once: every row the server may decode, without a cap
# A greedy reply's length. Without the cap the visitor waits for greedy replies to end: measured here 64 steps
# with 200 tokens (5.9 s against a bound of 2.3 s), so 300 keeps a margin of about 4x; 600 only made the wait
# longer. With the cap the greedy rows still decode when the visitor's first token comes, a few dozen steps in.
GREEDY_TOKENS = 300
# The bound's two terms are measured minutes apart on a machine other tests load too: in a full run the capped case
# once came 1.3% over it (1.50 s against 1.48 s). Both cases are judged against the bound times this margin: the
# capped one must stay under it, the uncapped one (about 4x the bound) over it, so the test still fails either way.
MARGIN = 1.5
FIRST_TOKEN = ("() => { const rows = document.querySelectorAll('#chatbot .bot-row');"
               " return rows.length > %d && rows[rows.length-1].innerText.trim().length > 0; }")


class GreedyClient:
    """Parallel streaming requests of CHOICES rows each; records when each of its tokens arrived."""

    def __init__(self, url: str):
        self.url, self.arrivals, self.refused, self.lock = url, [], 0, threading.Lock()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._request, daemon=True) for _ in range(GREEDY_REQUESTS)]

    def _request(self) -> None:
        body = {"model": SLOW, "prompt": "Once", "max_tokens": GREEDY_TOKENS, "temperature": 0, "n": CHOICES,
                "stream": True}
        with httpx.Client(timeout=120) as http, http.stream("POST", self.url + "/v1/completions", json=body) as r:
            if r.status_code == 429:
                with self.lock:
                    self.refused += 1
                return
            for line in r.iter_lines():
                if line.startswith("data: {"):
                    with self.lock:
                        self.arrivals.append(time.monotonic())
                if self.stop.is_set():
                    return

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def steps_between(self, start: float, end: float) -> float:
        """Decoding steps between two instants: the tokens its rows received then, per decoding row."""
        with self.lock:
            tokens = sum(1 for t in self.arrivals if start <= t <= end)
        return tokens / max(1, (GREEDY_REQUESTS - self.refused) * CHOICES)

    def close(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=60)


def first_token_seconds(page, sent_before: int) -> float:
    """Send a chat message; seconds until the reply's first text shows (then stop it)."""
    page.fill("#chat-input textarea", "Tell me a story.")
    sent = time.monotonic()
    page.click("#chat-send")
    page.wait_for_function(FIRST_TOKEN % sent_before, timeout=120000, polling=10)
    seconds = time.monotonic() - sent
    page.click("#chat-stop")
    page.wait_for_function("() => document.querySelector('#chat-metrics').innerText.includes('token')",
                           timeout=120000)  # the reply ended: its metrics line is there
    return seconds


@pytest.mark.parametrize("cap", [8, 64], ids=["default-cap", "no-effective-cap"])
def test_a_greedy_client_leaves_a_visitors_first_token_within_the_bound(slow_checkpoint, model_cache, browser, cap):
    settings = Settings(model_dir=str(slow_checkpoint), cache_dir=str(model_cache), device="cpu",
                        max_client_rows=cap, wait_steps=WAIT_STEPS)
    with running_app(settings) as (url, _):
        warm = httpx.post(url + "/v1/completions", json={"prompt": "warm up", "max_tokens": 2}, timeout=300)
        assert warm.status_code == 200  # the model is converted and loaded
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        open_app(page, url)
        idle = statistics.median(first_token_seconds(page, i) for i in range(3))
        greedy = GreedyClient(url)
        greedy.start()
        try:
            deadline = time.monotonic() + 60
            while greedy.steps_between(0, time.monotonic()) < 5:  # the greedy rows are decoding
                assert time.monotonic() < deadline, "the greedy client never started"
                time.sleep(0.02)
            start = time.monotonic()
            loaded = first_token_seconds(page, 3)
            step = loaded / max(greedy.steps_between(start, start + loaded), 1)  # seconds per greedy step
        finally:
            greedy.close()
            page.close()
    bound = MARGIN * (2 * idle + POLICY_STEPS * step)
    if cap == 8:
        assert greedy.refused >= GREEDY_REQUESTS - cap // CHOICES, "the requests past the cap were answered 429"
        assert loaded <= bound, f"first token after {loaded:.2f} s; idle {idle:.2f} s, a step {step * 1000:.0f} ms"
    else:  # the cap is what keeps the bound: without it the greedy rows fill every lane for a whole reply
        assert greedy.refused == 0
        assert loaded > bound, f"first token after {loaded:.2f} s; idle {idle:.2f} s, a step {step * 1000:.0f} ms"
