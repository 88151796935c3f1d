"""The stress suite: a policy judged in worlds its training never saw, beside nominal.

`sim2real eval POLICY --stress` runs the task's judge (train/judge.py) once in the nominal
world and once per held-out scenario (robots/quadruped/stress.py, robots/hand/stress.py),
each scenario applied by the env after its own domain randomization at every reset, on the
same seeds and cases as nominal, so that a row differs from nominal only in the world.

Targets (issue 26), on every single-perturbation scenario:

- quadruped: falls <= 5% and walking planar error <= 2x nominal;
- valve: turn rate in the worse direction >= 0.5 rad/s.

Scenarios with several perturbations at once are reported, not judged against a target.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sim2real.robots.stress import StressScenario
from sim2real.train import judge
from sim2real.train.judging import nan_to_none

Policy = Callable[[np.ndarray], np.ndarray]

TARGET_FALL_RATE = 0.05
TARGET_PLANAR_ERROR_RATIO = 2.0
TARGET_VALVE_TURN_RATE = 0.5

NOMINAL = StressScenario("nominal", "the training's own world", "-", None)


@dataclasses.dataclass(frozen=True)
class ScenarioResult:
    scenario: StressScenario
    result: judge.TaskResult


@dataclasses.dataclass(frozen=True)
class StressResult:
    """Nominal and every scenario, judged alike."""

    env_id: str
    rows: list[ScenarioResult]
    """Nominal first."""
    episodes_per_case: int
    domain_randomization: bool

    @property
    def quadruped(self) -> bool:
        return self.env_id == judge.QUADRUPED_ENV_ID

    @property
    def nominal(self) -> judge.TaskResult:
        return self.rows[0].result

    def metrics(self, result: judge.TaskResult) -> dict[str, float]:
        """The numbers of one row, with the ratios to nominal."""
        if self.quadruped:
            assert isinstance(result, judge.JudgeResult)
            nominal = self.nominal
            assert isinstance(nominal, judge.JudgeResult)
            return {
                "fall_rate": result.fall_rate,
                "walking_planar_error": result.walking_planar_error,
                "planar_error_ratio": _ratio(result.walking_planar_error, nominal.walking_planar_error),
                "turn_yaw_error": result.turn_yaw_error,
                "yaw_error_ratio": _ratio(result.turn_yaw_error, nominal.turn_yaw_error),
            }
        summary = result.summary()
        nominal_summary = self.nominal.summary()
        return {
            "worst_direction_turn_rate": summary["worst_direction_turn_rate"],
            "turn_rate": summary["turn_rate"],
            "turn_rate_ratio": _ratio(summary["worst_direction_turn_rate"],
                                      nominal_summary["worst_direction_turn_rate"]),
        }

    def targets(self, row: ScenarioResult) -> dict[str, dict[str, Any]]:
        """The stress targets of one row (none for nominal and combined scenarios)."""
        if row.scenario is NOMINAL or not row.scenario.single:
            return {}
        m = self.metrics(row.result)
        if self.quadruped:
            return {
                "fall_rate": _target(m["fall_rate"], "at_most", TARGET_FALL_RATE),
                "planar_error_ratio": _target(m["planar_error_ratio"], "at_most", TARGET_PLANAR_ERROR_RATIO),
            }
        return {"worst_direction_turn_rate": _target(m["worst_direction_turn_rate"], "at_least",
                                                     TARGET_VALVE_TURN_RATE)}

    @property
    def failed(self) -> list[str]:
        """Names of the scenarios that miss a target."""
        return [row.scenario.name for row in self.rows
                if any(not t["met"] for t in self.targets(row).values())]

    def as_dict(self) -> dict[str, Any]:
        return nan_to_none({
            "env_id": self.env_id,
            "episodes_per_case": self.episodes_per_case,
            "domain_randomization": self.domain_randomization,
            "targets_missed": self.failed,
            "scenarios": [
                {
                    "name": row.scenario.name,
                    "held_out": row.scenario.held_out,
                    "training": row.scenario.training,
                    "env_config": list(row.scenario.env_config),
                    "single": row.scenario.single,
                    **self.metrics(row.result),
                    "targets": self.targets(row),
                    "cases": row.result.as_dict(),
                }
                for row in self.rows
            ],
        })

    def format_table(self) -> str:
        """One line per world (Markdown-compatible)."""
        if self.quadruped:
            lines = ["| world | held out | training saw | falls | planar error m/s (x nominal) "
                     "| yaw error rad/s (x nominal) | targets |", "|---|---|---|---|---|---|---|"]
        else:
            lines = ["| world | held out | training saw | worse-direction turn rate rad/s (x nominal) "
                     "| both directions rad/s | targets |", "|---|---|---|---|---|---|"]
        for row in self.rows:
            m = self.metrics(row.result)
            targets = self.targets(row)
            verdict = "-" if not targets else ("met" if all(t["met"] for t in targets.values()) else "MISSED")
            s = row.scenario
            if self.quadruped:
                falls = sum(e.fell for e in row.result.episodes)
                lines.append(
                    f"| {s.name} | {s.held_out} | {s.training} | {falls}/{len(row.result.episodes)} "
                    f"| {_number(m['walking_planar_error'], m['planar_error_ratio'])} "
                    f"| {_number(m['turn_yaw_error'], m['yaw_error_ratio'])} | {verdict} |")
            else:
                lines.append(
                    f"| {s.name} | {s.held_out} | {s.training} "
                    f"| {_number(m['worst_direction_turn_rate'], m['turn_rate_ratio'], 2)} "
                    f"| {_number(m['turn_rate'], math.nan, 2)} | {verdict} |")
        return "\n".join(lines)

    def plot(self, path: Path, title: str = "") -> None:
        """A bar per world: the headline metric beside nominal, the target drawn in."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        names = [row.scenario.name for row in self.rows]
        metrics = [self.metrics(row.result) for row in self.rows]
        if self.quadruped:
            panels = [("walking planar error / nominal", [m["planar_error_ratio"] for m in metrics],
                       TARGET_PLANAR_ERROR_RATIO, "at most"),
                      ("falls (share of episodes)", [m["fall_rate"] for m in metrics], TARGET_FALL_RATE, "at most")]
        else:
            panels = [("turn rate, worse direction (rad/s)", [m["worst_direction_turn_rate"] for m in metrics],
                       TARGET_VALVE_TURN_RATE, "at least")]
        fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 0.45 * len(names) + 1.5),
                                 squeeze=False)
        for ax, (label, values, bound, kind) in zip(axes[0], panels, strict=True):
            colors = []
            for row, value in zip(self.rows, values, strict=True):
                if row.scenario is NOMINAL:
                    colors.append("tab:gray")
                elif not row.scenario.single:
                    colors.append("tab:purple")
                else:
                    ok = value <= bound if kind == "at most" else value >= bound
                    colors.append("tab:green" if ok else "tab:red")
            y = np.arange(len(names))
            ax.barh(y, [0 if not math.isfinite(v) else v for v in values], color=colors)
            ax.axvline(bound, color="black", linestyle="--", linewidth=1, label=f"target: {kind} {bound:g}")
            ax.set_yticks(y, names)
            ax.invert_yaxis()
            ax.set_xlabel(label)
            ax.legend(loc="lower right", fontsize=8)
        fig.suptitle(title or f"{self.env_id}: held-out worlds, {self.episodes_per_case} episodes per case "
                     f"({'DR on' if self.domain_randomization else 'DR off'} otherwise)", fontsize=10)
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)


def _number(value: float, ratio: float, digits: int = 3) -> str:
    """``0.123 (1.50x)``; ``-`` where there is nothing to judge (nan)."""
    if not math.isfinite(value):
        return "-"
    return f"{value:.{digits}f}" + (f" ({ratio:.2f}x)" if math.isfinite(ratio) else "")


def _ratio(value: float, nominal: float) -> float:
    if not (math.isfinite(value) and math.isfinite(nominal)) or nominal <= 0:
        return math.nan
    return value / nominal


def _target(value: float, kind: str, bound: float) -> dict[str, Any]:
    met = math.isfinite(value) and (value <= bound if kind == "at_most" else value >= bound)
    return {"value": value, kind: bound, "met": bool(met)}


def scenarios_for(env_id: str, env_config: Sequence[str] = ()) -> tuple[StressScenario, ...]:
    """The held-out worlds of ``env_id`` (its robot as ``env_config`` builds it)."""
    task = judge.get_judge(env_id)
    if task.stress_scenarios is None:
        with_suite = [name for name, j in judge.JUDGES.items() if j.stress_scenarios is not None]
        raise ValueError(f"{env_id} has no stress suite; tasks with one: {with_suite}")
    env = task.make_env(False, env_config, None)
    try:
        return task.stress_scenarios(env)
    finally:
        env.close()


def select(scenarios: Sequence[StressScenario], names: Sequence[str] | None) -> list[StressScenario]:
    """The scenarios named (all when None), in the suite's order; an unknown name is an
    error that lists the known ones."""
    if not names:
        return list(scenarios)
    known = {s.name: s for s in scenarios}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown stress scenario(s) {unknown}; this task's: {list(known)}")
    return [s for s in scenarios if s.name in names]


def run_stress(
    env_id: str,
    policy: Policy,
    episodes_per_case: int,
    seed: int,
    domain_randomization: bool = True,
    env_config: Sequence[str] = (),
    cases: Sequence[Any] | None = None,
    scenario_names: Sequence[str] | None = None,
    progress: bool = False,
    trained_env_config: Sequence[str] | None = None,
) -> StressResult:
    """Judge ``policy`` nominally and in each scenario, same seeds and cases throughout.

    ``env_config`` is the nominal world the scenarios are applied to; ``trained_env_config``
    (default: the same) is the task the policy trained on, whose ranges each row quotes as
    "what the training saw": a policy trained on wider ranges can be judged in the default
    world and still be described by its own training."""
    task = judge.get_judge(env_id)
    if task.stress_scenarios is None:
        scenarios_for(env_id, env_config)  # the error that lists the tasks with a suite
    list_scenarios = task.stress_scenarios

    def judged(scenario: StressScenario, env: Any) -> ScenarioResult:
        env.set_stress(scenario.stress)
        return ScenarioResult(scenario, task.judge(policy, episodes_per_case, seed, domain_randomization, (),
                                                   cases, False, env))

    # The nominal world's env also names the robot's scenarios (the payload is a share of its
    # mass); a name that is not one is refused before anything runs.
    env = task.make_env(domain_randomization, tuple(env_config), None)
    bar = None
    try:
        if trained_env_config is None or tuple(trained_env_config) == tuple(env_config):
            scenarios = select(list_scenarios(env), scenario_names)
        else:
            trained_env = task.make_env(domain_randomization, tuple(trained_env_config), None)
            try:
                scenarios = select(list_scenarios(trained_env), scenario_names)
            finally:
                trained_env.close()
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=1 + len(scenarios), unit="world", desc="stress", leave=False)
            bar.set_postfix_str(NOMINAL.name)
        rows = [judged(NOMINAL, env)]
        for scenario in scenarios:
            env.close()
            if bar is not None:
                bar.update(1)
                bar.set_postfix_str(scenario.name)
            env = task.make_env(domain_randomization, (*env_config, *scenario.env_config), None)
            rows.append(judged(scenario, env))
        if bar is not None:
            bar.update(1)
    finally:
        env.close()
        if bar is not None:
            bar.close()
    return StressResult(env_id, rows, episodes_per_case, domain_randomization)
