"""The one config of `sim2real train`; its CLI flags are generated from it (tyro)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal

from sim2real.train.sac import SACConfig


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
    out: Path = Path("runs/run")
    """Run directory: checkpoint, config, TensorBoard logs, learning curve."""
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
    save_replay: bool = False
    """Also save the replay buffer with each checkpoint, so a resume continues with it."""
    log_interval: int = 1_000
    """Steps between TensorBoard scalar writes."""
    device: Literal["cpu", "cuda", "auto"] = "cpu"
    """Where the networks train; auto picks CUDA when available."""
    torch_threads: int | None = None
    """torch intra-op threads (default: torch's choice)."""
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
