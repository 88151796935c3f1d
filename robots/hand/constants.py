"""Names, default pose and gains of the LEAP-class hand and its cube (docs/robot_facts.md).

Everything else looks ids up by these names at init; no module hard-codes an index.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np

XML_DIR = Path(str(resources.files("sim2real.robots.hand") / "xmls"))
SCENE_XML = XML_DIR / "scene.xml"

# Joint order of Playground's leap_hand constants: index, middle, ring (mcp, rot, pip, dip),
# then thumb (cmc, axl, mcp, ipl).
FINGER_NAMES = ("if", "mf", "rf")
FINGER_JOINT_KINDS = ("mcp", "rot", "pip", "dip")
THUMB_JOINT_KINDS = ("cmc", "axl", "mcp", "ipl")
JOINT_NAMES = tuple(
    f"{finger}_{kind}" for finger in FINGER_NAMES for kind in FINGER_JOINT_KINDS
) + tuple(f"th_{kind}" for kind in THUMB_JOINT_KINDS)
# Each position actuator carries its joint's name (MuJoCo names are per object type).
ACTUATOR_NAMES = JOINT_NAMES
TIP_NAMES = ("if", "mf", "rf", "th")
FINGERTIP_GEOMS = tuple(f"{tip}_tip" for tip in TIP_NAMES)
FINGERTIP_SITES = FINGERTIP_GEOMS
TOUCH_SENSORS = tuple(f"{tip}_touch" for tip in TIP_NAMES)
FINGERTIP_POS_SENSORS = tuple(f"{tip}_tip_pos" for tip in TIP_NAMES)
# The four links of each finger and of the thumb, base to tip (Playground body names).
LINK_BODIES = tuple(
    f"{finger}_{link}" for finger in FINGER_NAMES for link in ("bs", "px", "md", "ds")
) + ("th_mp", "th_bs", "th_px", "th_ds")
PALM_BODY = "palm"
PALM_SITE = "palm"
CUBE_BODY = "cube"
CUBE_GEOM = "cube"
CUBE_JOINT = "cube_freejoint"
CUBE_SITE = "cube_center"

# Home pose (Playground rotate-z keyframe): fingers (mcp 0.8, rot 0, pip 0.8, dip 0.8),
# thumb (cmc 0.8, axl 0.8, mcp 0.8, ipl 0). The curled fingers form the cup the cube
# rests against.
DEFAULT_POSE = np.array([0.8, 0.0, 0.8, 0.8] * len(FINGER_NAMES) + [0.8, 0.8, 0.8, 0.0])

# Position servo gain and the joint damping that plays the servo's D term (Playground).
KP = 3.0
KD = 0.2
# Dynamixel XL330-M288-T stall torque, N m, on every joint.
TORQUE_LIMIT = 0.2196
TORQUE_LIMITS = np.full(len(JOINT_NAMES), TORQUE_LIMIT)

CONTROL_DT = 0.05  # 20 Hz policy (Playground leap_hand ctrl_dt)
CUBE_EDGE = 0.07  # m
CUBE_MASS = 0.108  # kg

# --- the valve of sim2real/HandValveTurn-v0 (xmls/valve_scene.xml) --------------------------
VALVE_SCENE_XML = XML_DIR / "valve_scene.xml"
VALVE_BODY = "valve"
VALVE_JOINT = "valve_hinge"
VALVE_HUB_GEOM = "valve_hub"
VALVE_SPOKE_GEOMS = ("valve_spoke0", "valve_spoke1", "valve_spoke2")
VALVE_GEOMS = (VALVE_HUB_GEOM, *VALVE_SPOKE_GEOMS)
# Sensors of the valve's encoder: angle (rad, counter-clockwise seen from above) and rate.
VALVE_ANGLE_SENSOR = "valve_angle"
VALVE_ANGVEL_SENSOR = "valve_angvel"
# The knob looks the same after a third of a turn.
VALVE_SPOKES = len(VALVE_SPOKE_GEOMS)
