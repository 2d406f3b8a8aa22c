"""How many rows (choices queued or decoding) API clients may hold at once, so that they cannot fill every
decoding lane of a Space its visitors share: one client (its API key, else its address) at most ``max_rows``,
and all of them together at most ``max_api_rows``, however many addresses they come from (addresses are cheap).
The rows past ``max_api_rows`` stay free for page visitors, whose requests never count here: a visitor who
arrives during an API flood finds a decoding lane as on a server with one greedy client.

The table holds only clients with rows in flight: nothing per client is kept once its requests end. Refusals
are logged summarised (core/refusal_log.py): each client's first in full, then counts every few seconds.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from contextlib import contextmanager
from typing import Iterator

from ..core.errors import InvalidParameter, ServerBusy
from ..core.refusal_log import RefusalLog

log = logging.getLogger(__package__)


class ClientBusy(ServerBusy):
    """This client has as many rows in flight as it may have; it should retry when some finish."""


SHARE_FULL = "The server is busy with other API requests right now; please try again in a moment."


class ApiShareFull(ServerBusy):
    """All API clients together hold the rows they may; the rest are kept for page visitors."""


class ClientLimits:
    def __init__(self, max_rows: int, max_api_rows: int | None = None):
        """``max_api_rows``: all clients together (None or 0: no limit but ``max_rows`` each)."""
        self.max_rows = max_rows
        self.max_api_rows = max_api_rows or None
        self._rows: Counter[str] = Counter()
        self._total = 0
        self._lock = threading.Lock()
        self._client_refusals = RefusalLog(log, "API client over its row limit")
        self._share_refusals = RefusalLog(log, "API rows full (the rest are kept for the page)")

    @contextmanager
    def hold(self, client: str, rows: int) -> Iterator[None]:
        """Count ``rows`` against ``client`` while the block runs; refuse what would pass the limit."""
        if rows > self.max_rows:
            raise InvalidParameter(
                f"This request asks for {rows} choices (prompts x n); this server decodes at most {self.max_rows} "
                "for one client at once. Send smaller batches.")
        with self._lock:
            held = self._rows.get(client, 0)
            if held + rows > self.max_rows:
                self._client_refusals.refused(client, "%d rows in flight, %d more asked, limit %d", held, rows,
                                              self.max_rows)
                raise ClientBusy(f"You have {held} choices queued or decoding; this server takes at most "
                                 f"{self.max_rows} from one client at once. Try again when some have finished.")
            if self.max_api_rows is not None and self._total + rows > self.max_api_rows:
                self._share_refusals.refused(client, "%d API rows in flight, %d more asked, limit %d", self._total,
                                             rows, self.max_api_rows)
                raise ApiShareFull(SHARE_FULL)
            self._rows[client] += rows
            self._total += rows
        try:
            yield
        finally:
            with self._lock:
                self._rows[client] -= rows
                self._total -= rows
                if self._rows[client] <= 0:
                    del self._rows[client]

    def refuse_if_full(self, client: str) -> ApiShareFull | None:
        """The refusal any request of ``client`` would get now because all API clients' rows are taken (logged as
        hold() logs it), or None: for answering before a request is even read."""
        with self._lock:
            if self.max_api_rows is None or self._total < self.max_api_rows:
                return None
            self._share_refusals.refused(client, "%d API rows in flight, limit %d", self._total, self.max_api_rows)
        return ApiShareFull(SHARE_FULL)

    def in_flight(self, client: str) -> int:
        with self._lock:
            return self._rows.get(client, 0)

    def total(self) -> int:
        """Rows of every API client in flight."""
        with self._lock:
            return self._total

    def __len__(self) -> int:
        """Clients with rows in flight (the table never holds more)."""
        with self._lock:
            return len(self._rows)
