"""``python -m nestplast infer DATA.npz --rule taylor --mask ... --fixed eta=...,Wmax=...``: fit a
rule's coefficients to a recording's weight trajectories (clamped mode; --mode closed: its
postsynaptic spikes too; see :mod:`nestplast.infer`), or with --task choices to animals' choices
(:mod:`nestplast.infer_choices`).

    python -m nestplast infer data.npz --mask post:100,post:011 --fixed eta=0.5,tau_pre=20,tau_post=20,Wmax=1000
    python -m nestplast infer data.npz --mask ... --out runs/fit --json
    python -m nestplast infer choices.npz --task choices --mask pre:010,forget
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from ..cli import ArgumentParser, command_world, given_options, resume_hint, run_mpi_command
from ..errors import UsageError
from ..store import DB_NAME
from ..wording import counted

if TYPE_CHECKING:
    from ..infer import Fit
    from ..infer_choices import ChoiceFitResult

T = TypeVar("T")


def parse_fixed(text: str) -> dict[str, float]:
    """``--fixed``'s ``name=number,...`` as a dict (a :class:`UsageError` for anything else)."""
    fixed = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        name, _, value = item.partition("=")
        try:
            number = float(value)
        except ValueError:
            raise UsageError(f"--fixed: expected name=number pairs separated by commas, got {item!r}") from None
        if name.strip() in fixed:  # Wmax=1000,Wmax=10 kept the last without a word
            raise UsageError(f"--fixed: {name.strip()} given twice ({fixed[name.strip()]:g} and {number:g}); give it once")
        fixed[name.strip()] = number
    return fixed


def parser() -> ArgumentParser:
    p = ArgumentParser(prog="python -m nestplast infer", description=__doc__.split("\n\n")[0])
    p.add_argument("data", type=Path, help="recording (.npz, see README 'Recordings'), or with --task choices "
                   "behaviour (.npz, see README 'Inference from behaviour')")
    p.add_argument("--task", choices=("recording", "choices"), default="recording",
                   help="recording: spikes and weights (default); choices: choices and rewards of animals in a "
                        "two-choice task, fitted with the three-factor 'reward' rule")
    p.add_argument("--rule", default=None, help="taylor (default for recordings), doublet or mlp; for choices reward "
                   "(default) or mlp (with the reward signal R among --inputs)")
    p.add_argument("--inputs", default="x_pre,R,w_abs", help="choices with --rule mlp: the MLP's inputs, from "
                   "x_pre, x_post, w_abs, x_pre_slow, x_post_slow, V_bar, C_exc, C_inh, R (default x_pre,R,w_abs)")
    p.add_argument("--hidden", type=int, default=4, help="choices with --rule mlp: hidden units (default 4)")
    p.add_argument("--mask", default=None, help="taylor: the free terms, e.g. post:100,post:011; reward: e.g. "
                   "pre:010,forget (default)")
    p.add_argument("--compare", default=None, metavar="MASK",
                   help="choices: also fit the rule with MASK (e.g. pre:010, no forgetting) and compare the two on "
                        "the held-out animals (log-likelihood per trial, bits, with a 95 %% interval)")
    p.add_argument("--fixed", default="", help="fixed settings, e.g. eta=0.5,tau_pre=20,tau_post=20,Wmax=1000")
    p.add_argument("--mode", choices=("clamped", "closed"), default="clamped",
                   help="clamped: pre and post spikes replayed as recorded, loss on the weights; closed: only the "
                        "pre spikes replayed, the post neurons driven by the rule and --background, loss on their "
                        "binned spike counts (Poisson deviance) and the recorded weights")
    p.add_argument("--background", default=None,
                   help="closed mode: Poisson background of each post neuron as RATE_HZ,WEIGHT (e.g. 3000,52)")
    p.add_argument("--trials", type=int, default=1, help="closed mode: background realisations per candidate")
    p.add_argument("--w-unrecorded", type=float, default=None,
                   help="closed mode: start weight of the synapses whose weights were not recorded")
    p.add_argument("--delay", type=float, default=1.0, help="synaptic (dendritic) delay in ms")
    p.add_argument("--segments", type=int, default=10, help="segments of the recording (bootstrap, held-out): "
                   "sample times in the clamped mode, spike-count bins in the closed mode")
    p.add_argument("--hold-out", type=int, default=None, help="every N-th segment (choices: animal) is held out "
                   "(0: none; default 5, for choices 4)")
    p.add_argument("--l1", type=float, default=0.0, help="weight of the L1 penalty on the coefficients")
    p.add_argument("--max-generations", type=int, default=None, help="default 60 (choices: 25)")
    p.add_argument("--population-size", type=int, default=8, help="CMA-ES candidates per generation")
    p.add_argument("--restarts", type=int, default=0, help="more CMA-ES runs, other seeds, doubled population "
                   "each (IPOP); the best is kept (RUN_DIR/restart-K)")
    p.add_argument("--bootstrap", type=int, default=None, help="bootstrap draws for the intervals, default 30 "
                   "(choices: 100); clamped: refits; closed and choices: minima on quadratic surfaces of the simulated "
                   "candidates, no further simulation")
    p.add_argument("--seed", type=int, default=1, help="seed of CMA-ES and the bootstrap; closed mode and choices: also of "
                   "the simulated background and model animals")
    p.add_argument("--out", type=Path, default=None, help="run directory (default: runs/infer-<data name>)")
    p.add_argument("--resume", action="store_true", help="continue the fit in --out from its last generation")
    p.add_argument("--json", action="store_true", help="print one JSON object, nothing else")
    p.add_argument("--no-plots", action="store_true", help="write no PNG plots")
    return p


def _coefficient_table(fit) -> list[str]:
    """The lines of a fit's coefficients with their 95 % intervals (``-``: none)."""
    lines = [f"{'coefficient':<14} {'fitted':>10}   95 % interval"]
    for name in fit.names:
        low, high = fit.intervals[name]
        interval = "-" if math.isnan(low) else f"[{low:.4g}, {high:.4g}]"
        lines.append(f"{name:<14} {fit.coefficients[name]:>10.4g}   {interval}")
    return lines


def summary_text(fit: Fit) -> str:
    """What the command prints of a recording's fit: the coefficients, the measures of fit, the warnings."""
    lines = _coefficient_table(fit)
    if not math.isnan(fit.r2_activity_held_out):  # the closed mode
        weights = "" if math.isnan(fit.r2_held_out) else f", of the weights {fit.r2_held_out:.4f}"
        lines.append(f"postsynaptic count deviance explained (against the all-zero rule): "
                     f"{fit.deviance_explained_held_out:.1f} % held out, {fit.deviance_explained_fit:.1f} % on the "
                     f"fitted segments; held-out R^2 of the binned counts {fit.r2_activity_held_out:.4f}{weights}")
        # where no interval came out, the method said "bootstrap ..." above a warning of no intervals
        some = any(math.isfinite(low) for low, _ in fit.intervals.values())
        lines.append(f"loss {fit.loss:.4g} (counts + weights, each over the all-zero rule's); intervals: "
                     + (fit.intervals_from if some else  # --bootstrap 0 asked for none, and no warning said why
                        "none" + (" (the warnings say why)" if any(w.startswith(("no intervals", "no meaningful intervals"))
                                                                    for w in fit.warnings) else "")))
    elif math.isnan(fit.deviance_explained_held_out):
        # NaN on the fitted segments too where the recorded weights never change (a warning says so)
        on_fit = "n/a" if math.isnan(fit.deviance_explained_fit) else f"{fit.deviance_explained_fit:.1f} %"
        lines.append(f"deviance explained: {on_fit} on the fitted segments (no held-out measures)")
    else:
        r2 = "n/a" if math.isnan(fit.r2_held_out) else f"{fit.r2_held_out:.4f}"  # a warning says why
        lines.append(f"held-out R^2 {r2}; deviance explained: {fit.deviance_explained_held_out:.1f} % "
                     f"held out, {fit.deviance_explained_fit:.1f} % on the fitted segments")
    if fit.delay is not None:  # a fit of an earlier version recorded none
        lines.append(f"fitted at a synaptic delay of {fit.delay:g} ms (fit.json: delay): connect the rule with it")
    lines += [f"warning: {warning}" for warning in fit.warnings]
    return "\n".join(lines)


def choice_summary_text(fit: ChoiceFitResult, label: str) -> str:
    """What the command prints of a fit to choices: the animals, the coefficients, the
    log-likelihoods, the warnings."""
    held = "n/a" if math.isnan(fit.ll_held_out_bits) else f"{fit.ll_held_out_bits:.4f} bits"
    return "\n".join([f"rule {label}: {counted(len(fit.fit_animals), 'animal')} fitted, "
                      f"{len(fit.held_out_animals)} held out",
                      *_coefficient_table(fit),
                      f"log-likelihood per trial: {fit.ll_fit_bits:.4f} bits fitted, {held} held out (chance: -1)",
                      *[f"warning: {warning}" for warning in fit.warnings]])


def comparison_text(comparison: dict) -> str:
    """The line of ``--compare`` (``comparison``: as in comparison.json): the first rule against the
    second on the held-out animals."""
    line = (f"{comparison['rule']} against {comparison['compared_with']} on {comparison['animals']} held-out animals: "
            f"{comparison['bits_per_trial']:+.4f} bits per trial")
    if comparison.get("low") is None or comparison.get("high") is None:  # one held-out animal: no interval
        return f"{line}, no interval\nwarning: {comparison.get('warning', 'no interval')}"
    interval = f"{line} [{comparison['low']:+.4f}, {comparison['high']:+.4f}]"
    return interval + (f"\nwarning: {comparison['warning']}" if comparison.get("warning") else "")


def _run_dir(args, started: list[Path]) -> tuple[Path, object, int]:
    """The run directory (checked on rank 0: free for a new fit, holding one to resume; appended to
    ``started``, for the Ctrl-C message), MPI's communicator and this rank."""
    from ..analysis import check_output_directory
    from ..parallel import together, world

    out = args.out or Path("runs") / f"infer-{args.data.stem}"
    comm = world()
    rank = 0 if comm is None else comm.Get_rank()

    def check() -> None:
        if rank != 0:
            return
        check_output_directory(out)  # a file given as --out ended a resume in a FileExistsError
        if not args.resume:
            # the run there named (a filter's was advised --resume, which then refused it), and a folder of
            # other files (a prune's output) refused: the fit's files went in among them
            from ..store import RunStore

            RunStore.check_free(out)
            RunStore.check_no_other_files(out)
        if args.resume and not (out / DB_NAME).exists():  # it began a new fit, printing "(resumed)"
            raise UsageError(f"--resume: {out} holds no fit to continue (no {DB_NAME}); start one without --resume")
        if args.resume:  # before the headline, which said "(resumed)" over another command's run
            from ..store import check_same_kind, stored_kind

            check_same_kind(stored_kind(out), "infer", out)

    together(comm, check)  # refused on every rank: the others would wait for rank 0 to hand out tasks
    started.append(out)
    return out, comm, rank


def _refused_together(checks: Callable[[], T]) -> T:
    """``checks()`` on every rank; a mistake they find is refused by every rank together, printed
    once by rank 0 (under mpiexec each rank printed it and the job ended in MPI_Abort)."""
    from ..parallel import together, world

    return together(world(), checks)


def _check_fixed(fixed: dict[str, float], rule, label: str) -> None:
    unknown = sorted(set(fixed) - set(rule.fixable))
    if unknown:
        # the warning about a coefficient the data do not constrain advised fixing it, which this refused
        searched = [name for name in unknown if name in rule.names]
        from ..rules import MASKED_RULES

        masked = rule.name in MASKED_RULES  # the advice named taylor on a reward rule's fit
        leave_out = (f"; {', '.join(searched)} {'is a coefficient' if len(searched) == 1 else 'are coefficients'} "
                     f"the fit searches: to leave one out, fit a rule without it"
                     f"{' (a --mask without its term)' if masked else ''}" if searched else "")
        are = "is not a fixed setting" if len(unknown) == 1 else "are not fixed settings"
        raise UsageError(f"--fixed: {', '.join(unknown)} {are} of rule {label!r} (those are: "
                         f"{', '.join(rule.fixable)}){leave_out}")


def _check_ignored(args, given: set[str]) -> None:
    """Refuse options this fit would ignore (--compare on a recording's fit made no comparison and
    said nothing), each group with the fit it belongs to; ``given``: the options on the command line
    (one at its default value was let through and dropped: --hidden 4 fitted the default 10 units)."""
    groups = []
    if args.task == "choices":
        groups.append((("mode", "background", "trials", "w_unrecorded", "delay", "segments"),
                       "of a recording's fit, not of --task choices"))
        if args.rule != "mlp":
            groups.append((("inputs", "hidden"), "of --task choices --rule mlp"))
    else:
        groups.append((("compare", "inputs", "hidden"), "of --task choices"))
        if args.mode == "clamped":
            groups.append((("background", "trials", "w_unrecorded"), "of --mode closed"))
    for dests, whose in groups:
        if ignored := [f"--{d.replace('_', '-')}" for d in dests if d in given]:
            raise UsageError(f"{', '.join(ignored)}: {'options' if len(ignored) > 1 else 'an option'} {whose}; this fit "
                             "would ignore " + ("them" if len(ignored) > 1 else "it"))


def _check_counts(checks, l1: float) -> None:
    """The command's counts against their minima, and --l1 (a negative or NaN one ended a choices fit
    in a traceback, after its headline)."""
    for flag, value, low in checks:
        if value < low:
            raise UsageError(f"{flag}: expected an integer >= {low}, got {value}")
    if not 0 <= l1 < math.inf:
        raise UsageError(f"--l1: expected a penalty weight >= 0, got {l1:g}")


def _infer(argv: Sequence[str] | None, started: list[Path]) -> int:
    from .. import infer
    from ..recording import load

    p = parser()
    args = p.parse_args(argv)
    _refused_together(lambda: _check_ignored(args, given_options(parser(), argv)))
    if args.task == "choices":
        return _infer_choices(args, started)
    args.rule = args.rule or "taylor"
    args.hold_out = 5 if args.hold_out is None else args.hold_out
    args.max_generations = 60 if args.max_generations is None else args.max_generations
    args.bootstrap = 30 if args.bootstrap is None else args.bootstrap

    def checked():
        _check_counts((("--segments", args.segments, 1), ("--max-generations", args.max_generations, 1),
                       ("--population-size", args.population_size, 2), ("--bootstrap", args.bootstrap, 0),
                       ("--hold-out", args.hold_out, 0), ("--seed", args.seed, 0), ("--restarts", args.restarts, 0),
                       ("--trials", args.trials, 1)), args.l1)
        recording = load(args.data)
        try:
            choice = infer.RuleChoice(args.rule, args.mask)
            rule = choice.rule()
        except ValueError as err:  # a bad mask term, a mask for a rule without one: a message, not a traceback
            raise UsageError(f"--rule {args.rule} --mask {args.mask}: {err}") from None
        fixed = parse_fixed(args.fixed)
        _check_fixed(fixed, rule, rule.name)
        infer.check_settings(rule, fixed, args.delay, args.mode)  # eta = 0, a NaN, a delay of 0: before anything runs
        background = None
        if args.mode == "closed":
            from ..closed_loop import Background

            try:
                rate, weight = (float(v) for v in (args.background or "").split(","))
            except ValueError:
                raise UsageError("--background: the closed mode needs RATE_HZ,WEIGHT, e.g. 3000,52") from None
            background = Background(rate, weight)
        return recording, choice, rule, fixed, background

    recording, choice, rule, fixed, background = _refused_together(checked)
    out, comm, rank = _run_dir(args, started)
    say = None if args.json or rank != 0 else (lambda line: print(line, flush=True))
    if say:  # a fit takes minutes before its first generation's line: what runs, and where its results go
        # a resume is said once accepted ("resuming ... after generation N"): "(resumed)" here headed its refusal
        say(f"infer: {rule.name}{f' ({args.mask})' if args.mask else ''} fitted to {args.data}, {args.mode} mode; "
            f"results in {out}")
    # under mpiexec the segments of every generation's candidates are spread over the ranks
    fit = infer.fit(recording, choice, fixed, delay=args.delay, n_segments=args.segments, hold_out=args.hold_out,
                    l1=args.l1, population_size=args.population_size, max_generations=args.max_generations,
                    n_bootstrap=args.bootstrap, seed=args.seed, out=out, resume=args.resume, comm=comm, progress=say,
                    mode=args.mode, background=background, trials=args.trials, restarts=args.restarts,
                    w_unrecorded=args.w_unrecorded)
    if fit is None:  # a worker rank
        return 0
    if not args.no_plots and args.mode == "clamped":
        from ..analysis.inference import write_plots

        all_segments = infer.segments(recording.weight_times.size, args.segments)
        problem = infer.ClampedFit(recording, rule, fixed, delay=args.delay, fit_segments=all_segments)
        write_plots(out, fit, problem, all_segments)
    elif not args.no_plots:
        from ..analysis.inference import write_closed_plots
        from ..closed_loop import ClosedLoopFit

        problem = ClosedLoopFit(recording, rule, fixed, background, delay=args.delay, trials=args.trials,
                                seed=args.seed, n_segments=args.segments, hold_out=args.hold_out,
                                w_unrecorded=args.w_unrecorded)
        theta = [fit.coefficients[n] for n in fit.names]
        runs = [problem.outputs(problem.params(theta), t) for t in problem.trials]  # the best again, for its curves
        write_closed_plots(out, fit, problem, [r[0] for r in runs], [r[1] for r in runs])
    if args.json:
        print(json.dumps(fit.to_json()))
    else:
        print(summary_text(fit))
        print(f"fitted rule for nest.CopyModel: {out / 'fit.json'} (key nest_params)"
              + ("" if args.no_plots else f"; plots in {out}"))
    return 0


def _choice_rules(args) -> list[tuple[str, object, str | None]]:
    """(label, rule, reward mask or None) of the fit and, with --compare, of the rule it is
    compared with."""
    from ..rules import get_rule

    def reward(mask: str) -> tuple[str, object, str]:
        try:
            return f"reward {mask}", get_rule("reward", mask), mask
        except ValueError as err:
            raise UsageError(f"--mask/--compare {mask!r}: {err}") from None

    if args.rule not in (None, "reward", "mlp"):
        raise UsageError(f"--task choices fits the three-factor rule 'reward' or an 'mlp' rule that reads the reward "
                         f"signal R, not {args.rule!r}")
    if args.rule != "mlp":
        rules = [reward(args.mask or "pre:010,forget")]
    elif args.mask:
        raise UsageError("--mask: the mlp rule has no mask (its inputs are --inputs)")
    else:
        inputs = tuple(filter(None, (name.strip() for name in args.inputs.split(","))))
        if "R" not in inputs:
            raise UsageError(f"--inputs: the choices task needs the reward signal R among the MLP's inputs, got "
                             f"{','.join(inputs)}")
        try:
            rules = [(f"mlp {','.join(inputs)}, {args.hidden} hidden",
                      get_rule("mlp", inputs=inputs, layers=(args.hidden,)), None)]
        except ValueError as err:
            raise UsageError(f"--rule mlp: {err}") from None
    if args.compare:
        rules.append(reward(args.compare))
        if set(rules[0][1].names) == set(rules[1][1].names):  # it compared a rule with itself: 0 bits, [0, 0]
            raise UsageError(f"--compare {args.compare}: the same rule as the one fitted ({rules[0][0]}: "
                             f"{', '.join(rules[0][1].names)}); compare a rule with other terms, e.g. without the "
                             f"reward term (--compare forget) or without forgetting (--compare pre:010)")
    return rules


def _infer_choices(args, started: list[Path]) -> int:
    from .. import infer_choices
    from ..behaviour import load

    hold_out = 4 if args.hold_out is None else args.hold_out
    generations = 25 if args.max_generations is None else args.max_generations
    args.bootstrap = 100 if args.bootstrap is None else args.bootstrap  # no simulation: draws are cheap

    def checked():
        _check_counts((("--max-generations", generations, 1), ("--population-size", args.population_size, 2),
                       ("--bootstrap", args.bootstrap, 0), ("--hold-out", hold_out, 0), ("--seed", args.seed, 0),
                       ("--restarts", args.restarts, 0), ("--hidden", args.hidden, 1)), args.l1)
        if hold_out == 1:
            raise UsageError("--hold-out 1 holds out every animal and leaves none to fit: give 0 (none held out) or "
                             "N >= 2 (every N-th animal)")
        rules = _choice_rules(args)
        data = load(args.data)
        fixed = parse_fixed(args.fixed)
        for label, rule, _mask in rules:
            _check_fixed(fixed, rule, label)
        if args.compare and not infer_choices.split_animals(data.n_animals, hold_out)[1]:  # before both fits
            how = f"give --hold-out N with 2 <= N <= {data.n_animals}" if data.n_animals > 1 else "give more animals"
            raise UsageError(f"--compare compares the fits on held-out animals, and --hold-out {hold_out} holds out "
                             f"none of the {data.n_animals} animals: {how}")
        try:
            task = infer_choices.task_for(data, w_max=fixed.get("Wmax"))  # --fixed Wmax: every animal's bound
        except ValueError as err:
            raise UsageError(f"{args.data}: {err}") from None
        try:
            for _label, rule, _mask in rules:  # e.g. eta = 0 (or NaN): nothing could be learnt, so nothing fitted
                infer_choices.check_fixed(fixed, task, rule)
        except ValueError as err:
            raise UsageError(f"--fixed: {err}") from None
        return rules, data, fixed, task

    rules, data, fixed, task = _refused_together(checked)
    out, comm, rank = _run_dir(args, started)
    say = None if args.json or rank != 0 else (lambda line: print(line, flush=True))
    if say:
        say(f"infer: {' against '.join(label for label, _, _ in rules)} fitted to the choices in {args.data}; "
            f"results in {out}")
        # the same number as the summary's log-likelihood in bits, which it did not say
        say("loss: the choices' cross-entropy per trial in nats (the summary gives it as a log-likelihood in bits, "
            "-loss / ln 2)")
    fits = []
    for k, (_label, rule, mask) in enumerate(rules):
        folder = out if k == 0 else out / "compare"
        fits.append(infer_choices.fit(data, mask, fixed, rule=None if mask else rule, task=task, hold_out=hold_out,
                                      l1=args.l1, population_size=args.population_size, max_generations=generations,
                                      n_bootstrap=args.bootstrap, seed=args.seed, out=folder, resume=args.resume,
                                      comm=comm, progress=say, restarts=args.restarts))
    if fits[0] is None:  # a worker rank
        return 0
    labels = [label for label, _rule, _mask in rules]
    comparison = infer_choices.compare(fits[0], fits[1]) if args.compare else None
    if comparison:
        # "rule" fitted, "compared_with" the --compare MASK: the latter may have more terms, not fewer
        comparison = {"rule": labels[0], "compared_with": labels[1], **comparison}
        (out / "comparison.json").write_text(json.dumps(comparison, indent=2))
    if not args.no_plots:
        from ..analysis.behaviour import plot_choices

        fit = fits[0]
        problem = infer_choices.ChoiceFit(data, rules[0][1], fixed, task, fit.fit_animals, args.seed)
        # the fitted model replaying every animal, for its choice probabilities
        session = problem.session([fit.coefficients[n] for n in fit.names], range(data.n_animals))
        plot_choices(out / "choices.png", data, session.p_choose_0, fit.held_out_animals)
    if args.json:
        print(json.dumps({"fit": fits[0].to_json(), **({"compare": fits[1].to_json(), "comparison": comparison}
                                                         if comparison else {})}))
        return 0
    for label, fit in zip(labels, fits):
        print(choice_summary_text(fit, label))
    if comparison:
        print(comparison_text(comparison))
    print(f"fitted rule for nest.CopyModel: {out / 'fit.json'} (key nest_params)"
          + ("" if args.no_plots else f"; plots in {out}"))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    started: list[Path] = []
    return run_mpi_command(lambda argv: _infer(argv, started), argv, command_world(), interrupted=lambda: (
        resume_hint(started[-1], None) if started else "nothing was recorded"))


if __name__ == "__main__":
    sys.exit(main())
