"""Which periodic evaluation of a run was its best: the ranking behind ``best.safetensors``.

A policy's quality swings between checkpoints (on the quadruped: 0/35 falls at 75k steps,
7/35 at 150k on the same run), so the last checkpoint is often not the one to ship. Like
Stable-Baselines3's ``EvalCallback`` (``best_model.zip``), the trainer keeps, beside its
latest checkpoint, the one whose periodic evaluation ranked best so far.

Ranking, higher is better:

- a task with a judge (the quadruped joystick, the hand): by its targets (the judge's
  ``targets()``: each a measured value with an ``at_most`` or ``at_least`` bound). Each
  target's relative miss is ``(value - bound) / bound`` for ``at_most`` and
  ``(bound - value) / bound`` for ``at_least``; the key is ``(-sum of the positive misses,
  -sum of all misses)``: first how far the policy is from meeting every target, then, among
  policies equally far (e.g. all met), how much margin it has. A value with nothing to
  judge (nan) counts as an infinite miss.
- any other env: by mean evaluation return.

The judge's periodic evaluation runs ``eval_episodes`` spread over its cases; with one
episode per case a single lucky episode can rank a policy first, so the recipe judges
with more (``--eval-episodes``), and the file is meant to be judged again with
``sim2real eval RUN/best.safetensors``.
"""

from __future__ import annotations

import math
from typing import Any

BEST = "best.safetensors"
"""The best-ranked checkpoint, in the run directory beside ``checkpoint.safetensors``."""


def relative_misses(targets: dict[str, dict[str, Any]]) -> dict[str, float]:
    """Each target's relative miss: > 0 missed by that fraction of its bound, <= 0 met
    with that margin; nan values are +inf."""
    out: dict[str, float] = {}
    for name, target in targets.items():
        value = target["value"]
        if value is None or not math.isfinite(value):
            out[name] = math.inf
        elif "at_most" in target:
            out[name] = (value - target["at_most"]) / target["at_most"]
        elif "at_least" in target:
            out[name] = (target["at_least"] - value) / target["at_least"]
        else:
            raise ValueError(f"target {name!r} has neither at_most nor at_least: {target!r}")
    return out


def selection_key(evaluation: dict[str, Any]) -> tuple[float, float]:
    """The rank of one evaluation record (``EvalResult.as_dict()``), higher is better."""
    task = evaluation.get("task")
    if task is None or not task.get("targets"):
        return (0.0, float(evaluation["return_mean"]))
    misses = relative_misses(task["targets"])
    over = sum(max(m, 0.0) for m in misses.values())
    return (-over, -math.fsum(misses.values()) if math.isfinite(over) else -math.inf)


def selection_text(key: tuple[float, float], judged: bool) -> str:
    if not judged:
        return f"return {key[1]:.2f}"
    return "all targets met" if key[0] == 0 else f"targets missed by {-key[0]:.0%} in all"
