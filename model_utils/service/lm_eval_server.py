"""lm-eval as a library inside a server: what lm-eval does that a server must not, replaced in lm-eval's own modules.

- ``simple_evaluate`` ends by describing the machine for a results file: ``git describe`` in the working directory
  and, where torch is installed, torch's ``collect_env``, which runs pip, nvidia-smi and a dozen other programs, with
  no time limit (3.5 s of CPU here per checkpoint, counted in each evaluation's time, and ahead of a Stop). The app
  keeps none of it (its results JSON has the metrics, the task's config and versions, and the key): both are
  replaced by what costs nothing. (Its process pool for bootstrapped errors is off: ``DISABLE_MULTIPROC`` in
  benchmarks.py.)
- lm-eval compiles a task's Jinja templates (``doc_to_text``, ``doc_to_target``...) again for every document it
  renders (``lm_eval.utils.apply_template``; upstream issue EleutherAI/lm-evaluation-harness#1286): most of the Python
  time of building a task's requests. Each template string is compiled once here, in lm-eval's own environment, and
  rendered as lm-eval renders it.
- Visitors first, in lm-eval's Python too. Building a task's requests (rendering and encoding every document) and
  reading its results are pure Python in the evaluation's thread, holding the interpreter lock that the server's
  event loop and request threads need: measured with 8 chat users arriving together as an evaluation of 1,000
  documents began, their first tokens' p95 went from 0.22 s to 0.62-0.65 s, while the scoring itself already waits
  for visitors (``BatchScheduler.start_scoring_group``). Inside :func:`visitors_first`, every document rendered and
  every text encoded first calls the served model's ``give_way``: it returns at once unless a visitor waits for a
  first token from this model, and then waits (bounded) until that token is out.
"""

from __future__ import annotations

import functools
import threading
from contextlib import contextmanager
from typing import Callable, Iterator

_turns = threading.local()  # the evaluation thread's give_way, inside visitors_first


def lm_eval_for_a_server() -> None:
    """Called before each evaluation (idempotent and stateless: safe with evaluations side by side); the benchmark
    scripts call it for lm-eval's own ``hf`` and ``local-completions`` ways too, so that every way is timed alike."""
    import lm_eval.evaluator
    import lm_eval.utils

    lm_eval.evaluator.add_env_info = _keep_no_machine_info
    lm_eval.evaluator.get_git_commit_hash = _no_git_hash
    lm_eval.utils.apply_template = _apply_compiled_template


@contextmanager
def visitors_first(give_way: Callable[[], None]) -> Iterator[None]:
    """Within this block, this thread's lm-eval calls ``give_way()`` before each document it renders (see the
    module's docstring); ``ServiceLM`` calls it before each text it encodes."""
    _turns.give_way = give_way
    try:
        yield
    finally:
        _turns.give_way = None


def give_way() -> None:
    """This thread's ``give_way`` inside :func:`visitors_first`; nothing elsewhere."""
    turn = getattr(_turns, "give_way", None)
    if turn is not None:
        turn()


@functools.lru_cache(maxsize=1024)  # a task has a few templates; 1024 bounds a server that ran hundreds of tasks
def _compiled_template(template: str):
    import lm_eval.utils

    return lm_eval.utils.env.from_string(template)


def _apply_compiled_template(template: str, doc: dict) -> str:
    """``lm_eval.utils.apply_template``, with the template compiled once (a compiled Jinja template renders safely
    from many threads)."""
    give_way()
    return _compiled_template(template).render(**doc)


def _keep_no_machine_info(storage: dict) -> None:
    storage["pretty_env_info"] = "not collected (pythia-ct2)"


def _no_git_hash() -> None:
    return None
