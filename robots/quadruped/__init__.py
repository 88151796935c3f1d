"""Quadrupeds: robot specs (one TOML per robot, specs/), the model built from a robot's
URDF or MJCF (build.py), the joystick locomotion task, domain randomization. Our Go1-class
model is the spec go1; the A1, Laikago, Mini Cheetah, Spirit 40 and Vision 60 are built
from the description files the pybullet package ships."""
