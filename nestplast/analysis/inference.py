"""Figures of a fit: recorded against fitted trajectories (weights; in the closed mode also the
postsynaptic rates), the coefficients with their 95 % intervals, and the fitted rule as an STDP
window."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from . import draw_stdp_window, saved_figure


def write_plots(out: str | Path, fit, problem, segments_, true: dict[str, float] | None = None,
                n_synapses: int = 6) -> list[Path]:
    """Clamped mode: trajectories.png, coefficients.png and stdp_window.png into ``out``."""
    out = Path(out)
    recording = problem.recording
    theta = [fit.coefficients[n] for n in fit.names]
    written = [out / "trajectories.png"]
    with saved_figure(written[-1], figsize=(8, 4)) as (fig, ax):
        shown = range(min(n_synapses, recording.weights.shape[0]))
        for s in segments_:
            times = recording.weight_times[s.first:s.last + 1] / 1000.0
            predicted = problem.predict(theta, s)
            for i in shown:
                ax.plot(times, recording.weights[i, s.first:s.last + 1], "k.", ms=2)
                ax.plot(times, predicted[i], "-", color=f"C{i}", lw=1)
        ax.set_xlabel("time (s)")
        ax.set_ylabel("weight (the recording's units)")
        ax.set_title("recorded (dots) and fitted (lines) weights, each segment from its recorded start")
    w = float(np.nanmedian(np.abs(recording.first_weights())))
    return written + [plot_coefficients(out / "coefficients.png", fit, true),
                      plot_stdp_window(out / "stdp_window.png", fit, problem.rule, w, true)]


def write_closed_plots(out: str | Path, fit, problem, counts, weights, true: dict[str, float] | None = None,
                       n_synapses: int = 6) -> list[Path]:
    """Closed mode: activity.png (recorded and fitted postsynaptic rates, held-out segments
    shaded), weights.png (where weights were recorded), coefficients.png and stdp_window.png."""
    out = Path(out)
    recording, edges = problem.recording, problem.edges
    centres = (edges[:-1] + edges[1:]) / 2000.0
    to_hz = 1000.0 / problem.bin_ms

    def shade(ax):
        for k in np.flatnonzero(problem.held):
            bins = np.flatnonzero(problem.bin_segment == k)
            ax.axvspan(edges[bins[0]] / 1000.0, edges[bins[-1] + 1] / 1000.0, color="0.9", zorder=0)

    written = [out / "activity.png"]
    mean_counts = np.mean(counts, axis=0)
    with saved_figure(written[-1], figsize=(8, 4)) as (fig, ax):
        shade(ax)
        for i in range(recording.n_post):
            ax.plot(centres, problem.observed[i] * to_hz, ".", color=f"C{i}", ms=3)
            ax.plot(centres, mean_counts[i] * to_hz, "-", color=f"C{i}", lw=1)
        ax.set_xlabel("time (s)")
        ax.set_ylabel(f"rate (Hz, {problem.bin_ms:g} ms bins)")
        ax.set_title("recorded (dots) and fitted (lines, mean over background trials); grey: held out")
    if recording.has_weights:
        written.append(out / "weights.png")
        with saved_figure(written[-1], figsize=(8, 4)) as (fig, ax):
            shade(ax)
            times, mean_weights = recording.weight_times / 1000.0, np.mean(weights, axis=0)
            for i in range(min(n_synapses, recording.weights.shape[0])):
                ax.plot(times, recording.weights[i], "k.", ms=2)
                ax.plot(times, mean_weights[i], "-", color=f"C{i}", lw=1)
            ax.set_xlabel("time (s)")
            ax.set_ylabel("weight (the recording's units)")
            ax.set_title("recorded (dots) and fitted (lines) weights; grey: held out")
    w = float(np.median(np.abs(problem.w_start)))
    return written + [plot_coefficients(out / "coefficients.png", fit, true),
                      plot_stdp_window(out / "stdp_window.png", fit, problem.rule, w, true)]


def plot_coefficients(path: Path, fit, true: dict[str, float] | None = None) -> Path:
    """The fitted coefficients with their 95 % intervals (and the truth, where known)."""
    theta = [fit.coefficients[n] for n in fit.names]
    with saved_figure(path) as (fig, ax):
        x = np.arange(len(fit.names))
        # a percentile interval need not contain the estimate: draw the part on each side that exists
        low = [max(0.0, fit.coefficients[n] - fit.intervals[n][0]) for n in fit.names]
        high = [max(0.0, fit.intervals[n][1] - fit.coefficients[n]) for n in fit.names]
        some = not np.all(np.isnan(low))  # none (no bootstrap draws): zero-width bars looked like tight intervals
        low, high = np.nan_to_num(low), np.nan_to_num(high)
        if some:
            ax.errorbar(x, theta, yerr=[low, high], fmt="o", capsize=4, label="fitted, 95 % interval")
        else:
            ax.plot(x, theta, "o", label="fitted (no interval)")
        if true:
            ax.plot(x, [true.get(n, 0.0) for n in fit.names], "rx", ms=9, label="true")
        ax.axhline(0.0, color="grey", lw=0.5)
        ax.set_xticks(x, fit.names, rotation=30)
        ax.set_ylabel("coefficient")
        ax.legend()
    return path


def plot_stdp_window(path: Path, fit, rule, w: float, true: dict[str, float] | None = None) -> Path:
    """The fitted rule's change of |w| per spike pair against their time difference, at |w| = ``w``."""
    with saved_figure(path) as (fig, ax):
        draw_stdp_window(ax, rule, fit.nest_params, w, label=f"fitted, |w| = {w:.3g}")
        if true:
            draw_stdp_window(ax, rule, rule.synapse_params(true, **fit.fixed), w, linestyle="--", label="true")
        ax.set_ylabel("change of |w| per pair (the recording's units)")
        ax.legend()
    return path


def plot_sweep(rows: list[dict], path: str | Path) -> None:
    """Per degradation: the relative error of every coefficient (|fitted - true| / largest |true|)."""
    from ..recovery import SWEEP, TOLERANCE, Degradation  # the sweep's own degradations, undegraded values, tolerance

    keys, base = tuple(SWEEP), dataclasses.asdict(Degradation())
    with saved_figure(path, ncols=len(keys), figsize=(14, 3.5)) as (fig, axes):
        scale = max(abs(r["true"]) for r in rows)
        for ax, key in zip(axes, keys):
            others = [k for k in keys if k != key]
            chosen = [r for r in rows if all(r[k] == base[k] for k in others)]
            for name in sorted({r["coefficient"] for r in chosen}):
                points = sorted((r[key], abs(r["fitted"] - r["true"]) / scale) for r in chosen if r["coefficient"] == name)
                ax.semilogy([p[0] for p in points], [max(p[1], 1e-12) for p in points], "o-", label=name)
            ax.axhline(TOLERANCE, color="k", ls=":", lw=0.8)
            ax.set_xlabel(key)
        axes[0].set_ylabel("error / largest true coefficient")
        axes[0].legend(fontsize=7)
