"""Names and numbers every quadruped here shares; the robot-specific ones (joints, pose,
gains, limits, rates) live in each robot's spec (specs/*.toml, robot_spec.py).
"""

from __future__ import annotations

from sim2real.robots.quadruped.build import (
    ACTUATOR_NAMES,
    FLOOR_GEOM,
    FOOT_GEOMS,
    FOOT_SITES,
    IMU_SITE,
    TOUCH_SENSORS,
)
from sim2real.robots.quadruped.robot_spec import LEG_NAMES

DEFAULT_ROBOT = "go1"
"""The robot of the joystick task when its config names none (the shipped walker's)."""

# Velocity tracking is measured after this many seconds of an episode (the robot starts at
# rest); the judge (sim2real eval) and the controller's tracking figures share it.
TRACKING_SETTLE_S = 1.0
# A foot counts as in contact when its touch sensor reads more than this normal force (N);
# a 12 kg robot weighs ~120 N, so a loaded foot reads tens of newtons.
CONTACT_FORCE_THRESHOLD = 1.0

__all__ = [
    "ACTUATOR_NAMES", "CONTACT_FORCE_THRESHOLD", "DEFAULT_ROBOT", "FLOOR_GEOM", "FOOT_GEOMS",
    "FOOT_SITES", "IMU_SITE", "LEG_NAMES", "TOUCH_SENSORS", "TRACKING_SETTLE_S",
]
