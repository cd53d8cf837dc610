"""What a search run found, as a summary (dict) and figures: the stop reason, the best rule and
how it behaves on its trials, failures broken down by reason, the loss per generation, the best
rule as an STDP window, and its rates and weights over time."""

from __future__ import annotations

import math
import shlex
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..builder import cached
from ..errors import UserError
from ..experiment import Experiment, run_experiment
from ..networks import drawn_wmax_note, inert_note, nest_settings, neuron_params, synapse_models
from ..objectives import BLOWUP_SCALE, FAILURE_LOSS
from ..store import RunStore, software_since
from ..tasks import Evaluation
from . import draw_stdp_window, saved_figure, weight_unit


def loss_meaning(exp: Experiment) -> str:
    """What the loss of ``exp`` is made of: only the terms its objective has (a fixed text named a
    target rate and an L1 term also for runs that had neither)."""
    o = exp.objective
    terms = []
    if o.target_rate is not None:
        terms.append(f"(r - {o.target_rate:g} Hz)^2 / (r + 2) averaged over the scoring window (r: the "
                     f"{o.population} rate)")
    if o.constraints:
        bounds = ", ".join(f"{k} [{lo:g}, {hi:g}]" for k, (lo, hi) in o.constraints.items())
        terms.append(f"the constraint penalty (relative distance outside each interval: {bounds})")
    if o.l1:
        terms.append(f"{o.l1:g} x the sum of |coefficients|, time constants left out (L1)")
    low = BLOWUP_SCALE * (1.0 + math.exp(-1.0))
    return (f"loss = mean over a candidate's trials of: {' + '.join(terms)}. A blow-up (rate left the band "
            f"[{o.rate_band[0]:g}, {o.rate_band[1]:g}] Hz at time t of T) scores {BLOWUP_SCALE:g} (exp(-t/T) + 1), "
            f"between {low:.0f} (at the end) and {2 * BLOWUP_SCALE:g} (at once); a failed evaluation (error, timeout, "
            f"NaN) {FAILURE_LOSS:g}. 0 is a rule that "
            + (" and ".join(w for w, on in (("holds the target", o.target_rate is not None),
                                           ("meets every constraint", bool(o.constraints))) if on) or "has no loss")
            + ".")


def describe_stop(stop: dict | None) -> str:
    """The stop reason in words; pycma's names kept, so that its documentation applies."""
    words = ", ".join(f"{k} = {v}" for k, v in (stop or {}).items())
    if "tolflatfitness" in (stop or {}) and "tolx" in stop:  # sigma0 = 1e-12 was blamed on a learning rate of 0
        words += (" (the candidates of the last generation were almost one and the same rule: the step had shrunk "
                  "below pycma's tolx, or began there with a tiny search.sigma0)")
    elif "tolflatfitness" in (stop or {}):
        words += (" (most candidates of the last generation scored the same: they all blew up alike or "
                  "failed, or all ended alike, e.g. the network silenced with its weights at w_max (one and the "
                  "same loss: the report's trials show the rates and weights), or the rule's parameters change "
                  "nothing, e.g. a learning rate of 0, or the network is "
                  "too small or scored too briefly for rules that differ to score differently: the same spikes, "
                  "a loss in coarse steps)")
    if "maxfevals" in (stop or {}):  # beside "20 evaluations" (the simulations: each trial, and the mean's)
        words += " (counting candidates, as pycma does; the evaluations count every trial of each, and the mean's)"
    return words or "no reason recorded"


def nest_models(exp: Experiment) -> dict | None:
    """The compiled module of ``exp``'s rules and each plastic type's synapse model in it, where
    the module is in this machine's cache (None otherwise): a co-active run's module holds a model
    per rule, and its settings are for that model."""
    try:
        module = cached(exp.module_rules(), exp.rule.neuron)
    except (UserError, OSError):  # e.g. one's own rule file, gone since: the report goes on without
        return None
    if module is None:
        return None
    return {"module": module.name, "path": module.path, "neuron_model": module.neuron_model,
            "neuron_params": neuron_params(exp.network, module),  # in the neuron's own names (tau_syn_exc)
            "synapse_models": synapse_models(exp.layout(), module)}


def summarise(run_dir: str | Path) -> dict:
    """The run's summary: counts, stop reason, best candidate, its trials, failures by reason."""
    with RunStore.open(run_dir, read_only=True) as store:
        exp = run_experiment(store.experiment(), run_dir)
        counts = store.counts()
        best = store.best_candidates(1)
        settings = nest_settings(exp, best[0]["theta"]) if best else {}
        evaluations = store.evaluations()
        summary = {"generations": counts["generations"], "evaluations": counts["evaluations"],
                   "failed": counts["failed"], "blowups": counts["blowups"], "stop": store.stop(),
                   "best_loss": best[0]["loss"] if best else None, "loss_meaning": loss_meaning(exp),
                   "best_params": exp.layout().as_dict(best[0]["theta"]) if best else {},
                   "best_nest_params": settings, "best_inert": inert_note(exp, settings) if best else None,
                   "best_wmax_drawn": drawn_wmax_note(exp, settings), "silent": silent_note(evaluations, exp.network.kind),
                   "nest_models": nest_models(exp),
                   "software": [{"from_generation": g, "versions": v} for g, v in software_since(store.meta())],
                   "best": None, "best_trials": [], "failures": failure_breakdown(evaluations),
                   "loss_per_generation": [{"generation": g["generation"], "best": g["best_loss"],
                                            "median": g["median_loss"]} for g in store.generations()]}
        if best:
            trials = store.evaluations(generation=best[0]["generation"], candidate=best[0]["candidate"])
            summary["best"] = {"generation": best[0]["generation"], "candidate": best[0]["candidate"]}
            summary["best_trials"] = [trial_summary(e) for e in trials]
    return summary


def trial_summary(e: Evaluation) -> dict:
    """How one evaluation went: rates, CV, the drift of every plastic type's mean |w| from its
    start, the fraction of weights at a bound, 0 or |w_max| (w_blow), loss."""
    m = e.metrics or {}
    trace = m.get("trace") or {}
    drift = {}
    for key, values in trace.items():
        if not key.startswith("w_mean_"):
            continue
        ct = key.removeprefix("w_mean_")
        start, end = m.get(f"w_start_{ct}"), m.get(key)
        if start is None and len(values) >= 2:  # recorded before w_start_<type>: from the first check
            start, end = values[0], values[-1]
        if start and end is not None:
            drift[ct] = (end - start) / abs(start)
    return {"trial": e.trial, "seed": e.seed, "loss": e.loss, "status": e.status,
            "rate_e": m.get("rate_e"), "rate_i": m.get("rate_i"), "cv_isi": m.get("cv_isi"),
            "w_creep": m.get("w_creep"), "w_blow": m.get("w_blow"), "weight_drift": drift,
            "conditions": m.get("conditions")}  # None: recorded before 2026-11-28


def silent_note(evaluations: Sequence[Evaluation], kind: str = "recurrent") -> str | None:
    """A note where the scored population fired no spike in any evaluation that ran: a network
    silent whatever the rule (an input rate in kHz given as Hz) scores every rule alike, and the
    end of the search blamed the rule (the all-zero start as "best", "more generations"). It names
    the drive of ``kind``'s network (a single neuron's was told of input_rate, which it never reads).
    None otherwise, or with evaluations of fewer than two candidates that ran (a report early in a
    run: one silent rule says nothing of the others)."""
    ran = [e for e in evaluations if e.status == "ok"]
    if len({(e.generation, e.candidate) for e in ran}) < 2 or any(e.metrics.get("rate") != 0 for e in ran):
        return None
    drive = ("network.input_rate_e and input_rate_i (in Hz), n_e_inputs and weights.EE" if kind == "single_neuron"
             else "network.input_rate (in Hz) and network.input_weight")
    return ("note: the scored population fired no spike in any evaluation (0 Hz on every trial of every candidate): "
            f"the network is silent whatever the rule, so every rule scored alike; check {drive}")


def failure_breakdown(evaluations: list[Evaluation]) -> dict:
    """Blow-ups with their times, and failures by status and by their message's first line."""
    blown = [e for e in evaluations if e.status == "blowup" and e.metrics.get("t_blowup_s") is not None]
    blowups = [e.metrics["t_blowup_s"] for e in blown]
    sides = Counter(e.metrics.get("left_band") for e in blown)  # None: stored before the side was
    errors = Counter((e.status, (e.error or "").splitlines()[0] if e.error else "") for e in evaluations if e.failed)
    return {"blowups": len(blowups),
            "blowup_time_s": {"min": min(blowups), "median": float(np.median(blowups)), "max": max(blowups)}
            if blowups else None,
            "blowups_above": sides["above"], "blowups_below": sides["below"],
            "by_reason": [{"status": status, "message": message, "count": n}
                          for (status, message), n in errors.most_common()]}


def text(summary: dict, run_dir: str | Path) -> str:
    """The summary for a terminal."""
    lines = [f"run: {run_dir}",
             f"generations: {summary['generations']}   evaluations: {summary['evaluations']}   "
             f"blow-ups: {summary['blowups']}   failed: {summary['failed']}",
             f"stopped: {describe_stop(summary['stop'])}" if summary["stop"]
             else "stopped: not yet (running, or killed: resume with --resume)",
             f"what the loss means: {summary['loss_meaning']}"]
    if len(summary.get("software", [])) > 1:  # resumed under other software: the run is not one version's
        lines.append("software: " + "; then ".join(
            f"from generation {s['from_generation']}: " + ", ".join(f"{k} {v}" for k, v in s["versions"].items())
            for s in summary["software"]))
    if summary.get("silent"):
        lines.append(summary["silent"])
    if summary["best_loss"] is None:
        # "yet" only while the run can go on: a stopped run whose candidates all blew up or failed
        # has no best rule, and said it as if one were still to come
        lines.append("no candidate had all its trials ok: every one blew up or failed on some trial (below)"
                     if summary["stop"] else "no candidate with all its trials ok yet")
    else:
        where = summary["best"]
        lines.append(f"best loss: {summary['best_loss']:.5g} (generation {where['generation']}, "
                     f"candidate {where['candidate']}{' (the distribution mean)' if where['candidate'] == -1 else ''})")
        lines += [f"  {name:<16} {value: .5g}" for name, value in summary["best_params"].items()]
        if summary.get("best_inert"):
            lines.append(summary["best_inert"])
        # the searched parameters alone leave the fixed ones at the rule's defaults in one's own model
        if settings := summary.get("best_nest_params"):
            lines.append("best rule for nest.CopyModel (with the fixed settings it ran with; the JSON's best_nest_params):")
            models = (summary.get("nest_models") or {}).get("synapse_models", {})
            lines += [f"  {ct}{f' ({models[ct]})' if ct in models else ''}: "
                      + ", ".join(f"{k} = {v:.6g}" for k, v in values.items()) for ct, values in settings.items()]
            if note := summary.get("best_wmax_drawn"):
                lines.append(f"  {note}")
            if not summary.get("nest_models"):  # a run copied off the cluster: the model names went without a word
                lines.append(f"  their module is not compiled on this machine (not in its cache): python -m nestplast "
                             f"build {shlex.quote(str(run_dir))} compiles it and names each type's synapse model")
            if where := summary.get("nest_models"):
                lines.append(f"  their module: nestplast.install(\"{where['path']}\") after each nest.ResetKernel(); "
                             f"they connect only to its neuron {where['neuron_model']}, which ran with "
                             f"{', '.join(f'{k} = {v:g}' for k, v in where['neuron_params'].items()) or 'its defaults'}")
        lines.append("best rule on its trials:")
        for t in summary["best_trials"]:
            drift = ", ".join(f"{ct} {d:+.1%}" for ct, d in t["weight_drift"].items())
            lines.append(f"  trial {t['trial']} (NEST seed {t['seed']}): loss {t['loss']:.4g}, "
                         f"rate E {_num(t['rate_e'])} Hz, rate I {_num(t['rate_i'])} Hz, CV ISI {_num(t['cv_isi'])}, "
                         f"mean |w| drift {drift or '-'}, at a bound, 0 or w_max (w_blow) {_num(t['w_blow'])}"
                         f"{_conditions(t.get('conditions'))}")
    f = summary["failures"]
    if f["blowups"]:
        b = f["blowup_time_s"]
        sides = (f"{f['blowups_above']} above the band (runaway), {f['blowups_below']} below (too quiet); "
                 if f.get("blowups_above", 0) + f.get("blowups_below", 0) == f["blowups"] else "")
        lines.append(f"blow-ups: {f['blowups']} ({sides}rate left the band at t = {b['min']:g} .. {b['max']:g} s, "
                     f"median {b['median']:g} s)")
    for reason in f["by_reason"]:
        lines.append(f"failed ({reason['status']}) x{reason['count']}: {reason['message']}")
    return "\n".join(lines)


# a trial's draws (trials.*_scale), as the report names them
CONDITION_WORDS = {"input_rate_scale": "input rate", "weight_scale": "start weights", "w_max_scale": "w_max"}


def _conditions(conditions: dict | None) -> str:
    """A trial's drawn conditions where any differs from the experiment's values: with its seed,
    what simulates the trial again (``; drawn: input rate x 0.965, w_max x 1``)."""
    if not conditions or all(value == 1.0 for value in conditions.values()):
        return ""
    return "; drawn: " + ", ".join(f"{words} x {conditions[key]:.6g}" for key, words in CONDITION_WORDS.items()
                                   if key in conditions)


def _num(value) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3g}"


PLOTS = ("loss.png", "stdp_window.png", "rates_weights.png")


def write_plots(run_dir: str | Path, summary: dict, out: str | Path | None = None) -> list[Path]:
    """loss.png, stdp_window.png and rates_weights.png into ``out`` (default: the run directory);
    one of them not drawn for this run is removed there (another run's, in a reused ``--plots-to``,
    stood beside this one's)."""
    written = _draw(run_dir, summary, out)
    folder = written[0].parent
    for name in PLOTS:
        if folder / name not in written:
            (folder / name).unlink(missing_ok=True)
    return written


def _draw(run_dir: str | Path, summary: dict, out: str | Path | None) -> list[Path]:
    from matplotlib.ticker import MaxNLocator

    run_dir = Path(run_dir)
    out = Path(out) if out is not None else run_dir
    written = [out / "loss.png"]
    with saved_figure(written[-1]) as (fig, ax):
        rows = summary["loss_per_generation"]
        if rows:
            g = [r["generation"] for r in rows]
            best = np.array([r["best"] for r in rows])
            ax.semilogy(g, np.maximum(best, 1e-6), "o", label="best of generation")
            ax.semilogy(g, np.maximum(np.minimum.accumulate(best), 1e-6), "-", label="best so far")
            ax.semilogy(g, np.maximum([r["median"] for r in rows], 1e-6), "s--", alpha=0.6, label="median of the sampled candidates")
            ax.set_xlim(min(g) - 0.5, max(g) + 0.5)  # one generation was ticked -0.045 .. 0.045
            ax.legend()
        else:
            ax.text(0.5, 0.5, "no generation completed yet", ha="center", va="center", transform=ax.transAxes)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # no generation 0.5
        ax.set_xlabel("generation")
        ax.set_ylabel("loss (a failed or blown-up trial: its penalty)")
        ax.set_title("loss per generation")
    if summary["best_loss"] is None:
        return written
    with RunStore.open(run_dir, read_only=True) as store:
        exp = run_experiment(store.experiment(), run_dir)
        best = summary["best"]
        evaluations = store.evaluations(generation=best["generation"], candidate=best["candidate"])
    theta = evaluations[0].theta
    if all(r.has_stdp_window for r in exp.module_rules()):  # a user's NESTML rule is compiled, not described in Python
        written.append(out / "stdp_window.png")
        with saved_figure(written[-1]) as (fig, ax):
            stdp_window(ax, exp, theta)
    trace = (evaluations[0].metrics or {}).get("trace")
    if trace:
        written.append(out / "rates_weights.png")
        with saved_figure(written[-1], ncols=2, figsize=(10, 4)) as (fig, (left, right)):
            left.plot(trace["t_s"], trace["rate"], "o-")
            if exp.objective.target_rate:
                left.axhline(exp.objective.target_rate, color="k", ls=":", label="target")
                left.legend()
            left.set_xlabel("time (s)")
            left.set_ylabel(f"{exp.objective.population} rate (Hz)")
            left.set_title("best rule, trial 0: activity")
            metrics = evaluations[0].metrics
            for key in (k for k in trace if k.startswith("w_mean_")):
                # the trace follows a sample (every k-th synapse, about 64) from the first check on;
                # the start and the end are of every synapse (the run's w_start_, w_mean_ metrics):
                # without them a jump in the first chunk did not show
                ct = key.removeprefix("w_mean_")
                (line,) = right.plot(trace["t_s"], trace[key], "o-", label=f"{ct}: mean |w| of sampled synapses")
                ends = [(t, metrics.get(name)) for t, name in ((0.0, f"w_start_{ct}"), (trace["t_s"][-1], key))]
                ends = [(t, v) for t, v in ends if v is not None]
                if ends:
                    right.plot(*zip(*ends), "s", ms=8, mfc="none", color=line.get_color(),
                               label=f"{ct}: mean |w| of all, at the start and the end")
            right.set_xlabel("time (s)")
            right.set_ylabel(f"mean |weight| ({weight_unit(exp)})")
            right.set_title("weights")
            right.legend()
    return written


def stdp_window(ax, exp: Experiment, theta) -> None:
    """The rule at ``theta`` as weight change per spike pair against t_post - t_pre, per plastic type."""
    layout, unit = exp.layout(), weight_unit(exp)
    for ct, block in layout.split(theta).items():
        rule, w = layout.rule_of(ct), exp.network.weights[ct]  # from the start weight: |w| terms count
        draw_stdp_window(ax, rule, rule.synapse_params(block, **exp.fixed(ct)), w,
                         label=f"{ct} ({rule.name}), from |w| = {w:g} {unit}")
    ax.set_ylabel(f"change of |w| per pair ({unit})")
    ax.set_title("best rule as an STDP window")
    ax.legend()
