"""Tables and figures of results, and the small helpers they share: a CSV writer, a figure saved
as PNG, and the check of an output directory before the work that fills it.

One module per kind of result: :mod:`~nestplast.analysis.search` (a search run),
:mod:`~nestplast.analysis.families` (a filter run's family), :mod:`~nestplast.analysis.inference` (a
fit to spikes and weights), :mod:`~nestplast.analysis.behaviour` (a fit to choices) and
:mod:`~nestplast.analysis.pruning` (the pruning comparison).
"""

from __future__ import annotations

import contextlib
import csv
import importlib.util
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ..errors import UserError


class OutputPathError(UserError):
    """An output directory that is a file or cannot be written."""


def check_output_directory(path: str | Path) -> Path:
    """Return ``path`` if it is a writable directory or can be created as one, else raise
    :class:`OutputPathError`. Meant to run before the work whose results go there, so that a
    wrong path costs nothing. Creates nothing."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputPathError(f"output directory {path} is an existing file")
    existing = path
    while not existing.exists():  # the nearest existing folder is where the first mkdir happens
        existing = existing.parent
    if not existing.is_dir():
        raise OutputPathError(f"cannot create output directory {path}: {existing} is a file")
    try:
        with tempfile.TemporaryFile(dir=existing):  # really writing finds read-only file systems too
            pass
    except OSError as err:
        raise OutputPathError(f"cannot write to output directory {path}: {err.strerror} ({existing})") from None
    return path


def write_csv(rows: list[dict], path: str | Path, columns: list[str] | None = None) -> None:
    """Write dicts as CSV rows, columns in the order of first appearance; None as an empty cell.
    ``columns``: the header of a table without rows (with rows, those of the rows)."""
    columns = list(dict.fromkeys(key for row in rows for key in row)) if rows else list(columns or [])
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


STDP_DT_MS = np.linspace(-100.0, 100.0, 401)  # t_post - t_pre (ms) of the STDP window plots


def draw_stdp_window(ax, rule, params, w: float, **plot) -> None:
    """``rule``'s change of |w| per spike pair at ``params`` against t_post - t_pre, from |w| = ``w``
    (at 0 a rule whose update scales with |w| was drawn flat), with the axes' zero lines."""
    ax.plot(STDP_DT_MS, rule.stdp_window(params, STDP_DT_MS, w=w), **plot)
    ax.axhline(0.0, color="grey", lw=0.5)
    ax.axvline(0.0, color="grey", lw=0.5)
    ax.set_xlabel("t_post - t_pre (ms)")


class PlotsUnavailableError(UserError):
    """Plots asked for where matplotlib (the extra ``plots``) is not installed."""


def require_matplotlib() -> None:
    """Raise :class:`PlotsUnavailableError` unless matplotlib can be imported: before the work whose
    plots need it (installed without the extra, a run ended in a ModuleNotFoundError traceback)."""
    if importlib.util.find_spec("matplotlib") is None:
        raise PlotsUnavailableError("the plots need matplotlib, the extra 'plots': pip install 'nestplast[plots]' "
                                    "(setup.sh installs it), or give --no-plots where the command has it")


@contextlib.contextmanager
def saved_figure(path, *, ncols: int = 1, figsize=(6, 4), dpi: int = 120) -> Iterator:
    """A matplotlib figure with ``ncols`` axes side by side, saved as PNG to ``path`` when the
    block ends: ``with saved_figure(path) as (fig, ax): ax.plot(...)``. A bare
    ``matplotlib.figure.Figure`` renders with Agg by itself: no pyplot, so no GUI backend, no
    global state to switch and no figure left open."""
    require_matplotlib()
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    axes = fig.subplots(1, ncols)
    yield fig, axes
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)


def weight_unit(exp) -> str:
    """The unit of the experiment's weights: its neuron's synaptic input (pA for current-based
    neurons, nS for conductance-based ones)."""
    from ..neurons import get_neuron

    return get_neuron(exp.rule.neuron).codependency[2]
