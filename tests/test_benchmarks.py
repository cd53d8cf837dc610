"""The benchmarks refuse what they cannot measure before any work: each of these ran minutes (or
measured another model under the name given) and then failed, or said nothing."""

import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.mark.parametrize("script, args, said", [
    # a misspelt variant ran the compiled rule (rule_cost) or NEST's built-in network (drive) under its name
    ("rule_cost.py", ["--variants", "static,builtn"], "--variants: unknown builtn; known: static, builtin, rule"),
    ("rule_cost.py", ["--module", "/nonexistent"], "--module: no module folder /nonexistent"),
    ("rule_cost.py", ["--rounds", "0"], "--rounds: expected at least 1"),
    ("drive.py", ["--variants", "static:NESTML"], "--variants: unknown static:NESTML"),
    # a KeyError 15 minutes in, after the recovery table and the closed-loop fit
    ("inference.py", ["--sweep", "additive-stdp"], "--sweep: expected one of oja, vogels_sprekeler"),
    ("families.py", ["--rounds", "1", "--per-round", "0"], "filter.simulations_per_round: expected an integer >= 2"),
    ("rediscovery.py", ["--ranks", "2", "--mpiexec", "nope"], "no mpiexec at nope (--mpiexec)"),
    # after generating, pruning and measuring the paper-scale network
    ("prune_benchmark.py", ["--sweep", "abc"], "--sweep: expected fractions separated by commas"),
    ("prune_benchmark.py", ["--keep", "1.5"], "expected fractions in (0, 1]"),
    ("peer_brian2.py", ["--repeats", "0"], "--repeats 0 measures nothing without --paired N"),
    # the whole nestplast search ran first, then the Brian2 replay failed on the missing package
    ("peer_search.py", ["--brian2-python", "/nonexistent"], "--brian2-python /nonexistent: No such file"),
    # a git worktree's traceback, or a run of the working tree's module against nothing
    ("revisions.py", ["no-such-revision"], "no-such-revision: not a revision of"),
    ("revisions.py", ["HEAD", "--against", "HEAD~999999"], "HEAD~999999: not a revision of"),
    ("revisions.py", ["HEAD", "--pairs", "0"], "--pairs: expected at least 1"),
])
def test_a_benchmark_refuses_what_it_cannot_measure_at_once(tmp_path, script, args, said):
    out = subprocess.run([sys.executable, str(BENCHMARKS / script), *args], capture_output=True, text=True,
                         cwd=tmp_path, timeout=120)
    assert out.returncode != 0 and said in out.stderr, out.stdout + out.stderr
    assert "Traceback" not in out.stderr
    assert list(tmp_path.iterdir()) == []  # nothing left where it ran
