"""Inference from behaviour: the coefficients of a three-factor rule fitted to the choices of
animals in a two-choice task (:mod:`nestplast.choice_task`, data: :mod:`nestplast.behaviour`).

The model replays every animal's recorded choices and rewards (its reward signal drives the
rule), and scores the probability it gives each recorded choice: the loss is the binary
cross-entropy per trial over the fitted animals. CMA-ES through :mod:`nestplast.engine` finds
the minimum (MPI, store, resume). Every ``hold_out``-th animal is kept out of the fit; the
held-out log-likelihood per trial (bits) measures what the fitted rule predicts of animals it has
not seen. 95 % intervals: a bootstrap over the fitted animals on quadratic surfaces of each
animal's log-likelihood over the simulated candidates (:mod:`nestplast.surface`). ::

    from nestplast import behaviour, infer_choices
    fit = infer_choices.fit(behaviour.load("choices.npz"), mask="pre:010,forget", out="runs/choices")
    print(fit.coefficients, fit.intervals, fit.ll_held_out_bits)
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .behaviour import Behaviour
from .choice_task import ChoiceTask, Session, log_likelihood, run_animals
from .infer import (
    RuleChoice,
    at_bound_warning,
    at_bounds,
    check_counts,
    check_settings,
    intervals_from_json,
    is_held_out,
    json_intervals,
    out_or_temporary,
    search_warnings,
    search_with_restarts,
    stored_evaluations,
)
from .kernel import lent_kernel
from .objectives import l1_penalty
from .rules import Rule, weight_bounds
from .tasks import FIT_FAILURE_LOSS, Candidate, Evaluation, Task
from .values import is_number, is_whole, plain

if TYPE_CHECKING:
    from mpi4py.MPI import Comm

LN2 = math.log(2.0)


@dataclass(frozen=True)
class ModelRun:
    """The model animals' input realisations (the same for every candidate: common random numbers)."""

    index: int
    seed: int


class ChoiceFit:
    """The engine's problem: one task per candidate, all the fitted animals in one NEST kernel."""

    def __init__(self, data: Behaviour, rule: Rule, fixed: Mapping[str, float], task: ChoiceTask,
                 animals: Sequence[int], seed: int, l1: float = 0.0):
        self.data, self.rule, self.fixed, self.task, self.l1 = data, rule, dict(fixed), task, l1
        self.animals = list(animals)
        self.seed = seed
        self.rank = 0

    def model_seeds(self, animals: Sequence[int]) -> list[int]:
        """Each data animal's model seed (its odour groups), by its index; the Poisson inputs of a
        session depend on all the animals simulated together, the same for every candidate."""
        return [int(np.random.SeedSequence([self.seed, a]).generate_state(1)[0]) for a in animals]

    def params(self, theta: Sequence[float]) -> dict[str, float]:
        return self.rule.synapse_params(np.asarray(theta, dtype=float), **self.fixed)

    def session(self, theta: Sequence[float], animals: Sequence[int]) -> Session:
        """The model replaying ``animals``' choices and rewards at ``theta``."""
        chosen = self.data.animals(list(animals))
        return run_animals(self.rule, self.params(theta), self.task, self.model_seeds(animals),
                           choices=chosen.choices, rewards=chosen.rewards)

    def log_likelihoods(self, theta: Sequence[float], animals: Sequence[int]) -> np.ndarray:
        """Per animal, the log-likelihood (nats) of its recorded choices."""
        return log_likelihood(self.session(theta, animals).p_choose_0, self.data.choices[list(animals)])

    def weighted(self, ll: np.ndarray, counts: np.ndarray, theta: Sequence[float]) -> float:
        """Cross-entropy per trial with animal ``k`` counted ``counts[k]`` times, plus the L1 penalty."""
        counts = np.asarray(counts, dtype=float)
        ll = np.asarray(ll, dtype=float).reshape(len(counts), -1)[:, 0]
        return float(-(counts @ ll) / (counts.sum() * self.data.n_trials) + l1_penalty(theta, self.l1, self.rule.names))

    # ---- the engine's Problem

    def tasks(self, generation: int, candidates: Sequence[Candidate]) -> list[Task]:
        return [Task(generation, c.index, ModelRun(0, self.seed), c.theta) for c in candidates]

    def evaluate(self, task: Task) -> Evaluation:
        ll = self.log_likelihoods(task.theta, self.animals)
        loss = self.weighted(ll, np.ones(len(ll)), task.theta)
        ok = math.isfinite(loss)
        return Evaluation(task.generation, task.candidate, task.trial.index, list(task.theta), task.trial.seed,
                          params=dict(zip(self.rule.names, task.theta)), rank=self.rank,
                          metrics={"ll": ll.tolist()}, loss=loss if ok else FIT_FAILURE_LOSS, status="ok" if ok else "nan")

    def loss(self, candidate: Candidate, evaluations: Sequence[Evaluation]) -> float:
        return evaluations[0].loss


@dataclass
class ChoiceFitResult:
    """A fitted three-factor rule and how well it predicts choices (log-likelihood per trial, bits)."""

    rule: str
    mask: str | None
    names: list[str]
    coefficients: dict[str, float]
    intervals: dict[str, tuple[float, float]]
    fixed: dict[str, float]
    fit_animals: list[int]
    held_out_animals: list[int]
    ll_fit_bits: float  # per trial, on the fitted animals
    ll_held_out_bits: float  # per trial, on the held-out animals (NaN: none held out)
    ll_held_out_per_animal: list[float] = field(default_factory=list)  # bits per trial
    stop: dict = field(default_factory=dict)
    bootstrap: list[list[float]] = field(default_factory=list)
    nest_params: dict[str, float] = field(default_factory=dict)  # for nest.CopyModel (set R between trials, Wmax)
    warnings: list[str] = field(default_factory=list)  # why the numbers above may not mean what they seem
    # get_rule(rule, mask, **options) builds the rule again: an MLP's shape (inputs, layers), which
    # the rule's name alone left at the default MLP, whose module refused nest_params
    options: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        """JSON-ready (no NaN: an interval that could not be computed, or no held-out animal, is None)."""
        data = asdict(self)
        data.pop("bootstrap")
        data["intervals"] = json_intervals(self.intervals)
        data["ll_held_out_bits"] = None if math.isnan(self.ll_held_out_bits) else self.ll_held_out_bits
        return data

    @classmethod
    def from_json(cls, data: Mapping) -> ChoiceFitResult:
        """The fit that :meth:`to_json` wrote (fit.json), without its bootstrap draws."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["intervals"] = intervals_from_json(data["intervals"])
        values["ll_held_out_bits"] = math.nan if data.get("ll_held_out_bits") is None else data["ll_held_out_bits"]
        return cls(**values)


def split_animals(n_animals: int, hold_out: int) -> tuple[list[int], list[int]]:
    """(fitted, held out): every ``hold_out``-th animal is held out (0: none)."""
    # 2.5 held out animal 4 only, -1 none, without a word
    if not is_whole(hold_out) or hold_out < 0:
        raise ValueError(f"hold_out: expected 0 (no animal held out) or an integer N >= 2 (every N-th animal), "
                         f"got {hold_out!r}")
    held = [a for a in range(n_animals) if is_held_out(a, n_animals, hold_out)]
    return [a for a in range(n_animals) if a not in held], held


@lent_kernel("nestplast.infer_choices.fit")
@out_or_temporary
def fit(data: Behaviour | str | os.PathLike, mask: str | None = "pre:010,forget", fixed: Mapping[str, float] | None = None, *,
        rule: Rule | None = None, task: ChoiceTask | None = None, hold_out: int = 4, l1: float = 0.0,
        population_size: int = 8, max_generations: int = 25, n_bootstrap: int = 100, seed: int = 1,
        out: str | Path | None = None, resume: bool = False, comm: Comm | None = None, progress: Callable[[str], None] | None = None,
        restarts: int = 0) -> ChoiceFitResult | None:
    """Fit the ``reward`` rule with ``mask`` (or another ``rule`` that reads the reward signal, e.g.
    ``get_rule("mlp", inputs=("x_pre", "R", "w_abs"))``), its other settings ``fixed`` (``Wmax`` is
    the task's ``w_max``; ``R`` is the task's), to ``data``;
    ``task`` must describe the data's task (blocks, trials per block) and the model network
    (default: :class:`~nestplast.choice_task.ChoiceTask` with the data's trials). ``data``: a
    :class:`~nestplast.behaviour.Behaviour` or the path of a behaviour file (read with
    :func:`nestplast.behaviour.load`), as ``fit_rule`` takes a recording's. ``out``: the fit's folder
    (its store, to ``resume``, and fit.json); None: a temporary one, removed when the fit returns.
    Rank 0 returns the result."""
    if isinstance(data, (str, os.PathLike)):
        from .behaviour import load

        data = load(data)
    elif not isinstance(data, Behaviour):  # task_for's AttributeError named nothing
        raise TypeError(f"data: expected a Behaviour or a behaviour file's path, got {type(data).__name__}")
    check_counts({"hold_out": hold_out, "population_size": population_size, "max_generations": max_generations,
                  "n_bootstrap": n_bootstrap, "seed": seed, "restarts": restarts})
    choice = RuleChoice("reward", mask) if rule is None else RuleChoice(rule.name, None)
    rule = rule or choice.rule()
    if "R" not in rule.fixable:  # NEST refused the task's R in the first simulation, after the run was created
        raise ValueError(f"rule {rule.name!r} does not read the reward signal R, which the task sets in every trial: "
                         "fit the reward rule, or an MLP with R among its inputs, e.g. "
                         "get_rule('mlp', inputs=('x_pre', 'R', 'w_abs'))")
    fixed = {k: plain(v) for k, v in (fixed or {}).items()}  # numpy numbers failed fit.json, after the whole fit
    if not is_number(l1) or not 0 <= l1 < math.inf:
        raise ValueError(f"l1: expected a penalty weight >= 0, got {l1!r}")
    l1 = float(l1)
    task = task or task_for(data, w_max=fixed.get("Wmax"))
    check_fixed(fixed, task, rule)  # before any run
    if task.n_trials != data.n_trials:  # refused here, not in the first simulation after the run was created
        raise ValueError(f"the task has {task.n_trials} trials (blocks of {', '.join(map(str, task.block_sizes))}), "
                         f"the data {data.n_trials}")
    fitted, held = split_animals(data.n_animals, hold_out)
    if not fitted:  # hold_out 1: the first simulation would fail on no animals, after the run was created
        raise ValueError(f"hold_out={hold_out} holds out every animal and leaves none to fit: give 0 (none held out) "
                         f"or N >= 2 (every N-th animal)")
    problem = ChoiceFit(data, rule, fixed, task, fitted, seed, l1)
    settings = {"task": "choices", "hold_out": hold_out, "l1": l1, "model_task": asdict(task),
                "rule_source_sha256": hashlib.sha256(rule.source.encode()).hexdigest()}
    outcome, out = search_with_restarts(problem, rule, choice, fixed, settings, data, population_size, max_generations,
                                        seed, out, resume, comm, progress, restarts)
    if outcome is None:
        return None
    theta = np.asarray(outcome.best_theta)
    ll_fit = problem.log_likelihoods(theta, fitted)
    ll_held = problem.log_likelihoods(theta, held) if held else np.zeros(0)
    intervals, draws, interval_notes = _intervals(problem, rule, out, theta, n_bootstrap, seed)
    per_trial = data.n_trials * LN2
    result = ChoiceFitResult(
        rule=rule.name, mask=choice.mask, names=list(rule.names), coefficients=dict(zip(rule.names, map(float, theta))),
        intervals=intervals, fixed=fixed, fit_animals=fitted, held_out_animals=held,
        ll_fit_bits=float(ll_fit.sum() / (len(fitted) * per_trial)),
        ll_held_out_bits=float(ll_held.sum() / (len(held) * per_trial)) if held else math.nan,
        ll_held_out_per_animal=(ll_held / per_trial).tolist(), stop=outcome.stop, bootstrap=draws,
        nest_params={**rule.synapse_params(theta, **fixed), "Wmax": task.w_max},  # the bound the animals had
        options=rule.options)
    result.warnings = (choice_warnings(result, at_bounds(rule, theta), data)
                       + search_warnings(outcome.stop, n_bootstrap, len(fitted)) + interval_notes)
    (Path(out) / "fit.json").write_text(json.dumps(result.to_json(), indent=2) + "\n")
    return result


AT_CHANCE_BITS = 0.005  # bits per trial within which a fit predicts choices as chance does


def choice_warnings(result: ChoiceFitResult, at_bound: Sequence[str], data: Behaviour | None = None) -> list[str]:
    """What a reader of ``result`` must know before trusting it, one sentence each (printed by the
    command, kept in fit.json): choices all of one odour (``data``), coefficients at their search
    bounds (``at_bound``), intervals that cannot be computed, a model at chance in every trial, no
    held-out animal, fitted or held-out choices predicted worse than chance."""
    warnings = []
    if data is not None and np.unique(data.choices).size == 1:  # fitted as learning, well above chance
        warnings.append(f"every choice of every animal is odour {int(data.choices.flat[0])}: a bias, not learning "
                        "from rewards; the coefficients describe it, not a learning rule")
    if at_bound:
        warnings.append(at_bound_warning(at_bound))
    if len(result.fit_animals) < 2:
        warnings.append("no intervals: they come from a bootstrap over the fitted animals, and one animal was fitted; "
                        "give more animals")
    if abs(result.ll_fit_bits + 1.0) < 1e-9:  # exactly chance: p = 0.5 in every trial, whatever the choices
        warnings.append("the fitted model gives every choice the probability 0.5 (-1 bits per trial): its output "
                        "neuron fires equally (or not at all) for both odours, so the choices do not constrain the "
                        "coefficients and their values and intervals mean nothing")
    elif result.ll_fit_bits < -1.0 - AT_CHANCE_BITS:
        warnings.append(f"the fitted rule predicts even the fitted animals' choices worse than chance "
                        f"({result.ll_fit_bits:.3f} bits per trial against -1): the search found no rule that "
                        "describes them (more generations, or another rule)")
    elif abs(result.ll_fit_bits + 1.0) < AT_CHANCE_BITS:  # "-1.000 bits against -1" read as worse than chance
        warnings.append(f"the fitted rule predicts the fitted animals' choices no better than chance "
                        f"({result.ll_fit_bits:.4f} bits per trial against -1): the search found no rule that "
                        "describes them (more generations, or another rule)")
    if not result.held_out_animals:
        warnings.append("no animal held out (--hold-out 0, or fewer animals than --hold-out): the fit is measured on "
                        "the animals it was fitted to only")
    elif abs(result.ll_held_out_bits + 1.0) < 1e-9:  # read as "does not generalise", the model did not choose at all
        warnings.append("the fitted model gives every held-out choice the probability 0.5 (-1 bits per trial): its "
                        "output neuron fired equally (or not at all) for both odours in the held-out animals' "
                        "simulation, so the held-out score says nothing of how well the rule generalises")
    elif result.ll_held_out_bits < -1.0 - AT_CHANCE_BITS:
        warnings.append(f"the fitted rule predicts the held-out animals' choices worse than chance "
                        f"({result.ll_held_out_bits:.3f} bits per trial against -1): it does not describe these animals")
    elif abs(result.ll_held_out_bits + 1.0) < AT_CHANCE_BITS:
        warnings.append(f"the fitted rule predicts the held-out animals' choices no better than chance "
                        f"({result.ll_held_out_bits:.4f} bits per trial against -1): it does not describe these animals")
    return warnings


def check_fixed(fixed: Mapping[str, float], task: ChoiceTask, rule: Rule | None = None) -> None:
    """Refuse fixed settings the task would override without a word: ``R`` (the reward signal,
    set in every trial) and a ``Wmax`` other than the task's ``w_max`` (every animal's bound).
    With the ``rule`` fitted, also what NEST would refuse in the first simulation, after the run
    was created (a time constant of 0, ``Wmin`` beyond ``Wmax``), a learning rate of 0 or infinity,
    and bounds that clip the start weight ``task.w_start``."""
    if "R" in fixed:
        raise ValueError("R is the reward signal the task sets in every trial (r - E[r]); it cannot be fixed")
    if "Wmax" in fixed and fixed["Wmax"] != task.w_max:
        raise ValueError(f"Wmax={fixed['Wmax']:g}, but the task's weight bound is w_max={task.w_max:g}: give the "
                         f"same, or leave Wmax out and set ChoiceTask(w_max=...)")
    if rule is None:
        return
    check_settings(rule, fixed, delay=1.0, mode="closed")
    w_min = weight_bounds(rule.synapse_params(rule.defaults(), **fixed))[0]
    if w_min > abs(task.w_max):  # NEST's constraint abs(Wmin) <= abs(Wmax), in the first simulation
        raise ValueError(f"Wmin = {fixed.get('Wmin', w_min):g}: |Wmin| must be at most the weight bound |Wmax| = "
                         f"{abs(task.w_max):g}")
    if not w_min <= task.w_start <= abs(task.w_max):
        raise ValueError(f"every animal's weights start at {task.w_start:g} (ChoiceTask.w_start), outside the rule's "
                         f"bounds [Wmin, Wmax] = [{w_min:g}, {abs(task.w_max):g}]: the first spike would clip them; "
                         f"give bounds around it")


def task_for(data: Behaviour, w_max: float | None = None, **overrides) -> ChoiceTask:
    """The default task network with the data's block structure (blocks 0, 1, 2, ... in order, of
    any lengths); ``w_max``: the animals' weight bound (None: the task's default)."""
    if w_max is not None:
        overrides["w_max"] = w_max
    n_blocks = int(data.blocks.max()) + 1
    sizes = np.bincount(data.blocks, minlength=n_blocks)
    if np.any(data.blocks != np.repeat(np.arange(n_blocks), sizes)):
        starts = np.flatnonzero(np.diff(data.blocks, prepend=np.nan))  # where each run of one block begins
        runs = np.diff(np.r_[starts, data.blocks.size]).tolist()
        raise ValueError(f"block: the task model runs blocks of trials numbered 0, 1, 2, ... in order, each once; the "
                         f"data's blocks {data.blocks[starts][:10].tolist()} come in runs of {runs[:10]} trials. A "
                         f"design that returns to a block (A-B-A reversals) numbers each run as a block of its own "
                         f"(0, 1, 2, ...), with its own row of p_reward (a returning block's row again): the "
                         f"rewards are the data's, and p_reward only sets the task's probabilities")
    blocks = tuple(map(tuple, data.p_reward)) if data.p_reward is not None else ((0.5, 0.5),) * n_blocks
    # equal blocks as one count: the fit's stored task reads as before, and a resume of an older fit goes on
    per_block = int(sizes[0]) if np.all(sizes == sizes[0]) else tuple(int(n) for n in sizes)
    return ChoiceTask(blocks=blocks, trials_per_block=per_block, **overrides)


def _intervals(problem: ChoiceFit, rule: Rule, out, theta: np.ndarray, n_bootstrap: int, seed: int):
    """A bootstrap over the fitted animals on quadratic surfaces of each animal's log-likelihood
    (:mod:`nestplast.surface`), fitted to the simulated candidates nearest the best."""
    from .surface import surface_intervals

    evaluations = [e for run in stored_evaluations(out) for e in run]
    thetas, lls = [e.theta for e in evaluations], [e.metrics["ll"] for e in evaluations]
    return surface_intervals(rule.names, [(p.low, p.high) for p in rule.parameters], theta,
                             np.asarray(thetas, dtype=float).reshape(len(thetas), -1),
                             np.asarray(lls, dtype=float).reshape(len(lls), -1, 1), problem.weighted,
                             n_draws=n_bootstrap, fitted=np.ones(len(problem.animals), dtype=bool), seed=seed)


# Held-out animals up to which a bootstrap's 2.5 and 97.5 percentiles are their extreme values: N
# animals resample one alone with probability N^(1-N), 0.11 for 3, 0.016 for 4.
FEW_HELD_OUT = 3


def compare(with_term: ChoiceFitResult, without: ChoiceFitResult, n_bootstrap: int = 2000,
            seed: int = 1) -> dict:
    """How much better ``with_term`` predicts the held-out animals than ``without`` (the same
    held-out animals): mean difference of the log-likelihood per trial (bits) and its 95 %
    interval (``low``, ``high``) from a paired bootstrap over the held-out animals. One held-out
    animal resampled is always itself, so its "interval" would have zero width whatever the
    animals' variation: ``low`` and ``high`` are None then, and ``warning`` says why."""
    a, b = np.asarray(with_term.ll_held_out_per_animal), np.asarray(without.ll_held_out_per_animal)
    if a.size == 0 or a.size != b.size:
        raise ValueError("both fits need the same held-out animals")
    diff = a - b
    if diff.size < 2:
        n_animals = len(with_term.fit_animals) + len(with_term.held_out_animals)
        if n_animals < 4:
            how = f"give more animals (--hold-out 2 holds out 2 of 4 or more; {n_animals} here)"
        elif n_animals // 2 == 2:
            how = f"give --hold-out 2 (every 2nd animal held out: 2 of the {n_animals}) or more animals"
        else:
            how = (f"give --hold-out N with 2 <= N <= {n_animals // 2} (every N-th animal held out: at least 2 of the "
                   f"{n_animals}) or more animals")
        return {"bits_per_trial": float(diff.mean()), "low": None, "high": None, "animals": int(diff.size),
                "warning": "no interval: the 95 % interval comes from a bootstrap over the held-out animals, and one "
                           "animal resampled is always itself, so it would have zero width whatever the animals' "
                           f"variation; an interval needs at least 2 held-out animals: {how}"}
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, diff.size, (n_bootstrap, diff.size))].mean(axis=1)
    result = {"bits_per_trial": float(diff.mean()), "low": float(np.percentile(means, 2.5)),
              "high": float(np.percentile(means, 97.5)), "animals": int(diff.size)}
    if diff.size <= FEW_HELD_OUT:  # a resample of one animal only is more likely than 2.5 %: the ends are the animals'
        result["warning"] = (f"the interval over {diff.size} held-out animals is about the range of their differences "
                             f"(a bootstrap over {diff.size} animals resamples one animal alone more often than 2.5 % "
                             "of the time), not a 95 % interval: hold out more animals")
    return result


@lent_kernel("nestplast.infer_choices.generate")
def generate(params: Mapping[str, float], *, mask: str = "pre:010,forget", n_animals: int = 20,
             task: ChoiceTask | None = None, seed: int = 1, description: str = "") -> Behaviour:
    """Synthetic behaviour: ``n_animals`` model animals (seeds from ``seed``; other input
    realisations than any fit's) learning the task with the ``reward`` rule at ``params``."""
    if not is_whole(n_animals) or n_animals < 1:
        raise ValueError(f"n_animals: expected an integer >= 1, got {n_animals!r}")  # 0: an IndexError
    task = task or (ChoiceTask(w_max=params["Wmax"]) if "Wmax" in params else ChoiceTask())
    rule = RuleChoice("reward", mask).rule()
    searched = {k: v for k, v in params.items() if k in rule.names}
    # a coefficient of another mask was called a fixed parameter the rule lacks, the mask unnamed
    if other := sorted(k for k in params if k not in searched and (k.startswith("th_") or k == "forget")):
        raise ValueError(f"params: {', '.join(other)} not among the coefficients of the mask {mask!r} "
                         f"({', '.join(rule.names)}): give a mask with its term, e.g. mask='pre:010,forget'")
    # as fit refuses them: eta = 0 (nothing learnt), a Wmin above the start weight, a time constant of 0
    check_fixed({k: v for k, v in params.items() if k not in searched}, task, rule)
    seeds = [int(np.random.SeedSequence([seed, 1000 + a]).generate_state(1)[0]) for a in range(n_animals)]
    session = run_animals(rule, rule.synapse_params(searched, **{k: v for k, v in params.items() if k not in searched}),
                          task, seeds, choice_seed=seed)
    return Behaviour(session.choices, session.rewards, session.blocks, np.asarray(task.blocks, dtype=float),
                     description or f"synthetic: reward rule {mask} at {dict(params)}, {n_animals} animals, seed {seed}")
