"""`sim2real eval --world bullet`: judge a policy on the PyBullet robot, served over gRPC.

The loop a robot controller runs, with PyBullet as the robot: `sim2real serve` starts as
a child process on 127.0.0.1, the driver (replay/bullet_robot.py) reads the model's
metadata over GetPolicyInfo, builds each observation from Bullet's simulated sensors with
the controller library (serve/observation.py), asks the server over a StreamAct session
(deadline and fallback as on a robot), and the MuJoCo judge's commands and metrics
(train/judge.py) are measured from Bullet's state.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np


@dataclasses.dataclass(frozen=True)
class BulletRun:
    result: Any
    """The judge's JudgeResult."""
    robot: str
    steps: int
    fallbacks: int
    deadline_misses: int
    server_exit: int
    log_path: Path | None


def judge_in_bullet(
    model: Path,
    episodes_per_command: int,
    seed: int,
    env_config: Sequence[str],
    commands: Sequence[Any] | None,
    *,
    sensor_noise: bool = True,
    deadline_ms: float = 100.0,
    log_path: Path | None = None,
    ros2_bag: Path | None = None,
    progress: bool = False,
) -> BulletRun:
    """Serve ``model``, drive the Bullet robot of its task config with it, judge it."""
    from sim2real.replay.bullet_robot import BulletQuadruped, ResetDistribution, SensorNoise
    from sim2real.robots.registry import task_config
    from sim2real.serve.client import PolicyClient
    from sim2real.serve.process import spawn_server, stop_server
    from sim2real.train import judge

    cfg = task_config(judge.QUADRUPED_ENV_ID, env_config)
    starts = ResetDistribution(cfg.random_initial_yaw, cfg.init_joint_noise, cfg.init_base_velocity,
                               cfg.episode_steps)
    proc, port, _ = spawn_server(["--model", str(model), "--port", "0", "--host", "127.0.0.1",
                                  "--log-level", "warning"])
    env = None
    fallbacks = steps = misses = 0
    try:
        with PolicyClient(f"127.0.0.1:{port}") as client:
            metadata = dict(client.info().metadata)
            env = BulletQuadruped(cfg.robot, metadata, noise=None if sensor_noise else SensorNoise.off(),
                                  reset_distribution=starts, log_path=log_path,
                                  log_tags={"model": str(model)}, ros2_bag=ros2_bag)
            with client.session(deadline_s=deadline_ms / 1e3) as session:
                bullet = env

                def policy(obs: np.ndarray) -> np.ndarray:
                    nonlocal fallbacks, steps
                    answer = session.step(obs[0])
                    steps += 1
                    fallbacks += int(answer.fallback)
                    bullet.last_answer = {"model_name": answer.model_name, "model_version": answer.model_version,
                                          "latency_ns": int(answer.latency_s * 1e9), "fallback": answer.fallback}
                    return np.asarray(answer.action, np.float32)[None]

                result = judge.judge_joystick(policy, episodes_per_command, seed, env=env,
                                              commands=tuple(commands or judge.DEFAULT_COMMANDS), progress=progress)
                misses = session.deadline_misses
    finally:
        if env is not None:
            env.close()
        code = stop_server(proc)
    return BulletRun(result, cfg.robot, steps, fallbacks, misses, code, log_path)
