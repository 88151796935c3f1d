"""Ground other than the flat floor: rough ground (a heightfield) and a step.

The flat floor is what every shipped policy trained on. ``TerrainConfig`` (the task's
``terrain`` field, ``--env-config terrain.kind=rough``) turns the floor into one of these,
for a stress test (train/stress.py) or to train on. Both keep the floor's name ``floor``
and its priority, so domain randomization of the floor friction governs them as it
governs the plane:

- ``rough``: the floor geom becomes a heightfield of ``size`` x ``size`` m, cells of
  ``cell`` m, each cell's height drawn once from U(0, ``height``) with ``seed``
  (the same ground for every episode, so a judge is repeatable), except a flat patch of
  ``flat_radius`` m around the origin where the robot starts, at height 0;
- ``step``: the floor stays flat and a box ``step`` of ``height`` m rises beside it; the
  env puts its near edge ``distance`` m ahead of the robot, across the direction the
  command asks for, at every reset (``place_step``).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

import mujoco
import numpy as np

FLOOR_GEOM = "floor"
STEP_GEOM = "step"
TERRAIN_HFIELD = "terrain"

TerrainKind = Literal["flat", "rough", "step"]
STEP_DEPTH = 20.0
"""Length of the step's top along the direction of travel, m: a robot that climbs it walks
on it for the rest of the episode."""
STEP_WIDTH = 20.0


@dataclasses.dataclass(frozen=True)
class TerrainConfig:
    """The ground: ``flat`` (the floor every shipped policy trained on), ``rough`` or
    ``step`` (see the module docstring for what each builds)."""

    kind: TerrainKind = "flat"
    """flat, rough (a heightfield of random bumps) or step (a box ahead of the robot)."""
    height: float = 0.04
    """rough: the highest bump, m (cells ~ U(0, height)); step: its height, m."""
    cell: float = 0.1
    """rough: the side of one heightfield cell, m."""
    size: float = 50.0
    """rough: side of the square of rough ground, m, centred on the origin: larger than any
    20 s episode walks (1 m/s x 20 s from the centre)."""
    flat_radius: float = 0.5
    """rough: radius of the flat patch at height 0 where the robot starts, m."""
    seed: int = 0
    """rough: seed of the bumps (the same ground for every episode of an env)."""
    distance: float = 0.6
    """step: how far ahead of the trunk origin the step's edge is at reset, m."""

    def __post_init__(self) -> None:
        checks = {
            "kind": self.kind in ("flat", "rough", "step"),
            "height": math.isfinite(self.height) and 0 < self.height <= 0.5,
            "cell": math.isfinite(self.cell) and 0.01 <= self.cell <= 1.0,
            "size": math.isfinite(self.size) and 1.0 <= self.size <= 200.0,
            "flat_radius": math.isfinite(self.flat_radius) and 0 <= self.flat_radius < self.size / 2,
            "distance": math.isfinite(self.distance) and self.distance > 0,
            "seed": isinstance(self.seed, int) and self.seed >= 0,
        }
        allowed = {
            "kind": "flat, rough or step",
            "height": "in (0, 0.5] m",
            "cell": "in [0.01, 1] m",
            "size": "in [1, 200] m",
            "flat_radius": "in [0, size / 2) m",
            "distance": "> 0 m",
            "seed": "an integer >= 0",
        }
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"TerrainConfig.{name} must be {allowed[name]}, got {getattr(self, name)!r}")
        if self.kind == "rough" and round(self.size / self.cell) + 1 > 2001:
            raise ValueError(
                f"TerrainConfig: size / cell must be at most 2000 cells a side, got "
                f"{self.size:g} / {self.cell:g} = {self.size / self.cell:.0f}"
            )

    @property
    def flat(self) -> bool:
        return self.kind == "flat"

    def describe(self) -> str:
        if self.kind == "rough":
            return f"rough ground, bumps U(0, {self.height * 100:g} cm) on {self.cell * 100:g} cm cells"
        if self.kind == "step":
            return f"a {self.height * 100:g} cm step {self.distance:g} m ahead"
        return "flat floor"


def rough_heights(terrain: TerrainConfig) -> np.ndarray:
    """The heightfield's normalized heights in [0, 1], (rows = y, cols = x), row-major as
    MuJoCo stores them; 0 on the flat patch around the origin."""
    n = round(terrain.size / terrain.cell) + 1
    heights = np.random.default_rng(terrain.seed).uniform(0.0, 1.0, (n, n))
    coords = np.linspace(-terrain.size / 2, terrain.size / 2, n)
    x, y = np.meshgrid(coords, coords)
    heights[np.hypot(x, y) <= terrain.flat_radius] = 0.0
    return heights


def add_terrain(mj: mujoco.MjSpec, terrain: TerrainConfig) -> None:
    """Edit a built robot scene (it has a plane named ``floor``) into ``terrain``."""
    if terrain.flat:
        return
    floor = next((g for g in mj.geoms if g.name == FLOOR_GEOM), None)
    if floor is None:
        raise ValueError(f"the scene has no geom {FLOOR_GEOM!r} to turn into {terrain.kind} ground")
    if terrain.kind == "rough":
        heights = rough_heights(terrain)
        n = heights.shape[0]
        half = terrain.size / 2
        # size: (x radius, y radius, elevation of a height of 1, depth of the base box).
        mj.add_hfield(name=TERRAIN_HFIELD, size=[half, half, terrain.height, 0.1], nrow=n, ncol=n,
                      userdata=heights.ravel().tolist())
        floor.type = mujoco.mjtGeom.mjGEOM_HFIELD
        floor.hfieldname = TERRAIN_HFIELD
        floor.pos = [0.0, 0.0, 0.0]
        return
    # A step: a box beside the floor, with the floor's contact settings, on a mocap body so
    # that the env may move it at every reset (a moved static geom would leave MuJoCo's
    # precomputed bounding volumes of the world body behind).
    body = mj.worldbody.add_body(name=STEP_GEOM, mocap=True,
                                 pos=[terrain.distance + STEP_DEPTH / 2, 0.0, terrain.height / 2])
    body.add_geom(
        name=STEP_GEOM, type=mujoco.mjtGeom.mjGEOM_BOX,
        size=[STEP_DEPTH / 2, STEP_WIDTH / 2, terrain.height / 2],
        contype=floor.contype, conaffinity=floor.conaffinity, friction=list(floor.friction),
        priority=floor.priority, rgba=[0.45, 0.4, 0.35, 1.0],
    )


def place_step(model: mujoco.MjModel, data: mujoco.MjData, terrain: TerrainConfig,
               origin_xy: np.ndarray, direction_yaw: float) -> None:
    """Put the step's near edge ``terrain.distance`` ahead of ``origin_xy`` along
    ``direction_yaw`` (world), its face across that direction (call mj_forward after)."""
    body = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, STEP_GEOM)
    mocap = int(model.body_mocapid[body])
    centre = terrain.distance + STEP_DEPTH / 2
    c, s = math.cos(direction_yaw), math.sin(direction_yaw)
    data.mocap_pos[mocap] = (origin_xy[0] + c * centre, origin_xy[1] + s * centre, terrain.height / 2)
    data.mocap_quat[mocap] = (math.cos(direction_yaw / 2), 0.0, 0.0, math.sin(direction_yaw / 2))
