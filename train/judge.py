"""Task metrics of the joystick quadruped, measured from simulator state: the judge.

A policy is judged by what the robot does, not by its return. For each of a fixed set of
velocity commands the judge runs whole episodes with that command pinned (no resampling),
and reads, from the free joint of the trunk (not from the reward, not from the noisy
observation):

- planar velocity error: mean over the judged steps of |cmd_xy - v_xy|, m/s, with v the
  trunk velocity in its heading frame (world velocity rotated by minus the yaw); the
  steps a fall cut off count as not moving (|cmd_xy| each);
- yaw-rate error: mean of |cmd_yaw - w_z|, rad/s, w_z about the world vertical;
- falls: the trunk tilts past 60 degrees or its origin drops below 0.12 m (judge constants,
  independent of the task's own termination settings), or the env terminates;
- distance: net horizontal displacement of the trunk over the episode, m;
- episode length.

The first second of each episode is not judged: the robot starts from rest, and no
controller reaches a commanded speed instantly.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from sim2real.robots.quadruped import constants as quadruped_constants
from sim2real.robots.stress import StressScenario
from sim2real.train import hand_judge
from sim2real.train.judging import format_target_lines, nan_to_none, run_cases

QUADRUPED_ENV_ID = "sim2real/QuadrupedJoystick-v0"

SETTLE_S = quadruped_constants.TRACKING_SETTLE_S
"""Seconds at the start of an episode that are not judged."""
FALL_UP_Z = 0.5
"""A fall: the trunk's up-vector z below this (tilted more than 60 degrees)..."""
FALL_HEIGHT = 0.12
"""...or the trunk origin below this height, m (Go1 standing: about 0.27 m); a robot
whose spec states another fall height (task.fall_height: Laikago 0.15, Mini Cheetah 0.1)
is judged by its own, never by the task config's override."""

# Targets of the joystick task (issue 10): what a policy must meet to ship.
TARGET_FALL_RATE = 0.05
TARGET_WALKING_PLANAR_ERROR = 0.15
TARGET_TURN_YAW_ERROR = 0.2
# No command hidden inside a mean (issue 27): each walking command on its own, the yaw of
# commands that walk and turn, and standing still. A command the judge was not given is
# not judged (no target); the three above always are.
TARGET_EACH_WALKING_PLANAR_ERROR = 0.2
"""Every walking command's planar error, m/s: a third above the mean's bound, so that the
mean can still average a harder command (forward 1.0) with easier ones, but none can be
left behind."""
TARGET_WALK_AND_TURN_YAW_ERROR = 0.2
"""Mean yaw-rate error over the commands that walk and turn, rad/s (the turn target's)."""
TARGET_STAND_PLANAR_ERROR = 0.1
"""Planar drift when told to stand, m/s."""
TARGET_STAND_YAW_ERROR = 0.2
"""Yaw drift when told to stand, rad/s."""


@dataclasses.dataclass(frozen=True)
class JoystickCommand:
    """One fixed command: planar velocity (m/s, heading frame) and yaw rate (rad/s)."""

    name: str
    vx: float
    vy: float
    yaw_rate: float

    @property
    def vector(self) -> tuple[float, float, float]:
        return (self.vx, self.vy, self.yaw_rate)

    @property
    def walking(self) -> bool:
        """Asks for planar motion (counts toward the walking tracking target)."""
        return math.hypot(self.vx, self.vy) > 1e-9

    @property
    def turning_in_place(self) -> bool:
        return not self.walking and abs(self.yaw_rate) > 1e-9

    @property
    def walking_and_turning(self) -> bool:
        return self.walking and abs(self.yaw_rate) > 1e-9

    @property
    def standing(self) -> bool:
        return not self.walking and abs(self.yaw_rate) <= 1e-9

    @classmethod
    def parse(cls, text: str) -> JoystickCommand:
        """``NAME=VX,VY,YAW`` or ``VX,VY,YAW`` (then named by its numbers)."""
        name, sep, numbers = text.partition("=")
        if not sep:
            name, numbers = "", text
        parts = numbers.split(",")
        try:
            values = [float(p) for p in parts]
        except ValueError:
            values = []
        if len(values) != 3 or not all(math.isfinite(v) for v in values):
            raise ValueError(
                f"command {text!r}: expected [NAME=]VX,VY,YAW (three numbers: m/s, m/s, "
                f"rad/s), e.g. forward=0.5,0,0"
            )
        name = name.strip() or f"({values[0]:g}, {values[1]:g}, {values[2]:g})"
        return cls(name, *values)


DEFAULT_COMMANDS: tuple[JoystickCommand, ...] = (
    JoystickCommand("stand", 0.0, 0.0, 0.0),
    JoystickCommand("forward 0.5", 0.5, 0.0, 0.0),
    JoystickCommand("forward 1.0", 1.0, 0.0, 0.0),
    JoystickCommand("backward 0.5", -0.5, 0.0, 0.0),
    JoystickCommand("sideways 0.4", 0.0, 0.4, 0.0),
    JoystickCommand("turn 0.8", 0.0, 0.0, 0.8),
    JoystickCommand("forward 0.6 + turn 0.5", 0.6, 0.0, 0.5),
)


@dataclasses.dataclass(frozen=True)
class EpisodeMetrics:
    """What one judged episode did."""

    fell: bool
    planar_error: float
    """Mean |cmd_xy - v_xy| over the judged steps, m/s; after a fall, the steps the episode
    did not play count |cmd_xy| each (not moving)."""
    yaw_error: float
    """Mean |cmd_yaw - w_z| over the judged steps, rad/s; after a fall, |cmd_yaw| each."""
    mean_vx: float
    """Mean measured heading-frame velocity and yaw rate over the judged steps."""
    mean_vy: float
    mean_yaw_rate: float
    distance: float
    """Net horizontal displacement of the trunk, start to end, m."""
    length: int
    episode_return: float
    reward_terms: dict[str, float] = dataclasses.field(default_factory=dict)
    """Episode sum of each reward term."""


@dataclasses.dataclass(frozen=True)
class CommandMetrics:
    """One row of the judge's table: a command's episodes, aggregated."""

    command: JoystickCommand
    episodes: list[EpisodeMetrics]

    @property
    def falls(self) -> int:
        return sum(e.fell for e in self.episodes)

    def mean(self, field: str) -> float:
        values = [getattr(e, field) for e in self.episodes]
        finite = [v for v in values if math.isfinite(v)]
        return float(np.mean(finite)) if finite else math.nan

    def as_dict(self) -> dict[str, Any]:
        return {
            "command": self.command.name,
            "vx": self.command.vx,
            "vy": self.command.vy,
            "yaw_rate": self.command.yaw_rate,
            "episodes": len(self.episodes),
            "falls": self.falls,
            "planar_error": self.mean("planar_error"),
            "yaw_error": self.mean("yaw_error"),
            "measured_vx": self.mean("mean_vx"),
            "measured_vy": self.mean("mean_vy"),
            "measured_yaw_rate": self.mean("mean_yaw_rate"),
            "distance": self.mean("distance"),
            "length_mean": self.mean("length"),
            "return_mean": self.mean("episode_return"),
        }


@dataclasses.dataclass(frozen=True)
class JudgeResult:
    """The judge's verdict over every command."""

    rows: list[CommandMetrics]

    failure_name = "falls"
    preamble = (f"task metrics from simulator state (the first {SETTLE_S:g} s of each episode "
                "not judged):")

    @property
    def episodes(self) -> list[EpisodeMetrics]:
        return [e for row in self.rows for e in row.episodes]

    @property
    def fall_rate(self) -> float:
        episodes = self.episodes
        return sum(e.fell for e in episodes) / len(episodes)

    @property
    def walking_planar_error(self) -> float:
        """Mean planar error over the commands that ask for planar motion (nan if none)."""
        values = [row.mean("planar_error") for row in self.rows if row.command.walking]
        values = [v for v in values if math.isfinite(v)]
        return float(np.mean(values)) if values else math.nan

    @property
    def turn_yaw_error(self) -> float:
        """Mean yaw-rate error over the turn-in-place commands (nan if none)."""
        values = [row.mean("yaw_error") for row in self.rows if row.command.turning_in_place]
        values = [v for v in values if math.isfinite(v)]
        return float(np.mean(values)) if values else math.nan

    def _mean_over(self, field: str, rows: list[CommandMetrics]) -> float:
        values = [row.mean(field) for row in rows]
        values = [v for v in values if math.isfinite(v)]
        return float(np.mean(values)) if values else math.nan

    def targets(self) -> dict[str, dict[str, Any]]:
        """Each target of the task: the measured value, the bound, met or not (a nan
        value, i.e. nothing to judge, is not met). The first three always; the others for
        the commands judged (every walking command on its own, walking while turning,
        standing)."""
        checks = {
            "fall_rate": (self.fall_rate, TARGET_FALL_RATE),
            "walking_planar_error": (self.walking_planar_error, TARGET_WALKING_PLANAR_ERROR),
            "turn_yaw_error": (self.turn_yaw_error, TARGET_TURN_YAW_ERROR),
        }
        walking = [row for row in self.rows if row.command.walking]
        if walking:
            errors = [row.mean("planar_error") for row in walking]
            worst = max(errors) if all(math.isfinite(e) for e in errors) else math.nan
            checks["each_walking_planar_error"] = (worst, TARGET_EACH_WALKING_PLANAR_ERROR)
        both = [row for row in self.rows if row.command.walking_and_turning]
        if both:
            checks["walk_and_turn_yaw_error"] = (self._mean_over("yaw_error", both), TARGET_WALK_AND_TURN_YAW_ERROR)
        stand = [row for row in self.rows if row.command.standing]
        if stand:
            checks["stand_planar_error"] = (self._mean_over("planar_error", stand), TARGET_STAND_PLANAR_ERROR)
            checks["stand_yaw_error"] = (self._mean_over("yaw_error", stand), TARGET_STAND_YAW_ERROR)
        return {
            name: {"value": value, "at_most": bound, "met": bool(value <= bound)}
            for name, (value, bound) in checks.items()
        }

    def worst_walking_command(self) -> str | None:
        """The walking command tracked worst (its name), None without walking commands."""
        walking = [row for row in self.rows if row.command.walking and math.isfinite(row.mean("planar_error"))]
        return max(walking, key=lambda row: row.mean("planar_error")).command.name if walking else None

    def summary(self) -> dict[str, float]:
        """The headline numbers (for TensorBoard, metrics.jsonl and the learning curve)."""
        return {
            "fall_rate": self.fall_rate,
            "walking_planar_error": self.walking_planar_error,
            "turn_yaw_error": self.turn_yaw_error,
        }

    def row_scalars(self) -> dict[str, float]:
        """Per-row numbers for TensorBoard, keyed metric/row."""
        out = {}
        for row in self.rows:
            key = row.command.name.replace(" ", "_")
            out[f"planar_error/{key}"] = row.mean("planar_error")
            out[f"yaw_error/{key}"] = row.mean("yaw_error")
        return out

    def short_text(self) -> str:
        """One line for the training log."""
        return (f"falls {self.fall_rate:.0%}, planar error (walking) "
                f"{self.walking_planar_error:.3f} m/s, yaw error (turn) "
                f"{self.turn_yaw_error:.3f} rad/s")

    def as_dict(self) -> dict[str, Any]:
        """Everything, JSON-safe: a value with nothing to judge (nan) is None."""
        return nan_to_none({
            **self.summary(),
            "targets": self.targets(),
            "commands": [row.as_dict() for row in self.rows],
        })

    def format_table(self) -> str:
        """The per-command table as text (Markdown-compatible)."""
        lines = [
            "| command (vx, vy, yaw) | falls | planar vel. error m/s | yaw-rate error rad/s "
            "| measured (vx, vy, yaw) | distance m | mean length |",
            "|---|---|---|---|---|---|---|",
        ]
        for row in self.rows:
            d = row.as_dict()
            c = row.command
            lines.append(
                f"| {c.name} ({c.vx:g}, {c.vy:g}, {c.yaw_rate:g}) | {d['falls']}/{d['episodes']} "
                f"| {d['planar_error']:.3f} | {d['yaw_error']:.3f} "
                f"| ({d['measured_vx']:+.2f}, {d['measured_vy']:+.2f}, {d['measured_yaw_rate']:+.2f}) "
                f"| {d['distance']:.2f} | {d['length_mean']:.0f} |"
            )
        return "\n".join(lines)

    def format_targets(self) -> str:
        worst = self.worst_walking_command()
        names = {
            "fall_rate": "falls (share of episodes)",
            "walking_planar_error": "planar velocity error, walking commands (m/s)",
            "turn_yaw_error": "yaw-rate error, turn in place (rad/s)",
            "each_walking_planar_error": f"planar velocity error, worst walking command: {worst} (m/s)",
            "walk_and_turn_yaw_error": "yaw-rate error, walking while turning (rad/s)",
            "stand_planar_error": "planar drift, stand (m/s)",
            "stand_yaw_error": "yaw drift, stand (rad/s)",
        }
        return format_target_lines(self.targets(), names)


Policy = Callable[[np.ndarray], np.ndarray]
FrameSink = Callable[[np.ndarray, JoystickCommand, dict[str, float]], None]
"""Receives each rendered frame with the command and what was measured at that step."""


def run_judged_episode(
    env: Any,
    policy: Policy,
    command: JoystickCommand,
    seed: int,
    frame_sink: FrameSink | None = None,
    max_steps: int | None = None,
) -> EpisodeMetrics:
    """One episode of ``env`` (a QuadrupedJoystickEnv) with ``command`` pinned; with
    ``max_steps``, only its first steps (for rendering)."""
    obs, _ = env.reset(seed=seed, options={"command": command.vector})
    robot = getattr(env, "robot", None)
    fall_height = robot.spec.fall_height if robot is not None else FALL_HEIGHT
    settle_steps = round(SETTLE_S / env.control_dt)
    start = env.trunk_position()[:2]
    cmd_xy = np.array([command.vx, command.vy])
    planar_errors: list[float] = []
    yaw_errors: list[float] = []
    velocities: list[tuple[float, float, float]] = []
    total, length, fell = 0.0, 0, False
    term_sums: dict[str, float] = {}
    if frame_sink is not None:
        frame_sink(env.render(), command, {"vx": 0.0, "vy": 0.0, "yaw_rate": 0.0, "t": 0.0})
    while True:
        action = np.clip(policy(obs[None].astype(np.float32))[0], -1.0, 1.0)
        obs, reward, terminated, truncated, info = env.step(action)
        total += float(reward)
        for name, value in info.get("reward_terms", {}).items():
            term_sums[name] = term_sums.get(name, 0.0) + float(value)
        length += 1
        v = env.heading_frame_velocity()
        yaw_rate = env.world_yaw_rate()
        if length > settle_steps:
            planar_errors.append(float(np.linalg.norm(cmd_xy - v)))
            yaw_errors.append(abs(command.yaw_rate - yaw_rate))
            velocities.append((float(v[0]), float(v[1]), yaw_rate))
        if frame_sink is not None:
            measured = {"vx": float(v[0]), "vy": float(v[1]), "yaw_rate": yaw_rate,
                        "t": length * env.control_dt}
            frame_sink(env.render(), command, measured)
        if env.upvector()[2] < FALL_UP_Z or env.trunk_height() < fall_height or terminated:
            fell = True
            break
        if truncated or (max_steps is not None and length >= max_steps):
            break
    if fell:
        # The steps a fall cut off count as a robot that did not move (the command's own
        # size): a lunge that tracks for a moment and falls never reads better than
        # walking the whole episode. Falls themselves are counted apart.
        horizon = (max_steps or env.config.episode_steps) - settle_steps
        missing = max(0, horizon - len(planar_errors))
        planar_errors += [float(np.linalg.norm(cmd_xy))] * missing
        yaw_errors += [abs(command.yaw_rate)] * missing
    mean_v = np.mean(velocities, axis=0) if velocities else np.full(3, math.nan)
    distance = float(np.linalg.norm(env.trunk_position()[:2] - start))
    return EpisodeMetrics(
        fell=fell,
        planar_error=float(np.mean(planar_errors)) if planar_errors else math.nan,
        yaw_error=float(np.mean(yaw_errors)) if yaw_errors else math.nan,
        mean_vx=float(mean_v[0]),
        mean_vy=float(mean_v[1]),
        mean_yaw_rate=float(mean_v[2]),
        distance=distance,
        length=length,
        episode_return=total,
        reward_terms=term_sums,
    )


def judge_joystick(
    policy: Policy,
    episodes_per_command: int,
    seed: int,
    domain_randomization: bool = True,
    env_config: Sequence[str] = (),
    commands: Sequence[JoystickCommand] = DEFAULT_COMMANDS,
    env: Any = None,
    progress: bool = False,
) -> JudgeResult:
    """Judge ``policy`` on each command for ``episodes_per_command`` episodes (seeds
    ``seed``, ``seed + 1``, ... for every command, so rows differ only in the command)."""
    own_env = env is None
    if own_env:
        env = make_judged_env(domain_randomization, env_config)
    try:
        rows = run_cases(commands, episodes_per_command, seed,
                         lambda command, s: run_judged_episode(env, policy, command, s), progress)
    finally:
        if own_env:
            env.close()
    rows = [CommandMetrics(command, episodes) for command, episodes in rows]
    return JudgeResult(rows)


def make_judged_env(
    domain_randomization: bool, env_config: Sequence[str] = (), render_mode: str | None = None
) -> Any:
    from sim2real.robots import registry

    kwargs: dict[str, Any] = {"domain_randomization": domain_randomization}
    if env_config:
        kwargs["config"] = registry.task_config(QUADRUPED_ENV_ID, env_config)
    return registry.get_record(QUADRUPED_ENV_ID).load_class()(render_mode=render_mode, **kwargs)


# --- every task with a judge, behind one interface -----------------------------------------
# A "case" is what a judged episode pins: a JoystickCommand on the quadruped, a
# hand_judge.TurnDirection on the hand tasks. A result has rows, episodes (each with
# .fell, .episode_return, .length, .reward_terms), summary(), targets(), as_dict(),
# format_table(), format_targets(), row_scalars(), short_text(), failure_name, preamble.
TaskResult = JudgeResult | hand_judge.TurnJudgeResult


@dataclasses.dataclass(frozen=True)
class TaskJudge:
    """What the product needs from a task's judge. Each judged task registers one in
    :data:`JUDGES`; evaluation, training's periodic evaluation, `sim2real eval` and
    `robots view` reach every judge through it, with no env-id checks of their own."""

    cases: Callable[[], tuple[Any, ...]]
    """The cases judged when none are given (commands, turn directions)."""
    parse_case: Callable[[str], Any]
    """A case from the command line text."""
    judge: Callable[[Policy, int, int, bool, Sequence[str], Sequence[Any] | None, bool, Any], TaskResult]
    """(policy, episodes per case, seed, DR, env_config, cases, progress, env) -> the result;
    env None: the judge makes its own from DR and env_config."""
    make_env: Callable[[bool, Sequence[str], str | None], Any]
    """(DR, env_config, render mode) -> the raw env the judge steps."""
    run_episode: Callable[[Any, Policy, Any, int, Callable[[np.ndarray, list[str]], None] | None, int | None], Any]
    """(env, policy, case, seed, frame sink with caption lines, max steps) -> one episode."""
    stress_scenarios: Callable[[Any], tuple[StressScenario, ...]] | None = None
    """(the judged env) -> its held-out worlds (train/stress.py); None: no stress suite."""


def _joystick_episode(env: Any, policy: Policy, case: Any, seed: int,
                      frame_sink: Callable[[np.ndarray, list[str]], None] | None, max_steps: int | None) -> Any:
    sink = None if frame_sink is None else (
        lambda frame, command, measured: frame_sink(frame, joystick_caption(command, measured)))
    return run_judged_episode(env, policy, case, seed, frame_sink=sink, max_steps=max_steps)


def _turn_episode(env: Any, policy: Policy, case: Any, seed: int,
                  frame_sink: Callable[[np.ndarray, list[str]], None] | None, max_steps: int | None) -> Any:
    sink = None if frame_sink is None else (
        lambda frame, direction, measured: frame_sink(frame, turn_caption(direction, measured)))
    return hand_judge.run_turn_episode(env, policy, case, seed, frame_sink=sink, max_steps=max_steps)


def _hand_judge(env_id: str) -> TaskJudge:
    def parse(text: str) -> Any:
        case = hand_judge.TurnDirection.parse(text)
        if case not in hand_judge.default_directions(env_id):
            raise ValueError(f"{env_id} is only judged {[c.name for c in hand_judge.default_directions(env_id)]}, "
                             f"not {case.name}")
        return case

    return TaskJudge(
        cases=lambda: hand_judge.default_directions(env_id),
        parse_case=parse,
        judge=lambda policy, n, seed, dr, env_config, cases, progress, env=None: hand_judge.judge_turning(
            env_id, policy, n, seed, dr, env_config, cases, env=env, progress=progress),
        make_env=lambda dr, env_config, render_mode: hand_judge.make_hand_env(env_id, dr, env_config, render_mode),
        run_episode=_turn_episode,
        stress_scenarios=_valve_stress_scenarios if env_id == hand_judge.VALVE_ENV_ID else None,
    )


def _valve_stress_scenarios(env: Any) -> tuple[StressScenario, ...]:
    from sim2real.robots.hand.stress import stress_scenarios

    return stress_scenarios(env.config.randomization)


def _quadruped_stress_scenarios(env: Any) -> tuple[StressScenario, ...]:
    from sim2real.robots.quadruped.stress import stress_scenarios

    return stress_scenarios(env.robot, env.config.randomization, env.config.terrain)


JUDGES: dict[str, TaskJudge] = {
    # Every quadruped (any robot spec, config.robot) is judged by the joystick judge.
    QUADRUPED_ENV_ID: TaskJudge(
        cases=lambda: DEFAULT_COMMANDS,
        parse_case=JoystickCommand.parse,
        judge=lambda policy, n, seed, dr, env_config, cases, progress, env=None: judge_joystick(
            policy, n, seed, dr, env_config, tuple(cases or DEFAULT_COMMANDS), env=env, progress=progress),
        make_env=make_judged_env,
        run_episode=_joystick_episode,
        stress_scenarios=_quadruped_stress_scenarios,
    ),
    **{env_id: _hand_judge(env_id) for env_id in hand_judge.HAND_ENV_IDS},
}
"""The judge of each judged task, by env id."""


def has_judge(env_id: str) -> bool:
    return env_id in JUDGES


def get_judge(env_id: str) -> TaskJudge:
    try:
        return JUDGES[env_id]
    except KeyError:
        raise ValueError(f"no judge for {env_id}; judged tasks: {list(JUDGES)}") from None


def default_cases(env_id: str) -> tuple[Any, ...]:
    return get_judge(env_id).cases()


def parse_case(env_id: str, text: str) -> Any:
    """A case from the command line: [NAME=]VX,VY,YAW on the quadruped, ccw/cw on the hand."""
    return get_judge(env_id).parse_case(text)


def judge_policy(
    env_id: str,
    policy: Policy,
    episodes_per_case: int,
    seed: int,
    domain_randomization: bool = True,
    env_config: Sequence[str] = (),
    cases: Sequence[Any] | None = None,
    progress: bool = False,
) -> TaskResult:
    """The task's judge on ``policy``: ``episodes_per_case`` episodes per case."""
    return get_judge(env_id).judge(policy, episodes_per_case, seed, domain_randomization, env_config,
                                   cases, progress)


def make_env(env_id: str, domain_randomization: bool, env_config: Sequence[str] = (),
             render_mode: str | None = None) -> Any:
    """The raw (unwrapped) env the judge steps, which exposes simulator state."""
    return get_judge(env_id).make_env(domain_randomization, env_config, render_mode)


def run_case_episode(env_id: str, env: Any, policy: Policy, case: Any, seed: int,
                     frame_sink: Callable[[np.ndarray, list[str]], None] | None = None,
                     max_steps: int | None = None) -> Any:
    """One judged episode; ``frame_sink`` receives each frame with its caption lines."""
    return get_judge(env_id).run_episode(env, policy, case, seed, frame_sink, max_steps)


def joystick_caption(command: JoystickCommand, measured: dict[str, float]) -> list[str]:
    return [
        f"command {command.name}: vx {command.vx:+.2f} vy {command.vy:+.2f} m/s, "
        f"yaw {command.yaw_rate:+.2f} rad/s",
        f"measured t={measured['t']:4.1f} s: vx {measured['vx']:+.2f} vy {measured['vy']:+.2f} "
        f"m/s, yaw {measured['yaw_rate']:+.2f} rad/s",
    ]


def turn_caption(direction: hand_judge.TurnDirection, measured: dict[str, float]) -> list[str]:
    return [
        f"command: turn {direction.name}",
        f"measured t={measured['t']:4.1f} s: turned {measured['angle']:+.2f} rad, "
        f"rate {measured['rate']:+.2f} rad/s (+: the commanded way)",
    ]
