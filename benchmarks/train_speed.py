"""Our SAC next to Stable-Baselines3's SAC with identical settings, in one run.

    pip install -e ".[bench]"            # stable-baselines3, the reference
    python benchmarks/train_speed.py                      # full: 20k Pendulum steps x 3 seeds
    python benchmarks/train_speed.py --steps 5000 --seeds 2 --skip-ant   # a short look

Settings shared by both: 256x256 MLPs for actor and critics, batch 256, Adam 3e-4, gamma
0.99, tau 0.005, automatic temperature from alpha = 1 with target entropy -|A|, one
update per env step after `--learning-starts` random steps, one env, no observation
normalization (SB3's SAC has none), CPU.

Part 1, update throughput: each implementation's gradient step (batch sampling included)
on a replay buffer filled from the env, timed over `--updates` steps, repeated and
interleaved. Part 2, learning: full training runs of `--steps` env steps per seed, then the
deterministic policy's mean return over `--eval-episodes` episodes on the same eval seeds.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

import sim2real.robots  # noqa: F401
from sim2real.train.config import TrainConfig
from sim2real.train.evaluate import evaluate
from sim2real.train.normalizer import RunningNormalizer
from sim2real.train.replay_buffer import ReplayBuffer
from sim2real.train.sac import SAC, SACConfig
from sim2real.train.trainer import Trainer

HIDDEN = (256, 256)
BATCH = 256


def sb3_model(env_id: str, seed: int, learning_starts: int) -> Any:
    from stable_baselines3 import SAC as SB3SAC

    return SB3SAC(
        "MlpPolicy", gym.make(env_id), learning_rate=3e-4, buffer_size=1_000_000,
        learning_starts=learning_starts, batch_size=BATCH, tau=0.005, gamma=0.99,
        train_freq=1, gradient_steps=1, ent_coef="auto", target_entropy="auto",
        policy_kwargs={"net_arch": list(HIDDEN)}, seed=seed, device="cpu", verbose=0,
    )


def our_config(env_id: str, seed: int, steps: int, learning_starts: int, out: Path) -> TrainConfig:
    return TrainConfig(
        env=env_id, total_steps=steps, seed=seed, out=out, learning_starts=learning_starts,
        num_envs=1, num_workers=0, normalize_obs=False, eval_interval=0, eval_episodes=1,
        checkpoint_interval=10**9, log_interval=1000,
        sac=SACConfig(actor_hidden=HIDDEN, critic_hidden=HIDDEN, batch_size=BATCH),
    )


# --- part 1: updates/s ---------------------------------------------------------------------
def fill_transitions(env_id: str, n: int) -> dict[str, np.ndarray]:
    env = gym.make(env_id)
    obs, _ = env.reset(seed=0)
    rows: dict[str, list[Any]] = {k: [] for k in ("obs", "next_obs", "actions", "rewards", "terminated")}
    for _ in range(n):
        action = env.action_space.sample()
        next_obs, reward, term, trunc, _ = env.step(action)
        for k, v in zip(rows, (obs, next_obs, action, reward, term), strict=True):
            rows[k].append(v)
        obs = env.reset()[0] if term or trunc else next_obs
    env.close()
    return {k: np.asarray(v, dtype=np.float32) for k, v in rows.items()}


def ours_updates_per_second(env_id: str, data: dict[str, np.ndarray], updates: int) -> float:
    obs_dim, act_dim = data["obs"].shape[1], data["actions"].shape[1]
    sac = SAC(SACConfig(actor_hidden=HIDDEN, critic_hidden=HIDDEN, batch_size=BATCH), obs_dim, act_dim)
    buffer = ReplayBuffer(len(data["rewards"]), obs_dim, act_dim)
    buffer.add(data["obs"], data["actions"], data["rewards"], data["next_obs"], data["terminated"])
    rng = np.random.default_rng(0)
    norm = RunningNormalizer(obs_dim)  # identity statistics: same work as a real run's normalize step
    for i in range(updates + 20):
        if i == 20:
            start = time.perf_counter()
        batch = buffer.sample(BATCH, rng)
        batch["obs"] = norm.normalize_torch(batch["obs"])
        batch["next_obs"] = norm.normalize_torch(batch["next_obs"])
        sac.update(batch)
    return updates / (time.perf_counter() - start)


def sb3_updates_per_second(env_id: str, data: dict[str, np.ndarray], updates: int) -> float:
    model = sb3_model(env_id, seed=0, learning_starts=0)
    model._setup_learn(total_timesteps=1)
    for i in range(len(data["rewards"])):
        model.replay_buffer.add(
            data["obs"][i : i + 1], data["next_obs"][i : i + 1], data["actions"][i : i + 1],
            data["rewards"][i : i + 1], data["terminated"][i : i + 1], [{}],
        )
    model.train(gradient_steps=20, batch_size=BATCH)
    start = time.perf_counter()
    model.train(gradient_steps=updates, batch_size=BATCH)
    return updates / (time.perf_counter() - start)


# --- part 2: learning at equal steps ----------------------------------------------------------
def ours_run(env_id: str, seed: int, steps: int, learning_starts: int, eval_episodes: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        # Evaluation and checkpoint intervals beyond the run: like SB3's learn(), the
        # timed part only collects and updates.
        trainer = Trainer(our_config(env_id, seed, steps, learning_starts, Path(tmp) / "run"))
        try:
            trainer.open_run()
            start = time.perf_counter()
            trainer.run_loop()
            seconds = time.perf_counter() - start
            result = evaluate(trainer.deterministic_policy, env_id, eval_episodes, seed=10_000)
        finally:
            trainer.close()
    return {"return": result.mean_return, "seconds": seconds}


def sb3_run(env_id: str, seed: int, steps: int, learning_starts: int, eval_episodes: int) -> dict[str, float]:
    model = sb3_model(env_id, seed, learning_starts)
    start = time.perf_counter()
    model.learn(total_timesteps=steps)
    seconds = time.perf_counter() - start

    def policy(obs: np.ndarray) -> np.ndarray:
        # evaluate() takes [-1, 1] actions; SB3 predicts in the env's Box.
        return model.policy.scale_action(model.predict(obs, deterministic=True)[0])

    result = evaluate(policy, env_id, eval_episodes, seed=10_000)
    return {"return": result.mean_return, "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20_000, help="env steps per Pendulum training run")
    parser.add_argument("--seeds", type=int, default=3, help="training runs per implementation")
    parser.add_argument("--learning-starts", type=int, default=1000)
    parser.add_argument("--updates", type=int, default=300, help="gradient steps per throughput sample")
    parser.add_argument("--repeats", type=int, default=3, help="throughput samples per implementation")
    parser.add_argument("--eval-episodes", type=int, default=10)
    parser.add_argument("--skip-ant", action="store_true", help="skip the Ant-v5 throughput rows")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    print(f"train_speed: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads\n")
    print("| env | ours updates/s | SB3 updates/s | ratio (range) |")
    print("|---|---|---|---|")
    for env_id in ["Pendulum-v1"] + ([] if args.skip_ant else ["Ant-v5"]):
        data = fill_transitions(env_id, 2000)
        pairs = [(ours_updates_per_second(env_id, data, args.updates),
                  sb3_updates_per_second(env_id, data, args.updates)) for _ in range(args.repeats)]
        ratios = [o / s for o, s in pairs]
        ours, sb3 = (float(np.median(c)) for c in zip(*pairs, strict=True))
        print(f"| {env_id} | {ours:.1f} | {sb3:.1f} | {np.median(ratios):.2f}x "
              f"({min(ratios):.2f}-{max(ratios):.2f}) |", flush=True)

    print(f"\nlearning on Pendulum-v1: {args.steps} steps, {args.seeds} seeds, eval "
          f"{args.eval_episodes} episodes (deterministic policy)\n")
    print("| impl | seed | eval return | wall s | env steps/s |")
    print("|---|---|---|---|---|")
    summary: dict[str, list[dict[str, float]]] = {"ours": [], "SB3": []}
    for seed in range(args.seeds):
        for name, run in (("ours", ours_run), ("SB3", sb3_run)):
            r = run("Pendulum-v1", seed, args.steps, args.learning_starts, args.eval_episodes)
            summary[name].append(r)
            print(f"| {name} | {seed} | {r['return']:.1f} | {r['seconds']:.0f} | "
                  f"{args.steps / r['seconds']:.0f} |", flush=True)
    print()
    for name, runs in summary.items():
        returns = [r["return"] for r in runs]
        print(f"{name}: eval return {np.mean(returns):.1f} +- {np.std(returns):.1f}, "
              f"env steps/s {np.mean([args.steps / r['seconds'] for r in runs]):.0f}")
    speed = np.mean([r["seconds"] for r in summary["SB3"]]) / np.mean([r["seconds"] for r in summary["ours"]])
    print(f"training wall-clock speedup over SB3: {speed:.2f}x (target >= 1.5x with no loss of return)")


if __name__ == "__main__":
    main()
