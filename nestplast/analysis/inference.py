"""Figures of a fit: recorded against fitted weight trajectories, the coefficients with their
95 % intervals, and the fitted rule as an STDP window."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import saved_figure


def write_plots(out: str | Path, fit, problem, segments_, true: dict[str, float] | None = None,
                n_synapses: int = 6) -> list[Path]:
    """trajectories.png, coefficients.png and stdp_window.png into ``out``."""
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
        ax.set_ylabel("weight")
        ax.set_title("recorded (dots) and fitted (lines) weights, each segment from its recorded start")
    written.append(out / "coefficients.png")
    with saved_figure(written[-1]) as (fig, ax):
        x = np.arange(len(fit.names))
        # a percentile interval need not contain the estimate: draw the part on each side that exists
        low = [max(0.0, fit.coefficients[n] - fit.intervals[n][0]) for n in fit.names]
        high = [max(0.0, fit.intervals[n][1] - fit.coefficients[n]) for n in fit.names]
        ax.errorbar(x, theta, yerr=[low, high], fmt="o", capsize=4, label="fitted, 95 % interval")
        if true:
            ax.plot(x, [true.get(n, 0.0) for n in fit.names], "rx", ms=9, label="true")
        ax.axhline(0.0, color="grey", lw=0.5)
        ax.set_xticks(x, fit.names, rotation=30)
        ax.set_ylabel("coefficient")
        ax.legend()
    written.append(out / "stdp_window.png")
    with saved_figure(written[-1]) as (fig, ax):
        rule, params = problem.rule, fit.nest_params()
        dt = np.linspace(-100.0, 100.0, 401)
        w = float(np.median(np.abs(recording.weights[:, 0])))
        ax.plot(dt, rule.stdp_window(params, dt, w=w), label=f"fitted, |w| = {w:.3g}")
        if true:
            ax.plot(dt, rule.stdp_window(rule.synapse_params(true, **fit.fixed), dt, w=w), "--", label="true")
        ax.axhline(0.0, color="grey", lw=0.5)
        ax.axvline(0.0, color="grey", lw=0.5)
        ax.set_xlabel("t_post - t_pre (ms)")
        ax.set_ylabel("change of |w| per pair")
        ax.legend()
    return written


def plot_sweep(rows: list[dict], path: str | Path) -> None:
    """Per degradation: the relative error of every coefficient (|fitted - true| / largest |true|)."""
    keys = ("weight_noise", "jitter_ms", "recorded_fraction", "length")
    with saved_figure(path, ncols=len(keys), figsize=(14, 3.5)) as (fig, axes):
        scale = max(abs(r["true"]) for r in rows)
        for ax, key in zip(axes, keys):
            others = [k for k in keys if k != key]
            base = {"weight_noise": 0.0, "jitter_ms": 0.0, "recorded_fraction": 1.0, "length": 1.0}
            chosen = [r for r in rows if all(r[k] == base[k] for k in others)]
            for name in sorted({r["coefficient"] for r in chosen}):
                points = sorted((r[key], abs(r["fitted"] - r["true"]) / scale) for r in chosen if r["coefficient"] == name)
                ax.semilogy([p[0] for p in points], [max(p[1], 1e-12) for p in points], "o-", label=name)
            ax.axhline(0.05, color="k", ls=":", lw=0.8)
            ax.set_xlabel(key)
        axes[0].set_ylabel("error / largest true coefficient")
        axes[0].legend(fontsize=7)
