"""``python -m nestplast build RULE [options]``: compile a rule
with its neuron into a NEST module, or find it in the cache, and print how to use it from Python.

    python -m nestplast build doublet --neuron iaf_psc_exp [--json]
    python -m nestplast build my_rule.nestml          # your own NESTML synapse
    python -m nestplast build runs/my                 # the module a search or filter run used, its best rule's settings
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

from ..builder import Module, build, named_rule
from ..cli import ArgumentParser, run_command
from ..errors import UsageError
from ..nestml_text import declared_number
from ..neurons import NEURONS, Neuron, get_neuron
from ..rules import RULES, Rule
from ..store import DB_NAME, RunStore, stored_kind

# A working start for the printed example: Vogels-Sprekeler iSTDP (target 10 Hz) where the rule
# can express it; eta > 0, or nothing is learnt.
EXAMPLE_ETA = 0.01
EXAMPLE_WMAX = -100.0
EXAMPLE_WEIGHT = -10.0
# A conductance-based neuron's weights are in nS: the pA values above saturate it (the experiment
# file refuses them there, and suggests IE weights of 3 nS under a w_max of 20)
CONDUCTANCE_EXAMPLE_WMAX = -20.0
CONDUCTANCE_EXAMPLE_WEIGHT = -3.0


def _example_bounds(neuron: Neuron) -> tuple[float, float, str]:
    """(Wmax, weight, a comment) of the printed example's inhibitory projection onto ``neuron``."""
    if neuron.codependency[2] == "nS":
        return CONDUCTANCE_EXAMPLE_WMAX, CONDUCTANCE_EXAMPLE_WEIGHT, f"# {neuron.name}: weights in nS (conductances)\n"
    return EXAMPLE_WMAX, EXAMPLE_WEIGHT, ""


def _inhibitory(rule: Rule) -> bool:
    """Whether the example connects ``rule`` as inhibitory: a built-in rule (Vogels-Sprekeler), or
    one's own whose file gives Wmax a negative default."""
    if rule.path is None:
        return True
    return "Wmax" in rule.source_parameters and (declared_number(rule.source, "Wmax") or 0.0) < 0


def _own_rule_example(module: Module, rule: Rule, neuron: Neuron) -> str:
    """Python that uses a module built from the user's NESTML file, its parameters by its own names,
    with the file's defaults: an excitatory projection, or an inhibitory one where the file's Wmax
    is negative (nest.Connect refused the example's positive weight)."""
    from ..user_rules import converted_units, forbids_negative_wmax

    # nestplast's templates check any parameter called Wmax against the weight's sign
    wmax = ("# A parameter named Wmax gives the weights its sign, as in nestplast's rules: nest.Connect refuses a\n"
            "# weight of the other sign (inhibitory: Wmax < 0). Bounds a weight may cross 0 within need other names.\n"
            if "Wmax" in rule.source_parameters else "")
    if forbids_negative_wmax(rule):  # "inhibitory: Wmax < 0" could not be followed: NESTML refused it
        wmax += "# Your file's constraint on Wmax forbids Wmax < 0: this rule takes positive weights only.\n"
    # NESTML converts the file's values; a value given to NEST is in NEST's unit (0.02 for a file's 0.02 s: 1000 x too short)
    units = "".join(f"# {name} is declared in {unit}: NEST holds it in its own unit, {factor:g} x the number in {unit} "
                    f"(times in ms)\n" for name, (unit, factor) in converted_units(rule).items())
    example_wmax, example_weight, unit = _example_bounds(neuron)
    notes = units + wmax + unit  # comments before the CopyModel line
    inhibitory = _inhibitory(rule)
    weight, kind = (example_weight, "inhibitory") if inhibitory else (-example_weight, "presynaptic")
    bound = example_wmax if inhibitory else -example_wmax
    return f"""import nest
from nestplast.kernel import install
install({module.path!r})  # before nest.Create, and again after every nest.ResetKernel()
# Your rule's parameters, by the names in {Path(rule.path or rule.synapse).name}: {', '.join(rule.source_parameters)}
{notes}nest.CopyModel({module.synapse_model!r}, 'my_rule', {{}})  # your values, e.g. {{'Wmax': {bound}}}
post = nest.Create({module.neuron_model!r})  # the only neuron the rule connects to
pre = nest.Create('parrot_neuron', 10)  # stands for your {kind} neurons
nest.Connect(pre, post, syn_spec={{'synapse_model': 'my_rule', 'weight': {weight}, 'delay': 1.0}})
"""


def usage_example(module: Module, rule: Rule, mask: str | None, neuron: Neuron) -> str:
    """Python that uses the module on an inhibitory projection onto ``neuron`` (runs as it is)."""
    if rule.path is not None:
        return _own_rule_example(module, rule, neuron)
    example_wmax, example_weight, unit = _example_bounds(neuron)
    imports = "get_rule"
    if rule.name == "doublet":
        coefficients, imports = "vogels_sprekeler(10.0)", "get_rule, vogels_sprekeler"
    else:
        vs = {"th_pre_000": -0.4, "th_pre_010": 1.0, "th_post_100": 1.0}  # vogels_sprekeler(10.0)
        # an MLP: the post spike's output bias, so that the example learns (each post spike moves the
        # weight by eta); a hidden weight alone, with the output layer at 0, computed nothing
        bias = max((n for n in rule.names if n.startswith("post_b")), default=None,
                   key=lambda n: int(n.removeprefix("post_b").split("_")[0]))
        chosen = {k: v for k, v in vs.items() if k in rule.names} or {bias or rule.names[0]: 1.0}
        if "eta" in rule.names:  # searched (mlp_fsbi): a coefficient, not a fixed setting
            chosen = {**chosen, "eta": EXAMPLE_ETA}
        coefficients = repr(chosen)
    rule_call = f"get_rule({rule.name!r}" + (f", mask={mask!r})" if mask else ")")
    eta = "" if "eta" in rule.names else f"eta={EXAMPLE_ETA}, "
    return f"""import nest
from nestplast.kernel import install
from nestplast.rules import {imports}
install({module.path!r})  # before nest.Create, and again after every nest.ResetKernel()
# The rule's parameters belong to the synapse model: one CopyModel per set of values.
# Wmax carries the sign of the weights: negative for inhibitory, positive for excitatory.
{unit}params = {rule_call}.synapse_params({coefficients}, {eta}Wmax={example_wmax})
nest.CopyModel({module.synapse_model!r}, 'my_rule', params)
post = nest.Create({module.neuron_model!r})  # the only neuron the rule connects to
pre = nest.Create('parrot_neuron', 10)  # stands for your inhibitory neurons
nest.Connect(pre, post, syn_spec={{'synapse_model': 'my_rule', 'weight': {example_weight}, 'delay': 1.0}})
"""


def _parser() -> ArgumentParser:
    parser = ArgumentParser(prog="python -m nestplast build",
                            description="Build (or find in the cache) a NESTML plasticity rule as a NEST module.")
    parser.add_argument("rule", help=f"rule name: {', '.join(sorted(RULES))}; or your own NESTML synapse file "
                                     "(a path ending in .nestml; --weight names its weight variable); or a search or "
                                     "filter run's folder (its own module: an MLP's shape, co-active rules)")
    parser.add_argument("--neuron", default=None,
                        help=f"postsynaptic neuron: {', '.join(sorted(NEURONS))} (default: iaf_psc_exp)")
    parser.add_argument("--mask", default=None,
                        help="taylor and reward only: free terms, e.g. 'pre:000,pre:010,post:100' (taylor's default: all 54)")
    parser.add_argument("--weight", default=None, metavar="NAME",
                        help="your own NESTML file: its weight variable, a state variable (default: w)")
    parser.add_argument("--force", action="store_true", help="compile again even if cached")
    parser.add_argument("--json", action="store_true",
                        help='print one JSON object {"module", "neuron_model", "synapse_model"} (for a run folder: '
                             '"synapse_models" per type, "neuron_params", "best_nest_params")')
    return parser


def _build_run(run: Path, args) -> int:
    """The module a search or filter run used (``build mlp`` made the default MLP, another rule whose
    parameter names the run's settings share, so NEST took them without a word), with the best
    rule's settings per plastic type."""
    from ..networks import drawn_wmax_note, inert_note, nest_settings, neuron_params, synapse_models
    from ..runs import as_experiment

    given = [flag for flag, value in (("--neuron", args.neuron), ("--mask", args.mask), ("--weight", args.weight)) if value]
    if given:
        raise UsageError(f"{', '.join(given)}: a run's module is the one it ran with ({run}); give the run alone")
    if stored_kind(run) == "infer":  # refused by as_experiment without the command that builds the fit's rule
        fitted = run / "fit.json"
        fit = json.loads(fitted.read_text()) if fitted.is_file() else {}
        if fit.get("options"):  # an MLP's shape, which the command line does not take
            command = ("in Python, nestplast.build(nestplast.get_rule(fit['rule'], mask=fit['mask'], "
                       "**fit['options'])) with fit = json.load(its fit.json)")
        elif fit.get("rule"):
            command = f"python -m nestplast build {fit['rule']}" + (f" --mask {fit['mask']}" if fit.get("mask") else "")
        else:
            command = "python -m nestplast build RULE (--mask MASK), as the fit was run"
        raise UsageError(f"{run} holds an inference, whose module is its rule's: {command}, then nest.CopyModel with "
                         f"the nest_params of {fitted}" + ("" if fitted.is_file() else " (not written yet)"))
    exp = as_experiment(run)
    module = build(exp.module_rules(), exp.rule.neuron, force=args.force, quiet=args.json)
    models = synapse_models(exp.layout(), module)
    with RunStore.open(run, read_only=True) as store:
        search = store.meta().get("kind", "search") == "search"
        best = store.best_candidates(1) if search else []
    settings = nest_settings(exp, best[0]["theta"]) if best else None
    if search and not best:  # the example's settings were the rule's defaults: Wmax > 0, NEST refused inhibitory weights
        print(f"warning: {run} has no rule yet: no candidate had all its trials ok "
              f"(python -m nestplast.report {run} says why)", file=sys.stderr)
    if settings and (note := inert_note(exp, settings, "the run's best rule")):
        print(note, file=sys.stderr)
    if settings and (note := drawn_wmax_note(exp, settings)):
        print(note, file=sys.stderr)
    neuron = neuron_params(exp.network, module)
    if args.json:
        print(json.dumps({"module": module.path, "neuron_model": module.neuron_model, "synapse_models": models,
                          "neuron_params": neuron, "best_nest_params": settings}))
        return 0
    values = ("the run's best rule: python -m nestplast.report gives it too" if settings else
              f"{'no rule yet' if search else 'a family member'}: nestplast.nest_settings(RUN, theta)[type] gives "
              "any candidate's or family member's settings, Wmax included")
    lines = ["import nest", "from nestplast.kernel import install",
             f"install({module.path!r})  # before nest.Create, and again after every nest.ResetKernel()",
             f"post = nest.Create({module.neuron_model!r}, params={neuron!r})  # the only neuron the rules connect to"]
    for ct, model in models.items():
        lines.append(f"nest.CopyModel({model!r}, 'my_{ct}', {settings[ct] if settings else {}!r})  # {ct}: {values}")
    print(f"module:         {module.path}\nneuron model:   {module.neuron_model}\n"
          + "".join(f"synapse model:  {model} ({ct})\n" for ct, model in models.items())
          + "\nin Python (connect each type's neurons with its model, weights of its Wmax's sign):\n\n"
          + "".join(f"    {line}\n" for line in lines))
    return 0


def _build_command(argv: Sequence[str] | None) -> int:
    args = _parser().parse_args(argv)
    given = Path(args.rule)
    if (given / DB_NAME).is_file():
        return _build_run(given, args)
    what = f"a rule name ({', '.join(sorted(RULES))}), a NESTML file (.nestml) or a search or filter run's folder"
    if given.name == DB_NAME:  # read as NESTML, it failed on the first binary byte
        raise UsageError(f"{given} is a run's database: give the run's folder, {given.parent}")
    if given.is_dir():  # read as a rule's name, or as a rule file
        raise UsageError(f"{given} is a folder that holds no run (no {DB_NAME}): give {what}")
    if len(given.parts) > 1 and not args.rule.endswith(".nestml") and not given.exists():  # a mistyped run folder
        raise UsageError(f"{args.rule}: no such file or folder: give {what}")
    args.neuron = args.neuron or "iaf_psc_exp"
    try:
        rule = named_rule(args.rule, mask=args.mask, weight=args.weight)
    except ValueError as err:  # a bad mask, or a mask for a rule that takes none
        raise UsageError(str(err)) from None
    neuron = get_neuron(args.neuron)  # an unknown name: the available ones listed
    if args.neuron != neuron.name:  # NESTML's model name: an experiment's rule.neuron refuses it
        raise UsageError(f"--neuron {args.neuron}: give the neuron's name, {neuron.name} (an experiment's rule.neuron "
                         f"takes that name too; {neuron.model} is the model NESTML generates from it)")
    module = build(rule, neuron, force=args.force, quiet=args.json)
    if args.json:
        print(json.dumps({"module": module.path, "neuron_model": module.neuron_model,
                          "synapse_model": module.synapse_model}))
    else:
        example = usage_example(module, rule, args.mask, neuron)
        projection = "an inhibitory" if _inhibitory(rule) else "an excitatory"
        print(f"module:        {module.path}\nneuron model:  {module.neuron_model}\n"
              f"synapse model: {module.synapse_model}\n\n"
              f"in Python, on {projection} projection:\n\n"
              + "".join(f"    {line}\n" for line in example.splitlines()))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m nestplast build``: user errors print one line ``error: ...`` (exit code 2)."""
    return run_command(_build_command, argv, one_process="python -m nestplast build")


if __name__ == "__main__":
    sys.exit(main())
