"""The one config of `sim2real train`; its CLI flags are generated from it (tyro).

Also what a run directory's config.json may hold (:func:`load_run_config`, strict: every
key a field, every value of the field's type) and what env a run can train on
(:func:`check_env`), so that misuse is a one-line error naming the problem.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from sim2real.train.sac_config import SACConfig

RUN_CONFIG_FILE = "config.json"
"""The TrainConfig of a run, in its directory (written by the trainer, read on --resume)."""


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Train a SAC policy on a sim2real robot task or any Box-action gymnasium env."""

    env: str | None = None
    """Env id, e.g. sim2real/QuadrupedJoystick-v0, Pendulum-v1, Ant-v5 (required unless
    --resume)."""
    total_steps: int = 1_000_000
    """Environment steps (transitions, summed over parallel envs) to train for."""
    seed: int = 0
    """Seed of the envs, network init, exploration and replay sampling."""
    out: Path | None = None
    """Run directory: checkpoint, config, TensorBoard logs, learning curve (default: a new
    folder runs/ENV-YYYYmmdd-HHMMSS). A folder that holds a run already is refused: continue
    it with --resume, or start over with --overwrite."""
    overwrite: bool = False
    """Clear --out first when it holds a run (its checkpoints, metrics and logs are deleted)."""
    resume: Path | None = None
    """Continue the run in this directory (its config is used; --total-steps may extend it)."""
    num_envs: int = 1
    """Parallel envs; transitions per collection step."""
    num_workers: int | None = None
    """Worker processes for the envs (default: one per core beyond this one; 0: in-process)."""
    learning_starts: int = 5000
    """Steps of uniform random actions before the first update."""
    updates_per_step: float = 1.0
    """Gradient updates per collected transition (the update-to-data ratio)."""
    buffer_size: int = 1_000_000
    """Replay capacity in transitions."""
    normalize_obs: bool = True
    """Running mean/std observation normalization (frozen for evaluation and export)."""
    domain_randomization: bool = True
    """Train with the env's domain randomization (sim2real envs only)."""
    env_config: tuple[str, ...] = ()
    """Task config overrides, KEY=VALUE with dotted keys (sim2real envs only), e.g.
    rewards.action_rate=-0.001 episode_steps=200; `sim2real robots ENV_ID --config`
    lists the keys. Saved with the run and the exported model, used by every evaluation."""
    eval_interval: int = 10_000
    """Steps between evaluations of the deterministic policy (0: only at the end)."""
    eval_episodes: int = 5
    """Episodes per evaluation; on a task with a judge (the quadruped joystick) spread over
    its seven commands, at least one each (so 5 runs 7 episodes)."""
    checkpoint_interval: int = 50_000
    """Steps between checkpoints (one is always written at the end)."""
    keep_best: bool = True
    """Also keep the checkpoint whose periodic evaluation ranked best so far, as
    best.safetensors in the run directory (by the task's targets where it has a judge,
    else by mean return; train/best_policy.py). `sim2real eval` and `export` take it in
    place of the run directory."""
    save_replay: bool = False
    """Also save the replay buffer with each checkpoint, so a resume continues with it."""
    log_interval: int = 1_000
    """Steps between TensorBoard scalar writes."""
    device: Literal["cpu", "cuda", "auto"] = "cpu"
    """Where the networks train; auto picks CUDA when available."""
    torch_threads: int | None = None
    """torch intra-op threads (default: torch's choice)."""
    action_prior: bool = False
    """Put the env's suggested action inside the policy, which then learns a residual
    around it (the quadruped's trot, with --env-config gait.frequency_hz=2.5;
    train/action_prior.py). The random warm-up then samples the initial policy, i.e. the
    prior plus the actor's noise, instead of uniform actions. Needs an env with an
    ``action_prior``."""
    sac: SACConfig = SACConfig()

    def __post_init__(self) -> None:
        checks = {
            "total_steps": (self.total_steps >= 1, ">= 1"),
            "num_envs": (self.num_envs >= 1, ">= 1"),
            "learning_starts": (self.learning_starts >= 0, ">= 0"),
            "updates_per_step": (self.updates_per_step > 0, "> 0"),
            "buffer_size": (self.buffer_size >= self.num_envs, f">= num_envs ({self.num_envs})"),
            "eval_interval": (self.eval_interval >= 0, ">= 0"),
            "eval_episodes": (self.eval_episodes >= 1, ">= 1"),
            "checkpoint_interval": (self.checkpoint_interval >= 1, ">= 1"),
            "log_interval": (self.log_interval >= 1, ">= 1"),
        }
        for name, (ok, allowed) in checks.items():
            if not ok:
                raise ValueError(f"TrainConfig.{name} must be {allowed}, got {getattr(self, name)!r}")
        if self.env is None and self.resume is None:
            raise ValueError("TrainConfig.env is required (e.g. --env Pendulum-v1) unless --resume is given")
        if self.env_config and self.env is not None:
            from sim2real.train.evaluate import env_kwargs

            # Fail at the command line, naming the key, not in a worker process later.
            env_kwargs(self.env, self.domain_randomization, self.env_config)
        if self.num_workers is not None and self.num_workers < 0:
            raise ValueError(f"TrainConfig.num_workers must be >= 0, got {self.num_workers}")


class RunDirError(ValueError):
    """A --resume target that is not a resumable run directory: missing, a file, or a
    config.json that is not valid JSON of TrainConfig's fields and types."""


class EnvNotTrainableError(ValueError):
    """An env that SAC here cannot train: not makeable, or not flat Box spaces."""


def config_to_dict(config: TrainConfig) -> dict[str, Any]:
    """config.json's content (and the checkpoint's ``config``): plain JSON types."""
    out = dataclasses.asdict(config)
    out["out"] = None if config.out is None else str(config.out)
    out["resume"] = None
    out["overwrite"] = False  # what a run did once, not how to continue it
    return out


RUN_FILES = (RUN_CONFIG_FILE, "checkpoint.safetensors", "best.safetensors", "metrics.jsonl", "replay.npz",
             "replay.npz.unreadable", "learning_curve.png", "tb")
"""What a training run writes in its directory: a folder holding any of them holds a run."""


def default_run_dir(env: str, root: Path = Path("runs")) -> Path:
    """A new folder for a run of ``env``: runs/ENV-YYYYmmdd-HHMMSS (ENV without its
    namespace), with -2, -3... when that exists already."""
    stem = f"{env.rsplit('/', 1)[-1]}-{time.strftime('%Y%m%d-%H%M%S')}"
    path, n = root / stem, 1
    while path.exists():
        n += 1
        path = root / f"{stem}-{n}"
    return path


def claim_run_dir(out: Path, overwrite: bool) -> None:
    """Make ``out`` ready for a new run: refuse one that holds a run (RunDirError offering
    --resume, another --out or --overwrite), or clear it when ``overwrite``. Other files
    in the folder (a sweep's train.log) are no run and stay."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise RunDirError(f"--out {out}: is a file; expected a folder for the run")
    held = [name for name in RUN_FILES if (out / name).exists()]
    if not held:
        return
    if not overwrite:
        step = ""
        try:
            from sim2real.train.checkpoint import load_checkpoint

            step = f" (checkpoint at step {load_checkpoint(out / 'checkpoint.safetensors')[1]['step']})"
        except Exception:  # noqa: BLE001 - only for the message
            pass
        raise RunDirError(
            f"--out {out} holds a run already{step}: continue it with `sim2real train --resume {out}`, "
            f"choose another --out (or leave it out for a new folder), or add --overwrite to delete it "
            "and start over"
        )
    for entry in out.iterdir():  # --overwrite: the folder is cleared, as asked
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def config_from_dict(data: Any, source: str = "config") -> TrainConfig:
    """The inverse of :func:`config_to_dict`, strict: unknown keys and values of the wrong
    type are RunDirError naming ``source`` and the field. Keys left out take the field's
    default (a run written before the field existed)."""
    values = _fields_from_dict(TrainConfig, data, source, "")
    if not isinstance(values.get("env"), str):
        raise RunDirError(f"{source}: env: expected the env id the run trained on (a string), "
                          f"got {data.get('env')!r}")
    values["resume"] = None
    try:
        return TrainConfig(**values)
    except ValueError as err:
        raise RunDirError(f"{source}: {err}") from None


def _fields_from_dict(cls: type, data: Any, source: str, prefix: str) -> dict[str, Any]:
    where = prefix.rstrip(".") or "the top level"
    if not isinstance(data, dict):
        raise RunDirError(f"{source}: {where}: expected a JSON object of {cls.__name__} fields, "
                          f"got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise RunDirError(f"{source}: unknown key{'s' if len(unknown) > 1 else ''} "
                          f"{', '.join(prefix + k for k in unknown)} (not fields of {cls.__name__})")
    values: dict[str, Any] = {}
    for name in names:
        if name in data:
            values[name] = _convert(hints[name], data[name], source, prefix + name)
    return values


def _convert(annotation: Any, value: Any, source: str, field: str) -> Any:
    """``value`` (parsed JSON) as ``annotation``'s type, or RunDirError naming ``field``."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if dataclasses.is_dataclass(annotation):
        return annotation(**_fields_from_dict(annotation, value, source, field + "."))
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:
            return _convert(inner[0], value, source, field)
    elif origin is Literal:
        if value in args:
            return value
        raise RunDirError(f"{source}: {field}: expected one of {list(args)}, got {value!r}")
    elif origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        if isinstance(value, list):
            return tuple(_convert(args[0], v, source, f"{field}[{i}]") for i, v in enumerate(value))
    elif annotation is bool:
        if isinstance(value, bool):
            return value
    elif annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif annotation in (str, Path):
        if isinstance(value, str):
            return annotation(value)
    else:  # a field type added to the configs without a case here: a bug, not a bad file
        raise TypeError(f"config_from_dict cannot read {field} of type {annotation!r}")
    expected = getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")
    raise RunDirError(f"{source}: {field}: expected {expected}, got {value!r} ({type(value).__name__})")


RESUME_CHANGEABLE = ("total_steps", "torch_threads", "num_workers", "eval_interval", "eval_episodes",
                     "checkpoint_interval", "log_interval", "save_replay", "keep_best")
"""What --resume may change: how long and where the run goes on, how often it evaluates,
checkpoints and logs. Everything else is the experiment (env, task, seed, learner) and
stays as the run started."""


def given_fields(argv: Sequence[str]) -> set[str]:
    """The TrainConfig fields a command line sets: "--total-steps 5" -> total_steps,
    "--sac.no-critic-layernorm" -> sac.critic_layernorm, "--seed=3" -> seed."""
    fields = set()
    for token in argv:
        if not token.startswith("--") or token == "--":
            continue
        name = token[2:].split("=", 1)[0].replace("-", "_")
        prefix, _, leaf = name.rpartition(".")
        if leaf.startswith("no_"):
            leaf = leaf[3:]
        fields.add(f"{prefix}.{leaf}" if prefix else leaf)
    return fields


def resume_config(saved: TrainConfig, asked: TrainConfig, given: set[str]) -> tuple[TrainConfig, list[str]]:
    """The run's own config with the --resume command line's changes applied, and a line
    for each: a flag in RESUME_CHANGEABLE is applied, any other that differs from the run's
    is refused (RunDirError listing them all); one equal to the run's is fine."""
    changes: dict[str, Any] = {}
    applied, refused = [], []
    for name in sorted(given - {"resume", "help", "h"}):
        if name == "out":
            refused.append(f"--out (a resumed run goes on in its own folder, {saved.out})")
            continue
        owner, leaf = (saved.sac, name[4:]) if name.startswith("sac.") else (saved, name)
        new_owner = asked.sac if name.startswith("sac.") else asked
        if not hasattr(owner, leaf):
            continue  # tyro has refused unknown flags already; nothing of ours
        old, new = getattr(owner, leaf), getattr(new_owner, leaf)
        if old == new:
            continue
        flag = "--" + name.replace("_", "-")
        if name in RESUME_CHANGEABLE:
            changes[name] = new
            applied.append(f"{flag} {new} (was {old})")
        else:
            refused.append(f"{flag} {new} (the run trained with {old})")
    if refused:
        raise RunDirError(
            f"--resume {saved.out}: these cannot change on a resumed run: {'; '.join(refused)}. A resumed run "
            f"continues the experiment as it started; start a new run (another --out) to change them. What "
            f"--resume may change: {', '.join('--' + n.replace('_', '-') for n in RESUME_CHANGEABLE)}"
        )
    return dataclasses.replace(saved, **changes), applied


def load_run_config(run_dir: Path) -> TrainConfig:
    """The TrainConfig saved in run directory ``run_dir`` (``out`` set to it), or
    RunDirError saying why it is not a run directory."""
    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise RunDirError(f"--resume {run_dir}: no such directory (give the --out folder of an earlier run)")
    if not run_dir.is_dir():
        raise RunDirError(f"--resume {run_dir}: is a file; expected a run directory (the --out folder "
                          f"of an earlier run, holding {RUN_CONFIG_FILE} and the checkpoint)")
    path = run_dir / RUN_CONFIG_FILE
    if not path.is_file():
        raise RunDirError(f"--resume {run_dir}: no {RUN_CONFIG_FILE} in it (not a run directory)")
    try:
        data = json.loads(path.read_text())
    except UnicodeDecodeError as err:
        raise RunDirError(f"{path}: not text ({err})") from None
    except json.JSONDecodeError as err:
        raise RunDirError(f"{path}: not valid JSON ({err})") from None
    except OSError as err:
        raise RunDirError(f"{path}: unreadable ({err})") from None
    if isinstance(data, dict):
        data = {**data, "out": str(run_dir)}  # the run lives where it is now, wherever it started
    config = config_from_dict(data, str(path))
    from sim2real.robots.registry import recorded_overrides

    # A run recorded before its env's defaults changed keeps the task it trained on.
    assert config.env is not None
    return dataclasses.replace(config, env_config=recorded_overrides(config.env, config.env_config))


def check_env(env_id: str, env_kwargs: dict[str, Any]) -> None:
    """Make ``env_id`` once and check SAC here can train it (flat Box observation and
    action spaces): EnvNotTrainableError naming the space otherwise; an unknown id is the
    registry's UnknownEnvError listing the valid ones."""
    import gymnasium as gym

    from sim2real.robots import registry

    try:
        env = registry.make(env_id, **env_kwargs)
    except gym.error.Error as err:  # e.g. DependencyNotInstalled (Box2D)
        raise EnvNotTrainableError(f"env {env_id} cannot be made: {err}") from None
    try:
        for role, space in (("action", env.action_space), ("observation", env.observation_space)):
            if not isinstance(space, gym.spaces.Box) or len(space.shape) != 1:
                raise EnvNotTrainableError(
                    f"env {env_id}: SAC here needs a flat (1-D) Box {role} space, got {space}"
                )
    finally:
        env.close()
