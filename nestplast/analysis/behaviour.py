"""Figures of a fit to behaviour: the model's choice probabilities against the animals' choices,
over the trials and blocks of the task."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import saved_figure


def plot_choices(path: str | Path, data, p_choose_0: np.ndarray, held_out: list[int], window: int = 10) -> Path:
    """Per trial, the fraction of animals choosing odour 1 (a running mean over ``window``
    trials) and the fitted model's mean probability of that choice, for the fitted and the
    held-out animals; blocks shaded, with their reward probabilities."""
    path = Path(path)
    trials = np.arange(data.n_trials)
    kernel = np.ones(window)

    def running_mean(x):  # divided by the trials inside the window, so the ends are not diluted
        return np.convolve(x, kernel, mode="same") / np.convolve(np.ones_like(x), kernel, mode="same")
    fitted = [a for a in range(data.n_animals) if a not in held_out]
    with saved_figure(path, figsize=(9, 4)) as (fig, ax):
        for b in range(int(data.blocks.max()) + 1):
            inside = trials[data.blocks == b]
            ax.axvspan(inside[0] - 0.5, inside[-1] + 0.5, color="0.93" if b % 2 else "0.98", zorder=0)
            if data.p_reward is not None:
                ax.text(inside.mean(), 1.02, f"p(reward | 0, 1) = {data.p_reward[b][0]:g}, {data.p_reward[b][1]:g}",
                        ha="center", fontsize=8)
        for animals, colour, label in ((fitted, "C0", "fitted animals"), (held_out, "C1", "held-out animals")):
            if not animals:
                continue
            observed = running_mean(data.choices[animals].mean(axis=0))
            ax.plot(trials, observed, ".", color=colour, ms=3, label=f"{label}: choices of odour 1 (running mean)")
            ax.plot(trials, 1.0 - p_choose_0[animals].mean(axis=0), "-", color=colour, lw=1,
                    label=f"{label}: model p(odour 1)")
        ax.set_ylim(0.0, 1.08)
        ax.set_xlabel("trial")
        ax.set_ylabel("choice of odour 1")
        ax.legend(fontsize=7, loc="lower left")
    return path
