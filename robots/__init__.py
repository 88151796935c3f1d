"""Robots: MJCF models, gymnasium tasks and domain randomization, one folder per robot.

The bottom room: may import nothing else of sim2real. Importing this package registers
``sim2real/QuadrupedJoystick-v0``, ``sim2real/HandCubeRotate-v0`` and
``sim2real/HandValveTurn-v0`` with gymnasium.
"""

from sim2real.robots.registry import (
    ENVS,
    EnvRecord,
    UnknownEnvError,
    get_record,
    make,
    register_all,
)

register_all()

__all__ = ["ENVS", "EnvRecord", "UnknownEnvError", "get_record", "make", "register_all"]
