"""``python -m nestplast infer-demo RULE [--noise F] [--jitter MS] [--fraction F] [--length F]
[--sweep]``: generate a recording in NEST from a known rule (oja, vogels_sprekeler,
additive_stdp, weight_decay), degrade it as asked, fit it, and print the recovery table; with
``--sweep``, the robustness sweep (CSV and plot in --out)."""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from pathlib import Path

from ..cli import ArgumentParser, output_directory, run_command
from ..errors import UsageError
from ..store import DB_NAME


def parser() -> ArgumentParser:
    from ..synthetic import GROUND_TRUTHS

    p = ArgumentParser(prog="python -m nestplast infer-demo", description=__doc__.split("\n\n")[0])
    p.add_argument("rule", help=f"ground truth: {', '.join(GROUND_TRUTHS)}")
    p.add_argument("--noise", type=float, default=0.0, help="weight measurement noise, fraction of the weight range")
    p.add_argument("--jitter", type=float, default=0.0, help="spike-time jitter (ms, std)")
    p.add_argument("--fraction", type=float, default=1.0, help="fraction of synapses with recorded weights")
    p.add_argument("--length", type=float, default=1.0, help="fraction of the recording used")
    p.add_argument("--duration", type=float, default=20_000.0, help="recording length (ms)")
    p.add_argument("--bootstrap", type=int, default=20, help="bootstrap refits for the 95 %% intervals")
    p.add_argument("--seed", type=int, default=1, help="seed of the recording (spikes, noise) and the fit")
    p.add_argument("--sweep", action="store_true", help="the robustness sweep: every degradation in turn, one at a "
                   "time (so not with --noise, --jitter, --fraction, --length)")
    p.add_argument("--out", type=output_directory, default=None, help="folder for the fit (fit/) and recovery.csv; with --sweep, "
                   "for recovery.csv and sweep.png only (the sweep keeps none of its fits)")
    return p


def _demo(argv: Sequence[str] | None) -> int:
    import dataclasses
    import tempfile

    from ..analysis import check_output_directory, write_csv
    from ..infer import WeightRangeError
    from ..recovery import Degradation, recover, sweep, sweep_degradations
    from ..synthetic import GROUND_TRUTHS, SAMPLE_EVERY_MS
    from ..wording import counted

    args = parser().parse_args(argv)
    if args.rule not in GROUND_TRUTHS:
        raise UsageError(f"unknown ground truth {args.rule!r}; available: {', '.join(GROUND_TRUTHS)}")
    for flag, value in (("--noise", args.noise), ("--jitter", args.jitter)):
        if not 0 <= value < math.inf:  # NaN added no noise, and inf was refused after the recording, by another name
            raise UsageError(f"{flag}: expected a finite number >= 0, got {value}")
    for flag, value in (("--fraction", args.fraction), ("--length", args.length)):
        if not 0 < value <= 1:
            raise UsageError(f"{flag}: expected a fraction in (0, 1], got {value}")
    if args.bootstrap < 0:
        raise UsageError(f"--bootstrap: expected a number of refits >= 0 (0: no intervals), got {args.bootstrap}")
    if args.seed < 0:  # numpy's generators refused it with a traceback
        raise UsageError(f"--seed: expected an integer >= 0, got {args.seed}")
    if args.sweep and (given := [flag for flag, value, default in (
            ("--noise", args.noise, 0.0), ("--jitter", args.jitter, 0.0), ("--fraction", args.fraction, 1.0),
            ("--length", args.length, 1.0)) if value != default]):
        # the sweep sets every degradation itself: they were ignored without a word
        raise UsageError(f"--sweep runs every degradation in turn (noise, jitter, fraction, length, one at a time, the "
                         f"others at their best) and takes no {', '.join(given)}: drop {'it' if len(given) == 1 else 'them'}, "
                         f"or drop --sweep for one fit of that degraded recording")
    # the ground truths' weights are sampled every SAMPLE_EVERY_MS: a demo needs two sampling intervals
    # at least (one leaves a single segment: no interval, nothing held out)
    if not args.duration * args.length >= 2 * SAMPLE_EVERY_MS:
        raise UsageError(f"--duration {args.duration:g} ms x --length {args.length:g} is shorter than two weight "
                         f"sampling intervals ({SAMPLE_EVERY_MS:g} ms each): give at least "
                         f"{2 * SAMPLE_EVERY_MS / args.length:g} ms")
    steps = args.duration / 0.1  # the ground truths are simulated at NEST's resolution of 0.1 ms
    if abs(steps - round(steps)) > 1e-6:
        raise UsageError(f"--duration: expected a multiple of the resolution, 0.1 ms, got {args.duration:g}")
    out = check_output_directory(args.out or Path(tempfile.mkdtemp(prefix="nestplast-demo-")))
    if not args.sweep and (out / "fit" / DB_NAME).exists():
        # the store's own refusal says "continue it with --resume", which the demo does not have
        raise UsageError(f"{out} already holds a demo's fit ({out / 'fit'}); the demo has no --resume: choose another "
                         f"--out, or delete {out / 'fit'}")
    out.mkdir(parents=True, exist_ok=True)
    options = {"duration_ms": args.duration, "seed": args.seed, "n_bootstrap": args.bootstrap}
    if args.sweep:  # minutes per fit: it ran 15 minutes without a line, and a stop kept nothing
        total = len(sweep_degradations())
        print(f"sweep: {counted(total, 'fit')} of {args.rule}, one degradation at a time; table in {out / 'recovery.csv'}, "
              "written after each", flush=True)

        fits = []

        def done(degradation, rows) -> None:
            write_csv(rows, out / "recovery.csv")
            fits.append(degradation)
            changed = [f"{k} {v:g}" for k, v in dataclasses.asdict(degradation).items() if v != getattr(Degradation(), k)]
            print(f"sweep: fit {len(fits)} of {total} done ({', '.join(changed) or 'undegraded'})", flush=True)

        rows = sweep(args.rule, out=None, done=done, **options)
    else:
        degradation = Degradation(args.noise, args.jitter, args.fraction, args.length)
        print(f"infer-demo: {args.rule}'s recording generated in NEST and fitted; results in {out}", flush=True)
        try:
            fit, rows = recover(args.rule, degradation, out=out / "fit", **options)
        except WeightRangeError as err:
            if not args.noise:
                raise
            # its advice, --fixed Wmax=..., names an option the demo does not have: the noise put them there
            low, high = err.allowed
            raise UsageError(f"--noise {args.noise:g}: the noisy weights range over |w| in [{err.recorded[0]:.4g}, "
                             f"{err.recorded[1]:.4g}], outside the ground truth's [|Wmin|, |Wmax|] = [{low:g}, "
                             f"{high:g}], into which the rule clips every weight, so the fit could only come out "
                             f"wrong; give a smaller --noise (the sweep goes up to 0.1)") from None
    write_csv(rows, out / "recovery.csv")
    print(table(rows))
    if args.sweep:
        from ..analysis.inference import plot_sweep

        plot_sweep(rows, out / "sweep.png")
    else:
        for line in warning_lines(fit):  # they were only in fit/fit.json
            print(line)
    print(f"wrote {out / 'recovery.csv'}")
    return 0


INFER_OPTIONS = ("--segments", "--hold-out", "--fixed", "--mask", "--delay")  # the infer command's, not the demo's


def warning_lines(fit) -> list[str]:
    """The fit's warnings as the infer command prints them (``warning: ...``), their advice in
    the demo's options; an option only ``infer`` has is said to be one."""
    from ..infer import FEWER_SEGMENTS_ADVICE, UNCONSTRAINED_ADVICE, more_segments_advice
    from .infer import summary_text

    # the infer command's advice (the fit's own constants, so a reworded warning cannot slip past) in the demo's options
    demo_advice = ((more_segments_advice("segments"), "give a longer --duration (more sample times, so more segments)"),
                   (FEWER_SEGMENTS_ADVICE, "give a longer --duration (more sample times in each segment)"),
                   (UNCONSTRAINED_ADVICE, "give a longer --duration"))
    lines = []
    for line in summary_text(fit).splitlines():
        if not line.startswith("warning: "):
            continue
        for theirs, ours in demo_advice:
            line = line.replace(theirs, ours)
        if named := [option for option in INFER_OPTIONS if option in line]:
            line += (f" ({', '.join(named)}: options of python -m nestplast infer, which fits your own recordings; "
                     "the demo fits the ground truth's terms with its settings)")
        lines.append(line)
    return lines


def table(rows: list[dict]) -> str:
    """The recovery table: one line per row of :func:`nestplast.recovery.recover` (ok: within 5 %,
    interval covering the truth, where there is one, and sign right)."""
    lines = [f"{'rule':<17} {'noise':>6} {'jitter':>6} {'frac':>5} {'length':>6}  {'coefficient':<12} {'true':>8} {'fitted':>10} "
             f"{'95 % interval':>24}  ok  R^2"]
    for r in rows:
        ok = "yes" if r["within_5pct"] and r["covered"] is not False and r["sign_right"] else "no"
        interval = f"{'-':>24}" if r["covered"] is None else f"[{r['low']:>10.4g}, {r['high']:>10.4g}]"
        lines.append(f"{r['rule']:<17} {r['weight_noise']:>6g} {r['jitter_ms']:>6g} {r['recorded_fraction']:>5g} {r['length']:>6g}  "
                     f"{r['coefficient']:<12} {r['true']:>8.4g} {r['fitted']:>10.4g} "
                     f"{interval}  {ok:<3} {r['r2_held_out']:.3f}")
    lines.append("ok: fitted within 5 % of the largest true coefficient, its interval covering the truth (where there is "
                 "one), and the sign right")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(_demo, argv, one_process="python -m nestplast infer-demo")


if __name__ == "__main__":
    sys.exit(main())
