"""Plots are extra: a benchmark writes its JSON first, then draws a PNG when matplotlib is there.

matplotlib is in bench/requirements.txt, not in the dev requirements, so a dev install runs every
benchmark to its end and is told in one line how to get the plot too.
"""

from __future__ import annotations


def pyplot(what: str):
    """matplotlib's pyplot drawing to files, or None after one line saying what to install."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only: no display needed
        import matplotlib.pyplot as plt
    except ImportError:
        print(f"{what}: no plot, matplotlib is not installed (pip install -r bench/requirements.txt); "
              "the results are written.")
        return None
    return plt
