"""Build a quadruped's MuJoCo model from its spec, with MuJoCo's own model editing API
(MjSpec).

From a URDF or MJCF that describes only the robot, the builder adds what the joystick
task needs, under the names every quadruped here shares (those of our Go1-class MJCF):

- a free joint ``root`` on the base body, a floor ``floor`` (priority 1, so its
  randomized friction governs the foot contacts), light, sky and a tracking camera;
- position actuators ``{leg}_{hip,thigh,calf}`` on the spec's joints: PD with the spec's
  Kp/Kd inside the physics step, torque limited (the file's effort limits unless the spec
  overrides them), control range = joint range;
- joint armature, passive damping and dry friction from the spec;
- an ``imu`` site on the base with gyro, accelerometer, velocimeter, orientation and
  up-vector sensors; per foot a ``{leg}_foot`` sphere, a ``{leg}_foot_site`` with a touch
  sensor ``{leg}_touch`` and position/velocity sensors;
- collision filtering as Playground's go1: only the feet and the base collide, and only
  with the floor. The file's visual meshes render (group 2); its other collision shapes
  are kept, inert, in group 3;
- a ``home`` keyframe: the spec's standing pose, the base raised until the lowest foot
  touches the floor.

A spec with ``assembled = true`` (our Go1-class MJCF) already has all of this; its file is
used as it is, and checked against the spec.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import hashlib
import math
import re
from pathlib import Path

import mujoco
import numpy as np

from sim2real.robots.quadruped.robot_spec import (
    JOINT_KINDS,
    LEG_NAMES,
    QuadrupedSpec,
    RobotSpecError,
    load_spec,
    spec_path,
)
from sim2real.robots.quadruped.terrain import TerrainConfig, add_terrain

ACTUATOR_SUFFIX = {"abduction": "hip", "hip": "thigh", "knee": "calf"}
"""Actuator name per joint kind (``FR_hip`` drives abduction): Menagerie/Playground go1's."""
ACTUATOR_NAMES = tuple(f"{leg}_{ACTUATOR_SUFFIX[kind]}" for leg in LEG_NAMES for kind in JOINT_KINDS)
FOOT_GEOMS = tuple(f"{leg}_foot" for leg in LEG_NAMES)
FOOT_SITES = tuple(f"{leg}_foot_site" for leg in LEG_NAMES)
TOUCH_SENSORS = tuple(f"{leg}_touch" for leg in LEG_NAMES)
FLOOR_GEOM = "floor"
IMU_SITE = "imu"
ROOT_JOINT = "root"
HOME_KEY = "home"
TOUCH_SITE_SCALE = 1.3
"""Touch site radius / foot radius: the site must contain the contact point of a sphere
pressed into the floor (go1: 0.03 around a 0.023 sphere)."""
_VISUAL_GROUP, _INERT_GROUP = 2, 3


@dataclasses.dataclass(frozen=True)
class QuadrupedRobot:
    """A built robot: its spec, a compiled model to copy, and what the task reads of it."""

    spec: QuadrupedSpec
    model: mujoco.MjModel
    """The compiled model. Envs take :meth:`new_model` copies (randomization edits them)."""
    joint_names: tuple[str, ...]
    actuator_names: tuple[str, ...]
    link_bodies: tuple[str, ...]
    """The body each leg joint moves (hip, thigh, calf links), in joint order."""
    base_body: str
    default_pose: np.ndarray
    kp: np.ndarray
    kd: np.ndarray
    torque_limits: np.ndarray
    velocity_limits: np.ndarray | None
    joint_ranges: np.ndarray
    """(12, 2) rad."""
    joint_signs: np.ndarray
    """+1 or -1 per joint: the direction of the joint's axis in the base frame relative to
    the convention of the task (Go1's: abduction about +x, hip and knee about +y, so a
    positive hip angle swings the foot back and a negative knee angle flexes it). The task
    multiplies actions by it, so an action means the same motion on every robot (and the
    gait prior moves every robot alike); joint readings stay in the file's own angles."""
    base_mass: float
    total_mass: float
    standing_height: float
    """Height of the base origin in the home keyframe (feet touching the floor), m."""
    control_dt: float
    sha256: str
    """Of the spec file and the description file together: what an exported policy
    records, so that a robot changed since (a spec edited, another pybullet release) is
    noticed (``robot_sha256`` in the ONNX metadata; `sim2real eval` warns)."""

    @property
    def name(self) -> str:
        return self.spec.name

    def new_model(self, terrain: TerrainConfig | None = None) -> mujoco.MjModel:
        """A private copy of the compiled model, on ``terrain`` (default: the flat floor)."""
        if terrain is None or terrain.flat:
            return copy.copy(self.model)
        return copy.copy(_terrain_model(self.spec, terrain))


def load_robot(robot: str | Path | QuadrupedSpec) -> QuadrupedRobot:
    """Build (once per process and spec file) the robot named or pointed to."""
    if isinstance(robot, QuadrupedSpec):
        return build_robot(robot)
    path = spec_path(str(robot)).resolve()
    try:
        mtime_ns = path.stat().st_mtime_ns
    except OSError:
        return build_robot(load_spec(path))  # load_spec says what is wrong with the path
    return _build_cached(path, mtime_ns)


@functools.lru_cache(maxsize=16)
def _build_cached(path: Path, mtime_ns: int) -> QuadrupedRobot:
    del mtime_ns  # part of the cache key: a spec file edited in place builds again
    return build_robot(load_spec(path))


def build_robot(spec: QuadrupedSpec) -> QuadrupedRobot:
    """Build and check the model of ``spec`` (RobotSpecError naming the field on a mismatch)."""
    if spec.assembled:
        model = _compile(mujoco.MjSpec.from_file(str(spec.description)), spec)
    else:
        model = _compile(_assemble(spec), spec)
    return _describe(spec, model)


_TERRAIN_MODELS: dict[tuple[str, TerrainConfig], mujoco.MjModel] = {}
"""Compiled robot-on-terrain models, keyed by the spec's repr (a spec is a dataclass with
dicts inside, so not hashable) and the terrain."""


def _terrain_model(spec: QuadrupedSpec, terrain: TerrainConfig) -> mujoco.MjModel:
    key = (repr(spec), terrain)
    if key not in _TERRAIN_MODELS:
        mj = mujoco.MjSpec.from_file(str(spec.description)) if spec.assembled else _assemble(spec)
        add_terrain(mj, terrain)
        if len(_TERRAIN_MODELS) >= 8:
            _TERRAIN_MODELS.pop(next(iter(_TERRAIN_MODELS)))
        _TERRAIN_MODELS[key] = _compile(mj, spec)
    return _TERRAIN_MODELS[key]


def model_xml(spec: QuadrupedSpec) -> str:
    """The built model as MJCF text (``sim2real robots check --xml``)."""
    mj = mujoco.MjSpec.from_file(str(spec.description)) if spec.assembled else _assemble(spec)
    mj.compile()
    return mj.to_xml()


def _compile(mj: mujoco.MjSpec, spec: QuadrupedSpec) -> mujoco.MjModel:
    try:
        return mj.compile()
    except ValueError as err:
        raise RobotSpecError(f"{spec.path}: MuJoCo cannot compile {spec.description}: {err}") from None


# --- reading the description file -------------------------------------------------------
def _read_description(spec: QuadrupedSpec) -> mujoco.MjSpec:
    """The description file as an MjSpec with visuals kept and static bodies unfused."""
    options = {"discardvisual": False, "fusestatic": False, **spec.compiler}
    if spec.is_urdf:
        # URDF's compiler options must be in the file (a <mujoco> element) before it is
        # parsed: the parser drops visuals and fuses bodies as it reads. The file is read
        # from where it is installed and changed in memory only.
        text = spec.description.read_text(encoding="utf-8")
        attrs = " ".join(f'{k}="{_xml_value(v)}"' for k, v in options.items())
        meshdir = str(spec.description.parent).replace('"', "&quot;")
        element = f'<mujoco><compiler {attrs} meshdir="{meshdir}/" strippath="false"/></mujoco>'
        text, n = re.subn(r"(<robot\b[^>]*>)", lambda m: m.group(1) + element, text, count=1)
        if n != 1:
            raise RobotSpecError(f"{spec.path}: description.file: {spec.description} has no <robot> element")
        try:
            return mujoco.MjSpec.from_string(text)
        except ValueError as err:
            raise RobotSpecError(f"{spec.path}: MuJoCo cannot read {spec.description}: {err}") from None
    try:
        mj = mujoco.MjSpec.from_file(str(spec.description))
    except ValueError as err:
        raise RobotSpecError(f"{spec.path}: MuJoCo cannot read {spec.description}: {err}") from None
    for key, value in options.items():
        setattr(mj.compiler, key, value)
    return mj


def _xml_value(value: bool | float) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else repr(float(value))


# --- adding what the task needs -----------------------------------------------------------
def _assemble(spec: QuadrupedSpec) -> mujoco.MjSpec:
    mj = _read_description(spec)
    base = mj.body(spec.base_body)
    if base is None:
        raise RobotSpecError(
            f"{spec.path}: description.base_body: no body {spec.base_body!r} in {spec.description}; "
            f"bodies: {', '.join(b.name for b in mj.bodies if b.name != 'world')}"
        )
    if base.parent.name != "world":
        raise RobotSpecError(
            f"{spec.path}: description.base_body: {spec.base_body!r} must be the root link (a child "
            f"of the world), but its parent is {base.parent.name!r}"
        )
    # An MJCF robot may bring its own actuators, sensors, keyframes and floating joint;
    # the task's replace them.
    for element in (*mj.actuators, *mj.sensors, *mj.keys):
        mj.delete(element)
    for joint in list(base.joints):
        mj.delete(joint)

    _check_joints_and_feet(mj, spec)
    _configure_options(mj, spec)
    _add_scene(mj)
    _filter_collisions(mj, base)
    joints = [mj.joint(name) for name in spec.joint_names]
    kinds = [kind for _ in LEG_NAMES for kind in JOINT_KINDS]
    torque = _per_joint_limit(spec, joints, "torque_limits")
    for i, (joint, kind) in enumerate(zip(joints, kinds, strict=True)):
        k = JOINT_KINDS.index(kind)
        joint.armature = spec.armature[k]
        joint.damping = [spec.damping[k], 0.0, 0.0]  # MuJoCo 4: linear term first
        joint.frictionloss = spec.frictionloss[k]
        if spec.joint_ranges is not None:
            joint.range = spec.joint_ranges[k]
            joint.limited = mujoco.mjtLimited.mjLIMITED_TRUE
        elif joint.limited == mujoco.mjtLimited.mjLIMITED_FALSE or not joint.range[0] < joint.range[1]:
            leg = spec.legs[i // 3]
            raise RobotSpecError(
                f"{spec.path}: legs.{leg.name}.joints ({kind}): {joint.name!r} has no range in "
                f"{spec.description.name} (a continuous joint); set actuation.joint_ranges"
            )
        act = mj.add_actuator(name=ACTUATOR_NAMES[i], target=joint.name, trntype=mujoco.mjtTrn.mjTRN_JOINT)
        act.set_to_position(kp=spec.kp[k], kv=spec.kd[k])
        act.forcelimited = mujoco.mjtLimited.mjLIMITED_TRUE
        act.forcerange = [-torque[i], torque[i]]
        act.inheritrange = 1.0

    base.add_freejoint(name=ROOT_JOINT)
    base.add_site(name=IMU_SITE, size=[0.01, 0.01, 0.01])
    track = base.add_camera(name="track", mode=mujoco.mjtCamLight.mjCAMLIGHT_TRACKCOM,
                            pos=[0.3, -1.4, 0.45])
    track.alt.type = mujoco.mjtOrientation.mjORIENTATION_XYAXES
    track.alt.xyaxes = [1, 0.2, 0, -0.05, 0.25, 1]
    _add_feet(mj, spec)
    _add_sensors(mj, spec)
    _add_home_key(mj, spec)
    return mj


def _check_joints_and_feet(mj: mujoco.MjSpec, spec: QuadrupedSpec) -> None:
    hinge_names = [j.name for j in mj.joints if j.type == mujoco.mjtJoint.mjJNT_HINGE]
    for leg in spec.legs:
        for kind, name in zip(JOINT_KINDS, leg.joints, strict=True):
            joint = mj.joint(name)
            if joint is None or joint.type != mujoco.mjtJoint.mjJNT_HINGE:
                what = "no joint" if joint is None else "not a revolute (hinge) joint:"
                raise RobotSpecError(
                    f"{spec.path}: legs.{leg.name}.joints ({kind}): {what} {name!r} in "
                    f"{spec.description.name}; its revolute joints: {', '.join(hinge_names)}"
                )
        if mj.body(leg.foot) is None:
            bodies = [b.name for b in mj.bodies if b.name != "world"]
            raise RobotSpecError(
                f"{spec.path}: legs.{leg.name}.foot: {leg.foot!r} is not a body of "
                f"{spec.description.name}; its bodies: {', '.join(bodies)}"
            )


def _configure_options(mj: mujoco.MjSpec, spec: QuadrupedSpec) -> None:
    # As our go1 MJCF: implicitfast integrates the PD damping implicitly (stable Kd at
    # the physics step); pyramidal cone and few solver iterations as Playground.
    mj.option.timestep = 1.0 / spec.physics_hz
    mj.option.integrator = mujoco.mjtIntegrator.mjINT_IMPLICITFAST
    mj.option.cone = mujoco.mjtCone.mjCONE_PYRAMIDAL
    mj.option.iterations = 4
    mj.option.ls_iterations = 8
    mj.compiler.degree = False


def _add_scene(mj: mujoco.MjSpec) -> None:
    vis = mj.visual
    vis.headlight.diffuse = [0.6, 0.6, 0.6]
    vis.headlight.ambient = [0.3, 0.3, 0.3]
    vis.headlight.specular = [0, 0, 0]
    vis.global_.azimuth = 120
    vis.global_.elevation = -20
    vis.global_.offwidth = 1280
    vis.global_.offheight = 720
    vis.quality.shadowsize = 1024  # offscreen rendering often runs on a CPU (llvmpipe)
    mj.add_texture(name="skybox", type=mujoco.mjtTexture.mjTEXTURE_SKYBOX,
                   builtin=mujoco.mjtBuiltin.mjBUILTIN_GRADIENT, rgb1=[0.3, 0.5, 0.7],
                   rgb2=[0, 0, 0], width=512, height=3072)
    mj.add_texture(name="grid", type=mujoco.mjtTexture.mjTEXTURE_2D,
                   builtin=mujoco.mjtBuiltin.mjBUILTIN_CHECKER, rgb1=[0.2, 0.3, 0.4],
                   rgb2=[0.1, 0.2, 0.3], mark=mujoco.mjtMark.mjMARK_EDGE,
                   markrgb=[0.8, 0.8, 0.8], width=300, height=300)
    grid = mj.add_material(name="grid", texrepeat=[1, 1], texuniform=True)
    grid.textures[mujoco.mjtTextureRole.mjTEXROLE_RGB] = "grid"
    world = mj.worldbody
    world.add_light(pos=[0, 0, 3], dir=[0, 0, -1], type=mujoco.mjtLightType.mjLIGHT_DIRECTIONAL)
    world.add_geom(name=FLOOR_GEOM, type=mujoco.mjtGeom.mjGEOM_PLANE, size=[0, 0, 0.05],
                   material="grid", contype=1, conaffinity=0, friction=[0.6, 0.005, 0.0001],
                   priority=1)


def _filter_collisions(mj: mujoco.MjSpec, base: mujoco.MjsBody) -> None:
    """Visual geoms to group 2; every collision shape inert (group 3) but the base's, which
    touch the floor so a fallen robot lies on it. Feet are added afterwards."""
    for geom in mj.geoms:
        if geom.name == FLOOR_GEOM:
            continue
        visual = geom.contype == 0 and geom.conaffinity == 0
        if visual and geom.type != mujoco.mjtGeom.mjGEOM_MESH and geom.size[0] <= 0:
            mj.delete(geom)  # a zero-size visual (Laikago's toes) cannot compile nor render
            continue
        geom.density = 0.0  # masses are the file's inertials, never the shapes'
        if visual:
            geom.group = _VISUAL_GROUP
            continue
        on_base = geom.parent.name == base.name
        geom.contype = 0
        geom.conaffinity = 1 if on_base else 0
        geom.group = 0 if on_base else _INERT_GROUP


def _add_feet(mj: mujoco.MjSpec, spec: QuadrupedSpec) -> None:
    for leg, geom_name, site_name in zip(spec.legs, FOOT_GEOMS, FOOT_SITES, strict=True):
        body = mj.body(leg.foot)
        spheres = [g for g in body.geoms if g.type == mujoco.mjtGeom.mjGEOM_SPHERE
                   and g.group == _INERT_GROUP]
        if spheres:  # the file's own foot sphere becomes the foot
            foot = spheres[0]
            radius, pos = float(foot.size[0]), list(foot.pos)
            foot.name = geom_name
        elif spec.foot_radius is not None:
            radius, pos = spec.foot_radius, [0.0, 0.0, 0.0]
            foot = body.add_geom(name=geom_name, type=mujoco.mjtGeom.mjGEOM_SPHERE, size=[radius, 0, 0], pos=pos)
        else:
            raise RobotSpecError(
                f"{spec.path}: legs.{leg.name}.foot: body {leg.foot!r} has no collision sphere "
                "in the file; set task.foot_radius (m) for the sphere the builder adds at its origin"
            )
        foot.contype, foot.conaffinity, foot.group = 0, 1, _INERT_GROUP
        foot.friction = [spec.foot_friction, 0.005, 0.0001]
        foot.density = 0.0
        foot.rgba = [0.1, 0.1, 0.1, 1]
        body.add_site(name=site_name, pos=pos, size=[TOUCH_SITE_SCALE * radius, 0, 0], rgba=[1, 0, 0, 0])


def _add_sensors(mj: mujoco.MjSpec, spec: QuadrupedSpec) -> None:
    sensor, site_obj = mujoco.mjtSensor, mujoco.mjtObj.mjOBJ_SITE
    for name, kind in (("gyro", sensor.mjSENS_GYRO), ("accelerometer", sensor.mjSENS_ACCELEROMETER),
                       ("local_linvel", sensor.mjSENS_VELOCIMETER), ("orientation", sensor.mjSENS_FRAMEQUAT),
                       ("upvector", sensor.mjSENS_FRAMEZAXIS)):
        mj.add_sensor(name=name, type=kind, objtype=site_obj, objname=IMU_SITE)
    for leg, site, touch in zip(LEG_NAMES, FOOT_SITES, TOUCH_SENSORS, strict=True):
        mj.add_sensor(name=touch, type=sensor.mjSENS_TOUCH, objtype=site_obj, objname=site)
        mj.add_sensor(name=f"{leg}_foot_pos", type=sensor.mjSENS_FRAMEPOS, objtype=site_obj, objname=site)
        mj.add_sensor(name=f"{leg}_foot_linvel", type=sensor.mjSENS_FRAMELINVEL, objtype=site_obj, objname=site)


def _add_home_key(mj: mujoco.MjSpec, spec: QuadrupedSpec) -> None:
    """Standing pose with the base raised until the lowest foot just touches the floor."""
    model = _compile(mj, spec)
    _check_pose_in_range(spec, model)
    data = mujoco.MjData(model)
    qpos = model.qpos0.copy()
    root = model.joint(ROOT_JOINT)
    qpos[root.qposadr[0] : root.qposadr[0] + 7] = [0, 0, 0, 1, 0, 0, 0]
    for name, angle in zip(spec.joint_names, spec.home_pose, strict=True):
        qpos[model.joint(name).qposadr[0]] = angle
    data.qpos[:] = qpos
    mujoco.mj_kinematics(model, data)
    lowest = min(data.geom_xpos[model.geom(g).id][2] - model.geom_size[model.geom(g).id][0] for g in FOOT_GEOMS)
    qpos[root.qposadr[0] + 2] = -lowest
    mj.add_key(name=HOME_KEY, qpos=qpos.tolist(), ctrl=list(spec.home_pose))


def _check_pose_in_range(spec: QuadrupedSpec, model: mujoco.MjModel) -> None:
    for leg in spec.legs:
        for kind, name, angle in zip(JOINT_KINDS, leg.joints, leg.home, strict=True):
            j = model.joint(name)
            if not model.jnt_limited[j.id]:
                raise RobotSpecError(
                    f"{spec.path}: legs.{leg.name}.joints ({kind}): {name!r} has no range in "
                    f"{spec.description.name} (a continuous joint); set actuation.joint_ranges"
                )
            low, high = model.jnt_range[j.id]
            if not low <= angle <= high:
                raise RobotSpecError(
                    f"{spec.path}: legs.{leg.name}.home ({kind}): expected an angle within "
                    f"{name}'s range [{low:.4g}, {high:.4g}] rad, got {angle!r}"
                )


def _per_joint_limit(spec: QuadrupedSpec, joints: list[mujoco.MjsJoint], field: str) -> np.ndarray:
    """The spec's limit per joint, else the file's (URDF effort -> actuatorfrcrange)."""
    override = getattr(spec, field)
    if override is not None:
        return np.array(spec.per_joint(override))
    values = []
    for joint in joints:
        limited = joint.actfrclimited == mujoco.mjtLimited.mjLIMITED_TRUE or (
            joint.actfrclimited == mujoco.mjtLimited.mjLIMITED_AUTO and joint.actfrcrange[1] > joint.actfrcrange[0])
        high = float(joint.actfrcrange[1])
        if not limited or not high > 0 or not math.isfinite(high):
            raise RobotSpecError(
                f"{spec.path}: actuation.{field}: the file gives {joint.name!r} no effort "
                "limit; set [abduction, hip, knee] in N m"
            )
        values.append(high)
    return np.array(values)


def _urdf_velocity_limits(spec: QuadrupedSpec) -> np.ndarray | None:
    """Velocity limits of the spec's joints as the URDF states them (MuJoCo does not read
    them), None when the file has none for some joint."""
    if not spec.is_urdf:
        return None
    import xml.etree.ElementTree as ET  # the file is read-only input we parse for numbers

    root = ET.fromstring(spec.description.read_text(encoding="utf-8"))
    limits: dict[str, float] = {}
    for joint in root.iter("joint"):
        limit = joint.find("limit")
        if limit is not None and limit.get("velocity") is not None:
            try:
                limits[joint.get("name", "")] = float(limit.get("velocity", ""))
            except ValueError:
                continue
    values = [limits.get(name) for name in spec.joint_names]
    if any(v is None or not v > 0 for v in values):
        return None
    return np.array(values, dtype=float)


# --- what the task reads ------------------------------------------------------------------
_CANONICAL_AXIS = {"abduction": 0, "hip": 1, "knee": 1}
"""The base-frame axis (x 0, y 1) each joint kind turns about in the task's convention."""
AXIS_ALIGNMENT = 0.9
"""|cos| between a joint's axis and its canonical axis below which a spec is refused."""


def _joint_signs(spec: QuadrupedSpec, model: mujoco.MjModel, joints: list[int], base: int, key: int) -> np.ndarray:
    """+1/-1 per joint from the direction of its axis in the base frame at the home pose."""
    data = mujoco.MjData(model)
    mujoco.mj_resetDataKeyframe(model, data, key)
    mujoco.mj_kinematics(model, data)
    to_base = data.xmat[base].reshape(3, 3).T
    signs = np.ones(len(joints))
    for i, j in enumerate(joints):
        leg, kind = spec.legs[i // 3], JOINT_KINDS[i % 3]
        axis = to_base @ data.xaxis[j]
        component = float(axis[_CANONICAL_AXIS[kind]])
        if abs(component) < AXIS_ALIGNMENT:
            expected = "x (forward)" if kind == "abduction" else "y (left)"
            raise RobotSpecError(
                f"{spec.path}: legs.{leg.name}.joints ({kind}): {spec.joint_names[i]!r} turns about "
                f"{np.round(axis, 3).tolist()} in the base frame at the home pose; a {kind} joint "
                f"must turn about +-{expected}: is the base frame x forward, z up?"
            )
        signs[i] = 1.0 if component > 0 else -1.0
    return signs
def _describe(spec: QuadrupedSpec, model: mujoco.MjModel) -> QuadrupedRobot:
    def need(obj: mujoco.mjtObj, name: str, field: str) -> int:
        idx = mujoco.mj_name2id(model, obj, name)
        if idx < 0:
            raise RobotSpecError(f"{spec.path}: {field}: no {obj.name[6:].lower()} {name!r} in the built model")
        return idx

    joints = [need(mujoco.mjtObj.mjOBJ_JOINT, n, "legs.joints") for n in spec.joint_names]
    actuators = [need(mujoco.mjtObj.mjOBJ_ACTUATOR, n, "actuators") for n in ACTUATOR_NAMES]
    base = need(mujoco.mjtObj.mjOBJ_BODY, spec.base_body, "description.base_body")
    for leg in spec.legs:
        need(mujoco.mjtObj.mjOBJ_BODY, leg.foot, f"legs.{leg.name}.foot")
    for name in (*FOOT_GEOMS, FLOOR_GEOM):
        need(mujoco.mjtObj.mjOBJ_GEOM, name, "geoms")
    key = need(mujoco.mjtObj.mjOBJ_KEY, HOME_KEY, "keyframes")
    if spec.assembled:
        _check_pose_in_range(spec, model)
    for i, a in enumerate(actuators):
        if model.actuator_trnid[a, 0] != joints[i]:
            raise RobotSpecError(f"{spec.path}: actuator {ACTUATOR_NAMES[i]!r} does not drive {spec.joint_names[i]!r}")
    kp = model.actuator_gainprm[actuators, 0].copy()
    kd = -model.actuator_biasprm[actuators, 2].copy()
    for name, built, want in (("kp", kp, spec.per_joint(spec.kp)), ("kd", kd, spec.per_joint(spec.kd))):
        if not np.allclose(built, want):
            raise RobotSpecError(f"{spec.path}: actuation.{name}: expected the model's {built.tolist()}, got {list(want)}")
    torque = model.actuator_forcerange[actuators, 1].copy()
    if spec.torque_limits is not None and not np.allclose(torque, spec.per_joint(spec.torque_limits)):
        raise RobotSpecError(f"{spec.path}: actuation.torque_limits: the model has {torque.tolist()}")
    velocity = (np.array(spec.per_joint(spec.velocity_limits)) if spec.velocity_limits is not None
                else _urdf_velocity_limits(spec))
    control_dt = 1.0 / spec.control_hz
    if not math.isclose(model.opt.timestep, 1.0 / spec.physics_hz, rel_tol=1e-9):
        raise RobotSpecError(
            f"{spec.path}: rates.physics_hz: the model steps at {1.0 / model.opt.timestep:g} Hz, "
            f"the spec says {spec.physics_hz:g}"
        )
    root_adr = model.jnt_qposadr[need(mujoco.mjtObj.mjOBJ_JOINT, ROOT_JOINT, "root joint")]
    signs = _joint_signs(spec, model, joints, base, key)
    return QuadrupedRobot(
        spec=spec,
        model=model,
        joint_names=spec.joint_names,
        actuator_names=ACTUATOR_NAMES,
        link_bodies=tuple(model.body(model.jnt_bodyid[j]).name for j in joints),
        base_body=spec.base_body,
        default_pose=np.array(spec.home_pose),
        kp=kp,
        kd=kd,
        torque_limits=torque,
        velocity_limits=velocity,
        joint_ranges=model.jnt_range[joints].copy(),
        joint_signs=signs,
        base_mass=float(model.body_mass[base]),
        total_mass=float(model.body_subtreemass[base]) if model.body_subtreemass[base] > 0 else float(model.body_mass[1:].sum()),
        standing_height=float(model.key_qpos[key, root_adr + 2]),
        control_dt=control_dt,
        sha256=_robot_sha256(spec),
    )


def _robot_sha256(spec: QuadrupedSpec) -> str:
    digest = hashlib.sha256()
    for path in (spec.path, spec.description):
        data = path.read_bytes()
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    return digest.hexdigest()
