"""Recovering known rules: a recording generated in NEST by a ground-truth rule
(:mod:`nestplast.synthetic`), optionally degraded as real recordings are (weight measurement
noise, spike-time jitter, fewer recorded synapses, a shorter recording), then fitted
(:func:`nestplast.infer.fit`); the table says per coefficient the truth, the fit, its interval,
and whether the fit is within 5 % of the largest true coefficient, the interval covers the
truth and the sign is right. The sweep repeats that over the degradations."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from .infer import Fit, RuleChoice, fit
from .recording import Recording
from .synthetic import GROUND_TRUTHS, generate

TOLERANCE = 0.05  # of the largest true coefficient
# an interval "misses" the truth by less than this (of the largest true coefficient) only by the fit's
# numerical precision: Oja's 1.0 recovered as 1.0000000149 [1.0000000007, 1.0000000159] was marked "no"
PRECISION = 1e-6
SWEEP = {"weight_noise": [0.0, 0.01, 0.05, 0.10],  # std, as a fraction of the recorded weight range
         "jitter_ms": [0.0, 1.0, 5.0], "recorded_fraction": [1.0, 0.5, 0.1], "length": [1.0, 0.25]}


@dataclasses.dataclass(frozen=True)
class Degradation:
    """How a recording is degraded before the fit: weight measurement noise (std, as a fraction of
    the recorded weight range), spike-time jitter (std, ms), the fraction of synapses whose weights
    were recorded, and the fraction of the recording kept (from its start)."""

    weight_noise: float = 0.0
    jitter_ms: float = 0.0
    recorded_fraction: float = 1.0
    length: float = 1.0

    def apply(self, recording: Recording, seed: int) -> Recording:
        """The degraded ``recording`` (its random draws from ``seed``)."""
        if self.length < 1.0:
            end = recording.duration * self.length
            last = recording.weight_times[recording.weight_times <= end][-1]
            recording = recording.segment(0.0, last + 1e-9)
        if self.recorded_fraction < 1.0:
            recording = recording.sparse(self.recorded_fraction, seed)
        if self.jitter_ms > 0:
            recording = recording.jittered(self.jitter_ms, seed)
        if self.weight_noise > 0:
            spread = float(np.ptp(np.abs(recording.weights)))
            recording = recording.noisy_weights(self.weight_noise * spread, seed)
        return recording


def covers(interval: tuple[float, float], value: float, scale: float) -> bool | None:
    """Whether ``interval`` holds the true ``value`` up to the fit's numerical precision
    (:data:`PRECISION` of ``scale``, the largest true coefficient); None without an interval (no
    bootstrap: NaN ends covered nothing, and a perfect recovery read as failed)."""
    low, high = interval
    if np.isnan(low):
        return None
    return bool(low - PRECISION * scale <= value <= high + PRECISION * scale)


def recover(name: str, degradation: Degradation = Degradation(), *, duration_ms: float = 20_000.0, w_max: float = 200.0,
            seed: int = 1, progress: Callable[[str], None] | None = None, **fit_options) -> tuple[Fit, list[dict]]:
    """Generate ``name``'s recording, degrade it, fit the ground truth's terms; the fit and one row
    per coefficient (true, fitted, interval, within tolerance, covered, sign right)."""
    truth = GROUND_TRUTHS[name]
    recording = degradation.apply(generate(truth, duration_ms=duration_ms, w_max=w_max, seed=seed), seed)
    fixed = {k: v for k, v in truth.params.items() if k not in truth.rule.names} | {"Wmax": w_max}
    result = fit(recording, RuleChoice(truth.rule.name, truth.mask), fixed, seed=seed, progress=progress, **fit_options)
    true = {n: truth.params[n] for n in truth.rule.names}
    scale = max(abs(v) for v in true.values())
    rows = []
    for n, value in true.items():
        low, high = result.intervals[n]
        rows.append({"rule": name, **dataclasses.asdict(degradation), "coefficient": n, "true": value,
                     "fitted": result.coefficients[n], "low": low, "high": high,
                     "within_5pct": abs(result.coefficients[n] - value) <= TOLERANCE * scale,
                     "covered": covers((low, high), value, scale),
                     "sign_right": bool(np.sign(result.coefficients[n]) == np.sign(value)),
                     "r2_held_out": result.r2_held_out, "deviance_explained": result.deviance_explained_held_out})
    return result, rows


def sweep_degradations() -> list[Degradation]:
    """The sweep's degradations: one at a time, the others at their best (the undegraded case is the
    first noise level), as in the model-based inference paper."""
    return [Degradation(**{key: value}) for key, values in SWEEP.items() for value in values
            if value != getattr(Degradation(), key) or key == "weight_noise"]


def sweep(name: str, *, done: Callable[[Degradation, list[dict]], None] | None = None, **options) -> list[dict]:
    """The recovery of ``name`` at each of :func:`sweep_degradations`; ``done(degradation, rows so
    far)`` after each (the command's progress line and its table so far)."""
    rows = []
    for degradation in sweep_degradations():
        rows += recover(name, degradation, **options)[1]
        if done is not None:
            done(degradation, rows)
    return rows
