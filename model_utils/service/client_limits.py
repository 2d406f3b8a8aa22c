"""How many rows (choices queued or decoding) one API client may hold at once, so that one caller cannot
fill every decoding lane of a Space its visitors share. A client is its API key, else its address.

The table holds only clients with rows in flight: nothing per client is kept once its requests end.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from contextlib import contextmanager
from typing import Iterator

from ..core.errors import InvalidParameter, ServerBusy

log = logging.getLogger(__package__)


class ClientBusy(ServerBusy):
    """This client has as many rows in flight as it may have; it should retry when some finish."""


class ClientLimits:
    def __init__(self, max_rows: int):
        self.max_rows = max_rows
        self._rows: Counter[str] = Counter()
        self._lock = threading.Lock()

    @contextmanager
    def hold(self, client: str, rows: int) -> Iterator[None]:
        """Count ``rows`` against ``client`` while the block runs; refuse what would pass the limit."""
        if rows > self.max_rows:
            raise InvalidParameter(
                f"This request asks for {rows} choices (prompts x n); this server decodes at most {self.max_rows} "
                "for one client at once. Send smaller batches.")
        with self._lock:
            held = self._rows[client]
            if held + rows > self.max_rows:
                log.info("client %s refused: %d rows in flight, %d more asked, limit %d", client, held, rows,
                         self.max_rows)
                raise ClientBusy(f"You have {held} choices queued or decoding; this server takes at most "
                                 f"{self.max_rows} from one client at once. Try again when some have finished.")
            self._rows[client] += rows
        try:
            yield
        finally:
            with self._lock:
                self._rows[client] -= rows
                if self._rows[client] <= 0:
                    del self._rows[client]

    def in_flight(self, client: str) -> int:
        with self._lock:
            return self._rows.get(client, 0)

    def __len__(self) -> int:
        """Clients with rows in flight (the table never holds more)."""
        with self._lock:
            return len(self._rows)
