"""How far a policy trained with --action-prior strays from the trot it started from.

    python docs/results/quadruped_ablation/residual_vs_prior.py RUN_DIR     # seconds

Rolls the run's deterministic policy out for 3 s on three commands (sideways 0.4, turn 0.8,
forward 0.5; seed 0, DR on) and prints, per joint kind and leg (FR, FL, RR, RL): the spread
of the trot's and the policy's actions, their correlation over the rollout, and the mean
of policy - trot (action units). Result on 2026-11-30: docs/results.md (G runs).
"""

from __future__ import annotations

import json
import sys

import numpy as np

from sim2real.robots.quadruped.joystick import QuadrupedJoystickEnv
from sim2real.robots.registry import task_config
from sim2real.train.export import RunPolicy

JOINTS = {"abduction": [0, 3, 6, 9], "thigh": [1, 4, 7, 10], "calf": [2, 5, 8, 11]}


def main(run: str) -> None:
    env_config = json.load(open(f"{run}/config.json"))["env_config"]
    policy = RunPolicy(run)
    env = QuadrupedJoystickEnv(config=task_config("sim2real/QuadrupedJoystick-v0", env_config))
    assert env.action_prior is not None, f"{run} was not trained with a gait clock"
    for command in [(0.0, 0.4, 0.0), (0.0, 0.0, 0.8), (0.5, 0.0, 0.0)]:
        obs, _ = env.reset(seed=0, options={"command": command})
        actions, trot = [], []
        for _ in range(150):
            action = policy(obs[None].astype(np.float32))[0]
            actions.append(action)
            trot.append(env.action_prior(obs))
            obs, _, terminated, _, _ = env.step(action)
            if terminated:
                break
        a, p = np.array(actions), np.array(trot)
        for kind, idx in JOINTS.items():
            corr = [float(np.corrcoef(a[:, i], p[:, i])[0, 1]) if p[:, i].std() > 0 else float("nan") for i in idx]
            print(f"{command} {kind:>9}: trot std {np.round(p[:, idx].std(0), 2)}  policy std "
                  f"{np.round(a[:, idx].std(0), 2)}  corr {np.round(corr, 2)}  mean(policy - trot) "
                  f"{np.round((a - p)[:, idx].mean(0), 2)}")


if __name__ == "__main__":
    main(sys.argv[1])
