"""Task metrics of the hand tasks, measured from simulator state: the hand's judge.

A hand policy is judged by how the object turns, not by its return. For each direction the
judge runs whole episodes with that direction pinned and reads the object's rotation from
the simulator (not from the reward, not from the noisy encoder observation):

- valve (``HandValveTurn-v0``): the hinge angle, unwrapped (whole turns count);
- free cube (``HandCubeRotate-v0``, always counter-clockwise): the net turn of the cube's
  heading about the world vertical (robots/hand/heading.py: the twist of its orientation,
  a function of the orientation alone), accumulated control step by control step, so a
  tilted cube turning is read exactly and a cube rocked on two axes back to where it
  started nets zero (the integral of its world-z angular velocity would not).

Per episode:

- turn rate: net angle turned in the commanded direction divided by the full episode's
  duration, rad/s; a dropped cube turns no further, so a drop early in the episode cannot
  read better than a slow turn that lasts (drops themselves are counted apart);
- angle: net angle in the commanded direction, rad;
- time to the first half turn (pi rad in the commanded direction), s; nan when never;
- drops (cube only): the task's own drop test (the cube below the palm or too far away).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from sim2real.robots.hand.heading import heading_increment
from sim2real.train.judging import format_target_lines, nan_to_none, run_cases

VALVE_ENV_ID = "sim2real/HandValveTurn-v0"
CUBE_ENV_ID = "sim2real/HandCubeRotate-v0"
HAND_ENV_IDS = (VALVE_ENV_ID, CUBE_ENV_ID)

HALF_TURN = math.pi

# Targets (issue 11): what a policy must meet to ship.
TARGET_VALVE_TURN_RATE = 0.8
"""rad/s, mean in the commanded direction, in each direction."""
TARGET_CUBE_TURN_RATE = 0.3
"""rad/s, mean, counter-clockwise."""
TARGET_CUBE_DROP_RATE = 0.10
"""Share of episodes in which the cube falls off the hand."""


@dataclasses.dataclass(frozen=True)
class TurnDirection:
    """One judged direction: +1 counter-clockwise, -1 clockwise (seen from above)."""

    name: str
    direction: int

    @classmethod
    def parse(cls, text: str) -> TurnDirection:
        """``ccw`` / ``counter-clockwise`` / ``+1`` or ``cw`` / ``clockwise`` / ``-1``."""
        key = text.strip().lower()
        if key in ("ccw", "counter-clockwise", "counterclockwise", "+1", "1"):
            return COUNTER_CLOCKWISE
        if key in ("cw", "clockwise", "-1"):
            return CLOCKWISE
        raise ValueError(
            f"direction {text!r}: expected ccw (counter-clockwise, +1) or cw (clockwise, -1)"
        )


COUNTER_CLOCKWISE = TurnDirection("counter-clockwise", +1)
CLOCKWISE = TurnDirection("clockwise", -1)


def default_directions(env_id: str) -> tuple[TurnDirection, ...]:
    """The valve is judged both ways; the cube task only ever asks for counter-clockwise."""
    return (COUNTER_CLOCKWISE, CLOCKWISE) if env_id == VALVE_ENV_ID else (COUNTER_CLOCKWISE,)


@dataclasses.dataclass(frozen=True)
class TurnEpisode:
    """What one judged episode did."""

    dropped: bool
    turn_rate: float
    """Net angle in the commanded direction / the full episode's duration, rad/s."""
    angle: float
    """Net angle turned in the commanded direction, rad."""
    time_to_half_turn: float
    """Seconds until the object first reached pi rad in the commanded direction; nan if
    never."""
    length: int
    episode_return: float
    reward_terms: dict[str, float] = dataclasses.field(default_factory=dict)

    @property
    def fell(self) -> bool:
        """The episode's failure (a drop), under the name every judge shares."""
        return self.dropped


@dataclasses.dataclass(frozen=True)
class DirectionMetrics:
    """One row of the table: a direction's episodes, aggregated."""

    case: TurnDirection
    episodes: list[TurnEpisode]

    @property
    def drops(self) -> int:
        return sum(e.dropped for e in self.episodes)

    @property
    def half_turns_reached(self) -> int:
        return sum(math.isfinite(e.time_to_half_turn) for e in self.episodes)

    def mean(self, field: str) -> float:
        values = [getattr(e, field) for e in self.episodes]
        finite = [v for v in values if math.isfinite(v)]
        return float(np.mean(finite)) if finite else math.nan

    def as_dict(self) -> dict[str, Any]:
        return {
            "direction": self.case.name,
            "sign": self.case.direction,
            "episodes": len(self.episodes),
            "drops": self.drops,
            "turn_rate": self.mean("turn_rate"),
            "angle": self.mean("angle"),
            "half_turns_reached": self.half_turns_reached,
            "time_to_half_turn": self.mean("time_to_half_turn"),
            "length_mean": self.mean("length"),
            "return_mean": self.mean("episode_return"),
        }


@dataclasses.dataclass(frozen=True)
class TurnJudgeResult:
    """The judge's verdict over every direction."""

    env_id: str
    rows: list[DirectionMetrics]

    failure_name = "drops"
    preamble = "task metrics from simulator state (the object's rotation over whole episodes):"

    @property
    def episodes(self) -> list[TurnEpisode]:
        return [e for row in self.rows for e in row.episodes]

    @property
    def turn_rate(self) -> float:
        """Mean over every judged episode, rad/s in the commanded direction."""
        return float(np.mean([e.turn_rate for e in self.episodes]))

    @property
    def worst_direction_turn_rate(self) -> float:
        """The lower of the directions' mean turn rates: a valve policy must turn both ways."""
        return min(row.mean("turn_rate") for row in self.rows)

    @property
    def drop_rate(self) -> float:
        episodes = self.episodes
        return sum(e.dropped for e in episodes) / len(episodes)

    def targets(self) -> dict[str, dict[str, Any]]:
        """Each target: the measured value, its bound (at_least or at_most), met or not."""
        if self.env_id == VALVE_ENV_ID:
            checks = {"worst_direction_turn_rate": (self.worst_direction_turn_rate,
                                                    "at_least", TARGET_VALVE_TURN_RATE)}
        else:
            checks = {
                "turn_rate": (self.turn_rate, "at_least", TARGET_CUBE_TURN_RATE),
                "drop_rate": (self.drop_rate, "at_most", TARGET_CUBE_DROP_RATE),
            }
        out = {}
        for name, (value, kind, bound) in checks.items():
            met = value >= bound if kind == "at_least" else value <= bound
            out[name] = {"value": value, kind: bound, "met": bool(met)}
        return out

    def summary(self) -> dict[str, float]:
        """The headline numbers (TensorBoard, metrics.jsonl, the learning curve)."""
        summary = {"turn_rate": self.turn_rate,
                   "worst_direction_turn_rate": self.worst_direction_turn_rate}
        if self.env_id == CUBE_ENV_ID:
            summary["drop_rate"] = self.drop_rate
        return summary

    def row_scalars(self) -> dict[str, float]:
        """Per-row numbers for TensorBoard, keyed metric/row."""
        out = {}
        for row in self.rows:
            key = row.case.name.replace(" ", "_")
            out[f"turn_rate/{key}"] = row.mean("turn_rate")
            out[f"angle/{key}"] = row.mean("angle")
        return out

    def short_text(self) -> str:
        """One line for the training log."""
        parts = [f"turn rate {self.turn_rate:+.3f} rad/s (worst direction "
                 f"{self.worst_direction_turn_rate:+.3f})"]
        if self.env_id == CUBE_ENV_ID:
            parts.append(f"drops {self.drop_rate:.0%}")
        return ", ".join(parts)

    def as_dict(self) -> dict[str, Any]:
        return nan_to_none({
            **self.summary(),
            "targets": self.targets(),
            "directions": [row.as_dict() for row in self.rows],
        })

    def format_table(self) -> str:
        """The per-direction table as text (Markdown-compatible)."""
        lines = [
            "| direction | drops | turn rate rad/s | angle rad | half turn reached "
            "| time to half turn s | mean length |",
            "|---|---|---|---|---|---|---|",
        ]
        for row in self.rows:
            d = row.as_dict()
            lines.append(
                f"| {row.case.name} | {d['drops']}/{d['episodes']} | {d['turn_rate']:+.3f} "
                f"| {d['angle']:+.2f} | {d['half_turns_reached']}/{d['episodes']} "
                f"| {seconds_or_never(d['time_to_half_turn'])} | {d['length_mean']:.0f} |"
            )
        return "\n".join(lines)

    def format_targets(self) -> str:
        names = {
            "worst_direction_turn_rate": "turn rate, worse of the two directions (rad/s)",
            "turn_rate": "turn rate, counter-clockwise (rad/s)",
            "drop_rate": "drops (share of episodes)",
        }
        return format_target_lines(self.targets(), names)


def seconds_or_never(value: float, decimals: int = 2, unit: str = "") -> str:
    """A time to show, "never" for a half turn not reached (nan)."""
    return "never" if not math.isfinite(value) else f"{value:.{decimals}f}{unit}"


class _AngleReader:
    """Net angle turned since reset, counter-clockwise positive, from simulator state."""

    def __init__(self, env: Any) -> None:
        self.env = env
        self.valve = hasattr(env, "valve_angle")
        if self.valve:
            self.start = env.valve_angle()
        else:
            self.last_quat = env.cube_quat().copy()
            self.total = 0.0

    def __call__(self) -> float:
        if self.valve:
            return self.env.valve_angle() - self.start
        quat = self.env.cube_quat().copy()
        # The net turn of the cube's heading (robots/hand/heading.py): a wobble that comes
        # back to where it started has not turned.
        self.total += heading_increment(self.last_quat, quat)
        self.last_quat = quat
        return self.total


Policy = Callable[[np.ndarray], np.ndarray]
FrameSink = Callable[[np.ndarray, TurnDirection, dict[str, float]], None]
"""Receives each rendered frame with the direction and what was measured at that step."""


def run_turn_episode(
    env: Any,
    policy: Policy,
    case: TurnDirection,
    seed: int,
    frame_sink: FrameSink | None = None,
    max_steps: int | None = None,
) -> TurnEpisode:
    """One episode of ``env`` (a hand env) turning ``case``'s way; with ``max_steps``, only
    its first steps (for rendering)."""
    valve = hasattr(env, "valve_angle")
    if not valve and case.direction != +1:
        raise ValueError("the cube task only rewards counter-clockwise turning: direction "
                         f"must be counter-clockwise, got {case.name}")
    options = {"direction": case.direction} if valve else None
    obs, _ = env.reset(seed=seed, options=options)
    read_angle = _AngleReader(env)
    dt = env.control_dt
    total, length, dropped = 0.0, 0, False
    angle, time_to_half = 0.0, math.nan
    term_sums: dict[str, float] = {}
    if frame_sink is not None:
        frame_sink(env.render(), case, {"angle": 0.0, "rate": 0.0, "t": 0.0})
    while True:
        action = np.clip(policy(obs[None].astype(np.float32))[0], -1.0, 1.0)
        obs, reward, terminated, truncated, info = env.step(action)
        total += float(reward)
        for name, value in info.get("reward_terms", {}).items():
            term_sums[name] = term_sums.get(name, 0.0) + float(value)
        length += 1
        previous, angle = angle, read_angle()
        if math.isnan(time_to_half) and case.direction * angle >= HALF_TURN:
            time_to_half = length * dt
        if frame_sink is not None:
            frame_sink(env.render(), case, {"angle": case.direction * angle,
                                            "rate": case.direction * (angle - previous) / dt,
                                            "t": length * dt})
        if terminated:
            dropped = True  # the hand tasks terminate only when the cube falls off
            break
        if truncated or (max_steps is not None and length >= max_steps):
            break
    horizon = max_steps or env.config.episode_steps
    signed = case.direction * angle
    return TurnEpisode(
        dropped=dropped,
        turn_rate=signed / (max(horizon, length) * dt),
        angle=signed,
        time_to_half_turn=time_to_half,
        length=length,
        episode_return=total,
        reward_terms=term_sums,
    )


def judge_turning(
    env_id: str,
    policy: Policy,
    episodes_per_direction: int,
    seed: int,
    domain_randomization: bool = True,
    env_config: Sequence[str] = (),
    directions: Sequence[TurnDirection] | None = None,
    env: Any = None,
    progress: bool = False,
) -> TurnJudgeResult:
    """Judge ``policy`` on each direction for ``episodes_per_direction`` episodes (seeds
    ``seed``, ``seed + 1``, ... for every direction, so rows differ only in the
    direction)."""
    if env_id not in HAND_ENV_IDS:
        raise ValueError(f"the turning judge applies to {HAND_ENV_IDS}, not {env_id}")
    directions = tuple(directions or default_directions(env_id))
    own_env = env is None
    if own_env:
        env = make_hand_env(env_id, domain_randomization, env_config)
    try:
        rows = run_cases(directions, episodes_per_direction, seed,
                         lambda case, s: run_turn_episode(env, policy, case, s), progress)
    finally:
        if own_env:
            env.close()
    rows = [DirectionMetrics(case, episodes) for case, episodes in rows]
    return TurnJudgeResult(env_id, rows)


def make_hand_env(
    env_id: str, domain_randomization: bool, env_config: Sequence[str] = (),
    render_mode: str | None = None,
) -> Any:
    from sim2real.robots import registry

    kwargs: dict[str, Any] = {"domain_randomization": domain_randomization}
    if env_config:
        kwargs["config"] = registry.task_config(env_id, env_config)
    return registry.get_record(env_id).load_class()(render_mode=render_mode, **kwargs)
