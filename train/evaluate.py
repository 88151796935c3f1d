"""Evaluate a deterministic policy: episode returns, the per-term reward breakdown and, for
a task with a judge (train/judge.py), the task metrics measured from simulator state."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from sim2real.robots import registry
from sim2real.train import judge

Policy = Callable[[np.ndarray], np.ndarray]
"""Raw observations [batch, obs_dim] -> actions [batch, act_dim] in [-1, 1]; evaluate()
maps them onto the env's action Box (the identity for our robots)."""


@dataclasses.dataclass(frozen=True)
class EvalResult:
    returns: np.ndarray
    lengths: np.ndarray
    reward_terms: dict[str, float]
    """Mean over episodes of each reward term's episode sum (empty for plain gym envs)."""
    terminated: int
    """Episodes that ended by termination (a fall) rather than the time limit."""
    task: judge.TaskResult | None = None
    """Task metrics per command, for a task with a judge (then the episodes above are the
    judged ones: every command, pinned)."""

    @property
    def mean_return(self) -> float:
        return float(np.mean(self.returns))

    @property
    def std_return(self) -> float:
        return float(np.std(self.returns))

    def as_dict(self) -> dict[str, Any]:
        return {
            "episodes": int(len(self.returns)),
            "return_mean": self.mean_return,
            "return_std": self.std_return,
            "length_mean": float(np.mean(self.lengths)),
            "terminated": self.terminated,
            "returns": [float(r) for r in self.returns],
            "reward_terms": self.reward_terms,
            **({"task": self.task.as_dict()} if self.task is not None else {}),
        }


def env_kwargs(
    env_id: str, domain_randomization: bool, env_config: Sequence[str] = ()
) -> dict[str, Any]:
    """Constructor kwargs: our envs take the DR switch and task config overrides
    (``KEY=VALUE``, see :func:`registry.task_config`), plain gymnasium envs nothing."""
    if env_id not in registry.ENVS:
        if env_config:
            raise ValueError(
                f"env_config overrides apply to this project's envs only; {env_id} got "
                f"{list(env_config)}"
            )
        return {}
    kwargs: dict[str, Any] = {"domain_randomization": domain_randomization}
    if env_config:
        kwargs["config"] = registry.task_config(env_id, env_config)
    return kwargs


def evaluate(
    policy: Policy,
    env_id: str,
    episodes: int,
    seed: int,
    domain_randomization: bool = True,
    max_steps_per_episode: int = 100_000,
    env_config: Sequence[str] = (),
    commands: Sequence[Any] | None = None,
    progress: bool = False,
) -> EvalResult:
    """Run ``episodes`` full episodes, seeds ``seed``, ``seed + 1``, ...; one env.

    On a task with a judge, ``episodes`` is per case (``commands``: joystick commands on
    the quadruped, turn directions on the hand; default the judge's set) and the result
    carries the task metrics.
    """
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    if judge.has_judge(env_id):
        return _judged(env_id, policy, episodes, seed, domain_randomization, env_config,
                       commands, progress)
    if commands:
        raise ValueError(f"commands apply to the tasks with a judge only; {env_id} has none")
    env = registry.make(env_id, **env_kwargs(env_id, domain_randomization, env_config))
    low, high = env.action_space.low, env.action_space.high
    returns, lengths, terminated = [], [], 0
    term_sums: dict[str, float] = {}
    try:
        for episode in range(episodes):
            obs, _ = env.reset(seed=seed + episode)
            total, length = 0.0, 0
            for _ in range(max_steps_per_episode):
                action = policy(obs[None].astype(np.float32))[0]
                action = low + (np.clip(action, -1.0, 1.0) + 1.0) * 0.5 * (high - low)
                obs, reward, term, trunc, info = env.step(action)
                total += float(reward)
                length += 1
                for name, value in info.get("reward_terms", {}).items():
                    term_sums[name] = term_sums.get(name, 0.0) + float(value)
                if term or trunc:
                    terminated += int(term)
                    break
            returns.append(total)
            lengths.append(length)
    finally:
        env.close()
    return EvalResult(
        returns=np.array(returns),
        lengths=np.array(lengths),
        reward_terms={k: v / episodes for k, v in term_sums.items()},
        terminated=terminated,
    )


def _judged(
    env_id: str,
    policy: Policy,
    episodes_per_case: int,
    seed: int,
    domain_randomization: bool,
    env_config: Sequence[str],
    cases: Sequence[Any] | None,
    progress: bool,
) -> EvalResult:
    result = judge.judge_policy(
        env_id, policy, episodes_per_case, seed, domain_randomization, env_config, cases,
        progress=progress,
    )
    episodes = result.episodes
    term_sums: dict[str, float] = {}
    for episode in episodes:
        for name, value in episode.reward_terms.items():
            term_sums[name] = term_sums.get(name, 0.0) + value
    return EvalResult(
        returns=np.array([e.episode_return for e in episodes]),
        lengths=np.array([e.length for e in episodes]),
        reward_terms={k: v / len(episodes) for k, v in term_sums.items()},
        terminated=sum(e.fell for e in episodes),
        task=result,
    )
