"""The page's sampling controls, built from the one declaration (core/sampling.py's CONTROLS), and the handlers'
view of them: one typed value, whatever controls there are."""

from __future__ import annotations

import functools
import inspect
import typing
from dataclasses import dataclass
from itertools import groupby
from typing import Any, Callable

import gradio as gr

from ..service import CONTROLS, SamplingParams, bounds
from .common import declared_slider

NAMES = tuple(c.name for c in CONTROLS)


@dataclass(frozen=True)
class ControlValues:
    """What the page's sampling controls are set to, by control name (validated when the request is parsed)."""

    values: tuple[tuple[str, Any], ...]

    @classmethod
    def of(cls, *values: Any) -> "ControlValues":
        """The controls' values in the declared order (as Gradio passes the components' values)."""
        return cls(tuple(zip(NAMES, values, strict=True)))

    @classmethod
    def defaults(cls, **changed: Any) -> "ControlValues":
        """The page's starting values, with ``changed`` ones set (unknown names are refused)."""
        unknown = set(changed) - set(NAMES)
        if unknown:
            raise TypeError(f"no such control: {', '.join(sorted(unknown))}")
        return cls.of(*(changed.get(name, bounds(name).default) for name in NAMES))

    def kwargs(self) -> dict[str, Any]:
        """As the service's keyword arguments."""
        return dict(self.values)


def build_controls() -> list[gr.components.Component]:
    """One slider (or checkbox) per control, in the declared rows; call inside the Blocks. Returns the components
    in the declared order, as ``with_controls`` expects them."""
    built: dict[str, gr.components.Component] = {}
    for _, row in groupby(sorted(CONTROLS, key=lambda c: c.row), key=lambda c: c.row):
        with gr.Row():
            for control in row:
                elem_id = control.name.replace("_", "-")
                if control.step is None:
                    b = bounds(control.name)
                    built[control.name] = gr.Checkbox(value=b.default, label=control.label, info=b.info,
                                                      elem_id=elem_id, min_width=220)
                else:
                    built[control.name] = declared_slider(SamplingParams, control.name, step=control.step,
                                                          label=control.label, elem_id=elem_id, min_width=220)
    return [built[name] for name in NAMES]


def with_controls(fn: Callable) -> Callable:
    """Serve ``fn``, which takes a ``controls: ControlValues`` argument, with one Gradio input per control in that
    place (the inputs list then has ``*controls`` there). Gradio reads the new signature, the gr.Request and
    gr.Progress arguments included."""
    signature = inspect.signature(fn)
    names = list(signature.parameters)
    at = names.index("controls")
    hints = typing.get_type_hints(fn)
    spread = [inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD) for name in NAMES]
    parameters = [*list(signature.parameters.values())[:at], *spread, *list(signature.parameters.values())[at + 1:]]

    def packed(args: tuple) -> tuple:
        return (*args[:at], ControlValues.of(*args[at:at + len(NAMES)]), *args[at + len(NAMES):])

    if inspect.isgeneratorfunction(fn):  # Gradio streams a generator function's updates
        @functools.wraps(fn)
        def run(*args, **kwargs):
            yield from fn(*packed(args), **kwargs)
    else:
        @functools.wraps(fn)
        def run(*args, **kwargs):
            return fn(*packed(args), **kwargs)
    run.__signature__ = signature.replace(parameters=parameters)
    run.__annotations__ = {name: hint for name, hint in hints.items() if name != "controls"}
    del run.__wrapped__  # Gradio must read the signature above, not fn's
    return run


def readme_table() -> str:
    """The README's table of the sampling controls (a test checks the README holds it)."""
    rows = ["| control | range, default | page | Gradio API | OpenAI routes | remote vLLM engine |",
            "|---|---|---|---|---|---|"]
    for c in CONTROLS:
        b = bounds(c.name)
        span = f"true/false, default {str(b.default).lower()}" if isinstance(b.default, bool) else b.range_words
        page = f"{c.label} ({'checkbox' if c.step is None else f'slider, step {c.step:g}'})"
        openai = f"`{c.openai}`, default {c.openai_default:g}{c.openai_note}" if c.openai else "—"
        remote = f"`{c.vllm}`" if c.vllm else ("as vLLM's temperature 0" if c.remote else "refused unless "
                                               f"{b.default}")
        rows.append(f"| `{c.name}`: {b.info} | {span} | {page} | {'`' + c.name + '`' if c.gradio_api else '—'} | "
                    f"{openai} | {remote} |")
    return "\n".join(rows)


if __name__ == "__main__":  # python -m model_utils.ui.controls: the table to paste into the README
    print(readme_table())
