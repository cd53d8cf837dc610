"""Behaviour data: choices and rewards of animals in a two-choice task, as an ``.npz`` file.

One row per trial, animals one after another, each animal's trials in order:

======== ============ =========================================================
field    shape, type  meaning
======== ============ =========================================================
animal   (n,) int     the animal, 0 .. A-1; every animal has the same trials
trial    (n,) int     the trial within the animal, 0 .. T-1
block    (n,) int     the block of reward probabilities the trial belongs to (0, 1, 2, ... in order,
                      each once, of any lengths: the fit's task model runs them so)
offered  (n, 2) int   the two odours offered: 0 and 1 in either order (not read: the model
                      chooses an odour, not a side)
choice   (n,) int     the odour chosen: 0 or 1
reward   (n,) int     1 if the choice was rewarded, else 0
p_reward (B, 2) float optional: each block's reward probability of odour 0 and 1
======== ============ =========================================================

and, optionally, ``description``: one string of free text (where the data come from).

:func:`load` rejects a malformed file before anything runs, naming the field and what is wrong;
:func:`save` writes the same format (the synthetic generator uses it). Every animal must have the
same trials and blocks: the fit simulates all animals in lock-step (:mod:`nestplast.choice_task`).
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NoReturn

import numpy as np

from .errors import UserError
from .npz import read_npz

FIELDS = ("animal", "trial", "block", "offered", "choice", "reward")
OPTIONAL = ("p_reward", "description")


MISSED_TRIAL = " (a missed trial? the model replays every trial of every animal: each needs a choice and a reward)"


class BehaviourError(UserError):
    """A malformed behaviour file: the message names the file, the field and what is wrong."""


@dataclass
class Behaviour:
    """Choices and rewards per animal (rows) and trial (columns), and the blocks (per trial)."""

    choices: np.ndarray
    rewards: np.ndarray
    blocks: np.ndarray
    p_reward: np.ndarray | None = None
    description: str = ""

    def __post_init__(self) -> None:
        # made in Python, not read by load: checked as a file is (choices coded 1/2, or NaN for a
        # missed trial, were fitted without a word, every choice but 0 read as odour 1)
        def fail(field: str, what: str) -> NoReturn:
            raise BehaviourError(f"Behaviour: {field}: {what}")

        if any(np.ma.isMaskedArray(v) for v in (self.choices, self.rewards, self.blocks)):
            # np.asarray drops the mask: a masked (missed) trial was fitted as the value under it
            fail("choices, rewards, blocks", f"a masked array: the model takes no masked trials{MISSED_TRIAL}")
        try:
            choices, rewards, blocks = (np.asarray(v) for v in (self.choices, self.rewards, self.blocks))
        except ValueError:  # lists of unequal lengths: numpy's "inhomogeneous shape" said nothing of trials
            fail("choices, rewards", "every animal must have the same number of trials (the model runs one task "
                                     "for all; fit animals of one task length together)")
        if not isinstance(self.description, str):  # None was saved as an object array that load() refused
            fail("description", f"expected a string, got {self.description!r}")
        if choices.ndim != 2 or rewards.shape != choices.shape or blocks.shape != choices.shape[1:]:
            fail("choices, rewards, blocks", f"choices and rewards must be animals x trials and blocks one per "
                                             f"trial, got shapes {choices.shape}, {rewards.shape} and {blocks.shape}")
        for name, value in (("choices", choices), ("rewards", rewards), ("blocks", blocks)):
            if value.dtype.kind == "f" and not np.all(np.isfinite(value)):
                fail(name, f"NaN or infinite{MISSED_TRIAL if name != 'blocks' else ''}")
            if value.dtype.kind not in "iubf" or (value.dtype.kind == "f" and not np.all(value == np.round(value))):
                fail(name, f"expected whole numbers, got {value.dtype} values such as {value.ravel()[:3].tolist()}")
        for name, value in (("choices", choices), ("rewards", rewards)):
            bad = np.argwhere((value != 0) & (value != 1))
            if bad.size:
                a, t = bad[0]
                fail(name, f"expected 0 or 1, got {value[a, t]} (animal {a}, trial {t}){_coding_hint(name, value)}")
        if np.any(blocks < 0):
            fail("blocks", "negative block")
        self.choices, self.rewards, self.blocks = choices.astype(int), rewards.astype(int), blocks.astype(int)
        if self.p_reward is not None:
            self.p_reward = _p_reward(self.p_reward, int(self.blocks.max()) + 1, fail)
        else:  # as a file is: blocks numbered from 1 were fitted, then saved to a file load() refused
            _check_blocks_numbered(self.blocks, fail, "blocks")

    @property
    def n_animals(self) -> int:
        return self.choices.shape[0]

    @property
    def n_trials(self) -> int:
        return self.choices.shape[1]

    def animals(self, chosen: Sequence[int] | np.ndarray) -> Behaviour:
        """The same data for the animals ``chosen`` (indices) only."""
        return Behaviour(self.choices[chosen], self.rewards[chosen], self.blocks, self.p_reward, self.description)


def _check_blocks_numbered(blocks: np.ndarray, fail: Callable[[str, str], NoReturn], field: str) -> None:
    """Refuse a block number with no trial: blocks 1, 2 without p_reward ran with an empty block 0,
    without a word."""
    if (empty := np.flatnonzero(np.bincount(blocks) == 0)).size:
        fail(field, f"block {empty[0]} has no trial: number the blocks 0, 1, 2, ... as they come"
                    + (f" (numbered from 1? {field} - 1)" if empty[0] == 0 else ""))


def _coding_hint(name: str, values: np.ndarray) -> str:
    """Why choices or rewards hold values other than 0 and 1, as labs code them: odours 1 and 2,
    rewards -1 and 1, or -1 for a missed trial."""
    codes = set(np.unique(values).tolist())
    if name in ("choices", "choice") and codes <= {1, 2}:
        return " (odours coded 1 and 2? subtract 1)"
    if name in ("rewards", "reward") and codes <= {-1, 1}:
        return " (unrewarded coded -1? code it 0)"
    return MISSED_TRIAL if min(codes) < 0 else ""


def _p_reward(value, n_blocks: int, fail: Callable[[str, str], NoReturn]) -> np.ndarray:
    """``value`` as the reward probabilities of odours 0 and 1, one row per block (the model's task
    takes its blocks from these rows), or ``fail`` saying what is wrong."""
    p_reward = np.asarray(value)
    if p_reward.dtype.kind not in "iuf":
        fail("p_reward", f"expected numbers (probabilities), got {p_reward.dtype}")
    p_reward = p_reward.astype(float)
    if p_reward.ndim != 2 or p_reward.shape[1] != 2 or p_reward.shape[0] != n_blocks:
        # a lab's blocks 1, 2 with its two rows: the rows were right, the numbering not
        from_one = " (blocks numbered from 1? number them 0, 1, ...: block - 1)" if p_reward.shape[0] == n_blocks - 1 else ""
        fail("p_reward", f"expected shape (blocks, 2) with a row for each of the {n_blocks} blocks, got "
                         f"{p_reward.shape}{from_one}")
    if not np.all((p_reward >= 0) & (p_reward <= 1)):  # NaN too
        fail("p_reward", "expected probabilities in [0, 1]")
    return p_reward


def save(data: Behaviour, path: str | os.PathLike) -> None:
    """Write ``data`` to ``path`` in the format above (every odour offered in every trial), at
    exactly that path (numpy's habit of appending ``.npz`` does not apply), as
    :func:`nestplast.recording.save` writes a recording."""
    n_animals, n_trials = data.choices.shape
    arrays = {"animal": np.repeat(np.arange(n_animals), n_trials), "trial": np.tile(np.arange(n_trials), n_animals),
              "block": np.tile(data.blocks, n_animals), "offered": np.tile([0, 1], (n_animals * n_trials, 1)),
              "choice": data.choices.ravel(), "reward": data.rewards.ravel(), "description": np.array(data.description)}
    if data.p_reward is not None:
        arrays["p_reward"] = np.asarray(data.p_reward, dtype=float)
    try:
        with open(path, "wb") as file:  # np.savez("x") wrote x.npz, and load("x") found no file
            np.savez(file, **arrays)
    except OSError as e:
        raise BehaviourError(f"{path}: cannot write the choices ({e.strerror or e})") from None


def load(path: str | os.PathLike) -> Behaviour:
    """Read and validate a behaviour file (:class:`BehaviourError` names what is wrong)."""
    values = read_npz(path, BehaviourError, "choices and rewards (README 'Inference from behaviour'): "
                                            "np.savez(path, animal=..., trial=..., block=..., offered=..., choice=..., "
                                            "reward=...)")
    if {"pre_times", "duration"} <= set(values) and "animal" not in values:  # "duration: unknown field" said nothing
        raise BehaviourError(f"{path}: holds a recording of spikes (pre_times, duration, ...), not animals' choices: fit "
                             "it as a recording (python -m nestplast infer FILE, without --task choices)")
    return validate(values, str(path))


def validate(values: dict, source: str = "<behaviour>") -> Behaviour:
    """The :class:`Behaviour` held by the arrays ``values`` (a file's fields, by name), or a
    :class:`BehaviourError` naming ``source``, the field and what is wrong."""

    def fail(field: str, what: str) -> NoReturn:
        raise BehaviourError(f"{source}: {field}: {what}")

    # an unknown key is refused, not ignored: a misspelt optional field (p_rewards) would
    # otherwise silently change the model's task
    allowed = (*FIELDS, *OPTIONAL)
    for key in sorted(set(values) - set(allowed)):
        close = difflib.get_close_matches(key, allowed, n=1)
        fail(key, f"unknown field; {f'did you mean {close[0]!r}? ' if close else ''}allowed: {', '.join(allowed)}")
    for name in FIELDS:
        if name not in values:
            fail(name, "missing (a behaviour file has " + ", ".join(FIELDS) + ")")
    arrays = {}
    for name in FIELDS:
        value = np.asarray(values[name])
        want = 2 if name == "offered" else 1
        if value.ndim != want or (name == "offered" and value.shape[1] != 2):
            fail(name, f"expected shape {'(n, 2)' if want == 2 else '(n,)'}, got {value.shape}")
        if value.dtype.kind == "f":
            if not np.all(np.isfinite(value)):
                rows = np.flatnonzero(~np.isfinite(value).reshape(len(value), -1).all(axis=1))
                fail(name, f"NaN or infinite at row {rows[0]}{MISSED_TRIAL if name in ('choice', 'reward') else ''}")
            if np.any(value != np.round(value)):
                fail(name, "expected whole numbers")
        elif value.dtype.kind not in "iub":
            coded = " coded 0 and 1 (the odours; reward 1: rewarded)" if name in ("choice", "reward") else ""
            fail(name, f"expected integers{coded}, got {value.dtype}")
        arrays[name] = value.astype(int)
    n = len(arrays["animal"])
    for name in FIELDS:
        if len(arrays[name]) != n:
            fail(name, f"{len(arrays[name])} rows, but animal has {n}")
    if n == 0:
        fail("animal", "no trials")
    for name in ("choice", "reward"):
        bad = np.flatnonzero((arrays[name] != 0) & (arrays[name] != 1))
        if bad.size:  # -1: how many tools code a missed trial
            fail(name, f"expected 0 or 1, got {arrays[name][bad[0]]} at row {bad[0]}{_coding_hint(name, arrays[name])}")
    bad = np.flatnonzero(np.any(np.sort(arrays["offered"], axis=1) != [0, 1], axis=1))
    if bad.size:
        fail("offered", f"expected the odours 0 and 1 in every trial, got {arrays['offered'][bad[0]].tolist()} "
                        f"at row {bad[0]}")
    if np.any(arrays["block"] < 0):
        fail("block", "negative block")
    animals = arrays["animal"]
    if animals[0] != 0 or np.any(np.diff(animals) < 0) or np.any(np.diff(animals) > 1):
        fail("animal", "animals must be numbered 0, 1, ... with each animal's trials together, in order")
    n_animals = int(animals[-1]) + 1
    if n % n_animals or np.any(np.bincount(animals) != n // n_animals):
        fail("animal", f"every animal must have the same number of trials (counts: {np.bincount(animals).tolist()})")
    n_trials = n // n_animals
    if np.any(arrays["trial"] != np.tile(np.arange(n_trials), n_animals)):
        fail("trial", f"expected 0 .. {n_trials - 1} for every animal, in order")
    blocks = arrays["block"].reshape(n_animals, n_trials)
    if np.any(blocks != blocks[0]):
        fail("block", "every animal must see the same blocks in the same trials")
    if "p_reward" not in values:  # with p_reward: a hint below
        _check_blocks_numbered(blocks[0], fail, "block")
    p_reward = _p_reward(values["p_reward"], int(blocks.max()) + 1, fail) if "p_reward" in values else None
    description = str(values["description"]) if "description" in values else ""
    return Behaviour(arrays["choice"].reshape(n_animals, n_trials), arrays["reward"].reshape(n_animals, n_trials),
                     blocks[0], p_reward, description)
