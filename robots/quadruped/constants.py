"""Names, default pose and gains of the Go1-class quadruped (docs/robot_facts.md).

Everything else looks ids up by these names at init; no module hard-codes an index.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np

XML_DIR = Path(str(resources.files("sim2real.robots.quadruped") / "xmls"))
SCENE_XML = XML_DIR / "scene_flat.xml"

LEG_NAMES = ("FR", "FL", "RR", "RL")
JOINT_KINDS = ("hip", "thigh", "calf")  # abduction, hip flexion, knee
JOINT_NAMES = tuple(f"{leg}_{kind}_joint" for leg in LEG_NAMES for kind in JOINT_KINDS)
ACTUATOR_NAMES = tuple(f"{leg}_{kind}" for leg in LEG_NAMES for kind in JOINT_KINDS)
FOOT_GEOMS = tuple(f"{leg}_foot" for leg in LEG_NAMES)
FOOT_SITES = tuple(f"{leg}_foot_site" for leg in LEG_NAMES)
TOUCH_SENSORS = tuple(f"{leg}_touch" for leg in LEG_NAMES)
FLOOR_GEOM = "floor"
TRUNK_BODY = "trunk"
IMU_SITE = "imu"
LINK_BODIES = tuple(
    f"{leg}_{link}" for leg in LEG_NAMES for link in ("hip", "thigh", "calf")
)

# Home pose per leg (abduction, hip, knee): Menagerie/Playground keyframe "home".
DEFAULT_POSE = np.tile(np.array([0.0, 0.9, -1.8]), len(LEG_NAMES))
# Trunk height at which the home pose's feet just touch the floor (see scene_flat.xml).
DEFAULT_TRUNK_HEIGHT = 0.289

# PD gains of the position actuators (Playground go1: Kp 35, Kd 0.5).
KP = 35.0
KD = 0.5
# Motor torque limits per joint kind, N m (Menagerie go1 forcerange).
TORQUE_LIMITS = np.tile(np.array([23.7, 23.7, 35.55]), len(LEG_NAMES))

CONTROL_DT = 0.02  # 50 Hz policy
# Velocity tracking is measured after this many seconds of an episode (the robot starts at
# rest); the judge (sim2real eval) and the controller's tracking figures share it.
TRACKING_SETTLE_S = 1.0
# A foot counts as in contact when its touch sensor reads more than this normal force (N);
# the robot weighs ~125 N, so a loaded foot reads tens of newtons.
CONTACT_FORCE_THRESHOLD = 1.0
TRUNK_MASS = 5.204  # kg, Menagerie go1 trunk
