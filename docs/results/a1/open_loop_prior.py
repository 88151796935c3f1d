"""The recipe's gait-clock trot alone (the action prior, no policy) on the A1 under spec
variants, and on our Go1 for reference: does the trot walk the robot before any learning?

    python docs/results/a1/open_loop_prior.py     # prints a markdown table (docs/results.md, A1)

Each command is held 5 s (DR on, seeds 0-2, measured after the first second); a variant is
the shipped a1.toml with its gains or standing pose replaced, written to a temporary file.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import numpy as np

from sim2real.robots.quadruped.joystick import QuadrupedJoystickEnv
from sim2real.robots.quadruped.robot_spec import shipped_specs
from sim2real.robots.registry import task_config

COMMANDS = {"forward 0.5": (0.5, 0, 0), "forward 1.0": (1.0, 0, 0), "backward 0.5": (-0.5, 0, 0),
            "sideways 0.4": (0, 0.4, 0), "turn 1.0": (0, 0, 1.0)}
LEGGED_GYM_POSE = {"FR": "[-0.1, 0.8, -1.5]", "FL": "[0.1, 0.8, -1.5]", "RR": "[-0.1, 1.0, -1.5]", "RL": "[0.1, 1.0, -1.5]"}


def variant(kp: float, legged_gym_pose: bool, folder: Path) -> str:
    text = shipped_specs()["a1"].read_text()
    text = re.sub(r"^kp = [0-9.]+$", f"kp = {kp}", text, flags=re.M)
    if legged_gym_pose:
        for leg, pose in LEGGED_GYM_POSE.items():
            text = re.sub(rf"(\[legs\.{leg}\].*?home = )\[[^\]]*\]", rf"\g<1>{pose}", text, count=1, flags=re.S)
    path = folder / f"a1_kp{kp:g}_{'lg' if legged_gym_pose else 'menagerie'}.toml"
    assert text.count("home = [0.0, 0.9, -1.8]") == (0 if legged_gym_pose else 4), "the pose was not replaced"
    path.write_text(text)
    return str(path)


def measure(robot: str) -> dict[str, tuple[np.ndarray, int]]:
    out = {}
    for name, command in COMMANDS.items():
        velocities, falls = [], 0
        for seed in range(3):
            env = QuadrupedJoystickEnv(config=task_config("sim2real/QuadrupedJoystick-v0", [f"robot={robot}"]))
            obs, _ = env.reset(seed=seed, options={"command": command})
            measured = []
            for i in range(250):
                obs, _, terminated, _, _ = env.step(env.action_prior(obs))
                if i >= 50:
                    measured.append((*env.heading_frame_velocity(), env.world_yaw_rate()))
                if terminated:
                    falls += 1
                    break
            if measured:
                velocities.append(np.mean(measured, axis=0))
            env.close()
        out[name] = (np.mean(velocities, axis=0), falls)
    return out


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        variants = {
            "A1, legged_gym Kp 20, legged_gym stance": variant(20.0, True, folder),
            "A1, Kp 35, legged_gym stance (run A1-L)": variant(35.0, True, folder),
            "A1, Kp 35, Menagerie stance (shipped a1.toml, run A1-M)": variant(35.0, False, folder),
            "go1 (reference)": "go1",
        }
        print("| variant | " + " | ".join(COMMANDS) + " |")
        print("|---|" + "---|" * len(COMMANDS))
        for label, robot in variants.items():
            cells = []
            for name, (v, falls) in measure(robot).items():
                value = v[2] if name.startswith("turn") else (v[1] if name.startswith("sideways") else v[0])
                cells.append(f"{value:+.2f}" + (f" ({falls}/3 fell)" if falls else ""))
            print(f"| {label} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
