"""System identification: which dynamics parameters best explain a log, and did the policy
train on them?

For each candidate (quadruped: floor friction, Kp/Kd scale, joint damping scale, trunk
added mass, actuation latency; valve rig: valve bearing friction and damping, Kp/Kd scale,
fingertip friction, latency) the logged actions are replayed open-loop from logged states
over short windows (sim_replay.py) and scored by joint-position error (on the valve rig,
with the valve angle scored as one more joint). The search is the
cross-entropy method (a population per round, refit to the best fifth): derivative-free,
robust to the non-smooth contact dynamics, and the integer latency is just rounded. The
result is compared with the domain-randomization ranges the policy was trained on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tqdm import tqdm

from sim2real.replay.sim_replay import SimReplayer, Window, score

# Search bounds: wider than the training ranges on purpose, so a robot outside what the
# policy saw shows up as a fit outside the ranges rather than a fit pinned to their edge.
SEARCH_BOUNDS: dict[str, tuple[float, float]] = {
    "floor_friction": (0.1, 1.6),
    "kp_scale": (0.4, 1.6),
    "kd_scale": (0.3, 2.0),
    "joint_damping_scale": (0.2, 4.0),
    "trunk_added_mass": (-2.0, 4.0),
    "latency_steps": (0.0, 3.0),
    # The valve rig (training DR: friction U(0.005, 0.02) N m, damping U(0.002, 0.01)
    # N m s/rad, fingertip friction U(0.5, 1.0)).
    "valve_friction": (0.0, 0.05),
    "valve_damping": (0.0, 0.025),
    "fingertip_friction": (0.2, 1.5),
}


# Below this sensitivity a parameter is reported as not pinned down by the log, and left
# out of the inside/outside-the-trained-ranges verdict: a 10%-of-span change that moves the
# error by under 10% means the fit's value is mostly noise.
IDENTIFIED_SENSITIVITY = 0.1


@dataclass
class SysidResult:
    best: dict[str, float]
    best_error: float
    """Mean squared joint error (rad^2) of the best fit."""
    nominal_error: float
    trained_ranges: dict[str, tuple[float, float]]
    sensitivity: dict[str, float]
    """Error increase (relative) when each parameter alone moves 10% of its search span
    (latency: one step) from the fit: how firmly the log pins it down (near 0 = the log
    says little about it)."""
    history: list[float] = field(default_factory=list)
    """Best error after each round."""

    def inside_trained_ranges(self) -> dict[str, bool]:
        out = {}
        for name, value in self.best.items():
            low, high = self.trained_ranges[name]
            tol = 0.5 if name == "latency_steps" else 1e-9
            out[name] = bool(low - tol <= value <= high + tol)
        return out

    def identified(self) -> dict[str, bool]:
        return {name: self.sensitivity[name] >= IDENTIFIED_SENSITIVITY for name in self.best}

    def as_dict(self) -> dict[str, Any]:
        inside = self.inside_trained_ranges()
        identified = self.identified()
        return {
            "best": self.best,
            "best_mse_rad2": self.best_error,
            "nominal_mse_rad2": self.nominal_error,
            "improvement_over_nominal": 1 - self.best_error / self.nominal_error if self.nominal_error else 0.0,
            "parameters": [
                {
                    "name": name, "fit": self.best[name], "trained_range": list(self.trained_ranges[name]),
                    "inside_trained_range": inside[name], "sensitivity": self.sensitivity[name],
                    "identified": identified[name],
                    "search_bounds": list(SEARCH_BOUNDS[name]),
                }
                for name in self.best
            ],
            # Over the parameters the log pins down; None when it pins down none.
            "all_inside_trained_ranges": (
                all(inside[n] for n in inside if identified[n]) if any(identified.values()) else None
            ),
            "history": self.history,
        }


def _round(params: dict[str, float]) -> dict[str, float]:
    out = dict(params)
    if "latency_steps" in out:
        out["latency_steps"] = float(int(round(out["latency_steps"])))
    return out


def identify(
    replayer: SimReplayer,
    steps: Sequence[Any],
    actions: np.ndarray,
    windows: list[Window],
    *,
    parameters: Sequence[str] | None = None,
    rounds: int = 12,
    population: int = 32,
    seed: int = 0,
    progress: bool = True,
) -> SysidResult:
    """Cross-entropy search over ``parameters`` (default: all of the robot's; the others
    stay nominal)."""
    names = list(replayer.parameters if parameters is None else parameters)
    unknown = set(names) - set(replayer.parameters)
    if unknown:
        raise ValueError(
            f"parameters: unknown {sorted(unknown)} for {replayer.env_id}; choose from {list(replayer.parameters)}"
        )
    low = np.array([SEARCH_BOUNDS[n][0] for n in names])
    high = np.array([SEARCH_BOUNDS[n][1] for n in names])
    nominal = replayer.nominal_parameters()
    rng = np.random.default_rng(seed)

    cache: dict[tuple[float, ...], float] = {}

    def evaluate(x: np.ndarray) -> float:
        params = _round({**{n: nominal[n] for n in names}, **dict(zip(names, x.tolist(), strict=True))})
        key = tuple(round(params[n], 6) for n in names)
        if key not in cache:
            replayer.set_parameters(params)
            cache[key] = score(replayer, steps, actions, windows)
        return cache[key]

    x_nominal = np.array([nominal[n] for n in names], dtype=float)
    nominal_error = evaluate(x_nominal)
    mean = (low + high) / 2
    std = (high - low) / 3
    n_elite = max(2, population // 5)
    best_x, best_err = x_nominal, nominal_error
    history: list[float] = []
    bar = tqdm(total=rounds * population, desc="system identification", unit="fit", disable=not progress, leave=False)
    try:
        for _ in range(rounds):
            xs = np.clip(mean + std * rng.standard_normal((population, len(names))), low, high)
            xs[0] = best_x  # elitism: the best so far stays in the population
            errs = np.empty(population)
            for i, x in enumerate(xs):
                errs[i] = evaluate(x)
                bar.update(1)
            order = np.argsort(errs)
            if errs[order[0]] < best_err:
                best_x, best_err = xs[order[0]].copy(), float(errs[order[0]])
            elite = xs[order[:n_elite]]
            mean = elite.mean(axis=0)
            # A floor on the spread keeps the search from collapsing onto a lucky sample.
            std = np.maximum(elite.std(axis=0), (high - low) * 0.02)
            history.append(best_err)
            bar.set_postfix(mse=f"{best_err:.2e}")
    finally:
        bar.close()

    best = _round({**nominal, **dict(zip(names, best_x.tolist(), strict=True))})
    sensitivity = {}
    for i, name in enumerate(names):
        # Latency is an integer: move it by one step; the rest by a tenth of their span.
        step = 1.0 if name == "latency_steps" else 0.1 * (high[i] - low[i])
        bumped = [np.clip(best_x + d * np.eye(len(names))[i], low, high) for d in (-step, step)]
        worse = max(evaluate(b) for b in bumped)
        sensitivity[name] = float((worse - best_err) / max(best_err, 1e-12))
    replayer.set_parameters(best)
    trained = replayer.trained_ranges()
    return SysidResult(
        best={n: float(best[n]) for n in names}, best_error=float(best_err), nominal_error=float(nominal_error),
        trained_ranges={n: trained[n] for n in names}, sensitivity={n: sensitivity[n] for n in names},
        history=history,
    )
