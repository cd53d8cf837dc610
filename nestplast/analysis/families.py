"""What a filter run found (:class:`nestplast.families.Family`), as tables and figures: the
accepted rules (``family.csv``), acceptance per round (``acceptance.csv``), and plots: pairwise
marginals of the accepted parameters, each metric's distribution against its bounds, STDP windows
of sampled members, rates and weights over time of a few members."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..experiment import Experiment
from ..wording import counted
from . import draw_stdp_window, saved_figure, weight_unit, write_csv

MAX_MARGINALS = 6  # parameters in the pairwise plot: the ones the family pins down most
MEMBERS_SHOWN = 5  # members drawn as STDP windows and traces
PLOTS = ("metrics.png", "marginals.png", "stdp_windows.png", "traces.png")


def text(fam, what: str = "family", run_dir: str | Path = "RUN_DIR") -> str:
    """Acceptance per round, the family's size and its distinct rules, for a terminal."""
    lines = ["round  simulated  accepted  fraction  in family  blow-ups  failed"]
    lines += [f"{a['round']:5d}  {a['simulated']:9d}  {a['accepted']:8d}  {100 * a['fraction']:6.1f} %  "
              f"{a['in_family']:9d}  {a['blowups']:8d}  {a['failed']:6d}" for a in fam.acceptance]
    # the two counts differ under a schedule or re-filtered bounds: say which bounds each uses
    lines.append("(accepted: by the round's own bounds, as the filter ran; in family: by the bounds below; "
                 "blow-ups, failed: rules without metrics)")
    if fam.rounds_planned is not None and fam.stop is None:  # a family of the rounds so far, not the run's
        lines.append(f"not finished: {len(fam.acceptance)} of {fam.rounds_planned} rounds complete (running, or cut "
                     f"short: go on with python -m nestplast filter --out {run_dir} --resume)")
    bounds = ", ".join(f"{k} [{lo:g}, {hi:g}]" for k, (lo, hi) in fam.constraints.items())
    lines.append(f"{what}: {counted(len(fam.rows), 'accepted rule')} ({fam.distinct} distinct) "
                 f"of {fam.simulated} simulated, "
                 f"judged by: {bounds}")
    if fam.valid:  # which bounds reject: a family of none said nothing of why
        lines.append(f"each bound alone, rules within it of the {len(fam.valid)} that ran to their end: "
                     + ", ".join(f"{k} {n}" for k, n in passing(fam).items()))
    return "\n".join(lines)


def passing(fam) -> dict[str, int]:
    """For each bound, how many of the rules that ran to their end (``fam.valid``) lie within it."""
    return {k: sum(lo <= v.get(k, math.nan) <= hi for v in fam.valid) for k, (lo, hi) in fam.constraints.items()}


def summary(fam) -> dict:
    """The family as one JSON-ready dict (``nestplast.report RUN_DIR --json``): counts, bounds,
    acceptance per round and every accepted rule (parameters by name, mean metrics)."""
    return {"kind": "filter", "rounds": len(fam.acceptance), "rounds_planned": fam.rounds_planned, "stop": fam.stop,
            "simulated": fam.simulated, "accepted": len(fam.rows),
            "distinct": fam.distinct, "constraints": {k: list(v) for k, v in fam.constraints.items()},
            "acceptance": fam.acceptance, "within_each_bound": passing(fam),
            "family": [{k: v for k, v in r.items() if k != "theta"} for r in fam.rows]}


def write_tables(fam, out: str | Path) -> list[Path]:
    """``family.csv`` (one row per accepted rule: round, candidate, parameters, mean metrics) and
    ``acceptance.csv``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = [{k: v for k, v in r.items() if k != "theta"} for r in fam.rows]
    # no rule (or no round): the header alone, not a row of empty cells that reads as one rule
    write_csv(rows, out / "family.csv", columns=fam.columns)
    write_csv(fam.acceptance, out / "acceptance.csv",
              columns=["round", "simulated", "accepted", "fraction", "in_family", "failed", "blowups"])
    return [out / "family.csv", out / "acceptance.csv"]


def remove_plots(out: str | Path) -> list[Path]:
    """Remove the family plots in ``out``; the ones removed: a re-filter written again with
    --no-plots left the earlier family's beside its new tables."""
    removed = [Path(out) / name for name in PLOTS if (Path(out) / name).is_file()]
    for path in removed:
        path.unlink()
    return removed


def write_plots(fam, exp: Experiment, out: str | Path) -> list[Path]:
    """metrics.png, marginals.png, stdp_windows.png, traces.png into ``out`` (those that apply)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = [_metrics(fam, out / "metrics.png", fam.valid)]
    if len(fam.rows) >= 2:
        written.append(_marginals(fam, exp, out / "marginals.png"))
    # a window needs the rule in Python and no postsynaptic state besides the traces
    if fam.rows and all(r.has_stdp_window for r in exp.module_rules()):
        written.append(_stdp_windows(fam, exp, out / "stdp_windows.png"))
    if any(fam.traces[:MEMBERS_SHOWN]):
        written.append(_traces(fam, exp, out / "traces.png"))
    for name in PLOTS:  # one left by an earlier, larger family (the same --apply file) would show that one
        if out / name not in written:
            (out / name).unlink(missing_ok=True)
    return written


def _shown(fam) -> list[int]:
    """Members spread over the family (evenly by position)."""
    n = len(fam.rows)
    return sorted(set(np.linspace(0, n - 1, min(n, MEMBERS_SHOWN)).round().astype(int).tolist())) if n else []


def _metrics(fam, path: Path, simulated: list[dict]) -> Path:
    names = list(fam.constraints)
    cols = min(4, max(1, len(names)))
    rows = math.ceil(len(names) / cols) or 1
    with saved_figure(path, ncols=1, figsize=(3.2 * cols, 2.4 * rows)) as (fig, ax):
        fig.delaxes(ax)
        for k, name in enumerate(names):
            a = fig.add_subplot(rows, cols, k + 1)
            everything = np.array([m.get(name, np.nan) for m in simulated], dtype=float)
            accepted = np.array([r[name] for r in fam.rows], dtype=float)
            finite = everything[np.isfinite(everything)]
            # the bounds drawn: an open one (inf, or 1e9 for "no upper bound") is no line; -inf made the axis NaN
            bounds = [b for b in fam.constraints[name] if math.isfinite(b) and abs(b) < 1e8]
            span = np.concatenate([finite, accepted, bounds])
            edges = np.linspace(np.min(span), np.max(span), 30) if span.size and np.ptp(span) > 0 else 10
            if finite.size:
                a.hist(finite, bins=edges, color="lightgrey", label="simulated")
            if accepted.size:
                a.hist(accepted, bins=edges, color="tab:blue", label="accepted")
            for bound in bounds:
                a.axvline(bound, color="k", ls="--")
            a.set_title(f"{name} (Hz)" if name.startswith("rate") else name, fontsize=9)  # the rates had no unit
            a.tick_params(labelsize=7)
            if k % cols == 0:
                a.set_ylabel("rules", fontsize=8)
            if k == 0 and (finite.size or accepted.size):  # which bars are the family (they had no legend)
                a.legend(fontsize=6)
        fig.suptitle(f"metrics (mean over trials) against their bounds (dashed)\n{len(simulated)} of {fam.simulated} "
                     "simulated rules ran to their end (blow-ups, failures: no metrics)", fontsize=9)
    return path


def _marginals(fam, exp: Experiment, path: Path) -> Path:
    from ..runs import search_space  # the optimiser's coordinates (log10 where the rule says so)

    space = search_space(exp)
    z = np.array([space.to_search(r["theta"]) for r in fam.rows])
    zl, zh = space.search_bounds()
    spread = z.std(axis=0) / (zh - zl)
    chosen = sorted(np.argsort(spread, kind="stable")[:MAX_MARGINALS].tolist())
    n = len(chosen)
    side = max(2.2 * n, 6.0)  # a narrower figure clips its title (one or two searched parameters)
    with saved_figure(path, ncols=1, figsize=(side, side)) as (fig, ax):
        fig.delaxes(ax)
        for i, a_i in enumerate(chosen):
            for j, b_j in enumerate(chosen):
                a = fig.add_subplot(n, n, i * n + j + 1)
                if i == j:  # counts: no ticks, which the row's label would present as its parameter's values
                    a.hist(z[:, a_i], bins=15, range=(zl[a_i], zh[a_i]), color="tab:blue")
                    a.set_yticks([])
                else:
                    a.plot(z[:, b_j], z[:, a_i], ".", ms=3)
                    a.set_xlim(zl[b_j], zh[b_j])
                    a.set_ylim(zl[a_i], zh[a_i])
                a.tick_params(labelsize=6)
                if i == n - 1:
                    a.set_xlabel(_label(space, b_j), fontsize=7)
                if j == 0:
                    a.set_ylabel(_label(space, a_i) if n > 1 else "accepted rules", fontsize=7)
        which = (f"the {n} parameters they pin down most" if n < z.shape[1]
                 else f"their {n} searched parameter{'s' if n > 1 else ''}")
        fig.suptitle(f"accepted rules: {which} (axes: the prior box)")
    return path


def _label(space, k: int) -> str:
    return f"log10 {space.names[k]}" if space.log[k] else space.names[k]


def _stdp_windows(fam, exp: Experiment, path: Path) -> Path:
    layout = exp.layout()
    types = list(exp.rule.plastic)
    with saved_figure(path, ncols=len(types), figsize=(3.5 * len(types), 3.2)) as (fig, axes):
        axes = np.atleast_1d(axes)
        for k in _shown(fam):
            for ax, (ct, block) in zip(axes, layout.split(fam.rows[k]["theta"]).items()):
                rule = layout.rule_of(ct)  # from the start weight: |w| terms count
                draw_stdp_window(ax, rule, rule.synapse_params(block, **exp.fixed(ct)), exp.network.weights[ct],
                                 label=f"round {fam.rows[k]['round']}, #{fam.rows[k]['candidate']}")
        for ax, ct in zip(axes, types):
            ax.set_title(f"{ct}: change of |w| per pair\nfrom |w| = {exp.network.weights[ct]:g} {weight_unit(exp)}",
                         fontsize=9)
            ax.set_ylabel(f"change of |w| ({weight_unit(exp)})", fontsize=8)
        axes[0].legend(fontsize=7)
    return path


def _traces(fam, exp: Experiment, path: Path) -> Path:
    with saved_figure(path, ncols=2, figsize=(11, 4)) as (fig, (left, right)):
        draw_traces(fam, exp, left, right)
    return path


TYPE_STYLES = ("-", "--", ":", "-.")  # one per plastic type: a member's types share its colour


def draw_traces(fam, exp: Experiment, left, right) -> None:
    """Rates (``left``) and mean weights (``right``: a line style per plastic type, in the
    neuron's weight unit) over time of a few members, on matplotlib axes."""
    styles = dict(zip(exp.rule.plastic, TYPE_STYLES * len(exp.rule.plastic)))
    for k in _shown(fam):
        trace = fam.traces[k]
        if not trace:
            continue
        line, = left.plot(trace["t_s"], trace["rate"], "-", label=f"#{fam.rows[k]['candidate']} (round {fam.rows[k]['round']})")
        for key in (k2 for k2 in trace if k2.startswith("w_mean_")):
            right.plot(trace["t_s"], trace[key], styles.get(key.removeprefix("w_mean_"), "-"), color=line.get_color(), alpha=0.8)
    left.set_xlabel("time (s)")
    left.set_ylabel(f"{exp.objective.population} rate (Hz), trial 0")
    left.set_title("members: activity")
    left.legend(fontsize=7)
    for ct, style in styles.items():  # the legend says which line is which type; the colour, which member
        right.plot([], [], style, color="k", label=ct)
    right.legend(fontsize=7, title="type", title_fontsize=7)
    right.set_xlabel("time (s)")
    right.set_ylabel(f"mean |w| ({weight_unit(exp)}), trial 0")
    right.set_title("members: weights (colour: member, as left)")


__all__ = ["text", "summary", "write_tables", "write_plots", "draw_traces"]
