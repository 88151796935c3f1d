"""``sim2real robots``: list the robots and tasks, check a robot spec, roll a robot out,
or render a rollout to a video file."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import tyro

from sim2real.robots import registry
from sim2real.robots.randomization import IntUniform, Uniform, describe, field_docs

QUADRUPED_ENV = "sim2real/QuadrupedJoystick-v0"


@dataclasses.dataclass(frozen=True)
class ListRobots:
    """List every robot task with its observation/action sizes, control rate and DR ranges."""

    env_id: Annotated[str | None, tyro.conf.Positional, tyro.conf.arg(metavar="ENV_ID")] = None
    """Show only this env id (default: all)."""
    json: bool = False
    """Print machine-readable JSON instead of tables."""
    config: bool = False
    """Also list every task config key `sim2real train --env-config KEY=VALUE` can set,
    with its default and meaning."""


@dataclasses.dataclass(frozen=True)
class CheckRobot:
    """Tell whether a quadruped's spec file makes a robot the joystick task can train: it
    builds from its description file, stands under the default PD with domain
    randomization on, and passes gymnasium's env checker. Exit 0 when it does, 2 when not,
    with what failed."""

    spec: Annotated[str, tyro.conf.Positional, tyro.conf.arg(metavar="SPEC")]
    """A shipped robot's name (a1, ...) or the path of a robot spec file (.toml)."""
    seconds: float = 5.0
    """Simulated seconds the robot must stand, holding its standing pose."""
    episodes: int = 3
    """Standing trials, each with its own domain-randomization draw (seeds 0..N-1)."""
    dr: bool = True
    """Domain randomization on while standing (--no-dr: the nominal robot)."""
    xml: Path | None = None
    """Also write the built model as MJCF here, to read or open in MuJoCo's viewer."""
    json: bool = False
    """Print machine-readable JSON instead of text."""

    def __post_init__(self) -> None:
        if not self.seconds > 0:
            raise ValueError(f"seconds must be > 0, got {self.seconds!r}")
        if not 1 <= self.episodes <= 100:
            raise ValueError(f"episodes must be in 1..100, got {self.episodes!r}")


@dataclasses.dataclass(frozen=True)
class ViewRollout:
    """Render a policy offscreen to a video (mp4/gif), or to a strip of frames (png), for
    a person to look at the gait.

    Needs an OpenGL backend: on a headless Linux machine MUJOCO_GL=egl (the default this
    command sets when MUJOCO_GL is unset and there is no DISPLAY) uses Mesa's EGL, which
    renders on the CPU when there is no GPU. With a display, MUJOCO_GL=glfw works too.
    """

    env_id: Annotated[str, tyro.conf.Positional, tyro.conf.arg(metavar="ENV_ID")]
    """Env to roll out, e.g. sim2real/QuadrupedJoystick-v0."""
    out: Path = Path("clip.mp4")
    """Output: .mp4 or .gif for a video, .png for a strip of --frames frames."""
    seconds: float = 5.0
    """Simulated seconds to render; on the joystick task, per command."""
    policy: str = "zero"
    """zero: hold the default pose (a standing robot); random: uniform random actions;
    prior: the env's suggested action alone (the quadruped's trot); or a trained policy:
    an .onnx file from `sim2real export`, a training run directory or a checkpoint file.
    A trained policy runs on the task config it was trained with."""
    command: str | None = None
    """A task with a judge: the one case to pin (default: each of the judge's cases in
    turn, --seconds each). Joystick task: [NAME=]VX,VY,YAW (m/s, m/s, rad/s), e.g.
    forward=0.5,0,0; write --command=-0.5,0,0 or name it (back=-0.5,0,0) when it starts
    with a minus sign. Hand valve: ccw or cw."""
    env_config: tuple[str, ...] | None = None
    """Task config overrides KEY=VALUE (default: a trained policy's own; for a baseline,
    the default task), e.g. gait_frequency_hz=0.5 to see the cube task's finger gait
    with --policy prior."""
    frames: int = 8
    """Frames in a .png strip (evenly spaced over the rollout, 4 per row)."""
    seed: int = 0
    """Reset seed (commands, domain randomization, initial state)."""
    dr: bool = True
    """Domain randomization as in training (--no-dr: the nominal robot, no noise)."""
    width: int = 640
    """Frame width in pixels."""
    height: int = 480
    """Frame height in pixels."""

    def __post_init__(self) -> None:
        if not self.seconds > 0:
            raise ValueError(f"seconds must be > 0, got {self.seconds!r}")
        for name in ("width", "height"):
            value = getattr(self, name)
            if not 16 <= value <= 4096:
                raise ValueError(f"{name} must be in 16..4096 pixels, got {value!r}")
        if self.out.suffix.lower() not in (".mp4", ".gif", ".png"):
            raise ValueError(f"out must end in .mp4 or .gif (video) or .png (frame strip), "
                             f"got {str(self.out)!r}")
        if not 1 <= self.frames <= 64:
            raise ValueError(f"frames must be in 1..64, got {self.frames!r}")


@dataclasses.dataclass(frozen=True)
class RolloutStats:
    """Roll out each robot (or one) headless and print its stats: return, reward terms,
    falls, the sampled randomization and simulation speed."""

    env_id: Annotated[str | None, tyro.conf.Positional, tyro.conf.arg(metavar="ENV_ID")] = None
    """Roll out only this env id (default: every robot task)."""
    seconds: float = 10.0
    """Simulated seconds per env."""
    policy: Literal["zero", "random"] = "zero"
    """zero: hold the default pose; random: uniform random actions."""
    seed: int = 0
    """Reset seed."""
    dr: bool = True
    """Domain randomization as in training (--no-dr: the nominal robot)."""
    env_config: tuple[str, ...] = ()
    """Task config overrides KEY=VALUE, e.g. robot=a1 for the joystick task on the A1."""

    def __post_init__(self) -> None:
        if not self.seconds > 0:
            raise ValueError(f"seconds must be > 0, got {self.seconds!r}")


Command = (
    Annotated[ListRobots, tyro.conf.subcommand("list", default=ListRobots())]
    | Annotated[CheckRobot, tyro.conf.subcommand("check")]
    | Annotated[RolloutStats, tyro.conf.subcommand("rollout")]
    | Annotated[ViewRollout, tyro.conf.subcommand("view")]
)


def main(argv: list[str], prog: str = "sim2real robots") -> int:
    """Entry point of ``sim2real robots [list|check|rollout|view] ...``; bare ``robots`` lists."""
    if not argv or argv[0] not in ("list", "check", "rollout", "view", "-h", "--help"):
        argv = ["list", *argv]
    command = tyro.cli(Command, args=argv, prog=prog)  # type: ignore[arg-type]
    from sim2real.robots.quadruped.robot_spec import RobotSpecError

    try:
        if isinstance(command, ViewRollout):
            return view(command)
        if isinstance(command, RolloutStats):
            return rollout(command)
        if isinstance(command, CheckRobot):
            from sim2real.cli.robot_check import check_robot

            return check_robot(command)
        return list_robots(command)
    except (registry.UnknownEnvError, RobotSpecError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


# --- list -------------------------------------------------------------------------------
def config_keys(config: Any, prefix: str = "") -> dict[str, dict[str, Any]]:
    """Every scalar field of a task config, by dotted key: its value and docstring."""
    docs = field_docs(type(config))
    out: dict[str, dict[str, Any]] = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            out.update(config_keys(value, f"{key}."))
        elif isinstance(value, (bool, int, float, str)):
            out[key] = {"value": value, "doc": " ".join(docs.get(f.name, "").split())}
    return out


def describe_env(env_id: str) -> dict[str, Any]:
    """Sizes, rates and DR ranges of one of our envs (builds it once to read its spaces)."""
    record = registry.get_record(env_id)
    env = record.load_class()(domain_randomization=False)
    try:
        spec = env.deployment_spec
        dr = env.config.randomization
        docs = field_docs(type(dr))
        ranges = {}
        for f in dataclasses.fields(dr):
            value = getattr(dr, f.name)
            if isinstance(value, (Uniform, IntUniform)):
                ranges[f.name] = {"distribution": describe(value), "doc": docs.get(f.name, "")}
            elif f.name != "enabled":
                ranges[f.name] = {"distribution": f"{value:g}", "doc": docs.get(f.name, "")}
        return {
            "env_id": env_id,
            "robot": record.robot,
            "summary": record.summary,
            "observation_dim": int(env.observation_space.shape[0]),
            "privileged_observation_dim": int(env.privileged_observation_space.shape[0]),
            "action_dim": int(env.action_space.shape[0]),
            "control_rate_hz": spec.control_rate_hz,
            "physics_rate_hz": round(1.0 / spec.physics_dt, 3),
            "episode_steps": env.config.episode_steps,
            "joint_names": list(spec.joint_names),
            "domain_randomization": ranges,
            "config": {k: v for k, v in config_keys(record.load_config_class()()).items()
                       if k != registry.DR_SWITCH_KEY},
        }
    finally:
        env.close()


def describe_quadrupeds() -> list[dict[str, Any]]:
    """Every shipped quadruped spec: its file, mass, standing height, gains and limits."""
    from sim2real.robots.quadruped.build import load_robot
    from sim2real.robots.quadruped.robot_spec import RobotSpecError, shipped_specs

    out = []
    for name, path in shipped_specs().items():
        entry: dict[str, Any] = {"robot": name, "spec": str(path)}
        try:
            robot = load_robot(name)
        except RobotSpecError as err:  # e.g. pybullet (its robots' files) not installed
            entry["error"] = str(err)
            out.append(entry)
            continue
        entry.update(
            summary=robot.spec.summary,
            description=robot.spec.description_ref,
            mass_kg=round(robot.total_mass, 3),
            standing_height_m=round(robot.standing_height, 3),
            kp=robot.kp[:3].tolist(),
            kd=robot.kd[:3].tolist(),
            torque_limits=robot.torque_limits[:3].tolist(),
            joint_names=list(robot.joint_names),
        )
        out.append(entry)
    return out


def list_robots(command: ListRobots) -> int:
    env_ids = [command.env_id] if command.env_id else sorted(registry.ENVS)
    described = [describe_env(env_id) for env_id in env_ids]
    quadrupeds: list[dict[str, Any]] = []
    for d in described:
        if d["env_id"] == QUADRUPED_ENV:
            quadrupeds = d["robots"] = describe_quadrupeds()
    if command.json:
        print(json.dumps(described, indent=2))
        return 0
    header = f"{'env id':34} {'robot':10} {'obs':>4} {'priv':>5} {'act':>4} {'ctrl Hz':>8} {'sim Hz':>7} {'steps':>6}"
    print(header)
    print("-" * len(header))
    for d in described:
        print(
            f"{d['env_id']:34} {d['robot']:10} {d['observation_dim']:>4} "
            f"{d['privileged_observation_dim']:>5} {d['action_dim']:>4} "
            f"{d['control_rate_hz']:>8g} {d['physics_rate_hz']:>7g} {d['episode_steps']:>6}"
        )
    for d in described:
        print(f"\n{d['env_id']}: {d['summary']}")
        print("  domain randomization (sampled at every reset; --no-dr turns it off):")
        for name, entry in d["domain_randomization"].items():
            print(f"    {name:26} {entry['distribution']:16} {entry['doc']}")
        if command.config:
            print("  task config (sim2real train --env-config KEY=VALUE):")
            for key, entry in d["config"].items():
                print(f"    {key:42} {entry['value']!s:10} {entry['doc']}")
    if quadrupeds:
        print(f"\nquadrupeds for {QUADRUPED_ENV} (--env-config robot=NAME, or robot=PATH to a spec; "
              "`sim2real robots check SPEC` tests one):")
        print(f"  {'robot':13} {'kg':>6} {'stand m':>7} {'Kp':>5} {'Kd':>4} {'torque N m (abd, hip, knee)':28} description")
        for q in quadrupeds:
            if "error" in q:
                print(f"  {q['robot']:13} unavailable: {q['error']}")
                continue
            torque = ", ".join(f"{t:g}" for t in q["torque_limits"])
            print(f"  {q['robot']:13} {q['mass_kg']:>6.2f} {q['standing_height_m']:>7.3f} {q['kp'][0]:>5g} "
                  f"{q['kd'][0]:>4g} {torque:28} {q['description']}")
    return 0


# --- rollout ----------------------------------------------------------------------------
def rollout(command: RolloutStats) -> int:
    import time

    from tqdm import tqdm

    env_ids = [command.env_id] if command.env_id else sorted(registry.ENVS)
    for env_id in env_ids:
        kwargs: dict[str, Any] = {"domain_randomization": command.dr}
        if command.env_config:
            try:
                kwargs["config"] = registry.task_config(env_id, command.env_config)
            except ValueError as err:
                print(f"error: {err}", file=sys.stderr)
                return 2
        env = registry.get_record(env_id).load_class()(**kwargs)
        n_steps = max(1, round(command.seconds / env.control_dt))
        obs, info = env.reset(seed=command.seed)
        env.action_space.seed(command.seed)
        zero = np.zeros(env.action_space.shape, dtype=env.action_space.dtype)
        first_dr = info["dr"]
        total, falls, episodes = 0.0, 0, 1
        term_sums: dict[str, float] = {}
        start = time.perf_counter()
        for _ in tqdm(range(n_steps), desc=env_id, unit="step", leave=False):
            action = env.action_space.sample() if command.policy == "random" else zero
            obs, reward, terminated, truncated, info = env.step(action)
            total += float(reward)
            for name, value in info["reward_terms"].items():
                term_sums[name] = term_sums.get(name, 0.0) + value
            if terminated or truncated:
                falls += int(terminated)
                episodes += 1
                obs, info = env.reset()
        elapsed = time.perf_counter() - start
        env.close()
        sim_seconds = n_steps * env.control_dt
        print(f"{env_id}  ({command.policy} policy, DR {'on' if command.dr else 'off'}, seed {command.seed})")
        print(f"  {n_steps} steps = {sim_seconds:g} s simulated in {elapsed:.2f} s wall: "
              f"{n_steps / elapsed:,.0f} steps/s, {sim_seconds / elapsed:,.0f}x real time")
        print(f"  return {total:.3f} ({total / n_steps:.4f}/step), episodes {episodes}, "
              f"terminations {falls}")
        print("  reward terms (sum over the rollout):")
        for name, value in term_sums.items():
            print(f"    {name:20} {value:+.4f}")
        print("  domain randomization at the first reset:")
        for name, value in first_dr.items():
            arr = np.atleast_1d(np.asarray(value, dtype=float))
            shown = f"{arr[0]:.4g}" if arr.size == 1 else f"[{arr.min():.4g} .. {arr.max():.4g}] ({arr.size} values)"
            print(f"    {name:20} {shown}")
    return 0


# --- view -------------------------------------------------------------------------------
def view(command: ViewRollout) -> int:
    # Trained policies and the judge's captions live with training; imported here only,
    # so listing robots does not load torch.
    from sim2real.cli.train import load_policy
    from sim2real.train import judge
    from sim2real.train.video import policy_frames, write_frame_strip, write_video

    try:
        policy, env_config = load_policy(command.policy, command.env_id, command.seed, command.env_config)
        commands = None
        if command.command is not None:
            if not judge.has_judge(command.env_id):
                raise ValueError(f"--command applies to the tasks with a judge only, not {command.env_id}")
            commands = [judge.parse_case(command.env_id, command.command)]
        frames, fps = policy_frames(
            policy, command.env_id, command.seed, command.dr, env_config, commands,
            command.seconds, command.width, command.height,
        )
        if command.out.suffix.lower() == ".png":
            write_frame_strip(frames, command.out, count=command.frames)
            what = f"a strip of {min(command.frames, len(frames))} frames of {len(frames)}"
        else:
            write_video(frames, fps, command.out)
            what = f"{len(frames)} frames at {fps} fps"
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {command.out} ({what}, {command.width}x{command.height}); policy={command.policy}")
    return 0
