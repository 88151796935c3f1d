"""The gait prior alone, judged: what a policy trained with --action-prior starts from.

    python docs/results/quadruped_ablation/gait_prior_open_loop.py     # about 8 minutes on one core

Each configuration's trot (robots/quadruped/gait.py: the clock's lift plus swings in
proportion to the command) is run open loop, as the whole policy, through the judge of
`sim2real eval` (2 episodes per command, DR on, T5's task flags). Result on 2026-11-30:
docs/results.md (G1, G2).
"""

from __future__ import annotations

import numpy as np

from open_loop_trots import T5_FLAGS  # type: ignore[import-not-found]  # (run from this folder's parent or with it on sys.path)
from sim2real.robots.quadruped.joystick import QuadrupedJoystickEnv
from sim2real.robots.registry import task_config
from sim2real.train.evaluate import evaluate

ENV_ID = "sim2real/QuadrupedJoystick-v0"
STEER_4HZ = ["gait.frequency_hz=4", "gait.knee=1", "gait.thigh=0", "gait.sideways_phase=3.14159"]
CONFIGS = {
    # G1: stepping in place only (2.5 Hz, knee flexed: 3 cm of clearance in open-loop tests).
    "in place, 2.5 Hz": ["gait.frequency_hz=2.5", "gait.knee=-0.9"],
    # Steering gains from open_loop_trots.py's best gaits (4 Hz, knee +1): speed / amplitude.
    "steer 4 Hz, gains 0.6/1.3/-0.53": [*STEER_4HZ, "gait.forward_gain=0.6", "gait.sideways_gain=1.3", "gait.turn_gain=-0.53"],
    "steer 4 Hz, gains 1.0/2.5/-1.0": [*STEER_4HZ, "gait.forward_gain=1.0", "gait.sideways_gain=2.5", "gait.turn_gain=-1.0"],
    # G2's prior: between the two above.
    "steer 4 Hz, gains 0.8/2.2/-0.7 (G2)": [*STEER_4HZ, "gait.forward_gain=0.8", "gait.sideways_gain=2.2", "gait.turn_gain=-0.7"],
    # The same steering on the in-place lift: the 4-Hz phases do not carry over.
    "steer 2.5 Hz knee -0.9, gains 0.6/1.3/-0.53": ["gait.frequency_hz=2.5", "gait.knee=-0.9", "gait.sideways_phase=3.14159",
                                                     "gait.forward_gain=0.6", "gait.sideways_gain=1.3", "gait.turn_gain=-0.53"],
}


def main() -> None:
    for name, flags in CONFIGS.items():
        config = [*T5_FLAGS, *flags]
        prior = QuadrupedJoystickEnv(config=task_config(ENV_ID, config)).action_prior
        assert prior is not None
        result = evaluate(lambda obs: prior(obs).astype(np.float32), ENV_ID, 2, seed=0, env_config=config)
        task = result.as_dict()["task"]
        print(f"{name}: falls {task['fall_rate']:.2f}, walking planar error {task['walking_planar_error']:.3f} m/s, "
              f"turn yaw-rate error {task['turn_yaw_error']:.3f} rad/s")
        for case in task["commands"]:
            print(f"  {case['command']:>24}: falls {case['falls']}/2  vx {case['measured_vx']:+.2f}  "
                  f"vy {case['measured_vy']:+.2f}  yaw {case['measured_yaw_rate']:+.2f}")


if __name__ == "__main__":
    main()
