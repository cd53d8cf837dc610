"""The filter (rule families by simulation-based inference) on a toy simulator whose accepted
region is known exactly, then on NEST: the family found lies inside the region and spans it,
acceptance rises over the prior's, a resumed run asks the same candidates, re-filtering from the
store keeps exactly the subset that tighter bounds allow, and bad constraints are refused."""

import copy
import csv
import math
import pickle
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import TrialStandIn, copy_run, needs_sbi, read_store

from nestplast import engine, experiment
from nestplast.experiment import ExperimentError
from nestplast.families import candidate_features, candidate_loss
from nestplast.kernel import nest_has_mpi
from nestplast.parallel import Transport
from nestplast.store import RunStore, StoreError
from nestplast.strategies import Budget, SearchSpace, make_strategy
from nestplast.strategies.filter import round_constraints
from nestplast.tasks import Evaluation, Task

# x, y in [-2, 2], tau in [1, 100] (log), u in [-2, 2] which no metric depends on
SPACE = SearchSpace(names=("x", "y", "tau", "u"), low=(-2.0, -2.0, 1.0, -2.0), high=(2.0, 2.0, 100.0, 2.0),
                    log=(False, False, True, False), start=(0.0, 0.0, 10.0, 0.0))
# accepted: |x + y| <= 0.5, 0 <= x - y <= 1.5, 10 <= tau <= 100: a rotated rectangle x [1, 2] in
# log10 tau x all of u; x > 1.2 blows up (no metric), a region the rectangle does not reach
BOUNDS = {"a": (-0.5, 0.5), "b": (0.0, 1.5), "c": (1.0, 2.0)}
ROUNDS, PER_ROUND = 4, 150


def toy_metrics(theta):
    x, y, tau, _ = theta
    if x > 1.2:
        return None  # a blow-up
    return {"a": x + y, "b": x - y, "c": math.log10(tau)}


def truly_inside(theta, bounds=BOUNDS):
    m = toy_metrics(theta)
    return m is not None and all(lo <= m[k] <= hi for k, (lo, hi) in bounds.items())


class Toy:
    """The engine's problem protocol, with the filter's loss and features (nestplast.families)."""

    def __init__(self, schedule=()):
        self.schedule, self.calls = list(schedule), 0

    def tasks(self, generation, candidates):
        return [Task(generation, c.index, TrialStandIn(0, generation), c.theta) for c in candidates]

    def evaluate(self, task):
        self.calls += 1
        m = toy_metrics(task.theta)
        e = Evaluation(task.generation, task.candidate, 0, list(task.theta), task.trial.seed,
                       metrics=m or {}, loss=0.0 if m else 200.0, status="ok" if m else "blowup")
        return e

    def loss(self, candidate, evaluations):
        return candidate_loss(evaluations, round_constraints(BOUNDS, self.schedule, evaluations[0].generation))

    def features(self, candidate, evaluations):
        return candidate_features(evaluations)


def run_toy(path, rounds=ROUNDS, schedule=(), store=None, strategy=None):
    store = store or RunStore.create(path, experiment={}, seed=5)
    strategy = strategy or make_strategy("filter", SPACE, Budget(max_generations=rounds), population_size=PER_ROUND,
                                         seed=5, constraints=BOUNDS, schedule=schedule, max_epochs=60)
    engine.run(Toy(schedule), strategy, store, Transport())
    return strategy, store


def accepted_thetas(store, bounds=BOUNDS):
    return [e.theta for e in store.evaluations() if e.status == "ok" and all(
        lo <= e.metrics[k] <= hi for k, (lo, hi) in bounds.items())]


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    strategy, store = run_toy(tmp_path_factory.mktemp("toy") / "run")
    with store:
        yield strategy, store


@needs_sbi
def test_the_family_lies_inside_the_region_and_spans_it(toy_run):
    strategy, store = toy_run
    acceptance = strategy.acceptance()
    prior = 0.5 * 1.0 * 0.5 / 16  # the rectangle's area / the (x, y) box, times half of log10 tau
    assert acceptance[0] < 0.06 and acceptance[-1] > 4 * prior and acceptance[-1] > acceptance[0]
    family = accepted_thetas(store)
    assert len(family) == int(strategy.accepted.sum()) >= 40
    assert all(truly_inside(theta) for theta in family)
    # rejected candidates are all outside: nothing inside the region was refused
    others = [e.theta for e in store.evaluations() if e.theta not in family]
    assert not any(truly_inside(theta) for theta in others)
    z = np.array([SPACE.to_search(t) for t in family])
    a, b = z[:, 0] + z[:, 1], z[:, 0] - z[:, 1]
    # the accepted points reach across most of every extent of the region, u's whole range included
    assert np.ptp(a) > 0.7 and np.ptp(b) > 1.0 and np.ptp(z[:, 2]) > 0.7 and np.ptp(z[:, 3]) > 3.0
    # the classifier keeps the proposals out of the blow-up region: far fewer than the prior's 20 %
    late = [e for e in store.evaluations() if e.generation == ROUNDS - 1]
    assert np.mean([e.status == "blowup" for e in late]) < 0.1


@needs_sbi
def test_the_progress_line_says_when_a_round_was_not_the_flows_own_proposal(tmp_path):
    """Rounds drawn from the prior (too few simulations with finite metrics for a flow) and
    candidates clipped into the box (every draw of an undertrained flow left it) looked like the
    flow's proposals: marginals piled up at the box's edges without a word."""
    def run(name, per_round, max_epochs):
        lines = []
        strategy = make_strategy("filter", SPACE, Budget(max_generations=2), population_size=per_round, seed=5,
                                 constraints=BOUNDS, max_epochs=max_epochs, restrict=False)
        with RunStore.create(tmp_path / name, experiment={}, seed=5) as store:
            engine.run(Toy(), strategy, store, Transport(), lines.append)
            return strategy, lines, [e.theta for e in store.evaluations() if e.generation == 1]

    strategy, lines, _ = run("few", 4, 60)
    assert "drawn from the prior: 4 simulations so far gave finite metrics, a flow needs 10" in lines[1], lines
    assert "prior" not in lines[0]
    strategy, lines, second = run("untrained", 40, 1)
    clipped = int(strategy.proposal_note.split(" of ")[0])
    low, high = SPACE.search_bounds()
    on_edge = sum(np.any((z == low) | (z == high)) for z in (SPACE.to_search(t) for t in second))
    assert 0 < clipped == on_edge, (clipped, on_edge)  # counted a second way: the candidates on the box's faces
    assert f"; {clipped} of 40 clipped into the box: every draw for them left it (an undertrained flow" in lines[1]


@needs_sbi
def test_a_resumed_filter_asks_the_same_candidates(tmp_path, toy_run):
    _, full = toy_run
    partial_strategy, partial = run_toy(tmp_path / "part", rounds=2)
    with partial:
        resumed = partial.load_strategy(1)
        resumed.set_budget(Budget(max_generations=3))
        run_toy(None, store=partial, strategy=resumed)
        asked = [(e.generation, e.candidate, tuple(e.theta)) for e in partial.evaluations()]
    uninterrupted = [(e.generation, e.candidate, tuple(e.theta)) for e in full.evaluations() if e.generation < 3]
    assert asked == uninterrupted


# --------------------------------------------------------------------------- the store and the command

def doublet_toy_metrics(theta):
    """fSBI-named metrics of the doublet rule's six parameters, for a store that family() reads."""
    tau_pre, tau_post, alpha, beta, gamma, kappa = theta
    if alpha > 1.5:
        return None
    return {"rate_e": 10.0 + 10.0 * alpha, "cv_isi": 1.0 + 0.3 * beta, "w_creep": abs(gamma) / 20.0,
            "trace": {"t_s": [1.0, 2.0], "rate": [10.0, 10.0], "w_mean_IE": [60.0, 60.0]}}


class DoubletToy(Toy):
    def __init__(self, exp):
        super().__init__(exp.filter.schedule)
        self.exp = exp

    def evaluate(self, task):
        m = doublet_toy_metrics(task.theta)
        return Evaluation(task.generation, task.candidate, 0, list(task.theta), task.trial.seed,
                          params=self.exp.layout().as_dict(task.theta), metrics=m or {},
                          loss=0.0 if m else 200.0, status="ok" if m else "blowup")

    def loss(self, candidate, evaluations):
        return candidate_loss(evaluations, round_constraints(self.exp.filter.constraints, self.exp.filter.schedule,
                                                             evaluations[0].generation))


@pytest.fixture(scope="module")
def stored_run(tmp_path_factory):
    """A run of the prior (no flow: fast) on the doublet toy, stored as a filter run would be."""
    from nestplast.families import new_filter
    from nestplast.runs import search_space

    exp = experiment.parse({"filter": {"rounds": 2, "simulations_per_round": 150, "constraints": {
        "rate_e": [5.0, 20.0], "cv_isi": [0.7, 1e9], "w_creep": [0.0, 0.05]},
        "schedule": [{"round": 1, "constraints": {"cv_isi": [0.8, 1e9]}}]}})
    path = tmp_path_factory.mktemp("stored") / "run"
    store = RunStore.create(path, experiment=exp.to_dict(), seed=exp.seed)
    strategy = new_filter(exp)
    assert strategy.space == search_space(exp)
    strategy.generation = 0
    engine.run(DoubletToy(exp), _PriorOnly(strategy), store, Transport())
    store.close()
    return exp, path


class _PriorOnly:
    """The filter's bookkeeping with the prior's proposals: this test is about the store."""

    def __init__(self, inner):
        self.inner = inner

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def __reduce__(self):  # stored as the filter it wraps, as a filter run stores its strategy
        return copy.copy, (self.inner,)

    def ask(self):
        from nestplast.strategies.prior import PriorSampling

        return PriorSampling.ask(self.inner)


def test_refiltering_from_the_store_keeps_exactly_the_subset(stored_run):
    from nestplast.families import family

    exp, path = stored_run
    evaluations = read_store(path, RunStore.evaluations, read_only=True)
    fam = family(path)
    # the last round's bounds (cv_isi tightened by the schedule) judge every round
    assert fam.constraints == {"rate_e": (5.0, 20.0), "cv_isi": (0.8, 1e9), "w_creep": (0.0, 0.05)}
    # a bound on a metric that no simulation measured (the toy has no w_blow; a run has no w_mean_II where
    # II does not learn) accepted no rule, without a word
    with pytest.raises(ExperimentError, match=r"constraints.w_blow: no simulation of .* measured w_blow"):
        family(path, {"rate_e": (8.0, 15.0), "w_blow": (0.0, 0.1)} | {"w_creep": (0.0, 0.02)})
    with pytest.raises(ExperimentError, match=r"w_mean_II: .*II does not learn \(rule.plastic = \['IE'\]\)"):
        family(path, {"w_mean_II": (0.0, 100.0)})
    # ... also where no simulation ran to its end, so none could show what is measured (it passed, exit 0)
    blown = path.parent / "all-blown-up"
    copy_run(path, blown)
    db = sqlite3.connect(blown / "results.sqlite")
    db.execute("UPDATE evaluations SET status = 'blowup'")
    db.commit()
    db.close()
    assert family(blown).rows == [] and family(blown, {"w_creep": (0.0, 0.01)}).rows == []
    with pytest.raises(ExperimentError, match=r"w_mean_II: .*II does not learn \(rule.plastic = \['IE'\]\)"):
        family(blown, {"w_mean_II": (0.0, 100.0)})
    tighter = family(path, {"rate_e": (7.0, 16.0), "w_creep": (0.0, 0.03)})
    for wrong in ({"cv_iss": (0.9, 1e9)}, {"cv_isi": (0.9, 0.1)}):  # each accepted no rule, without a word
        with pytest.raises(ExperimentError, match=f"constraints.{next(iter(wrong))}"):
            family(path, wrong)

    def second_way(rate, creep):  # straight from the stored evaluations (one trial each)
        return sorted((e.generation, e.candidate) for e in evaluations if e.status == "ok"
                      and rate[0] <= e.metrics["rate_e"] <= rate[1] and e.metrics["cv_isi"] >= 0.8
                      and creep[0] <= e.metrics["w_creep"] <= creep[1])

    assert [(r["round"], r["candidate"]) for r in fam.rows] == second_way((5.0, 20.0), (0.0, 0.05))
    assert [(r["round"], r["candidate"]) for r in tighter.rows] == second_way((7.0, 16.0), (0.0, 0.03))
    assert 0 < len(tighter.rows) < len(fam.rows) and fam.distinct == len(fam.rows)
    # acceptance per round under each round's own bounds: round 0 with cv_isi >= 0.7
    round0 = [e for e in evaluations if e.generation == 0 and e.status == "ok"]
    assert fam.acceptance[0]["accepted"] == sum(5 <= e.metrics["rate_e"] <= 20 and e.metrics["cv_isi"] >= 0.7
                                                and e.metrics["w_creep"] <= 0.05 for e in round0)


def test_apply_writes_the_refiltered_family_and_plots(stored_run, tmp_path, capsys):
    from nestplast.commands.filter import main

    _, path = stored_run
    new = tmp_path / "tight.toml"
    new.write_text("[constraints]\nrate_e = [8.0, 15.0]\nw_creep = [0.0, 0.02]\n")
    assert main([str(path), "--apply", str(new), "--out", str(tmp_path / "refiltered")]) == 0
    out = capsys.readouterr().out
    assert "re-filtered family:" in out and "distinct" in out
    written = {p.name for p in (tmp_path / "refiltered").iterdir()}
    assert {"family.csv", "acceptance.csv", "metrics.png", "marginals.png", "stdp_windows.png", "traces.png",
            "constraints.toml"} <= written
    # the constraints that made it, an --apply file that makes it again (an infinite bound too)
    from nestplast.commands.filter import read_constraints

    assert read_constraints(tmp_path / "refiltered" / "constraints.toml") == read_constraints(new)
    loose = tmp_path / "loose.toml"
    loose.write_text("[constraints]\nrate_e = [-inf, inf]\n")
    capsys.readouterr()
    assert main([str(path), "--apply", str(loose), "--out", str(tmp_path / "loose")]) == 0
    assert read_constraints(tmp_path / "loose" / "constraints.toml") == {"rate_e": (-math.inf, math.inf)}
    # its panel drawn, without numpy's "invalid value" (the axis ran from -inf, the panel came out empty)
    assert "invalid value" not in capsys.readouterr().err and (tmp_path / "loose" / "metrics.png").is_file()


def test_tables_and_plots_go_only_where_no_file_of_the_user_s_would_be_lost(stored_run, tmp_path, capsys):
    """--apply --out and report --plots-to overwrote a user's own family.csv and removed their
    metrics.png in a folder no family had been written to; and the report's --plots-to replaced a
    re-filtered family with the run's own."""
    from nestplast.commands.filter import main
    from nestplast.commands.report import main as report_main

    _, path = stored_run
    mine = tmp_path / "mine"
    mine.mkdir()
    for name, text in (("notes.txt", "my notes"), ("family.csv", "round,my,data\n"), ("metrics.png", "mine")):
        (mine / name).write_text(text)
    new = tmp_path / "tight.toml"
    new.write_text("[constraints]\nrate_e = [8.0, 15.0]\n")
    for command in (lambda: main([str(path), "--apply", str(new), "--out", str(mine), "--no-plots"]),
                    lambda: report_main([str(path), "--plots-to", str(mine), "--no-plots"])):
        assert command() == 2
        err = capsys.readouterr().err
        assert (f"{mine}: that folder holds other files and no family's tables (family.csv with acceptance.csv): a "
                "family.csv or a plot of yours there would be overwritten or removed; give a new or empty folder") in err
    assert {p.name: p.read_text() for p in mine.iterdir()} == {
        "notes.txt": "my notes", "family.csv": "round,my,data\n", "metrics.png": "mine"}
    # a re-filtered family's folder: written again by --apply, not replaced by the report's run family
    refiltered = tmp_path / "refiltered"
    assert main([str(path), "--apply", str(new), "--out", str(refiltered), "--no-plots"]) == 0
    assert main([str(path), "--apply", str(new), "--out", str(refiltered), "--no-plots"]) == 0
    before = (refiltered / "family.csv").read_text()
    assert report_main([str(path), "--plots-to", str(refiltered), "--no-plots"]) == 2
    assert ("that folder holds a re-filtered family (its constraints in constraints.toml), which the run's own "
            "family would replace") in capsys.readouterr().err
    assert (refiltered / "family.csv").read_text() == before
    # the run's own family into a folder of its own, and again there
    for _ in range(2):
        assert report_main([str(path), "--plots-to", str(tmp_path / "copy"), "--no-plots"]) == 0


def test_the_acceptance_table_says_which_bounds_each_count_uses(stored_run, tmp_path, capsys):
    """Per round: accepted by its own bounds (what the filter did), in the family by the bounds that
    judge it, and the rules without metrics (blow-ups). Re-filtered, the table showed only the first:
    5 and 3 accepted above a re-filtered family of 1."""
    from nestplast.commands.filter import main
    from nestplast.families import family

    exp, path = stored_run
    evaluations = store_seeds(path)

    def counted(generation, cv_low, rate=(5.0, 20.0)):  # the toy: one trial per rule
        ok = [e for e in evaluations if e.generation == generation and e.status == "ok"]
        return sum(rate[0] <= e.metrics["rate_e"] <= rate[1] and e.metrics["cv_isi"] >= cv_low
                   and e.metrics["w_creep"] <= 0.05 for e in ok)

    fam = family(path)
    blowups = [sum(e.status == "blowup" for e in evaluations if e.generation == g) for g in (0, 1)]
    assert [(a["accepted"], a["in_family"], a["blowups"], a["failed"]) for a in fam.acceptance] == [
        (counted(0, 0.7), counted(0, 0.8), blowups[0], 0), (counted(1, 0.8), counted(1, 0.8), blowups[1], 0)]
    assert counted(0, 0.7) > counted(0, 0.8) and min(blowups) > 0  # the case: the schedule tightened cv_isi
    new = tmp_path / "narrow.toml"
    new.write_text("[constraints]\nrate_e = [9.0, 11.0]\n")
    assert main([str(path), "--apply", str(new), "--out", str(tmp_path / "narrow"), "--no-plots"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["round", "simulated", "accepted", "fraction", "in", "family", "blow-ups",
                                           "failed"]
    in_family = [int(line.split()[5]) for line in out.splitlines()[1:3]]
    assert in_family == [counted(g, 0.8, (9.0, 11.0)) for g in (0, 1)]
    assert f"re-filtered family: {sum(in_family)} accepted rules" in out
    with open(tmp_path / "narrow" / "acceptance.csv", newline="") as f:
        assert [int(r["in_family"]) for r in csv.DictReader(f)] == in_family


def test_an_empty_family_writes_no_row_and_no_stale_plot(stored_run, tmp_path, capsys):
    """A re-filtered family without a rule: family.csv held a row of empty cells (read back as one
    rule), and the marginals of an earlier --apply with the same file stayed beside its tables."""
    from nestplast.commands.filter import main

    _, path = stored_run
    new, out = tmp_path / "new.toml", tmp_path / "refiltered"
    new.write_text("[constraints]\nrate_e = [8.0, 15.0]\n")
    assert main([str(path), "--apply", str(new), "--out", str(out)]) == 0
    assert (out / "marginals.png").is_file()
    with open(out / "family.csv", newline="") as f:
        header = next(csv.reader(f))
    new.write_text("[constraints]\nrate_e = [1000.0, 2000.0]\n")
    assert main([str(path), "--apply", str(new), "--out", str(out)]) == 0
    assert "re-filtered family: 0 accepted rules" in capsys.readouterr().out
    with open(out / "family.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows == [header]  # the same columns as a family with rules (it had only the bounds' metrics)
    assert {p.name for p in out.glob("*.png")} == {"metrics.png"}  # no marginals of the earlier family
    # the report of that folder said only "holds no nestplast run"
    from nestplast.commands.report import main as report

    assert report([str(out)]) == 2
    assert f"{out} holds a re-filtered family (filter RUN_DIR --apply FILE wrote it)" in capsys.readouterr().err
    # again with --no-plots: the earlier family's metrics.png stayed beside the new tables
    new.write_text("[constraints]\nrate_e = [8.0, 15.0]\n")
    assert main([str(path), "--apply", str(new), "--out", str(out), "--no-plots"]) == 0
    assert "removed the plots of an earlier family there: metrics.png" in capsys.readouterr().out
    assert list(out.glob("*.png")) == []
    # a binary file (a .npz) given to --apply: the codec's traceback
    (tmp_path / "data.npz").write_bytes(b"PK\x03\x04\x92\xff binary")
    assert main([str(path), "--apply", str(tmp_path / "data.npz"), "--out", str(out)]) == 2
    assert "data.npz: not a constraints file (not text; --apply takes a TOML file" in capsys.readouterr().err
    # an empty table: "expected one table [constraints] ..., got ['constraints']"
    new.write_text("[constraints]\n")
    assert main([str(path), "--apply", str(new), "--out", str(out)]) == 2
    assert ("the table [constraints] is empty: give at least one metric = [low, high] in it"
            in capsys.readouterr().err)


def test_apply_refuses_to_write_into_a_run(stored_run, tmp_path, capsys):
    """--out RUN_DIR (the run re-filtered) overwrote its family.csv with the re-filtered one and
    deleted its plots; --out OTHER_RUN (a search's) wrote a family among that run's files."""
    from nestplast.commands.filter import main, report
    from nestplast.commands.report import main as report_main

    run, other = tmp_path / "run", tmp_path / "search"
    copy_run(stored_run[1], run)
    RunStore.create(other, experiment=experiment.default().to_dict(), seed=1).close()
    theirs = sorted(other.iterdir())
    report(run)  # the run's own family and plots, as the run writes them
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.suffix in (".csv", ".png")}
    assert {"family.csv", "marginals.png", "traces.png"} <= set(before)
    new = tmp_path / "none.toml"
    new.write_text("[constraints]\nrate_e = [1000.0, 2000.0]\n")  # no rule: every plot but metrics.png goes
    for out, says in [(str(run), "that is the run being re-filtered"), (f"{run}/../run", "that is the run being re-filtered"),
                      (str(other), "that folder holds another run (results.sqlite)")]:
        assert main([str(run), "--apply", str(new), "--out", out]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: --out {out}: {says}") and "give another --out" in err, err
        assert len(err.strip().splitlines()) == 1 and f"(or none: {run / 'refiltered-none'})" in err
    # the default folder holding a run: the message named an --out that was not given
    RunStore.create(run / "refiltered-none", experiment=experiment.default().to_dict(), seed=1).close()
    assert main([str(run), "--apply", str(new)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {run / 'refiltered-none'}, where --apply puts the re-filtered family unless --out "
                          "is given, holds a run (results.sqlite)") and err.strip().endswith("give --out"), err
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.suffix in (".csv", ".png")} == before
    assert sorted(other.iterdir()) == theirs
    # nor does the report command put a family among another run's files
    assert report_main([str(run), "--plots-to", str(other)]) == 2
    assert "error: --plots-to " in capsys.readouterr().err
    assert sorted(other.iterdir()) == theirs
    # the run's own family may go back into its folder
    assert report_main([str(run), "--plots-to", str(run), "--no-plots"]) == 0


def test_threads_is_refused_where_it_cannot_apply(stored_run, tmp_path, capsys):
    from nestplast.commands.filter import main

    assert main(["families_short", "--threads", "0", "--out", str(tmp_path / "run")]) == 2
    assert "--threads: expected an integer >= 1, got 0" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
    new = tmp_path / "new.toml"
    new.write_text("[constraints]\nrate_e = [8.0, 15.0]\n")
    assert main([str(stored_run[1]), "--apply", str(new), "--threads", "2", "--out", str(tmp_path / "re")]) == 2
    assert "--threads goes with a filter run" in capsys.readouterr().err and not (tmp_path / "re").exists()
    # the other options of a filter run were ignored without a word (--seed 7: "another" re-check, the same one)
    for options, message in [(["--recheck", "1", "--seed", "7"], "--seed: not with --recheck, which draws its trials"),
                             (["--recheck", "1", "--out", str(tmp_path / "re")], "--out: not with --recheck"),
                             (["--apply", str(new), "--rounds", "9", "--resume"], "--rounds, --resume: not with --apply")]:
        assert main([str(stored_run[1]), *options]) == 2
        assert message in capsys.readouterr().err, options
    assert not (tmp_path / "re").exists() and not (stored_run[1] / "recheck").exists()


def test_report_json_of_a_filter_run_is_its_family(stored_run, tmp_path, capsys):
    """--json on a filter run printed a search summary: a "best_loss" of the search's scoring for
    rules the filter accepted with loss 0, and search plots (loss.png) among the family's."""
    import json

    from nestplast.commands.report import main as report
    from nestplast.families import family

    _, path = stored_run
    copy_ = tmp_path / "run"
    copy_run(path, copy_)
    assert report([str(copy_), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    fam = family(copy_)
    ok = [e for e in store_seeds(copy_) if e.status == "ok" and 5.0 <= e.metrics["rate_e"] <= 20.0
          and e.metrics["cv_isi"] >= 0.8 and e.metrics["w_creep"] <= 0.05]
    assert summary["kind"] == "filter" and summary["accepted"] == len(ok) == len(summary["family"]) > 0
    assert [(r["round"], r["candidate"]) for r in summary["family"]] == [(e.generation, e.candidate) for e in ok]
    assert summary["family"][0]["rate_e"] == ok[0].metrics["rate_e"] and "theta" not in summary["family"][0]
    assert summary["acceptance"] == fam.acceptance and summary["simulated"] == 300
    assert summary["constraints"]["cv_isi"] == [0.8, 1e9] and "best_loss" not in summary
    assert not (copy_ / "loss.png").exists() and (copy_ / "metrics.png").is_file()
    # a read-only copy (the command finds it not writable): the same summary, and nothing written
    from nestplast.commands.filter import report as family_report

    untouched = tmp_path / "read-only"
    copy_run(path, untouched)
    def files() -> list[str]:  # but SQLite's own -wal and -shm, which a reader may make beside a writable database
        return sorted(p.name for p in untouched.iterdir() if not p.name.endswith(("-wal", "-shm")))

    before = files()
    family_report(untouched, as_json=True, files=False)
    assert json.loads(capsys.readouterr().out) == summary and files() == before


@pytest.mark.nest
def test_recheck_of_a_family_without_rules_says_so(stored_run, tmp_path, capsys, doublet_module):
    """Every rule blew up or missed the bounds: the re-check printed "0 of 0 ... pass again (nan %)" and
    wrote a recheck.csv with one row of empty cells."""
    from nestplast.commands.filter import main
    from nestplast.families import RECHECK_DIR

    _, path = stored_run
    run = tmp_path / "run"
    copy_run(path, run)
    with RunStore.open(run) as store:
        stored = store.experiment()
        stored["filter"]["constraints"]["rate_e"] = [1000.0, 2000.0]  # no rule of the toy gets there
        store.record_resumed(stored)
    assert main([str(run), "--recheck", "1"]) == 0
    out = capsys.readouterr().out
    assert f"re-check: {run} has no accepted rule to re-check" in out and "nan" not in out
    assert not (run / "recheck.csv").exists()
    assert not (run / RECHECK_DIR).exists(), "no re-check store for nothing to re-check"


def test_a_run_directory_given_as_the_experiment_says_what_to_do(stored_run, capsys):
    """`filter RUN_DIR` without --apply/--recheck said "no such experiment file" of a folder that is there."""
    from nestplast.commands.filter import main

    _, path = stored_run
    assert main([str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path} is a run directory, not an experiment file")
    assert f"filter --out {path} --resume" in err and f"filter {path} --apply NEW.toml" in err and "Traceback" not in err


def test_report_of_a_filter_run_in_its_first_round(tmp_path, capsys, stored_run):
    """Before its first round ends a filter run stores no strategy: the report showed it as a search,
    with a "best loss" (the search's scoring) and what that loss means for a target rate it has not."""
    import json

    from nestplast.analysis.families import summary
    from nestplast.families import family

    stored_family = family(stored_run[1])

    from nestplast.commands.report import main as report

    exp = experiment.parse({"filter": {"simulations_per_round": 10}})
    store = RunStore.create(tmp_path / "run", experiment=exp.to_dict(), seed=exp.seed)
    for candidate in (0, 1):  # as FilterProblem records them: with the simulation's input rate
        store.record_evaluation(Evaluation(0, candidate, 0, [20.0, 20.0, 0.1, 0.1, 0.1, 0.1], 7, loss=43.0,
                                           metrics={"rate_e": 12.0, "input_rate": 8000.0}))
    store.close()
    assert report([str(tmp_path / "run"), "--no-plots"]) == 0
    out = capsys.readouterr().out
    assert f"no round complete yet: 2 of the first round's {10 * exp.trials.n} simulations recorded" in out
    assert "best loss" not in out and "target" not in out
    assert report([str(tmp_path / "run"), "--json"]) == 0
    early = json.loads(capsys.readouterr().out)
    assert early["first_round_recorded"] == 2 and early["simulations_per_round"] == 10 * exp.trials.n
    # the keys of a finished run's JSON (a script reading d["simulated"] got a KeyError), with no rule yet
    assert {"simulated": 0, "accepted": 0, "rounds": 0, "family": [], "acceptance": []}.items() <= early.items()
    assert set(early) == set(summary(stored_family)) | {"first_round_recorded", "simulations_per_round"}
    assert not (tmp_path / "run" / "loss.png").exists()


def test_the_marginals_of_a_single_searched_parameter_are_readable(tmp_path):
    """One searched parameter: a 2.2-inch figure that clipped its title ("...the 1 parameters they pin
    down most") and counted its rules on an axis labelled with the parameter."""
    from matplotlib.image import imread

    from nestplast.analysis.families import write_plots
    from nestplast.families import Family

    exp = experiment.parse({"rule": {"search": ["alpha"]}})
    rows = [{"round": 0, "candidate": k, "theta": [a], "IE.alpha": a, "rate_e": 10.0} for k, a in enumerate((-1.0, 0.5))]
    fam = Family(rows=rows, constraints={"rate_e": (5.0, 20.0)}, acceptance=[], simulated=2, traces=[{}, {}],
                 valid=[{"rate_e": 10.0}] * 2)
    assert tmp_path / "marginals.png" in write_plots(fam, exp, tmp_path)
    height, width = imread(tmp_path / "marginals.png").shape[:2]
    assert width >= 600 and height >= 600


def test_the_family_of_an_unfinished_run_says_so(stored_run, tmp_path, capsys):
    """A filter run cut short after its first of two rounds: the report showed its family as if the
    run had ended."""
    from nestplast.commands.report import main as report

    _, path = stored_run
    assert report([str(path), "--no-plots"]) == 0
    assert "not finished" not in capsys.readouterr().out
    cut = tmp_path / "cut"
    copy_run(path, cut)
    with sqlite3.connect(cut / "results.sqlite") as db:  # as a kill during round 1 leaves it
        db.execute("DELETE FROM generations WHERE generation = 1")
        db.execute("UPDATE run SET stop = NULL")
    assert report([str(cut), "--no-plots"]) == 0
    out = capsys.readouterr().out
    assert f"not finished: 1 of 2 rounds complete (running, or cut short: go on with python -m nestplast filter " \
           f"--out {cut} --resume)" in out


def test_the_members_weights_say_which_line_is_which_type():
    """traces.png drew every type of a member in its colour, the same solid line, without a legend
    or a unit: with EE, EI, IE and II, four lines per member and no way to tell them apart."""
    from matplotlib.figure import Figure

    from nestplast.analysis.families import draw_traces
    from nestplast.families import Family

    exp = experiment.parse({"rule": {"plastic": ["IE", "EE"]}})
    trace = {"t_s": [0.5, 1.0], "rate": [5.0, 6.0], "w_mean_IE": [60.0, 61.0], "w_mean_EE": [30.0, 29.0]}
    fam = Family(rows=[{"round": 0, "candidate": 3, "theta": []}], constraints={}, acceptance=[], simulated=1,
                 traces=[trace], valid=[])
    left, right = Figure().subplots(1, 2)
    draw_traces(fam, exp, left, right)
    assert [t.get_text() for t in right.get_legend().get_texts()] == ["IE", "EE"]
    ie, ee = right.get_lines()[:2]
    assert list(ie.get_ydata()) == [60.0, 61.0] and list(ee.get_ydata()) == [30.0, 29.0]
    assert ie.get_linestyle() != ee.get_linestyle() and ie.get_color() == ee.get_color()  # one member, two types
    assert right.get_ylabel() == "mean |w| (pA), trial 0"


def test_apply_and_recheck_say_what_they_were_given_instead_of_a_run(tmp_path, capsys):
    """A folder missing (a path from another working directory), a file, or a re-filtered family's
    folder were all "take a run directory, got ..." or "holds no nestplast run"."""
    from nestplast.commands.filter import main

    (tmp_path / "refiltered").mkdir()
    (tmp_path / "refiltered" / "family.csv").write_text("round,candidate\n")
    (tmp_path / "a.toml").write_text("")
    for target, message in [(tmp_path / "missing", "is no directory"), (tmp_path / "a.toml", "is a file"),
                            (tmp_path / "refiltered", "holds a family's tables (made by --apply), not a run")]:
        for option in (["--recheck", "2"], ["--apply", str(tmp_path / "a.toml")]):
            assert main([str(target), *option]) == 2
            assert message in capsys.readouterr().err, (target, option)


def test_recheck_refuses_a_limit_below_one(stored_run, capsys):
    """--limit -1 re-checked every rule but the last (a slice) and --limit 0 none (nan %), each
    overwriting recheck.csv without a word."""
    from nestplast.commands.filter import main
    from nestplast.errors import UserError
    from nestplast.families import RECHECK_DIR, recheck

    _, path = stored_run
    for limit in (0, -1):
        assert main([str(path), "--recheck", "1", "--limit", str(limit)]) == 2
        assert f"--limit: expected a number of rules >= 1, got {limit}" in capsys.readouterr().err
        with pytest.raises(UserError, match="limit: expected a number of rules >= 1"):
            recheck(path, 1, limit=limit)
    with pytest.raises(UserError, match="n_trials: expected a number of trials >= 1"):
        recheck(path, 0)
    assert not (path / RECHECK_DIR).exists() and not (path / "recheck.csv").exists()


@pytest.mark.parametrize("text, fragment", [
    ("[filter]\nconstraints = { cv_iss = [0.7, 1e9] }\n", "filter.constraints.cv_iss: expected"),  # the entry at fault, not the table
    ("[filter]\nschedule = [{ round = 1, constraints = { rate = [1.0, 2.0] } }]\n", "filter.schedule"),
    ("[filter]\nschedule = [{ round = -1, constraints = {} }]\n", "filter.schedule"),
    ("[filter]\nconstraints = { rate_e = [50.0, 1.0] }\n", "filter.constraints.rate_e: expected [low, high] intervals (low <= high)"),
    ("[filter]\nconstraints = { w_mean_EE = [0.0, 0.5] }\n", "filter.constraints.w_mean_EE: EE does not learn"),
])
def test_bad_constraints_are_refused_with_one_line(tmp_path, capsys, text, fragment):
    from nestplast.commands.filter import main

    bad = tmp_path / "bad.toml"
    bad.write_text(text)
    assert main([str(bad), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and fragment in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_apply_refuses_an_unknown_metric(stored_run, tmp_path, capsys):
    from nestplast.commands.filter import main

    _, path = stored_run
    new = tmp_path / "new.toml"
    new.write_text("[constraints]\ncv_iss = [0.9, 1e9]\n")
    assert main([str(path), "--apply", str(new)]) == 2
    err = capsys.readouterr().err
    assert "cv_iss" in err and "fSBI table" in err


# --------------------------------------------------------------------------- on NEST

TINY = """
name = "tiny-filter"
[rule]
plastic = ["IE", "EE"]
fixed = { eta = 0.01 }
[network]
n_e = 40
n_i = 10
input_rate = 4000.0
[trials]
n = 1
[objective]
t_train = 0.5
t_score = 0.5
chunk = 0.25
[filter]
rounds = 2
simulations_per_round = 12
max_epochs = 5
nuisance_input_rate = [3000.0, 5000.0]
constraints = { rate_e = [1.0, 80.0], w_blow = [0.0, 0.5] }
"""


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, doublet_module):
    """Two rounds on a tiny network through the real path (build, Evaluator, store)."""
    import tomllib

    from nestplast.families import run_filter

    out = tmp_path_factory.mktemp("tiny") / "run"
    outcome = run_filter(experiment.parse(tomllib.loads(TINY)), out)
    return outcome, out


@needs_sbi
@pytest.mark.nest
def test_an_accepted_rule_gets_its_nest_settings_from_the_runs_folder(tiny_run, tmp_path):
    """The family gave the searched parameters alone; nest_settings needed the experiment, and with
    the file edited since (another eta, w_max) gave settings the run never had, without a word. A
    run's folder now stands for its experiment: in nest_settings, and to resume it from Python."""
    import tomllib

    import nestplast
    from nestplast.families import family, run_filter

    _, out = tiny_run
    copy = tmp_path / "run"
    copy_run(out, copy)
    row = family(copy).rows[0]
    ran = experiment.parse(tomllib.loads(TINY))
    settings = nestplast.nest_settings(copy, row["theta"])
    assert settings == nestplast.nest_settings(ran, row["theta"])
    assert settings["IE"]["eta"] == 0.01 and settings["IE"]["Wmax"] == -300.0 and settings["EE"]["Wmax"] == 100.0
    edited = experiment.parse(tomllib.loads(TINY.replace("eta = 0.01", "eta = 0.05")))
    assert nestplast.nest_settings(edited, row["theta"])["IE"]["eta"] == 0.05  # the file, as it says now
    named = ran.layout().as_dict(row["theta"])  # by name, e.g. from family.csv's columns
    assert nestplast.nest_settings(copy, named) == settings
    assert nestplast.nest_settings(copy, row) == settings  # the row itself, as the docstring said (it failed)
    with pytest.raises(ValueError, match="named parameters: expected exactly .*; missing IE.alpha"):
        nestplast.nest_settings(copy, {k: v for k, v in named.items() if k != "IE.alpha"})
    with pytest.raises(ValueError, match="theta is None: no rule to give settings for"):
        nestplast.nest_settings(copy, None)
    before = rows_of(copy)
    assert run_filter(copy, copy, resume=True) is not None and rows_of(copy) == before  # done: nothing more to run
    with pytest.raises(nestplast.UserError, match=r"in Python: the run's folder for the experiment"):
        run_filter(edited, copy, resume=True)


def rows_of(run_dir):
    with sqlite3.connect(run_dir / "results.sqlite") as db:
        return db.execute("SELECT generation, candidate, trial, theta, seed, status, metrics FROM evaluations "
                          "ORDER BY generation, candidate, trial").fetchall()


@needs_sbi
@pytest.mark.nest
def test_run_filter_on_nest_stores_a_family_and_rechecks_it(tiny_run, capsys):
    """Every simulation recorded with its nuisance input rate, the family read back, re-checked on fresh seeds."""
    from nestplast.commands.filter import main
    from nestplast.families import family, is_filter_run, recheck

    outcome, out = tiny_run
    assert outcome.generations == 2 and outcome.evaluations == 24 and outcome.stop == {"maxiter": 2}
    assert is_filter_run(out)
    stored = store_seeds(out)
    rates = [e.metrics["input_rate"] for e in stored]
    assert all(3000.0 <= r <= 5000.0 for r in rates) and len(set(rates)) == 24  # one draw per simulation
    fam = family(out)
    assert [a["simulated"] for a in fam.acceptance] == [12, 12] and len(fam.rows) >= 1
    assert all(1.0 <= r["rate_e"] <= 80.0 and r["w_blow"] <= 0.5 for r in fam.rows)
    assert repr(fam).startswith(f"Family({len(fam.rows)} accepted rules") and len(repr(fam)) < 200  # not every row
    lines = []
    checked = recheck(out, n_trials=1, limit=2, progress=lines.append)
    assert len(checked.passed) == min(2, len(fam.rows))
    n = len(checked.passed)
    assert lines[0].startswith(f"re-check: {n} accepted rules") and lines[-1] == f"  {n} of {n} simulations"
    assert all(e.seed not in {s.seed for s in stored} for es in checked.evaluations for e in es)
    # the command: the re-check's table
    assert main([str(out), "--recheck", "1", "--limit", "1", "--quiet"]) == 0
    assert "pass again" in capsys.readouterr().out and (out / "recheck.csv").is_file()
    assert main([str(out), "--limit", "1"]) == 2 and "--limit goes with --recheck" in capsys.readouterr().err
    # Ctrl-C in a re-check: it says that it keeps nothing, not that nothing was started
    process = subprocess.Popen([sys.executable, "-m", "nestplast", "filter", str(out), "--recheck", "3"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert process.stdout.readline().startswith("re-check:")
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130 and "the re-check of" in err and "run the same command again" in err, err
    # nestplast report on a filter run shows the family, not a search summary
    from nestplast.commands.report import main as report

    assert report([str(out), "--no-plots"]) == 0
    assert "accepted rules" in capsys.readouterr().out


def test_a_search_run_is_no_family(tmp_path, capsys):
    """family() and recheck() of a search run presented its generations as rounds with acceptance
    fractions; they refuse it now."""
    from nestplast.families import family, recheck

    store = RunStore.create(tmp_path / "search", experiment=experiment.default().to_dict(), seed=1)
    cma = make_strategy("cmaes", SPACE, Budget(max_generations=2), population_size=4, seed=1)
    store.record_generation(0, pickle.dumps(cma), {})
    store.close()
    for call in (family, recheck):
        with pytest.raises(StoreError, match="holds no filter round: a search run"):
            call(tmp_path / "search")
    # nor does the filter resume it: the message names the command that does, with its folder
    from nestplast.families import run_filter

    with pytest.raises(StoreError, match=f"resume it with python -m nestplast.search --out {tmp_path / 'search'} --resume"):
        run_filter(experiment.default(), tmp_path / "search", resume=True)

    # a run that recorded its kind is named as what it is, and every way on offered is one that works
    # (each of --resume, --apply and --recheck offered for a search's folder was then refused)
    from nestplast.commands.filter import main

    RunStore.create(tmp_path / "kind", experiment=experiment.default().to_dict(), seed=1, meta={"kind": "search"}).close()
    for call in (family, recheck):
        with pytest.raises(StoreError, match="kind holds a search, not a filter run"):
            call(tmp_path / "kind")
    with pytest.raises(StoreError, match=r"holds a run, a search .*; continue it with python -m nestplast.search --out"):
        run_filter(experiment.default(), tmp_path / "kind")
    assert main([str(tmp_path / "kind")]) == 2
    assert "holding a search, not an experiment file; go on with it: python -m nestplast.search --out" in \
        capsys.readouterr().err


@needs_sbi
@pytest.mark.nest
def test_a_recheck_cut_short_goes_on_where_it_stopped(tiny_run, tmp_path, capsys):
    """Ctrl-C after the first simulation keeps it; the same call again simulates only the rest, and
    its verdicts and metrics are those of a re-check never cut short; more trials add only the new."""
    from nestplast.families import RECHECK_DIR, family, recheck

    _, out = tiny_run
    runs = {name: tmp_path / name for name in ("cut", "whole")}
    for run in runs.values():
        copy_run(out, run, ignore=shutil.ignore_patterns(RECHECK_DIR, "*.lock", "recheck.csv"))
    n = min(2, len(family(out).rows))

    def stop_after_the_first(line: str) -> None:
        if line.startswith("  1 of"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        recheck(runs["cut"], n_trials=2, limit=n, progress=stop_after_the_first)
    assert len(rows_of(runs["cut"] / RECHECK_DIR)) == 1
    lines = []
    resumed = recheck(runs["cut"], n_trials=2, limit=n, progress=lines.append)
    assert f", {2 * n - 1} to simulate (1 kept from an earlier re-check" in lines[0]
    assert lines[-1] == f"  {2 * n - 1} of {2 * n - 1} simulations"
    whole = recheck(runs["whole"], n_trials=2, limit=n)

    def seen(result):
        return [[(e.trial, e.seed, e.status, e.loss, e.metrics.get("rate_e")) for e in es] for es in result.evaluations]

    assert resumed.passed == whole.passed and seen(resumed) == seen(whole)
    assert [len(es) for es in resumed.evaluations] == [2] * n
    lines = []
    more = recheck(runs["cut"], n_trials=3, limit=n, progress=lines.append)
    assert f", {n} to simulate ({2 * n} kept" in lines[0] and [len(es) for es in more.evaluations] == [3] * n
    assert [es[:2] for es in seen(more)] == seen(whole)
    # the filter resumed with more rounds (its stored experiment says so) is the same run: all kept
    with RunStore.open(runs["cut"]) as store:
        stored = store.experiment()
        stored["filter"]["rounds"] += 1
        store.record_resumed(stored)
    lines = []
    recheck(runs["cut"], n_trials=3, limit=n, progress=lines.append)
    assert f", 0 to simulate ({3 * n} kept" in lines[0], lines
    # where its store cannot be made (here a file in the way; a read-only copy of a run alike): a message
    (runs["whole"] / RECHECK_DIR).rename(tmp_path / "moved")
    (runs["whole"] / RECHECK_DIR).write_text("")
    with pytest.raises(StoreError, match="cannot be made .*copy the run somewhere writable"):
        recheck(runs["whole"], n_trials=1, limit=1)
    # its store is no run to report on: the report names the re-check's table instead
    from nestplast.commands.report import main as report

    assert report([str(runs["cut"] / RECHECK_DIR), "--no-plots"]) == 2
    assert "re-check" in capsys.readouterr().err


@needs_sbi
@pytest.mark.nest
@pytest.mark.mpi
@pytest.mark.skipif(nest_has_mpi(), reason="population mode needs the PyPI NEST (no MPI inside)")
def test_two_ranks_filter_as_one_rank_does(tmp_path, tiny_run):
    """The command on 1 and on 2 ranks, and the same run in this process (torch imported before
    NEST, as conftest does), ask and simulate the same rules."""
    import subprocess

    (tmp_path / "tiny.toml").write_text(TINY)
    runs = {}
    for ranks in (1, 2):
        command = [sys.executable, "-m", "nestplast", "filter", str(tmp_path / "tiny.toml"),
                   "--out", str(tmp_path / f"run{ranks}"), "--quiet", "--no-plots"]
        if ranks > 1:
            command = [str(Path(sys.executable).parent / "mpiexec"), "-n", str(ranks), *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr
        runs[ranks] = tmp_path / f"run{ranks}"
    assert rows_of(runs[2]) == rows_of(runs[1])  # the flow's proposals and every simulation
    assert rows_of(tiny_run[1]) == rows_of(runs[1])
    with sqlite3.connect(runs[2] / "results.sqlite") as db:
        assert {r[0] for r in db.execute("SELECT rank FROM evaluations")} == {0, 1}, "both ranks simulated"


@needs_sbi
def test_nest_imported_before_torch_is_warned_of(tmp_path):
    """Imported the other way round, torch's arithmetic (and so the flow) changes: the run says so."""
    import subprocess

    (tmp_path / "tiny.toml").write_text(TINY.replace("rounds = 2", "rounds = 1"))
    script = ("import sys, nest; from nestplast import experiment; from nestplast.families import run_filter; "
              f"run_filter(experiment.load({str(tmp_path / 'tiny.toml')!r}), {str(tmp_path / 'run')!r})")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "RuntimeWarning" in done.stderr and "NEST was imported before torch" in done.stderr


def store_seeds(run_dir):
    return read_store(run_dir, RunStore.evaluations, read_only=True)


def test_without_sbi_the_core_works_and_the_filter_names_the_extra(tmp_path, monkeypatch, capsys):
    import subprocess

    from nestplast.commands.filter import main
    from nestplast.strategies.filter import MissingExtraError, require_sbi

    blocked = ("import sys; sys.modules['sbi'] = sys.modules['torch'] = None; "
               "import nestplast, nestplast.search, nestplast.families, nestplast.commands.filter, nestplast.analysis.families")
    assert subprocess.run([sys.executable, "-c", blocked], capture_output=True).returncode == 0
    monkeypatch.setitem(sys.modules, "sbi", None)  # as if not installed: import sbi raises ImportError
    with pytest.raises(MissingExtraError, match=r"pip install -e '\.\[families\]'"):
        require_sbi()
    assert main(["families_short", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: the filter needs sbi and torch") and "setup.sh" in err
    assert not (tmp_path / "run").exists()  # refused before anything was created
    # jobs/build-nest-mpi.sh's environment: the extra would bring the PyPI NEST (no MPI) over its own
    from nestplast.kernel import nest_has_mpi

    monkeypatch.setenv("NESTPLAST_NEST_MPI", "1")
    nest_has_mpi.cache_clear()
    try:
        with pytest.raises(MissingExtraError, match=r"pip install torch --index-url https://download.pytorch.org/whl/"
                                                    r"cpu && pip install 'sbi>=0.27' \(not the extra"):
            require_sbi()
    finally:
        nest_has_mpi.cache_clear()  # the next call reads this NEST again


@needs_sbi
def test_the_progress_line_counts_rounds_and_shows_acceptance(tmp_path):
    """A filter's loss is only a distance outside the bounds (0 when accepted): its progress line
    counts rounds and shows what was accepted, not a best and median loss of 0."""
    lines = []
    strategy = make_strategy("filter", SPACE, Budget(max_generations=1), population_size=PER_ROUND, seed=5,
                             constraints=BOUNDS, max_epochs=60)
    with RunStore.create(tmp_path / "run", experiment={}, seed=5) as store:
        engine.run(Toy(()), strategy, store, Transport(), lines.append)
    progress = [line for line in lines if line.startswith("round   0")]
    assert len(progress) == 1 and "accepted" in progress[0] and "best" not in progress[0], lines
    assert "trials blown up" in progress[0], "by trial, where the filter's table counts rules"


SINGLE = """
name = "single-filter"
[rule]
plastic = ["EE"]
fixed = { eta = 0.01 }
[network]
kind = "single_neuron"
n_e_inputs = 100
n_i_inputs = 25
input_rate_e = 10.0
input_rate_i = 10.0
[trials]
n = 1
[objective]
t_train = 0.2
t_score = 0.2
chunk = 0.2
[filter]
rounds = 1
simulations_per_round = 2
max_epochs = 5
constraints = { rate_e = [1.0, 80.0] }
"""


@pytest.mark.parametrize("extra, fragment", [
    ("nuisance_input_rate = [8.0, 12.0]\n", "filter.nuisance_input_rate: drawn for a recurrent network's drive"),
    ("schedule = [{ round = 0, constraints = { rate_i = [1.0, 50.0] } }]\n",
     "filter.schedule[0].constraints.rate_i: network.kind = 'single_neuron' never measures rate_i"),
])
def test_a_single_neuron_filter_refuses_what_it_cannot_have(tmp_path, capsys, extra, fragment):
    """A single neuron's filter with the default table (rate_i, spatial_fano, std_rate_spatial: never
    measured) accepted no rule in any round, without a word; its nuisance input rate scaled the
    afferents by draw / network.input_rate (10 Hz afferents at 0.0125 Hz: a silent neuron,
    recorded as driven at 10 Hz)."""
    from nestplast.commands.filter import main

    for text, says in [(SINGLE + extra, fragment),
                       (SINGLE.replace("constraints = { rate_e = [1.0, 80.0] }\n", ""),
                        "filter.constraints.rate_i (the default table's: give filter.constraints of your own): "
                        "network.kind = 'single_neuron' never measures rate_i")]:
        (tmp_path / "single.toml").write_text(text)
        assert main([str(tmp_path / "single.toml"), "--out", str(tmp_path / "run")]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and says in err and "Traceback" not in err, err
        assert not (tmp_path / "run").exists()


@needs_sbi
@pytest.mark.nest
def test_a_single_neuron_filter_records_no_drive_it_did_not_get(tmp_path, doublet_module):
    """Its evaluations carried input_rate = network.input_rate x scale (8000 Hz by default), a drive
    its afferents (input_rate_e, input_rate_i) never had. The recurrent network's keys given to it
    (input_rate here) are named in the headline: they were ignored without a word."""
    import tomllib

    from nestplast.families import run_filter

    lines = []
    run_filter(experiment.parse(tomllib.loads(SINGLE.replace("n_e_inputs", "input_rate = 5000.0\nn_e_inputs"))),
               tmp_path / "run", progress=lines.append)
    stored = store_seeds(tmp_path / "run")
    assert len(stored) == 2 and all("rate_e" in e.metrics and "input_rate" not in e.metrics for e in stored)
    assert ("note: network.input_rate is not read by a network.kind = 'single_neuron' run (its own: n_e_inputs, "
            "n_i_inputs, input_rate_e, input_rate_i)") in lines[0], lines


@needs_sbi
@pytest.mark.nest
def test_a_filter_run_takes_threads_as_the_search_does(tmp_path, doublet_module, capsys):
    """`filter EXPERIMENT --threads 2` was "unrecognized arguments": NEST's threads came only from the
    experiment's search.threads, while a job gives each rank its cores."""
    from nestplast.commands.filter import main

    (tmp_path / "single.toml").write_text(SINGLE)
    run = tmp_path / "run"
    assert main([str(tmp_path / "single.toml"), "--out", str(run), "--threads", "2", "--quiet", "--no-plots"]) == 0
    with RunStore.open(run, read_only=True) as store:
        assert store.experiment()["search"]["threads"] == 2
    assert len(store_seeds(run)) == 2
    capsys.readouterr()
    # a run is one experiment: other threads change its random streams
    assert main(["--out", str(run), "--resume", "--threads", "1"]) == 2
    assert "search.threads" in capsys.readouterr().err
    # what --recheck and --apply wrote from the family stayed, stale, after a resume's new round changed it
    (run / "recheck.csv").write_text("made from the family of round 0\n")
    (run / "refiltered-tight").mkdir()
    (run / "metrics.png").write_bytes(b"the family of round 0")  # its plots, beside a family.csv of round 1
    assert main(["--out", str(run), "--resume", "--rounds", "2", "--quiet", "--no-plots"]) == 0
    assert len(store_seeds(run)) == 4
    out = capsys.readouterr().out
    assert (f"note: recheck.csv, refiltered-tight/ in {run} came from the family before this resume: make them "
            "again (--recheck N, --apply FILE)") in out
    assert "removed the plots of an earlier family there: metrics.png" in out and not (run / "metrics.png").exists()
    (run / "metrics.png").write_bytes(b"the family of round 1")
    assert main(["--out", str(run), "--resume", "--rounds", "2", "--quiet", "--no-plots"]) == 0  # nothing new
    assert "came from the family" not in capsys.readouterr().out
    assert (run / "metrics.png").read_bytes() == b"the family of round 1"


@needs_sbi
@pytest.mark.nest
def test_a_filter_whose_every_simulation_failed_says_why_and_exits_non_zero(tmp_path, doublet_module, capsys):
    """It ran every round on failures and ended with exit code 0, the reason only in the store."""
    from nestplast.commands.filter import main

    (tmp_path / "fail.toml").write_text(SINGLE.replace("chunk = 0.2", "chunk = 0.2\nmax_wall_s = 0.000001"))
    assert main([str(tmp_path / "fail.toml"), "--out", str(tmp_path / "run"), "--quiet", "--no-plots"]) == 1
    out = capsys.readouterr().out
    assert ("every simulation failed, so no rule passed; most often (timeout, x2): evaluation exceeded "
            "objective.max_wall_s" in out), out
    # its report said "0 accepted rules" alone
    from nestplast.commands.report import main as report

    assert report([str(tmp_path / "run"), "--no-plots"]) == 0
    assert ("every simulation failed, so no rule passed; most often (timeout, x2): evaluation exceeded "
            "objective.max_wall_s" in capsys.readouterr().out)


@needs_sbi
@pytest.mark.nest
def test_a_schedule_after_the_last_round_is_warned_of(tmp_path, doublet_module):
    """round = 1 of 1 round (rounds count from 0): the family ignored its bounds, without a word."""
    import tomllib

    from nestplast.families import family, run_filter

    text = SINGLE + "schedule = [{ round = 1, constraints = { rate_e = [2.0, 50.0] } }]\n"
    with pytest.warns(UserWarning, match=r"filter.schedule\[0\] starts at round 1, but rounds count from 0 and "
                                         "this run's last is round 0"):
        run_filter(experiment.parse(tomllib.loads(text)), tmp_path / "run")
    assert family(tmp_path / "run").constraints == {"rate_e": (1.0, 80.0)}  # what the warning says


@needs_sbi
@pytest.mark.nest
def test_search_keys_a_filter_ignores_are_warned_of(tmp_path, doublet_module):
    """[search] population_size = 50 meant for the filter's rules per round: the filter drew its own
    number and said nothing; threads it uses, so that one is not named."""
    import tomllib

    from nestplast.families import run_filter, search_keys_ignored

    text = SINGLE + "[search]\npopulation_size = 50\nsigma0 = 0.5\nthreads = 1\n"
    exp = experiment.parse(tomllib.loads(text), "mine.toml")
    said = ("mine.toml: search.population_size, search.sigma0 are not used by a filter run "
            "(the filter's own: filter.simulations_per_round for search.population_size)")
    assert search_keys_ignored(exp) == said
    assert search_keys_ignored(experiment.parse(tomllib.loads(SINGLE + "[search]\nthreads = 2\n"))) == ""
    # the search's score: a filter records it, but judges by filter.constraints
    scored = SINGLE.replace("chunk = 0.2\n", "chunk = 0.2\ntarget_rate = 50.0\nconstraints = { cv_isi = [5.0, 1e9] }\n")
    assert search_keys_ignored(experiment.parse(tomllib.loads(scored), "s.toml")) == (
        "s.toml: objective.target_rate, objective.constraints are not used by a filter run (the "
        "filter's own: filter.constraints for objective.target_rate and objective.constraints)")
    # the nuisance drive replaces the network's: input_rate = 100 to calm a network did nothing
    drawn = {**tomllib.loads(TINY), "trials": {"n": 1, "input_rate_scale": [0.5, 0.6]}}
    drawn["network"] = {**drawn["network"], "input_rate": 100.0}
    assert search_keys_ignored(experiment.parse(drawn, "d.toml")) == (
        "d.toml: network.input_rate, trials.input_rate_scale are not used by a filter run (the filter's own: "
        "filter.nuisance_input_rate for network.input_rate and trials.input_rate_scale)")
    # a band meant as a scale of the drive (every network then silent): said, not as a mere unused key
    scaled = {**drawn, "filter": {**drawn["filter"], "nuisance_input_rate": [0.9, 1.1]}, "trials": {"n": 1}}
    assert search_keys_ignored(experiment.parse(scaled, "d.toml")).endswith(
        "; filter.nuisance_input_rate = [0.9, 1.1] is in Hz, like network.input_rate (100 Hz), not a scale of it")
    del drawn["filter"]["nuisance_input_rate"]
    assert search_keys_ignored(experiment.parse(drawn, "d.toml")) == ""
    # the shipped experiments give input_rate inside their band, as its centre: no warning on every run
    for name in ("families_short", "families_mlp_short", "families_paper", "families_mlp_paper"):
        assert search_keys_ignored(experiment.load(name)) == "", name
    # objective.population the filter uses: its rate band watches that population, its ISI metrics are of it
    watched = {**tomllib.loads(SINGLE), "network": {"n_e": 20, "n_i": 5}, "objective": {"population": "I"}}
    assert search_keys_ignored(experiment.parse(watched)) == ""
    with pytest.warns(UserWarning, match=re.escape(said)):
        run_filter(exp, tmp_path / "run")
    # said when the run began; every resume (every slice of filter.slurm) repeated it, about the stored
    # experiment, which cannot be edited
    import warnings

    with warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("always")
        run_filter(tmp_path / "run", tmp_path / "run", resume=True)
    assert not [w for w in warned if "not used by a filter run" in str(w.message)], [str(w.message) for w in warned]
    lines = []  # judged on the I population: said, where only a code comment said it
    run_filter(experiment.parse(watched), tmp_path / "watched", progress=lines.append)
    assert "\nmetrics of the I population (objective.population)" in lines[0], lines[0]


@pytest.mark.parametrize("key, value, message", [
    ("schedule", {"round": 1, "constraints": {"cv_isi": (0.3, 1e9)}}, "filter.schedule: expected a list"),
    ("schedule", [{"round": 1, "cv_isi": (0.3, 1e9)}], "filter.schedule: expected a list of { round = N"),
    ("schedule", [(1, {"cv_isi": (0.3, 1e9)})], r"filter.schedule\[0\]: expected a table"),
    ("constraints", [("cv_isi", 0.2, 1e9)], "filter.constraints: expected a table"),
    ("constraints", None, "filter.constraints: expected a table, got None"),
])
def test_filter_values_set_in_python_are_checked_as_a_files(tmp_path, key, value, message):
    """Set in Python, they failed with a bare TypeError, KeyError or AttributeError from inside the
    filter's own checks, before the file's checks ran."""
    from nestplast.families import run_filter

    exp = experiment.load("families_short")
    setattr(exp.filter, key, value)
    with pytest.raises(ExperimentError, match=message):
        run_filter(exp, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_filter_bounds_computed_with_numpy_are_taken_as_family_takes_them():
    """exp.filter.constraints = {"cv_isi": np.array([...])} was refused ("expected a list"), while
    family() takes numpy bounds."""
    exp = experiment.load("families_short")
    exp.filter.constraints = {"cv_isi": np.array([0.2, 1e9])}
    assert experiment.validate(exp).filter.constraints == {"cv_isi": [0.2, 1e9]}


def test_family_takes_numpy_bounds(stored_run):
    """Bounds computed with numpy (np.percentile's array, an np.int64) were refused as not
    "[low, high] intervals"; they are the numbers they hold, and a list of pairs is no mapping."""
    from nestplast.families import family

    _, path = stored_run
    plain = family(path, {"rate_e": (7.0, 16.0), "w_creep": (0.0, 0.03)})
    computed = family(path, {"rate_e": np.array([7.0, 16.0]), "w_creep": (np.int64(0), np.float32(0.03))})
    assert [r["candidate"] for r in computed.rows] == [r["candidate"] for r in plain.rows] and plain.rows
    assert computed.constraints["rate_e"] == (7.0, 16.0) and type(computed.constraints["w_creep"][0]) is float
    with pytest.raises(ExperimentError, match="constraints: expected a mapping of metric -> \\(low, high\\)"):
        family(path, [("rate_e", (7.0, 16.0))])
    with pytest.raises(ExperimentError, match="constraints.rate_e = \\(True, 80\\)"):  # True was read as 1
        family(path, {"rate_e": (True, 80)})


def test_the_report_of_a_family_says_which_bounds_reject():
    """A family of no rule said nothing of why: every bound alone, how many rules lie within it."""
    from nestplast.analysis.families import summary, text
    from nestplast.families import Family

    fam = Family(rows=[], constraints={"rate_e": (1.0, 20.0), "cv_isi": (0.7, 1e9)}, acceptance=[], simulated=3,
                 traces=[], valid=[{"rate_e": 5.0, "cv_isi": 0.5}, {"rate_e": 50.0, "cv_isi": 0.9},
                                   {"rate_e": 7.0, "cv_isi": math.nan}])
    assert ("each bound alone, rules within it of the 3 that ran to their end: rate_e 2, cv_isi 1"
            in text(fam)), text(fam)
    assert summary(fam)["within_each_bound"] == {"rate_e": 2, "cv_isi": 1}


@needs_sbi
def test_a_fits_folder_given_to_the_filter_is_named_not_a_traceback(tmp_path):
    """A re-check of an inference's folder, or a new filter or search run into it, read the fit's
    settings as an experiment: "AttributeError: 'str' object has no attribute 'get'"."""
    import tomllib

    from nestplast.families import recheck, run_filter
    from nestplast.search import run_search
    from nestplast.store import RunStore, StoreError

    fit = tmp_path / "fit"
    RunStore.create(fit, experiment={"rule": "taylor", "mask": "post:100", "fixed": {}}, seed=1,
                    meta={"kind": "infer"}).close()
    with pytest.raises(StoreError, match=f"{fit} holds an inference, not a filter run"):
        recheck(fit, n_trials=1)
    exp = experiment.parse(tomllib.loads(TINY))
    for run in (run_filter, run_search):
        with pytest.raises(StoreError, match=f"{fit} already holds a run, an inference .*python -m nestplast infer"):
            run(exp, fit)
    # a search's folder resumed as a filter: a warning of search keys the filter does not read came first
    import warnings

    search, searched = tmp_path / "search", experiment.default().to_dict()
    searched["search"].update(population_size=4, max_generations=3)
    RunStore.create(search, experiment=searched, seed=1, meta={"kind": "search"}).close()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(StoreError, match=f"cannot resume {search} as a filter run .*: it holds a search"):
            run_filter(search, search, resume=True)


def test_a_filter_s_rate_band_is_not_held_against_the_target_rate_it_does_not_use(tmp_path):
    """rate_band = [0.1, 9] in a filter experiment was refused for the default target_rate of 10 Hz,
    which a filter never scores; a search is still refused it."""
    from nestplast.commands.search import named_or_stored

    path = tmp_path / "narrow.toml"
    path.write_text(SINGLE.replace("chunk = 0.2", "chunk = 0.2\nrate_band = [0.1, 9.0]"))
    assert named_or_stored(str(path), None, False, kind="filter").objective.rate_band == [0.1, 9.0]
    with pytest.raises(experiment.ExperimentError, match=r"objective.target_rate: expected a rate inside "
                                                         r"objective.rate_band \(0.1 to 9 Hz"):
        named_or_stored(str(path), None, False, kind="search")
