"""What flows through the engine: a :class:`Candidate` proposed by a strategy, the :class:`Task`
s a problem makes of it (candidate x trial), and the :class:`Evaluation` record of one task, the
one type that evaluators return, the store keeps and reports read (:func:`by_candidate` groups
them by the candidate they evaluated)."""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

# ok: scored normally; blowup: the network ran away and was aborted (scored; the rule's fault);
# failed, timeout, nan: the evaluation itself went wrong (an error, too slow, a NaN): scored with
# the failure penalty.
STATUSES = ("ok", "blowup", "failed", "timeout", "nan")
FAILURES = ("failed", "timeout", "nan")
# a fit's candidate whose loss is no number: worse than any rule (fits' losses are ratios to the
# all-zero rule's, about 1), so CMA-ES moves away from it
FIT_FAILURE_LOSS = 1e6


@dataclass(frozen=True)
class Candidate:
    """One parameter vector proposed by a strategy; ``index`` -1 is a distribution's mean."""

    index: int
    theta: tuple[float, ...]


@dataclass(frozen=True)
class Task:
    """One candidate on one trial of generation ``generation``. ``trial`` is the problem's own
    description of the trial (for the search, a :class:`nestplast.networks.Trial`); it has an
    ``index`` and a ``seed``."""

    generation: int
    candidate: int
    trial: Any
    theta: tuple[float, ...]


@dataclass
class Evaluation:
    """The record of one task: what was evaluated, what came out, and how."""

    generation: int
    candidate: int
    trial: int
    theta: list[float]
    seed: int
    params: dict[str, float] = field(default_factory=dict)  # theta by name, e.g. {"IE.alpha": -0.4}
    metrics: dict = field(default_factory=dict)  # measured values; "loss_parts": the loss's terms
    loss: float = math.nan
    status: str = "ok"
    error: str | None = None
    wall_time_s: float = 0.0
    rank: int = 0
    created: float = field(default_factory=time.time)  # Unix time; the Evaluator makes it as the evaluation starts

    @property
    def failed(self) -> bool:
        """An error, a timeout or a NaN (a blow-up is a result, not a failure)."""
        return self.status in FAILURES


def by_candidate(evaluations: Iterable[Evaluation]) -> dict[tuple[int, int], list[Evaluation]]:
    """The evaluations of each (generation, candidate), in trial order."""
    grouped: dict[tuple[int, int], list[Evaluation]] = {}
    for e in evaluations:
        grouped.setdefault((e.generation, e.candidate), []).append(e)
    return {key: sorted(es, key=lambda e: e.trial) for key, es in grouped.items()}
