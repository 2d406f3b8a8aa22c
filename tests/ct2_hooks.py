"""Watch or pace the real CT2 generator from the test side, in CT2's own decoding thread.

Production code has no test hooks: a test wraps the loaded model's real Generator for the
duration of a ``with`` block, and every decoded step of every row passes through ``on_step``.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Sequence


class _HookedGenerator:
    def __init__(self, generator, on_step: Callable[[object, Sequence[str]], None]):
        self._generator, self._on_step = generator, on_step

    def generate_batch(self, prompts, *args, callback=None, **kwargs):
        on_step = self._on_step

        # CT2 drops this callback in its own worker thread. It must not close over ``self``: holding
        # the last reference to the real Generator there would destroy the Generator inside its own
        # thread pool, which aborts the process (see batching._row_callback).
        def hooked(step):
            on_step(step, prompts[step.batch_id])  # the row's prompt tokens say whose step it is
            return callback(step) if callback is not None else False

        return self._generator.generate_batch(prompts, *args, callback=hooked, **kwargs)

    def __getattr__(self, name):
        return getattr(self._generator, name)


@contextmanager
def hooked_steps(model, on_step: Callable[[object, Sequence[str]], None]):
    """Run ``on_step(step, prompt_tokens)`` for each CT2 step of ``model`` inside the block."""
    scheduler = model.scheduler
    real = scheduler._generator
    scheduler._generator = _HookedGenerator(real, on_step)
    try:
        yield
    finally:
        scheduler._generator = real
