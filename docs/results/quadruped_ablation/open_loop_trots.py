"""Can the quadruped walk sideways and turn in place within T5's action bounds? Open-loop trots.

    python docs/results/quadruped_ablation/open_loop_trots.py      # about 5 minutes on one core

Diagonal pairs (FR+RL, FL+RR) alternate at f Hz; a leg's swing half lifts its foot with the
knee (and hip); the abduction joints swing a phase `psi` away from the lift (sideways: all
legs alike; turning: front and rear legs in opposite senses); forward/backward: the hips
swing. Actions in [-1, 1] as the policy's (T5: +-0.4 rad hip and knee, +-0.2 rad abduction
around the home pose). DR off, seed 0, 4 s per rollout, velocities measured from the trunk's
free joint after the first second, in the heading frame. Prints the best parameter sets
for each motion (ranked by the speed asked for less the drift in the other velocities).
Result on 2026-11-30: docs/results.md.
"""

from __future__ import annotations

import itertools

import numpy as np

from sim2real.robots.quadruped.joystick import QuadrupedJoystickEnv
from sim2real.robots.registry import task_config

T5_FLAGS = [  # docs/results.md, T5 (the task flags of the recipe)
    "nonnegative_reward=true", "command_resample_s=5", "observe_linear_velocity=true",
    "action_scale=0.4", "abduction_action_scale=0.2", "rewards.lin_vel_z=-0.5",
    "rewards.ang_vel_xy=-0.05", "rewards.torques=0", "rewards.action_rate=0",
    "rewards.feet_air_time=0", "commands.lin_vel_x_zero_probability=0.1",
    "commands.lin_vel_y_zero_probability=0.75", "commands.yaw_rate_zero_probability=0.5",
    "init_base_velocity=0.5",
]
PAIR = (0, 1, 1, 0)  # FR, FL, RR, RL: trot pairs


def trot(motion: str, f: float, knee: float, hip: float, amplitude: float, psi: float, t: float) -> np.ndarray:
    a = np.zeros(12)
    for leg, pair in enumerate(PAIR):
        p = 2 * np.pi * f * t + (np.pi if pair else 0.0)
        lift = max(np.sin(p), 0.0)
        a[3 * leg + 2] = knee * lift
        a[3 * leg + 1] = hip * lift
        if motion == "sideways":
            a[3 * leg + 0] = amplitude * np.sin(p + psi)
        elif motion == "turn":
            a[3 * leg + 0] = (1.0 if leg < 2 else -1.0) * amplitude * np.sin(p + psi)
        else:  # forward/backward: the hips swing
            a[3 * leg + 1] += amplitude * np.sin(p + psi)
    return np.clip(a, -1.0, 1.0)


def rollout(env: QuadrupedJoystickEnv, motion: str, params: tuple[float, ...], seconds: float = 4.0) -> tuple[bool, np.ndarray]:
    env.reset(seed=0, options={"command": (0.0, 0.0, 0.0)})
    dt, measured = env.control_dt, []
    for step in range(int(seconds / dt)):
        _, _, terminated, _, _ = env.step(trot(motion, *params, step * dt))
        if terminated:
            return True, np.zeros(3)
        if step * dt > 1.0:
            w, x, y, z = env.data.qpos[3:7]
            yaw = np.arctan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z))
            vx, vy = env.data.qvel[0:2]
            measured.append((np.cos(yaw) * vx + np.sin(yaw) * vy, -np.sin(yaw) * vx + np.cos(yaw) * vy, env.data.qvel[5]))
    return False, np.mean(measured, axis=0)


def main() -> None:
    env = QuadrupedJoystickEnv(config=task_config("sim2real/QuadrupedJoystick-v0", T5_FLAGS), domain_randomization=False)
    phases = [0, np.pi / 2, np.pi, -np.pi / 2]
    grid = list(itertools.product([2.0, 3.0, 4.0], [-1.0, 1.0], [0.0, 0.5, -0.5], [0.5, 1.0], phases))
    # Clean motions only: the speed asked for, less what drifts (other velocities).
    score = {
        "sideways": lambda vx, vy, wz: abs(vy) - abs(vx) - 0.3 * abs(wz),
        "turn": lambda vx, vy, wz: abs(wz) - 2 * np.hypot(vx, vy),
        "forward": lambda vx, vy, wz: vx - abs(vy) - 0.3 * abs(wz),
    }
    for motion in score:
        results = []
        for params in grid:
            fell, (vx, vy, wz) = rollout(env, motion, params)
            if not fell:
                results.append((vx, vy, wz, params))
        results.sort(key=lambda r: -score[motion](*r[:3]))
        print(f"{motion}: {len(results)} of {len(grid)} parameter sets did not fall; the cleanest:")
        for vx, vy, wz, params in results[:3]:
            f, knee, hip, amplitude, psi = params
            print(f"  vx {vx:+.2f} m/s  vy {vy:+.2f} m/s  yaw {wz:+.2f} rad/s   (f {f:g} Hz, knee {knee:+g}, "
                  f"hip {hip:+g}, amplitude {amplitude:g}, phase {psi:+.2f})")
        if motion == "forward":
            vx, vy, wz, params = min(results, key=lambda r: r[0] + abs(r[1]) + 0.3 * abs(r[2]))  # the hips' swing reversed
            print(f"  backward: vx {vx:+.2f} m/s  vy {vy:+.2f} m/s  yaw {wz:+.2f} rad/s with {params}")


if __name__ == "__main__":
    main()
