"""Refusals are summarised for the operator (core/refusal_log.py): a client's first in full, then one line every
few seconds saying how many, from how many clients, over how long. Read on a scripted clock."""

from __future__ import annotations

import logging

from model_utils.core.refusal_log import RefusalLog


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(caplog, **kwargs):
    caplog.set_level(logging.INFO, logger="test.refusals")
    clock, timers = Clock(), []
    refusals = RefusalLog(logging.getLogger("test.refusals"), "busy", clock=clock,
                          schedule=lambda delay, fn: timers.append((clock.now + delay, fn)), **kwargs)
    return refusals, clock, timers


def advance(clock: Clock, timers: list, seconds: float) -> None:
    """Let ``seconds`` pass, running the timers that fall due meanwhile, as threading.Timer would."""
    end = clock.now + seconds
    while True:
        due = sorted((t for t in timers if t[0] <= end), key=lambda t: t[0])
        if not due:
            break
        timers.remove(due[0])
        clock.now = max(clock.now, due[0][0])
        due[0][1]()
    clock.now = end


def lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "test.refusals"]


def test_a_flood_from_one_client_is_its_first_refusal_then_a_count_per_period(caplog):
    refusals, clock, timers = make(caplog, period_s=5)
    for _ in range(80):  # 8 a second for 10 s (steps a float holds exactly)
        refusals.refused("address:10.0.0.1", "%d rows in flight", 8)
        advance(clock, timers, 0.125)
    shown = lines(caplog)
    assert shown[0] == "busy: 8 rows in flight (client address:10.0.0.1; more from it are summarised every 5 s)"
    assert shown[1] == "busy: 40 more refused from 1 client in the last 5.0 s"
    assert len(shown) == 2  # the second period is still counting...
    advance(clock, timers, 10)  # ...until its timer: the flood stopped, its count is not lost
    assert lines(caplog)[2] == "busy: 39 more refused from 1 client in the last 5.0 s"
    assert not timers
    assert sum(int(line.split()[1]) for line in lines(caplog)[1:]) + 1 == 80, "every refusal is counted"


def test_many_addresses_write_a_few_first_lines_and_are_counted_as_distinct_clients(caplog):
    refusals, clock, timers = make(caplog, period_s=5, first_lines=3)
    for i in range(200):
        refusals.refused(f"address:127.0.0.{i % 40}", "full")
        clock.now += 0.02  # 4 s in all
    clock.now += 2
    refusals.refused("address:127.0.0.1", "full")  # the next period begins: the last one is summed up
    shown = lines(caplog)
    assert [line.split("client ")[1].split(";")[0] for line in shown[:3]] == [
        "address:127.0.0.0", "address:127.0.0.1", "address:127.0.0.2"]
    assert shown[3] == "busy: 197 more refused from 40 clients in the last 5.9 s"
    assert len(shown) == 4


def test_a_client_is_shown_again_once_it_has_been_quiet_a_while(caplog):
    refusals, clock, _ = make(caplog, period_s=5, remember_s=60)
    refusals.refused("a", "full")
    clock.now += 30
    refusals.refused("a", "full")  # counted: shown half a minute ago
    clock.now += 61
    refusals.refused("a", "full")
    shown = lines(caplog)
    assert shown[0].startswith("busy: full (client a;")
    assert shown[1] == "busy: 1 more refused from 1 client in the last 61.0 s"
    assert shown[2].startswith("busy: full (client a;")


def test_memory_is_bounded_however_many_clients_come(caplog):
    refusals, clock, timers = make(caplog, period_s=5, max_clients=100, first_lines=10)
    for i in range(5000):
        refusals.refused(f"c{i}", "full")
    assert len(refusals._shown) <= 100
    refusals.flush()
    assert lines(caplog)[-1] == "busy: 4990 more refused from at least 100 clients in the last 0.0 s"
