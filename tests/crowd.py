"""A crowd for a live app: API clients flooding the OpenAI route from many loopback addresses, and a browser
visitor timing what a person sees (the page's load, a reply's first text). Shared by the slow tests
(tests/test_crowd.py) and the benchmark (bench/crowd_bench.py).

Each API client binds its own source address (127.0.0.2, 127.0.0.3, ... : all of 127/8 is loopback on Linux), so
the server sees as many clients as addresses, each within its per-client cap. Like an abuser, a client sends its
next request as soon as the last one ends or is refused: it does not wait for Retry-After.
"""

from __future__ import annotations

import statistics
import threading
import time
from dataclasses import dataclass, field

import httpx

from model_utils.core.sse import event_lines

FIRST_TOKEN = ("() => { const rows = document.querySelectorAll('#chatbot .bot-row');"
               " return rows.length > %d && rows[rows.length-1].innerText.trim().length > 0; }")
REFUSED = "() => document.querySelector('#chat-notice').innerText.includes('⚠️')"  # e.g. "the server is busy"


@dataclass
class FloodCounts:
    admitted: int = 0  # requests answered 200 (their stream began)
    refused: int = 0  # answered 429
    other: int = 0  # anything else (a failure of the test's own making shows here)
    tokens: int = 0  # streamed events received
    streaming: int = 0  # streams being read now
    # (when, 1 / rows streaming then) per event: each decoding row gets one event a step, so the sum over a
    # span is the decoding steps in it
    steps: list[tuple[float, float]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class ApiFlood:
    """``addresses`` clients (127.0.0.2 onwards), each with ``parallel`` streams of ``n`` choices in a loop."""

    def __init__(self, url: str, addresses: int, *, n: int = 8, max_tokens: int = 512, parallel: int = 1,
                 model: str | None = None, pause_after_refusal_s: float = 0.0):
        self.url, self.n, self.max_tokens, self.model = url, n, max_tokens, model
        self.pause = pause_after_refusal_s
        self.counts = FloodCounts()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._client, args=(f"127.0.0.{2 + i}",), daemon=True)
                        for i in range(addresses) for _ in range(parallel)]

    def _client(self, address: str) -> None:
        body = {"prompt": "Once upon a time", "max_tokens": self.max_tokens, "n": self.n, "stream": True,
                "temperature": 1.0}
        if self.model:
            body["model"] = self.model
        transport = httpx.HTTPTransport(local_address=address)
        with httpx.Client(transport=transport, timeout=120) as http:
            while not self.stop.is_set():
                try:
                    with http.stream("POST", self.url + "/v1/completions", json=body) as r:
                        if r.status_code == 429:
                            with self.counts.lock:
                                self.counts.refused += 1
                            r.read()
                            if self.pause:
                                self.stop.wait(self.pause)
                            continue
                        if r.status_code != 200:
                            with self.counts.lock:
                                self.counts.other += 1
                            r.read()
                            continue
                        with self.counts.lock:
                            self.counts.admitted += 1
                            self.counts.streaming += 1
                        try:
                            for line in event_lines(r.iter_text()):
                                if line.startswith("data: {"):
                                    with self.counts.lock:
                                        self.counts.tokens += 1
                                        rows = self.counts.streaming * self.n
                                        self.counts.steps.append((time.monotonic(), 1 / rows))
                                if self.stop.is_set():
                                    return
                        finally:
                            with self.counts.lock:
                                self.counts.streaming -= 1
                except httpx.HTTPError:
                    with self.counts.lock:
                        self.counts.other += 1
                    self.stop.wait(0.05)

    def steps_between(self, start: float, end: float) -> float:
        """Decoding steps of the flood's rows between two instants."""
        with self.counts.lock:
            return sum(share for at, share in self.counts.steps if start <= at <= end)

    def __enter__(self) -> "ApiFlood":
        for thread in self.threads:
            thread.start()
        deadline = time.monotonic() + 60
        while self.counts.tokens < 5 * self.n:  # the flood's rows are decoding
            assert time.monotonic() < deadline, f"the flood never got going: {self.counts}"
            time.sleep(0.05)
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=30)


# What a page load fetches from the server, in the order the browser asked: the HTML, Gradio's scripts and styles,
# its config (read from the browser after a load)
FETCHED = """() => [performance.getEntriesByType('navigation')[0].name,
                   ...performance.getEntriesByType('resource').map((r) => r.name)]"""


def fetch_seconds(urls: list[str]) -> float:
    """Seconds to fetch ``urls`` one after another, as a browser on another machine would: the server's part of a
    page load, without the test machine's browser sharing its cores with the server."""
    with httpx.Client(timeout=120) as http:
        start = time.monotonic()
        for url in urls:
            http.get(url).read()
        return time.monotonic() - start


# The server's part of a page load is fetched this many times after each load: on two cores busy with the flood's
# rows one fetch of the page took 0.48-0.99 s under the same condition, and a median of three such readings judged
# against another once came out 1.53x (the bound is 1.5x), and 1.13-1.31x in the next three runs.
SERVED_FETCHES = 3


def page_load_seconds(browser, url: str, served: list | None = None) -> float:
    """A new visitor's page: seconds from the request to the chat box being there (Gradio's page is built by
    its script from the config it fetches, so this is the whole load). ``served`` gets the server's part
    (``SERVED_FETCHES`` readings)."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    try:
        start = time.monotonic()
        page.goto(url)
        page.wait_for_selector("#chat-input textarea", timeout=120000)
        seconds = time.monotonic() - start
        if served is not None:
            origin = url.rstrip("/")
            fetched = [u for u in page.evaluate(FETCHED) if u.startswith(origin) and "/heartbeat" not in u
                       and "/queue/data" not in u]
            served.extend(fetch_seconds(fetched) for _ in range(SERVED_FETCHES))
        return seconds
    finally:
        page.close()


def first_token_seconds(page, sent_before: int, spans: list | None = None, timeout_s: float = 120) -> float:
    """Send a chat message; seconds from the click until the reply's first text shows (then stop it): at most
    ``timeout_s`` (a first token that takes longer, or a refusal, reads as ``timeout_s``). ``spans`` gets (click,
    the first text or the end of the wait)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    page.fill("#chat-input textarea", "Tell me a story.")
    sent = time.monotonic()
    page.click("#chat-send")
    either = f"() => ({FIRST_TOKEN % sent_before})() || ({REFUSED})()"
    try:
        page.wait_for_function(either, timeout=timeout_s * 1000, polling=10)
    except PlaywrightTimeout:
        pass
    waited_until = time.monotonic()
    refused = page.evaluate(f"({REFUSED})()")  # turned away: it never came, as long as the wait allowed
    seconds = timeout_s if refused else min(waited_until - sent, timeout_s)
    if spans is not None:  # what the visitor really waited (a refusal may come at once)
        spans.append((sent, waited_until))
    if not refused:
        page.click("#chat-stop")
        page.wait_for_function(f"() => /token|Stopped/.test(document.querySelector('#chat-metrics').innerText)"
                               f" || ({REFUSED})()", timeout=120000)  # the reply ended, or never started
    return seconds


@dataclass
class VisitorTimes:
    first_tokens: list[float]
    page_loads: list[float]
    spans: list[tuple[float, float]] = field(default_factory=list)  # (click, first text or giving up) of each try
    served: list[float] = field(default_factory=list)  # the server's part of each page load (fetch_seconds)

    @property
    def first_token(self) -> float:
        return statistics.median(self.first_tokens)

    @property
    def page_load(self) -> float:
        return statistics.median(self.page_loads)

    @property
    def page_served(self) -> float:
        return statistics.median(self.served)


def visitor_times(browser, url: str, tries: int = 3, *, loads: bool = True, chats: bool = True,
                  first_token_timeout_s: float = 120) -> VisitorTimes:
    """A visitor's page loads (unless not ``loads``) and first tokens (unless not ``chats``), ``tries`` of each (a
    fresh page per load; one page chats; the one sent before is stopped, so each reply is the visitor's only one)."""
    served: list[float] = []
    loads = [page_load_seconds(browser, url, served) for _ in range(tries)] if loads else []
    if not chats:
        return VisitorTimes([], loads, served=served)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    try:
        page.goto(url)
        page.wait_for_selector("#chat-input textarea")
        spans: list = []
        firsts = []
        for _ in range(tries):
            before = page.locator("#chatbot .bot-row").count()
            firsts.append(first_token_seconds(page, before, spans, first_token_timeout_s))
    finally:
        page.close()
    return VisitorTimes(firsts, loads, spans, served)
