"""Pieces every task's judge shares (train/judge.py: the quadruped; train/hand_judge.py:
the hand): running each case for a number of episodes, target lines, JSON-safe values."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np

Case = TypeVar("Case")
Episode = TypeVar("Episode")


def run_cases(
    cases: Sequence[Case],
    episodes_per_case: int,
    seed: int,
    run_episode: Callable[[Case, int], Episode],
    progress: bool = False,
) -> list[tuple[Case, list[Episode]]]:
    """``run_episode(case, seed + i)`` for i < ``episodes_per_case``, for every case: the
    same seeds for every case, so rows differ only in the case."""
    if episodes_per_case < 1:
        raise ValueError(f"episodes per case must be >= 1, got {episodes_per_case}")
    if not cases:
        raise ValueError("the judge needs at least one case (command or direction)")
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(cases) * episodes_per_case, unit="episode", desc="judge", leave=False)
    try:
        rows = []
        for case in cases:
            episodes = []
            for i in range(episodes_per_case):
                episodes.append(run_episode(case, seed + i))
                if bar is not None:
                    bar.update(1)
            rows.append((case, episodes))
        return rows
    finally:
        if bar is not None:
            bar.close()


def format_target_lines(targets: dict[str, dict[str, Any]], names: dict[str, str]) -> str:
    """One line per target: what, the measured value, the bound, met or NOT met."""
    out = []
    for key, t in targets.items():
        verdict = "met" if t["met"] else "NOT met"
        bound = f">= {t['at_least']:g}" if "at_least" in t else f"<= {t['at_most']:g}"
        out.append(f"  {names[key]:48} {t['value']:.3f} (target {bound}): {verdict}")
    return "\n".join(out)


def nan_to_none(value: Any) -> Any:
    """``value`` as plain JSON: every non-finite float (nan: nothing to judge) replaced by
    None, tuples as lists, numpy scalars as Python numbers."""
    if isinstance(value, dict):
        return {k: nan_to_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [nan_to_none(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
