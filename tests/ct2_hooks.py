"""Watch or pace the real CT2 generator from the test side, in CT2's own decoding thread.

Production code has no test hooks. A test loads its model with :func:`load_hookable_ct2_model` (which is
also an ``Engine(loader=...)``): the model's Generator is the real one, wrapped so that inside
``with hooked_steps(model, on_step)`` every decoded step of every row passes through ``on_step`` first.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import replace
from typing import Callable, Sequence

from model_utils.engine.batching import BatchingConfig
from model_utils.engine.loaded_model import LoadedModel, load_ct2_model

OnStep = Callable[[object, Sequence[str]], None]


class HookableGenerator:
    """A real ``ctranslate2.Generator`` that calls ``on_step(step, prompt_tokens)`` (when set) before each
    row's step reaches the scheduler, and records what each ``generate_batch`` call was given."""

    def __init__(self, generator):
        self.wrapped = generator
        self.on_step: OnStep | None = None
        self.batches: list[tuple[list[list[str]], dict]] = []  # (prompts, options) of each batch, in order
        self._lock = threading.Lock()

    def generate_batch(self, prompts, *args, callback=None, **kwargs):
        with self._lock:
            self.batches.append(([list(p) for p in prompts], dict(kwargs)))
        on_step = self.on_step  # a batch keeps the hook it started with
        if on_step is None:
            return self.wrapped.generate_batch(prompts, *args, callback=callback, **kwargs)

        # CT2 drops this callback in its own worker thread. It must not close over ``self``: holding
        # the last reference to the real Generator there would destroy the Generator inside its own
        # thread pool, which aborts the process (see batching._row_callback).
        def hooked(step):
            on_step(step, prompts[step.batch_id])  # the row's prompt tokens say whose step it is
            return callback(step) if callback is not None else False

        return self.wrapped.generate_batch(prompts, *args, callback=hooked, **kwargs)

    def __getattr__(self, name):
        return getattr(self.wrapped, name)


def load_hookable_ct2_model(path, info, revision, device, batching: BatchingConfig = BatchingConfig()) -> LoadedModel:
    """:func:`load_ct2_model`, with the real Generator wrapped in a :class:`HookableGenerator`."""
    plain = load_ct2_model(path, info, revision, device, batching)
    # The model gets a scheduler of its own around the wrapper; the plain one's idle lanes stop here.
    plain.scheduler.close()
    return replace(plain, generator=HookableGenerator(plain.generator))


@contextmanager
def hooked_steps(model: LoadedModel, on_step: OnStep):
    """Run ``on_step(step, prompt_tokens)`` for each CT2 step of the batches ``model`` starts inside the block."""
    generator = model.generator
    assert isinstance(generator, HookableGenerator), "load the model with load_hookable_ct2_model"
    generator.on_step = on_step
    try:
        yield
    finally:
        generator.on_step = None


def hooked_loader(on_step: OnStep):
    """An ``Engine(loader=...)`` whose models pass every CT2 step through ``on_step`` from their first batch."""

    def load(*args, **kwargs) -> LoadedModel:
        model = load_hookable_ct2_model(*args, **kwargs)
        model.generator.on_step = on_step
        return model

    return load


class Hold:
    """An ``on_step`` that holds each step until :meth:`release`: a reply ahead keeps its lane busy (inside CT2's
    own step) while a test arranges what comes after it."""

    def __init__(self, timeout: float):
        self.timeout = timeout
        self._gate, self._decoding = threading.Event(), threading.Event()

    def __call__(self, step, prompt) -> None:
        self._decoding.set()
        self._gate.wait(self.timeout)

    def decoding(self) -> bool:
        """Whether the reply ahead reached its first step (waits up to the timeout)."""
        return self._decoding.wait(self.timeout)

    def release(self) -> None:
        self._gate.set()
