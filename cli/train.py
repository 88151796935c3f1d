"""Entry points of `sim2real train`, `sim2real eval` and `sim2real export`."""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import tyro

from sim2real.cli.parsing import run_command
from sim2real.train.config import TrainConfig


def train_main(argv: list[str], prog: str = "sim2real train") -> int:
    config = tyro.cli(TrainConfig, args=argv, prog=prog)
    from sim2real.robots.registry import UnknownEnvError
    from sim2real.train.config import given_fields
    from sim2real.train.trainer import run_training

    try:
        final = run_training(config, given_fields(argv))
    # ValueError covers CheckpointError (a corrupt checkpoint), RunDirError (a bad --resume
    # target) and EnvNotTrainableError (a non-Box env).
    except (ValueError, RuntimeError, FileNotFoundError, UnknownEnvError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    run_dir = final.get("run_dir") or config.resume or config.out
    if "interrupted_at" in final:
        print(f"interrupted at step {final['interrupted_at']}: checkpoint saved in {run_dir}; "
              f"continue with `sim2real train --resume {run_dir}`")
        return 0
    print(
        f"done: {final['step']} steps, final eval return {final['return_mean']:.2f} "
        f"+- {final['return_std']:.2f} over {final['episodes']} episodes; run in {run_dir} "
        f"(checkpoint.safetensors{', best.safetensors' if (Path(run_dir) / 'best.safetensors').is_file() else ''}, "
        "learning_curve.png, tb/)"
    )
    return 0


@dataclasses.dataclass(frozen=True)
class ExportConfig:
    """Export a run's deterministic actor (normalization baked in) to ONNX."""

    run_dir: Annotated[Path, tyro.conf.Positional, tyro.conf.arg(metavar="RUN_DIR")]
    """Training run directory (exports its latest checkpoint.safetensors), or one checkpoint
    file of a run, e.g. RUN_DIR/best.safetensors (the best-evaluated policy)."""
    output: Annotated[Path, tyro.conf.arg(aliases=("-o",))] = Path("policy.onnx")
    """Where to write the ONNX model."""
    atol: float = 1e-5
    """Largest onnxruntime-vs-torch difference accepted on the export check."""
    overwrite: bool = False
    """Replace the file at -o if there is one (else an existing file is refused)."""


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """Evaluate the deterministic policy of a run directory or an exported ONNX file."""

    source: Annotated[Path, tyro.conf.Positional, tyro.conf.arg(metavar="RUN_DIR_OR_ONNX")]
    """A training run directory (its latest checkpoint), a checkpoint file of one (e.g.
    RUN_DIR/best.safetensors), a .onnx file from `sim2real export`, or a baseline to
    compare with: `zero` (hold the default pose / zero action), `random` (uniform random
    actions) or `prior` (the env's suggested action alone, e.g. the quadruped's trot);
    a baseline needs --env."""
    env: str | None = None
    """Env id (default: the one the policy was trained on)."""
    env_config: tuple[str, ...] | None = None
    """Task config overrides KEY=VALUE (default: the ones the policy was trained with)."""
    episodes: int | None = None
    """Episodes to run: per command on a task with a judge (default 5), else in all
    (default 10)."""
    commands: tuple[str, ...] | None = None
    """What to judge. Quadruped joystick task: commands, each [NAME=]VX,VY,YAW (m/s, m/s,
    rad/s), e.g. 'forward=0.5,0,0' 'turn=0,0,0.8' (name a command that starts with a minus
    sign, 'back=-0.5,0,0', or the parser takes it for a flag) (default: stand, forward 0.5
    and 1.0, backward 0.5, sideways 0.4, turn 0.8, forward 0.6 + turn 0.5). Hand valve
    task: directions ccw, cw (default both); the cube task is judged ccw only."""
    video: Path | None = None
    """Also render the policy to this video (.mp4 or .gif): the first episode of each
    command (its first --video-seconds), captioned with the command and what the judge
    measures (velocity; angle and turn rate on the hand)."""
    video_seconds: float = 6.0
    """Seconds of each command's episode in the video."""
    seed: int = 0
    """Seed of the first episode (episode i uses seed + i)."""
    dr: bool = True
    """Domain randomization as in training (--no-dr: the nominal robot, no noise)."""
    json: bool = False
    """Print the result as JSON."""
    stress: bool = False
    """Judge the policy in held-out worlds too (the task's stress suite: low friction,
    payload, weak motors, latency, sensor biases, slopes, rough ground, a step, pushes on
    the quadruped; stiff valve, low fingertip friction, weak motors, latency, valve size on
    the valve), each beside nominal with its ratio to nominal and what the training saw."""
    stress_scenarios: tuple[str, ...] | None = None
    """With --stress: only these scenarios, by name (default: all)."""
    stress_plot: Path | None = None
    """With --stress: also write the bar chart of every world to this .png."""
    world: Literal["mujoco", "bullet"] = "mujoco"
    """Where to judge: mujoco (the training's simulator) or bullet (the quadruped built in
    PyBullet from the same URDF, served over gRPC by a `sim2real serve` this command starts:
    an .onnx policy of a URDF robot, e.g. the shipped a1_joystick.onnx). In Bullet there is
    no randomization; --no-dr turns its simulated sensor noise off."""
    bullet_log: Path | None = None
    """With --world bullet: record every step to this MCAP log (`sim2real replay` reads it)."""
    ros2_bag: Path | None = None
    """With --world bullet: also record a ROS 2 bag (rosbag2 folder, MCAP storage) of
    standard messages, as a ROS 2 controller would (`sim2real replay BAG --model POLICY`
    imports it)."""
    deadline_ms: float = 100.0
    """With --world bullet: the control session's deadline per step, ms (a late answer is
    the fallback, counted). Generous: the Bullet robot waits for its answer, so it never
    needs one sooner."""

    def __post_init__(self) -> None:
        if self.world == "bullet":
            if str(self.source) in BASELINES or Path(self.source).suffix != ".onnx":
                raise ValueError(f"--world bullet serves an exported .onnx policy, got {str(self.source)!r}")
            if self.stress or self.video is not None:
                raise ValueError("--world bullet does not combine with --stress or --video")
            if self.env not in (None, "sim2real/QuadrupedJoystick-v0"):
                raise ValueError(f"--world bullet runs the quadruped only, not {self.env}")
            if self.ros2_bag is not None and self.ros2_bag.exists():
                raise ValueError(f"ros2_bag: {str(self.ros2_bag)!r} exists; a ROS 2 bag is written to a new folder")
        elif self.bullet_log is not None or self.ros2_bag is not None:
            raise ValueError("--bullet-log and --ros2-bag apply with --world bullet only")
        if not self.deadline_ms > 0:
            raise ValueError(f"deadline_ms must be > 0, got {self.deadline_ms!r}")
        if (self.stress_scenarios is not None or self.stress_plot is not None) and not self.stress:
            raise ValueError("--stress-scenarios and --stress-plot apply with --stress only")
        if self.stress and self.video is not None:
            raise ValueError("--video and --stress do not combine; render the video in a run of its own")
        if self.stress_plot is not None and self.stress_plot.suffix.lower() != ".png":
            raise ValueError(f"stress_plot must end in .png, got {str(self.stress_plot)!r}")
        if self.episodes is not None and self.episodes < 1:
            raise ValueError(f"episodes must be >= 1, got {self.episodes}")
        if self.video is not None and self.video.suffix.lower() not in (".mp4", ".gif"):
            raise ValueError(f"video must end in .mp4 or .gif, got {str(self.video)!r}")
        if not self.video_seconds > 0:
            raise ValueError(f"video_seconds must be > 0, got {self.video_seconds!r}")
        if str(self.source) in BASELINES and self.env is None:
            raise ValueError(f"the {self.source} baseline needs --env (which env to run it in)")


BASELINES = ("zero", "random", "prior")


def export_main(argv: list[str], prog: str = "sim2real export") -> int:
    config = tyro.cli(ExportConfig, args=argv, prog=prog)
    from sim2real.train.checkpoint import CheckpointError
    from sim2real.train.export import export_onnx

    if config.output.is_file() and not config.overwrite:
        print(f"error: -o {config.output}: a file is there already (left as it is); choose another path, "
              "or add --overwrite to replace it", file=sys.stderr)
        return 2
    try:
        result = export_onnx(config.run_dir, config.output, atol=config.atol)
    # OSError: -o in a folder that does not exist (export creates none) or cannot be written.
    except (CheckpointError, RuntimeError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(
        f"wrote {result['path']}: {result['env_id']}, observation [batch, {result['observation_dim']}] "
        f"-> action [batch, {result['action_dim']}], {result['training_steps']} training steps, "
        f"onnxruntime vs torch max |diff| {result['max_abs_error']:.2e}"
    )
    return 0


class BaselinePolicy:
    """A reference to judge a trained policy against: the zero action (our robots hold
    their default pose), uniform random actions in [-1, 1], or the env's suggested action
    alone (``prior``: the quadruped's trot, open loop; what `--action-prior` starts from)."""

    def __init__(self, kind: str, env_id: str, seed: int, env_config: Sequence[str] = ()) -> None:
        from sim2real.robots import registry

        self.kind, self.env_id = kind, env_id
        self.env_config: tuple[str, ...] = tuple(env_config)
        self.rng = np.random.default_rng(seed)
        kwargs = {"config": registry.task_config(env_id, env_config)} if env_config else {}
        env = registry.make(env_id, **kwargs)
        try:
            self.act_dim = int(env.action_space.shape[0])
            self.prior = getattr(env.unwrapped, "action_prior", None)
        finally:
            env.close()
        if kind == "prior" and self.prior is None:
            raise ValueError(f"the prior baseline needs an env that suggests an action; {env_id} with "
                             f"env config {list(env_config)} suggests none")

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        shape = (obs.shape[0], self.act_dim)
        if self.kind == "zero":
            return np.zeros(shape, dtype=np.float32)
        if self.kind == "prior":
            return np.clip(self.prior(obs), -1.0, 1.0).astype(np.float32)
        return self.rng.uniform(-1.0, 1.0, shape).astype(np.float32)


def policy_from_source(source: str | Path, env_id: str | None, seed: int,
                       env_config: Sequence[str] = ()) -> Any:
    """A baseline name (zero, random, prior: needs env_id, runs on ``env_config``), an
    .onnx file, a run directory or a checkpoint file -> a policy with ``env_id`` and
    ``env_config`` attributes."""
    from sim2real.train.export import OnnxPolicy, RunPolicy

    if str(source) in BASELINES:
        if env_id is None:
            raise ValueError(f"the {source} baseline needs an env id")
        return BaselinePolicy(str(source), env_id, seed, env_config)
    path = Path(source)
    if path.suffix == ".onnx":
        return OnnxPolicy(path)
    if not (path.is_dir() or (path.is_file() and path.suffix == ".safetensors")):
        raise FileNotFoundError(
            f"policy {str(source)!r} is neither zero, random, an .onnx file, a run directory "
            "nor a .safetensors checkpoint"
        )
    return RunPolicy(path)


def load_policy(source: str, env_id: str, seed: int,
                env_config: Sequence[str] | None = None) -> tuple[Any, tuple[str, ...]]:
    """The policy to render in ``env_id`` and the task config to run it on: ``env_config``
    when given, else a trained policy's own (a baseline's: the default task)."""
    from sim2real.train.checkpoint import CheckpointError

    try:
        policy = policy_from_source(source, env_id, seed, tuple(env_config or ()))
    except CheckpointError as err:
        raise ValueError(str(err)) from err
    if policy.env_id != env_id:
        raise ValueError(f"policy {source} was trained on {policy.env_id}, not {env_id}")
    return policy, tuple(policy.env_config if env_config is None else env_config)


def _bullet(config: EvalConfig, env_id: str, overrides: Sequence[str], commands: Sequence[Any] | None,
            episodes: int) -> int:
    from sim2real.cli.bullet import judge_in_bullet

    if env_id != "sim2real/QuadrupedJoystick-v0":
        raise ValueError(f"--world bullet runs the quadruped only; {config.source} is a {env_id} policy")
    run = judge_in_bullet(Path(config.source), episodes, config.seed, overrides, commands,
                          sensor_noise=config.dr, deadline_ms=config.deadline_ms, log_path=config.bullet_log,
                          ros2_bag=config.ros2_bag, progress=not config.json)
    result = run.result
    if config.json:
        print(json.dumps({"env_id": env_id, "source": str(config.source), "world": "bullet", "robot": run.robot,
                          "steps": run.steps, "fallbacks": run.fallbacks, "deadline_misses": run.deadline_misses,
                          "log": str(run.log_path) if run.log_path else None,
                          "ros2_bag": str(config.ros2_bag) if config.ros2_bag else None,
                          "task": result.as_dict()}, indent=2))
        return 0
    noise = "sensor noise at the training's amplitudes" if config.dr else "no sensor noise"
    print(f"{env_id} on the {run.robot} in PyBullet ({noise}), served over gRPC by `sim2real serve`: "
          f"{episodes} episodes per command from seed {config.seed}")
    print(f"  {run.steps} steps, {run.fallbacks} fallback actions ({run.deadline_misses} deadline misses "
          f"at {config.deadline_ms:g} ms)")
    print(f"\n{result.preamble.replace('simulator state', 'Bullet state')}\n")
    print(result.format_table())
    print("\ntargets:")
    print(result.format_targets())
    for path in (run.log_path, config.ros2_bag):
        if path is not None:
            print(f"wrote {path}")
    return 0


def _stress(config: EvalConfig, policy: Any, env_id: str, overrides: Sequence[str],
            commands: Sequence[Any] | None, episodes: int) -> int:
    from sim2real.train import judge
    from sim2real.train.stress import run_stress

    if not judge.has_judge(env_id):
        raise ValueError(f"--stress needs a task with a judge, not {env_id}")
    # Each row quotes the ranges the policy trained on, whatever world it is judged in.
    trained = policy.env_config if env_id == getattr(policy, "env_id", None) else None
    result = run_stress(env_id, policy, episodes, config.seed, config.dr, overrides, commands,
                        config.stress_scenarios, progress=not config.json, trained_env_config=trained)
    if config.stress_plot is not None:
        result.plot(config.stress_plot, title=f"{config.source}: {env_id} in held-out worlds, {episodes} "
                    f"episodes per case ({'DR on' if config.dr else 'DR off'} otherwise)")
    if config.json:
        print(json.dumps({"source": str(config.source), **result.as_dict()}, indent=2))
        return 0
    per = "command" if env_id == judge.QUADRUPED_ENV_ID else "direction"
    print(f"{env_id}: held-out worlds ({'DR on' if config.dr else 'DR off'} otherwise), {episodes} episodes "
          f"per {per} from seed {config.seed}, each world applied after the env's own randomization\n")
    print(result.format_table())
    missed = result.failed
    print(f"\ntargets (every single-perturbation world): {'all met' if not missed else 'MISSED in ' + ', '.join(missed)}")
    if config.stress_plot is not None:
        print(f"wrote {config.stress_plot}")
    return 0


def _check_observation_size(source: Any, policy: Any, env_id: str, overrides: Sequence[str], dr: bool) -> None:
    """A policy asked to run another env than its own must at least take that env's
    observation: else one error naming both envs (not onnxruntime's shape error)."""
    from sim2real.robots import registry
    from sim2real.train.evaluate import env_kwargs

    takes = getattr(policy, "obs_dim", None)
    if takes is None:
        return
    env = registry.make(env_id, **env_kwargs(env_id, dr, overrides))
    try:
        gives = int(env.observation_space.shape[0])
    finally:
        env.close()
    if gives != takes:
        raise ValueError(f"{source} takes {takes} observations (trained on {policy.env_id}); {env_id} gives "
                         f"{gives}: evaluate it on {policy.env_id} (leave out --env)")


def eval_main(argv: list[str], prog: str = "sim2real eval") -> int:
    # A misuse the config itself rejects (--stress-plot without --stress, a .gif plot) is
    # one error line and exit 2, like every other expected failure of the command.
    return run_command(EvalConfig, argv, prog, _eval, lambda: ())


def _eval(config: EvalConfig) -> int:
    from sim2real.robots.registry import UnknownEnvError
    from sim2real.train import judge
    from sim2real.train.checkpoint import CheckpointError
    from sim2real.train.evaluate import evaluate

    try:
        policy = policy_from_source(config.source, config.env, config.seed, config.env_config or ())
        env_id = config.env or policy.env_id
        # The task as trained (reward weights, episode length...) unless another env or
        # other overrides are asked for.
        overrides = policy.env_config if env_id == policy.env_id else ()
        if config.env_config is not None:
            overrides = config.env_config
        from sim2real.train.export import robot_change

        if env_id != getattr(policy, "env_id", env_id):
            _check_observation_size(config.source, policy, env_id, overrides, config.dr)
        changed = robot_change(getattr(policy, "metadata", {}), env_id, overrides)
        if changed:
            print(f"warning: {changed}", file=sys.stderr)
        judged = judge.has_judge(env_id)
        commands = None
        if config.commands is not None:
            if not judged:
                raise ValueError(f"--commands applies to the tasks with a judge only, not {env_id}")
            commands = [judge.parse_case(env_id, text) for text in config.commands]
        episodes = config.episodes or (5 if judged else 10)
        if config.stress:
            return _stress(config, policy, env_id, overrides, commands, episodes)
        if config.world == "bullet":
            return _bullet(config, env_id, overrides, commands, episodes)
        result = evaluate(policy, env_id, episodes, config.seed, config.dr, env_config=overrides,
                          commands=commands, progress=not config.json)
        if config.video is not None:
            from sim2real.train.video import render_policy_video

            render_policy_video(
                policy, env_id, config.video, seed=config.seed, domain_randomization=config.dr,
                env_config=overrides, commands=commands, seconds=config.video_seconds,
            )
    except (CheckpointError, UnknownEnvError, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if config.json:
        print(json.dumps({"env_id": env_id, "source": str(config.source), **result.as_dict()}, indent=2))
        return 0
    per = " per command" if judged else ""
    from sim2real.robots import registry

    # Domain randomization is ours: a gymnasium env has none to turn on or off.
    dr = f" ({'DR on' if config.dr else 'DR off'})" if env_id in registry.ENVS else ""
    print(f"{env_id}{dr}, {episodes} episodes{per} from seed {config.seed}")
    print(f"  return {result.mean_return:.3f} +- {result.std_return:.3f}, mean length "
          f"{np.mean(result.lengths):.1f}, {result.task.failure_name if result.task else 'terminated'} "
          f"{result.terminated}/{len(result.returns)}")
    if result.task is not None:
        print(f"\n{result.task.preamble}\n")
        print(result.task.format_table())
        print("\ntargets:")
        print(result.task.format_targets())
        print()
    if result.reward_terms:
        print("  reward terms (mean episode sum):")
        for name, value in result.reward_terms.items():
            print(f"    {name:20} {value:+.4f}")
    if config.video is not None:
        print(f"wrote {config.video}")
    return 0
