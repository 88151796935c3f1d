"""Env steps/s of our robots next to gymnasium's Ant-v5, single and vectorized, in one run.

    python benchmarks/sim_speed.py                # full table (about 5 minutes on 2 cores)
    python benchmarks/sim_speed.py --steps 500    # quick look

Every env is stepped with the same pre-drawn uniform random actions through ``gym.make``
(so every env pays the same gymnasium wrapper overhead), resetting on episode end.
"single" steps one env in this process. "ours xN" is sim2real.robots.vector.SubprocVectorEnv
with N envs over one worker process per core; "gym async" is gymnasium's AsyncVectorEnv
with one process per env (the reference). "ceiling" runs one process per core stepping its
envs with no synchronisation at all: what this machine's cores deliver in parallel, which
no lockstep vector env can beat. Scaling = vectorized steps/s / single steps/s.
Targets (issue 2): quadruped with DR at least as fast per step as Ant-v5 (ratio >= 1), and
vectorized stepping scaling >= 1.7x on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from typing import Any

import gymnasium as gym
import numpy as np

import sim2real.robots  # noqa: F401  (registers our envs)
from sim2real.robots.vector import SubprocVectorEnv

QUADRUPED = "sim2real/QuadrupedJoystick-v0"
HAND = "sim2real/HandCubeRotate-v0"
CASES: list[tuple[str, str, dict[str, Any]]] = [
    ("quadruped (DR)", QUADRUPED, {}),
    ("quadruped (no DR)", QUADRUPED, {"domain_randomization": False}),
    ("hand (DR)", HAND, {}),
    ("hand (no DR)", HAND, {"domain_randomization": False}),
    ("Ant-v5 (reference)", "Ant-v5", {}),
]


def random_actions(space: gym.spaces.Box, n: int, batch: int | None = None) -> np.ndarray:
    rng = np.random.default_rng(0)
    shape = (n,) + ((batch,) if batch else ()) + space.shape
    return rng.uniform(space.low, space.high, shape).astype(space.dtype)


def single_env_rate(env_id: str, kwargs: dict[str, Any], steps: int) -> float:
    env = gym.make(env_id, **kwargs)
    env.reset(seed=0)
    actions = random_actions(env.action_space, steps)
    for action in actions[: min(50, steps)]:  # warm-up: caches, lazy allocations
        env.step(action)
    start = time.perf_counter()
    for action in actions:
        _, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            env.reset()
    rate = steps / (time.perf_counter() - start)
    env.close()
    return rate


def vector_rate(vec: gym.vector.VectorEnv, steps: int) -> float:
    vec.reset(seed=0)
    actions = random_actions(vec.single_action_space, steps, vec.num_envs)
    for action in actions[: min(20, steps)]:
        vec.step(action)
    start = time.perf_counter()
    for action in actions:
        vec.step(action)
    rate = steps * vec.num_envs / (time.perf_counter() - start)
    vec.close()
    return rate


def ours_rate(env_id: str, kwargs: dict[str, Any], steps: int, num_envs: int, workers: int) -> float:
    # workers = cores: this process steps one share, workers - 1 processes the rest.
    return vector_rate(SubprocVectorEnv(env_id, num_envs, num_workers=workers - 1, env_kwargs=kwargs), steps)


def _independent_worker(args: tuple[str, dict[str, Any], int, int]) -> float:
    env_id, kwargs, num_envs, steps = args
    # Spawned workers import this module, and with it sim2real.robots (registering our envs).
    envs = [gym.make(env_id, **kwargs) for _ in range(num_envs)]
    for i, env in enumerate(envs):
        env.reset(seed=i)
    actions = random_actions(envs[0].action_space, steps, num_envs)
    start = time.perf_counter()
    for batch in actions:
        for env, action in zip(envs, batch, strict=True):
            _, _, terminated, truncated, _ = env.step(action)
            if terminated or truncated:
                env.reset()
    return steps * num_envs / (time.perf_counter() - start)


def independent_rate(env_id: str, kwargs: dict[str, Any], steps: int, num_envs: int, workers: int) -> float:
    """The machine's ceiling: ``workers`` processes stepping their envs with no lockstep."""
    import multiprocessing as mp

    per_worker = max(1, num_envs // workers)
    with mp.get_context("spawn").Pool(workers) as pool:
        return float(sum(pool.map(_independent_worker, [(env_id, kwargs, per_worker, steps)] * workers)))


def gym_async_rate(env_id: str, kwargs: dict[str, Any], steps: int, num_envs: int) -> float:
    vec = gym.vector.AsyncVectorEnv(
        [lambda: gym.make(env_id, **kwargs) for _ in range(num_envs)],
        shared_memory=True,
        autoreset_mode=gym.vector.AutoresetMode.SAME_STEP,
    )
    return vector_rate(vec, steps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=3000, help="steps per env per measurement")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="worker processes (default: all cores)")
    parser.add_argument("--envs-per-worker", type=int, default=8, help="envs each worker steps per call")
    parser.add_argument("--repeats", type=int, default=3,
                        help="measure each number this many times, interleaved, and report the median")
    parser.add_argument("--only", type=str, default=None,
                        help="measure only cases whose label contains this text (Ant-v5 always runs)")
    parser.add_argument("--json", type=str, default=None, help="also write the results to this JSON file")
    args = parser.parse_args()
    if min(args.steps, args.workers, args.envs_per_worker, args.repeats) < 1:
        parser.error("--steps, --workers, --envs-per-worker and --repeats must be >= 1")

    num_envs = args.workers * args.envs_per_worker
    vec_steps = max(1, args.steps // args.envs_per_worker)
    rows = []
    cases = [c for c in CASES if args.only is None or args.only in c[0] or c[1] == "Ant-v5"]
    for label, env_id, kwargs in cases:
        print(f"measuring {label} ...", flush=True)
        # Interleaved repeats: a background hiccup hits one sample, not one column.
        samples = [
            (single_env_rate(env_id, kwargs, args.steps),
             ours_rate(env_id, kwargs, vec_steps, num_envs, args.workers),
             gym_async_rate(env_id, kwargs, vec_steps, args.workers),
             independent_rate(env_id, kwargs, vec_steps, num_envs, args.workers))
            for _ in range(args.repeats)
        ]
        single, ours, reference, ceiling = (
            float(np.median(column)) for column in zip(*samples, strict=True)
        )
        # Scaling from each repeat's adjacent measurements, then the median: the machine's
        # speed drifts between repeats, and a ratio of medians would mix two moments.
        ours_scaling = [o / s for s, o, _, _ in samples]
        reference_scaling = [r / s for s, _, r, _ in samples]
        ceiling_scaling = [c / s for s, _, _, c in samples]
        rows.append({"case": label, "env_id": env_id, "single": single,
                     f"ours_x{num_envs}": ours, f"gym_async_x{args.workers}": reference,
                     "ours_scaling": float(np.median(ours_scaling)),
                     "ours_scaling_range": [min(ours_scaling), max(ours_scaling)],
                     "gym_async_scaling": float(np.median(reference_scaling)),
                     "independent": ceiling,
                     "independent_scaling": float(np.median(ceiling_scaling)),
                     "samples": samples})

    ant = next(r for r in rows if r["env_id"] == "Ant-v5")
    print(f"\nsim_speed: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"{args.workers} workers, {args.steps} steps per env per measurement, "
          f"median of {args.repeats}, random actions\n")
    header = (f"| env | single steps/s | vs Ant-v5 single | ours x{num_envs} envs / {args.workers} workers "
              f"| ours scaling (range) | gym async x{args.workers} | gym async scaling "
              f"| ceiling: {args.workers} free-running processes |")
    print(header)
    print("|" + "---|" * 8)
    for r in rows:
        print(f"| {r['case']} | {r['single']:,.0f} | {r['single'] / ant['single']:.2f}x "
              f"| {r[f'ours_x{num_envs}']:,.0f} | {r['ours_scaling']:.2f}x "
              f"({r['ours_scaling_range'][0]:.2f}-{r['ours_scaling_range'][1]:.2f}) "
              f"| {r[f'gym_async_x{args.workers}']:,.0f} | {r['gym_async_scaling']:.2f}x "
              f"| {r['independent']:,.0f} ({r['independent_scaling']:.2f}x) |")
    quad = rows[0]
    per_step = [q[0] / a[0] for q, a in zip(quad["samples"], ant["samples"], strict=False)]
    print(f"\nquadruped (DR) per-step speed vs Ant-v5: {quad['single'] / ant['single']:.2f}x "
          f"(repeats {min(per_step):.2f}-{max(per_step):.2f}; target >= 1.0)")
    print(f"quadruped (DR) vectorized scaling on {args.workers} workers: {quad['ours_scaling']:.2f}x "
          f"(repeats {quad['ours_scaling_range'][0]:.2f}-{quad['ours_scaling_range'][1]:.2f}; "
          f"target >= 1.7 on 2 cores)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"workers": args.workers, "num_envs": num_envs, "steps": args.steps, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
