"""Tables and plots of the pruning rules compared (:mod:`nestplast.pruning_measures`): the text
table, warnings about unstable pruned networks, the sweep CSV, the spectra, sweep and decay
plots, and all of them written to one directory."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from ..prune import PRUNING_RULES
from ..pruning_measures import Comparison, Spectrum, eigenvalues, spectrum
from ..rate_network import STABLE_BELOW
from . import saved_figure, write_csv


def format_table(summary: dict) -> str:
    """The comparison's :meth:`~nestplast.pruning_measures.Comparison.summary` as a text table,
    one line per rule (``-`` for a measure that was skipped, ``inf`` or ``nan`` for one that is
    not finite)."""
    k = summary["slowest"]
    columns = [("kept", "kept", "d"), ("eig mean", "eigenvalue_error", ".4f"),
               ("eig max", "eigenvalue_error_max", ".4f"), (f"eig slow{k}", "eigenvalue_error_slowest", ".4f"),
               ("rayleigh", "rayleigh_error", ".4f"), ("trajectory", "trajectory_error", ".4f"),
               ("decay", "decay_trajectory_error", ".4f"), ("max re(eig)", "largest_real_eigenvalue", ".4g")]
    lines = [f"{summary['nodes']} neurons, {summary['synapses']} synapses, keep {summary['keep']}, "
             f"diagonal {summary['diagonal']}",
             f"{'rule':<10}" + "".join(f" {title:>11}" for title, _, _ in columns)]
    for rule, measures in summary["rules"].items():
        cells = (_cell(measures[key], spec) for _, key, spec in columns)
        lines.append(f"{rule:<10}" + "".join(f" {cell:>11}" for cell in cells))
    return "\n".join(lines)


def _cell(value, spec: str) -> str:
    if value is None:
        return "-"  # skipped
    if isinstance(value, str):
        return value  # "inf" or "nan" as the summary has it
    # an unstable network's decay error of 1e33 printed 40 digits in an 11-wide column
    return format(value, ".4g" if spec == ".4f" and abs(value) >= 1e6 else spec)


# Why a measure is not finite ("inf" or "nan" in the summary), and the option that measures it over a shorter time.
GREW = "grew past the largest floating-point number (an unstable network grows without bound)"
NON_FINITE = {
    ("trajectory_error", "inf"): ("trajectory error", f"the pruned network's rates in NEST {GREW}", "--duration"),
    ("trajectory_error", "nan"): ("trajectory error", f"the pruned network's rates in NEST {GREW}", "--duration"),
    ("decay_trajectory_error", "inf"): ("decay trajectory error", f"the pruned network's free decay {GREW}",
                                        "--decay-duration"),
    ("decay_trajectory_error", "nan"): ("decay trajectory error", "the original's free decay shrank below the "
                                        "smallest floating-point number, to 0, which leaves no error to divide by",
                                        "--decay-duration"),
}


def non_finite_warnings(summary: dict) -> list[str]:
    """One line per measure that is not finite (the string "inf" or "nan" in the summary), not to
    be taken for a skipped one: why, and what measures it."""
    warnings = []
    for rule, m in summary["rules"].items():
        for key, value in m.items():
            if key == "trajectory_error" and value == "inf" and m.get("stable"):
                # stable, yet inf: NEST's step could not integrate it, said above; no shorter --duration helps
                continue
            if isinstance(value, str):
                name, why, option = NON_FINITE.get((key, value.lstrip("-")), (key, "not a finite number", "time"))
                warnings.append(f"the {name} of the {rule} rule is {value}: {why}; measure it over a shorter {option}")
    return warnings


def nothing_pruned_warnings(summary: dict) -> list[str]:
    """A line where the comparison compares nothing: no synapse to prune, or a fraction kept that
    keeps none (every rule then removes every synapse, and their errors are all the same)."""
    if summary["synapses"] == 0:
        return ["the network has no synapse (nonzero weight off the diagonal): there is nothing to prune"]
    if not any(m["kept"] for m in summary["rules"].values()):
        return [f"keeping {summary['keep']:g} of {summary['synapses']} synapses keeps none: every rule "
                "removes every synapse, so the rules cannot be told apart (--keep more, or a larger network)"]
    return []


def instability_warnings(summary: dict) -> list[str]:
    """One line per rule whose pruned network is unstable, naming the diagonal options that keep
    the same draw stable."""
    warnings = []
    for rule, m in summary["rules"].items():
        if m["stable"]:
            continue
        largest = m["largest_real_eigenvalue"]
        options = m["stable_diagonals"]
        if not options:
            remedy = "no diagonal option keeps this draw stable: keep more synapses or draw again (--seed)"
        elif len(options) == 1:
            remedy = f"the diagonal option {options[0]} keeps this draw stable (--diagonal {options[0]})"
        else:
            remedy = f"the diagonal options {' and '.join(options)} keep this draw stable (--diagonal {options[0]})"
        warnings.append(f"the network pruned by the {rule} rule is unstable: W - leak*I has an eigenvalue with "
                        f"real part {largest:.4g}{' >= 0' if largest >= 0 else ', zero up to rounding'} "
                        f"(diagonal {summary['diagonal']}); {remedy}")
    return warnings


def sweep_instability_warnings(rows: Sequence[Mapping], keep: float) -> list[str]:
    """A line naming the sweep's unstable pruned networks (``rows`` of :func:`~nestplast.pruning_measures.sweep`)
    other than ``keep``'s, which :func:`instability_warnings` names: their measures saturate (the
    slowest modes' errors at 1.0), and sweep.csv and sweep.png showed them without a word."""
    unstable = [f"{r['rule']} at keep {r['keep']:g}" for r in rows
                if r["keep"] != keep and not r["largest_real_eigenvalue"] < STABLE_BELOW]
    if not unstable:
        return []
    return [f"in the sweep, the networks pruned by {', '.join(unstable)} are unstable too (W - leak*I has an eigenvalue "
            f"with real part >= 0 up to rounding): their rows in sweep.csv and points in sweep.png compare nothing"]


def sign_warnings(comparison: Comparison) -> list[str]:
    """A line where the matrix keeps one sign per neuron (Dale's law: each column's weights one
    sign, excitatory and inhibitory neurons both) and the row-sum diagonal gave self-couplings the
    other sign: it adds each row's removed magnitude back, which is negative where the rescaled
    kept weights outweigh the removed ones."""
    W = np.asarray(comparison.weights)
    if comparison.diagonal != "row-sum":
        return []
    off = W - np.diag(np.diag(W))
    signs = np.sign(off.sum(axis=0))
    one_sign = all(np.all(np.sign(off[:, j][off[:, j] != 0]) == signs[j]) for j in range(len(W)))
    if not one_sign or not (np.any(signs > 0) and np.any(signs < 0)):
        return []
    flipped = {}
    for rule, pruned in comparison.pruned.items():
        own = np.diag(pruned.weights)
        wrong = (signs != 0) & (own * signs < 0) & (np.diag(W) * signs >= 0)  # not already so in the matrix
        if wrong.any():
            flipped[rule] = int(wrong.sum())
    if not flipped:
        return []
    counts = ", ".join(f"{n} by the {rule} rule" for rule, n in flipped.items())
    return [f"the matrix gives each neuron one sign (Dale's law), but the diagonal row-sum gave self-couplings the "
            f"other sign ({counts}): it adds back each row's removed magnitude, negative where the kept weights, "
            f"rescaled, outweigh the removed ones; --diagonal original or zero keeps the signs"]


def plot_spectra(W, pruned: dict[str, np.ndarray], path, *, leak: float = 1.0, title: str = "",
                 reference: Spectrum | None = None) -> None:
    """PNG of the dynamics matrix spectrum before and after pruning by each rule: sorted
    eigenvalues for symmetric matrices, the complex plane otherwise."""
    reference = reference or spectrum(W, leak)
    with saved_figure(path, figsize=(7, 4.5)) as (fig, ax):
        if reference.symmetric:
            ax.plot(reference.values, "k-", lw=2, label="original")
            for name, weights in pruned.items():
                ax.plot(np.sort(eigenvalues(weights, leak)[0].real), ".", ms=2, label=name)  # no eigenvectors needed
            ax.set_xlabel("eigenvalue index (sorted)")
            ax.set_ylabel("eigenvalue of W - leak I (1/tau)")
        else:
            ax.plot(reference.values.real, reference.values.imag, "ko", ms=3, label="original")
            for name, weights in pruned.items():
                values = eigenvalues(weights, leak)[0]
                ax.plot(values.real, values.imag, ".", ms=2, label=name)
            ax.set_xlabel("Re eigenvalue (1/tau)")
            ax.set_ylabel("Im eigenvalue (1/tau)")
        ax.set_title(title)
        ax.legend(markerscale=4)


def plot_sweep(rows: list[dict], path, *, slowest: int) -> None:
    """PNG of the relative eigenvalue error against the fraction pruned, one line per rule: the
    mean over all eigenvalues (left) and over the ``slowest`` (right)."""
    with saved_figure(path, ncols=2, figsize=(10, 4)) as (fig, axes):
        for ax, key, label in zip(axes, ("eigenvalue_error", "eigenvalue_error_slowest"),
                                  ("mean over all eigenvalues", f"mean over the {slowest} slowest")):
            for rule in dict.fromkeys(r["rule"] for r in rows):
                points = sorted((1 - r["keep"], r[key]) for r in rows if r["rule"] == rule)
                ax.plot(*zip(*points), "o-", label=rule)
            ax.set_xlabel("fraction of synapses pruned")
            ax.set_ylabel(f"relative eigenvalue error,\n{label}")
            ax.set_yscale("log")
            ax.legend()


def decay_rows(comparison: Comparison) -> list[dict]:
    """The decay trajectory error of each rule at each time: rows of time_ms and one column per rule."""
    decay = comparison.decay
    if not decay:
        return []
    times = next(iter(decay.values())).times
    return [{"time_ms": float(t), **{rule: float(d.errors[k]) for rule, d in decay.items()}}
            for k, t in enumerate(times)]


def plot_decay(rows: list[dict], path) -> None:
    """PNG of the decay trajectory error against time, one line per rule."""
    with saved_figure(path) as (fig, ax):
        times = [r["time_ms"] for r in rows]
        for rule in (key for key in rows[0] if key != "time_ms"):
            ax.plot(times, [r[rule] for r in rows], label=rule)
        ax.set_xlabel("time (ms)")
        ax.set_ylabel("relative error of the free decay")
        ax.legend()


def holds_prune_output(folder: str | Path) -> bool:
    """Whether ``folder`` holds what :func:`write_outputs` writes (its summary.json and original.npz),
    not merely a user's files of those kinds."""
    return (Path(folder) / "summary.json").is_file() and (Path(folder) / "original.npz").is_file()


def write_outputs(out, comparison: Comparison, sweep_rows: list[dict], settings: dict | None = None) -> list[Path]:
    """Write into directory ``out`` (created if needed): original.npz and pruned_<rule>.npz
    (arrays W and, pruned, probabilities), summary.json (with ``settings``, what made it, under
    that key), sweep.csv and sweep.png (when
    ``sweep_rows``), spectra.png, and decay.csv and decay.png (when the decay was measured).
    Removes those files of an earlier run into ``out`` (one that left its summary.json and
    original.npz there) that this one does not write. Returns the paths written."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    earlier_run = holds_prune_output(out)
    written = [out / "original.npz"]
    np.savez_compressed(written[-1], W=comparison.weights)
    for rule, p in comparison.pruned.items():
        written.append(out / f"pruned_{rule}.npz")
        np.savez_compressed(written[-1], W=p.weights, probabilities=p.probabilities)
    written.append(out / "summary.json")
    written[-1].write_text(json.dumps({**comparison.summary(), **({"settings": settings} if settings else {})},
                                      indent=2) + "\n")
    written.append(out / "spectra.png")
    plot_spectra(comparison.weights, {rule: p.weights for rule, p in comparison.pruned.items()}, written[-1],
                 leak=comparison.model.leak, reference=comparison.reference,
                 title=f"{len(comparison.weights)} neurons, {comparison.keep:.0%} of synapses kept")
    if sweep_rows:
        written += [out / "sweep.csv", out / "sweep.png"]
        write_csv(sweep_rows, written[-2])
        plot_sweep(sweep_rows, written[-1], slowest=comparison.slowest)
    decay = decay_rows(comparison)
    if decay:
        written += [out / "decay.csv", out / "decay.png"]
        write_csv(decay, written[-2])
        plot_decay(decay, written[-1])
    # An earlier run's files that this one does not write would pass for this run's results (a folder
    # without an earlier run's summary keeps its files: a decay.csv there is the user's own)
    if earlier_run:
        names = ["sweep.csv", "sweep.png", "decay.csv", "decay.png"] + [f"pruned_{r}.npz" for r in PRUNING_RULES]
        for path in {out / name for name in names} - set(written):
            path.unlink(missing_ok=True)
    return written
