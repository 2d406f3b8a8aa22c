"""The decoding speed a reply or a Compare column shows: a measurement, or nothing."""

from model_utils.engine.generation import GenerationChunk
from model_utils.service import CompareColumn
from model_utils.ui.wording import column_metrics


def chunk(num_tokens: int, decode_seconds: float) -> GenerationChunk:
    return GenerationChunk("", None, None, num_tokens, elapsed=0.2 + decode_seconds, time_to_first_token=0.2,
                           finish_reason="stop")


def test_no_speed_is_shown_from_an_interval_too_short_to_time():
    """Two tokens handed over 11 microseconds apart (CT2 had decoded them already) once showed
    as 87772 tokens/s next to columns at ~2,000."""
    burst = chunk(2, 1.14e-5)
    assert burst.tokens_per_second == 0.0
    column = CompareColumn("demo", "main", text="x", done=True, num_tokens=2,
                           tokens_per_second=burst.tokens_per_second, finish_reason="stop")
    assert "tokens/s" not in column_metrics(column) and column_metrics(column).startswith("2 tokens")
    timed = chunk(128, 0.064)  # 127 tokens over 64 ms: a real measurement
    assert round(timed.tokens_per_second) == 1984
    column = CompareColumn("demo", "main", text="x", done=True, num_tokens=128,
                           tokens_per_second=timed.tokens_per_second, finish_reason="length")
    assert "1984 tokens/s" in column_metrics(column)
