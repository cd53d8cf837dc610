"""One evaluation timed from two revisions of nestplast in alternation: is a change to the
generated code faster, and does it leave the results alone?

Each revision runs ``peer_brian2.py``'s evaluation (the default experiment's neurons, in-degrees
and Vogels-Sprekeler rule, the neuron's own drive) in a fresh process from its own checkout; a
revision other than the working tree is checked out into a temporary git worktree, and builds
its own module (the module cache keys on the templates). The two alternate, one evaluation each,
``--pairs`` times on the same seeds, so that this shared machine's drift, which moves one
evaluation's time by 30 % over minutes, hits both alike. Printed: each pair's CPU seconds and
their ratio, the median ratio, and whether every metric of every pair agreed to the last digit.

    .venv/bin/python benchmarks/revisions.py BASE [--against REV] [--size large] [--pairs 6]

BASE and ``--against`` are git revisions (``--against`` defaults to the working tree).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

import stopping

ROOT = Path(__file__).resolve().parent.parent
SIZES = {"default": (200, 50, 5.0), "large": (4096, 1024, 2.0)}  # N_E, N_I, simulated seconds
CHILD = """
import json, sys
sys.path.insert(0, "benchmarks")
from peer_brian2 import Size, nestplast_evaluator, timed_evaluation
size, seed = Size(*json.loads(sys.argv[1])), int(sys.argv[2])
_, _, evaluator, theta = nestplast_evaluator(size, "internal")
(_, cpu), evaluation = timed_evaluation(evaluator, theta, seed)
print(json.dumps({"cpu": cpu, "metrics": evaluation.metrics}))
"""


def checkout(revision: str | None, stack: ExitStack) -> Path:
    """The folder that holds ``revision``: the working tree for None, else a temporary worktree."""
    if revision is None:
        return ROOT
    folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="nestplast-rev-"))) / "tree"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(folder), revision], check=True)
    stack.callback(subprocess.run, ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(folder)])
    return folder


def evaluate(tree: Path, size: tuple, seed: int) -> dict:
    """One evaluation in a fresh process importing nestplast from ``tree``."""
    child = subprocess.run([sys.executable, "-c", CHILD, json.dumps(size), str(seed)], cwd=tree,
                           env={**os.environ, "PYTHONPATH": str(tree)}, capture_output=True, text=True)
    if child.returncode != 0:
        raise SystemExit(f"the evaluation from {tree} failed:\n{child.stderr[-2000:]}")
    return json.loads(child.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("base", help="the revision measured against (e.g. HEAD~1)")
    parser.add_argument("--against", help="the revision measured (default: the working tree)")
    parser.add_argument("--size", choices=list(SIZES), default="large")
    parser.add_argument("--pairs", type=int, default=6)
    args = parser.parse_args()
    if args.pairs < 1:
        parser.error("--pairs: expected at least 1")
    for revision in filter(None, (args.base, args.against)):
        known = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--verify", "-q", f"{revision}^{{commit}}"],
                               capture_output=True)
        if known.returncode != 0:
            parser.error(f"{revision}: not a revision of {ROOT}")
    size = SIZES[args.size]
    with ExitStack() as stack:
        base, measured = checkout(args.base, stack), checkout(args.against, stack)
        evaluate(base, size, 1000), evaluate(measured, size, 1000)  # builds each module, warms the caches
        ratios, identical = [], True
        print(f"{size[0]} E + {size[1]} I, {size[2]:g} s; CPU s per evaluation, {args.base} against "
              f"{args.against or 'the working tree'}")
        for pair in range(1, args.pairs + 1):
            old, new = evaluate(base, size, 1000 + pair), evaluate(measured, size, 1000 + pair)
            same = json.dumps(old["metrics"], sort_keys=True) == json.dumps(new["metrics"], sort_keys=True)  # NaN too
            identical &= same
            ratios.append(new["cpu"] / old["cpu"])
            print(f"  pair {pair}: {old['cpu']:.3f} and {new['cpu']:.3f}, ratio {ratios[-1]:.3f}"
                  f"{'' if same else ', metrics DIFFER'}")
    print(f"median ratio {statistics.median(ratios):.3f} (range {min(ratios):.3f}-{max(ratios):.3f}); "
          f"metrics {'identical in every pair' if identical else 'differ'}")
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(stopping.run(main))
