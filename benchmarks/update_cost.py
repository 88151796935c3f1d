"""Cost of one SAC gradient update for the quadruped recipe's shapes, variants side by side.

    python benchmarks/update_cost.py                   # torch threads 1 and 2
    python benchmarks/update_cost.py --threads 1 --updates 300

The quadruped joystick recipe (docs/results.md: T5 + L1 + LN) trains 48-entry actor
observations, 138-entry privileged critic observations (asymmetric critic), 12 actions,
two critics with LayerNorm, batch 256. The wall clock of a run is mostly these updates, so
this measures what a cheaper update would buy, on random batches of those shapes (the
update's cost does not depend on the numbers): the reference is the recipe's own setting
(256x256 networks, batch 256); each variant prints its time per update and its ratio to
the reference, measured interleaved in one process (rounds of every variant in turn), so
a background load affects every row alike. Stop or pause other work for clean figures.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import torch

from sim2real.train.sac import SAC, SACConfig

OBS, CRITIC_OBS, ACT = 48, 138, 12

# name -> (SACConfig overrides, batch size)
VARIANTS: dict[str, dict[str, object]] = {
    "recipe: 256x256, batch 256": {},
    "batch 128": {"batch_size": 128},
    "critics 128x128": {"critic_hidden": (128, 128)},
    "actor+critics 128x128": {"critic_hidden": (128, 128), "actor_hidden": (128, 128)},
    "actor+critics 128x128, batch 128": {"critic_hidden": (128, 128), "actor_hidden": (128, 128),
                                         "batch_size": 128},
    "actor delay 2": {"actor_delay": 2},
    "no critic LayerNorm": {"critic_layernorm": False},
}


def make(overrides: dict[str, object]) -> tuple[SAC, dict[str, torch.Tensor]]:
    base = {"gamma": 0.97, "init_alpha": 0.1, "target_entropy": -6.0, "critic_layernorm": True,
            "asymmetric": True}
    config = SACConfig(**{**base, **overrides})
    sac = SAC(config, OBS, ACT, critic_obs_dim=CRITIC_OBS)
    n = config.batch_size
    batch = {
        "obs": torch.randn(n, OBS), "next_obs": torch.randn(n, OBS),
        "critic_obs": torch.randn(n, CRITIC_OBS), "next_critic_obs": torch.randn(n, CRITIC_OBS),
        "actions": torch.rand(n, ACT) * 2 - 1, "rewards": torch.randn(n), "terminated": torch.zeros(n),
    }
    return sac, batch


def time_updates(sac: SAC, batch: dict[str, torch.Tensor], updates: int) -> float:
    start = time.perf_counter()
    for _ in range(updates):
        sac.update(batch)
    return (time.perf_counter() - start) / updates


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--updates", type=int, default=100, help="updates per timing round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print(f"SAC update cost, quadruped recipe shapes (obs {OBS}, critic obs {CRITIC_OBS}, act {ACT}); "
          f"torch {torch.__version__}, {platform.machine()}, {os.cpu_count()} cores; load average "
          f"{os.getloadavg()[0]:.2f} at start")
    for threads in args.threads:
        torch.set_num_threads(threads)
        learners = {name: make(overrides) for name, overrides in VARIANTS.items()}
        for sac, batch in learners.values():  # warm-up: allocator, first-call overheads
            time_updates(sac, batch, 10)
        samples: dict[str, list[float]] = {name: [] for name in learners}
        for _ in range(args.rounds):
            for name, (sac, batch) in learners.items():
                samples[name].append(time_updates(sac, batch, args.updates))
        reference = statistics.median(samples[next(iter(VARIANTS))])
        print(f"\ntorch threads {threads} (median of {args.rounds} rounds of {args.updates} updates):")
        print("| variant | ms / update | ratio to the recipe |\n|---|---|---|")
        for name, values in samples.items():
            median = statistics.median(values)
            print(f"| {name} | {1000 * median:.2f} | {median / reference:.2f} |")
    print(f"\nload average at the end {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
