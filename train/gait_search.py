"""Search for an open-loop finger gait that turns the free cube: the cross-entropy method.

    python -m sim2real.train.gait_search --out robots/hand/cube_gait.json

Each candidate is a :class:`~sim2real.robots.hand.cube_gait.CubeGait` (64 numbers: offset,
two half-period swings and a cosine swing per actuator) played open loop through the
task's own gait clock (``HandCubeRotate-v0`` with ``gait_frequency_hz``), DR on. A
candidate scores its mean counter-clockwise turn rate over ``--episodes`` episodes of
``--episode-steps`` steps, read from simulator state by the hand judge
(train/hand_judge.py), less ``--drop-penalty`` (rad/s) per dropped cube. Every candidate of
a round plays the same episode seeds (common random numbers: candidates differ, the draws
of domain randomization do not); each round refits a Gaussian to the best ``--elite`` of
``--population``, its standard deviation floored at ``--min-std`` so the search keeps
looking. Deterministic for a given ``--seed``.

Derivative-free and cheap (one core, about 15 s per round of 24 x 4 ten-second episodes):
it finds a gait in minutes where SAC did not in 300k steps. The result file holds the gait
(the mean of the last round), the command, each round's scores and the final gait's turn
rate on full 20-s episodes of fresh seeds; the env reads its gait from
robots/hand/cube_gait.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from sim2real.robots.hand.cube_gait import N_ACTIONS, CubeGait
from sim2real.robots.hand.cube_rotate import ENV_ID

CHECK_SEED = 1_000_000
"""Seeds of the final check (full episodes), apart from the search's."""


@dataclasses.dataclass(frozen=True)
class GaitSearchConfig:
    frequency_hz: float = 0.5
    iterations: int = 35
    population: int = 24
    elite: int = 5
    episodes: int = 4
    episode_steps: int = 200
    init_std: float = 0.6
    min_std: float = 0.05
    drop_penalty: float = 1.0
    check_episodes: int = 10
    seed: int = 0

    def __post_init__(self) -> None:
        checks = {
            "frequency_hz": (0 < self.frequency_hz <= 10, "in (0, 10]"),
            "iterations": (self.iterations >= 1, ">= 1"),
            "population": (self.population >= 2, ">= 2"),
            "elite": (1 <= self.elite <= self.population, f"in [1, population={self.population}]"),
            "episodes": (self.episodes >= 1, ">= 1"),
            "episode_steps": (self.episode_steps >= 1, ">= 1"),
            "init_std": (self.init_std > 0, "> 0"),
            "min_std": (self.min_std >= 0, ">= 0"),
            "drop_penalty": (self.drop_penalty >= 0, ">= 0"),
            "check_episodes": (self.check_episodes >= 0, ">= 0"),
        }
        for name, (ok, allowed) in checks.items():
            if not ok:
                raise ValueError(f"gait search: {name} must be {allowed}, got {getattr(self, name)!r}")


@dataclasses.dataclass(frozen=True)
class GaitScore:
    turn_rate: float
    """Mean counter-clockwise turn rate over the episodes, rad/s."""
    drops: int
    episodes: int

    def fitness(self, drop_penalty: float) -> float:
        return self.turn_rate - drop_penalty * self.drops / self.episodes


class GaitEvaluator:
    """Plays gaits open loop on one env (the task with a gait clock, DR on or off)."""

    def __init__(self, frequency_hz: float, domain_randomization: bool = True) -> None:
        from sim2real.train.hand_judge import TurnDirection, make_hand_env

        self.frequency_hz = frequency_hz
        self.env = make_hand_env(ENV_ID, domain_randomization, [f"gait_frequency_hz={frequency_hz}"])
        self.case = TurnDirection("counter-clockwise", +1)

    def score(self, gait: CubeGait, seeds: list[int], steps: int | None) -> GaitScore:
        from sim2real.train.hand_judge import run_turn_episode

        prior = gait.prior(self.env.observation_names)
        episodes = [run_turn_episode(self.env, prior, self.case, seed, max_steps=steps) for seed in seeds]
        return GaitScore(float(np.mean([e.turn_rate for e in episodes])),
                         sum(e.dropped for e in episodes), len(episodes))

    def close(self) -> None:
        self.env.close()


def search_gait(config: GaitSearchConfig, log: Any = print) -> dict[str, Any]:
    """Run the search; the result dict (gait, rounds, check) as the JSON file holds it."""
    rng = np.random.default_rng(config.seed)
    dim = 4 * N_ACTIONS
    mean, std = np.zeros(dim), np.full(dim, config.init_std)
    evaluator = GaitEvaluator(config.frequency_hz)
    rounds = []
    started = time.perf_counter()
    try:
        for round_index in range(config.iterations):
            seeds = [int(s) for s in rng.integers(0, CHECK_SEED, config.episodes)]
            candidates = mean + std * rng.standard_normal((config.population, dim))
            candidates[0] = mean  # the current mean is always scored (on this round's seeds)
            scores = [evaluator.score(CubeGait.from_vector(config.frequency_hz, c), seeds, config.episode_steps)
                      for c in candidates]
            fitness = np.array([s.fitness(config.drop_penalty) for s in scores])
            order = np.argsort(-fitness, kind="stable")
            elite = candidates[order[: config.elite]]
            mean, std = elite.mean(axis=0), np.maximum(elite.std(axis=0), config.min_std)
            best = scores[order[0]]
            rounds.append({
                "round": round_index, "seeds": seeds,
                "best_turn_rate": best.turn_rate, "best_drops": best.drops,
                "mean_gait_turn_rate": scores[0].turn_rate, "mean_gait_drops": scores[0].drops,
                "elite_fitness_mean": float(fitness[order[: config.elite]].mean()),
                "elapsed_s": time.perf_counter() - started,
            })
            log(f"round {round_index + 1}/{config.iterations}: best {best.turn_rate:+.3f} rad/s "
                f"({best.drops} drops), last mean {scores[0].turn_rate:+.3f} rad/s "
                f"({scores[0].drops} drops), elite {rounds[-1]['elite_fitness_mean']:+.3f} "
                f"[{time.perf_counter() - started:.0f} s]")
        gait = CubeGait.from_vector(config.frequency_hz, mean)
        check = None
        if config.check_episodes:
            seeds = list(range(CHECK_SEED, CHECK_SEED + config.check_episodes))
            score = evaluator.score(gait, seeds, None)  # whole episodes, as the judge runs them
            check = {"seeds": f"{seeds[0]}-{seeds[-1]}", "episodes": score.episodes,
                     "turn_rate": score.turn_rate, "drops": score.drops, "domain_randomization": True}
            log(f"the gait on {score.episodes} full episodes (seeds {check['seeds']}, DR on): "
                f"{score.turn_rate:+.3f} rad/s counter-clockwise, {score.drops} drops")
    finally:
        evaluator.close()
    return {"env_id": ENV_ID, "gait": gait.to_dict(), "search": dataclasses.asdict(config),
            "check": check, "rounds": rounds, "wall_s": time.perf_counter() - started}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    defaults = GaitSearchConfig()
    for field in dataclasses.fields(GaitSearchConfig):
        parser.add_argument(f"--{field.name.replace('_', '-')}", type=type(getattr(defaults, field.name)),
                            default=getattr(defaults, field.name))
    parser.add_argument("--out", type=Path, required=True, help="where the gait goes (JSON)")
    args = parser.parse_args(argv)
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(GaitSearchConfig)}
    try:
        config = GaitSearchConfig(**values)
    except ValueError as err:
        parser.error(str(err))
    result = search_gait(config, log=lambda line: print(line, flush=True))
    result["command"] = "python -m sim2real.train.gait_search " + shlex.join(
        sys.argv[1:] if argv is None else argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, allow_nan=False) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
