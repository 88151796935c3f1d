"""Robot specs: every shipped quadruped builds from its description file, stands, and
passes the env checker; a malformed spec gets an error naming the file and the field; the
A1 built from the vendor's URDF keeps the URDF's numbers."""

from __future__ import annotations

import dataclasses
import xml.etree.ElementTree as ET
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from sim2real.robots.quadruped import constants as consts
from sim2real.robots.quadruped.build import ACTUATOR_NAMES, load_robot
from sim2real.robots.quadruped.joystick import (
    ENV_ID,
    QuadrupedJoystickEnv,
    actor_observation_groups,
)
from sim2real.robots.quadruped.robot_spec import (
    RobotSpecError,
    load_spec,
    resolve_description,
    shipped_specs,
)
from sim2real.robots.registry import task_config

SHIPPED = sorted(shipped_specs())
A1_SPEC = shipped_specs()["a1"]


def make(robot: str, dr: bool = True, *overrides: str) -> QuadrupedJoystickEnv:
    return QuadrupedJoystickEnv(config=task_config(ENV_ID, [f"robot={robot}", *overrides]), domain_randomization=dr)


def test_the_shipped_robots() -> None:
    assert {"go1", "a1", "laikago", "mini_cheetah", "spirit40", "vision60"} <= set(SHIPPED)


@pytest.mark.parametrize("robot", SHIPPED)
def test_stands_for_five_seconds_under_the_default_pd_with_dr(robot: str) -> None:
    for seed in range(2):
        # At rest (no initial base velocity), told to stand: the zero action holds the
        # spec's standing pose through the PD loop, with DR's dynamics, latency and pushes.
        env = make(robot, True, "init_base_velocity=0", "commands.zero_probability=1")
        env.reset(seed=seed)
        for _ in range(round(5.0 / env.control_dt)):
            _, _, terminated, _, _ = env.step(np.zeros(12))
            assert not terminated, f"{robot} fell (seed {seed})"
        assert env.upvector()[2] > 0.95
        assert env.trunk_height() > 0.7 * env.robot.standing_height
        assert np.all(env.foot_contact_forces() > consts.CONTACT_FORCE_THRESHOLD)
        env.close()


@pytest.mark.parametrize("robot", SHIPPED)
def test_passes_gymnasium_env_checker(robot: str) -> None:
    env = make(robot, True)
    check_env(env, skip_render_check=True)
    env.close()


@pytest.mark.parametrize("robot", SHIPPED)
def test_layouts_are_the_same_function_of_the_spec_for_every_robot(robot: str) -> None:
    env = make(robot, False)
    spec = load_spec(robot)
    groups = actor_observation_groups(spec.joint_names, ACTUATOR_NAMES)
    expected = tuple(f"{g}/{item}" for g, items in groups for item in items)
    expected += ("linvel_estimate/x", "linvel_estimate/y", "linvel_estimate/z", "gait_clock/sin", "gait_clock/cos")
    assert env.observation_names == expected
    assert env.observation_space.shape == (50,) and env.action_space.shape == (12,)
    d = env.deployment_spec
    assert d.robot == spec.name and d.joint_names == spec.joint_names
    assert d.action_names == ACTUATOR_NAMES
    np.testing.assert_allclose(d.default_pose, spec.home_pose)
    # The action scale of each joint carries the direction of its axis, so +1 on the knee
    # is the same motion on every robot; magnitudes are the task's (0.2 abduction, 0.4).
    np.testing.assert_allclose(np.abs(d.action_scales), [0.2, 0.4, 0.4] * 4)
    np.testing.assert_allclose(np.sign(d.action_scales), env.robot.joint_signs)
    env.close()


def test_an_action_is_the_same_motion_on_robots_whose_joints_turn_the_other_way() -> None:
    """Flexing the front-right knee (action -1 on FR_calf) brings its foot closer to the hip
    on Go1 (knee about +y) and on the Mini Cheetah (knee about -y) alike."""
    for robot in ("go1", "mini_cheetah"):
        env = make(robot, False, "init_base_velocity=0", "random_initial_yaw=false", "init_joint_noise=0")
        env.reset(seed=0)
        hip = env.data.xanchor[env.model.joint(env.robot.joint_names[0]).id].copy()
        before = np.linalg.norm(env.foot_positions()[0] - hip)
        action = np.zeros(12)
        action[ACTUATOR_NAMES.index("FR_calf")] = -1.0
        for _ in range(10):
            env.step(action)
        hip = env.data.xanchor[env.model.joint(env.robot.joint_names[0]).id]
        assert np.linalg.norm(env.foot_positions()[0] - hip) < before - 0.02, robot
        env.close()


# --- the A1 keeps its URDF's numbers --------------------------------------------------
def _urdf() -> ET.Element:
    return ET.fromstring(load_spec("a1").description.read_text())


def test_a1_mass_limits_and_efforts_equal_the_urdf() -> None:
    root = _urdf()
    total = sum(float(m.get("value")) for m in root.iter("mass"))
    robot = load_robot("a1")
    assert total == pytest.approx(12.458)
    assert robot.total_mass == pytest.approx(total)
    assert robot.base_mass == pytest.approx(4.713)
    limits = {j.get("name"): j.find("limit") for j in root.iter("joint") if j.find("limit") is not None}
    for i, name in enumerate(robot.joint_names):
        limit = limits[name]
        np.testing.assert_allclose(robot.joint_ranges[i], [float(limit.get("lower")), float(limit.get("upper"))])
        assert robot.torque_limits[i] == pytest.approx(float(limit.get("effort")))
        assert robot.velocity_limits is not None
        assert robot.velocity_limits[i] == pytest.approx(float(limit.get("velocity")))
    model = robot.model
    # The actuators clamp at the URDF's efforts, control range = joint range.
    np.testing.assert_allclose(model.actuator_forcerange[:, 1], robot.torque_limits)
    np.testing.assert_allclose(model.actuator_ctrlrange, robot.joint_ranges)


def test_a1_meshes_render_and_only_feet_and_trunk_touch_the_floor() -> None:
    model = load_robot("a1").model
    assert model.nmesh >= 5  # trunk, hip, thigh, thigh_mirror, calf (OBJ files)
    floor = model.geom("floor").id
    colliding = [i for i in range(model.ngeom) if i != floor and model.geom_conaffinity[i]]
    names = {model.body(model.geom_bodyid[i]).name for i in colliding}
    assert names == {"trunk", "FR_toe", "FL_toe", "RR_toe", "RL_toe"}
    assert all(model.geom_contype[i] == 0 for i in range(model.ngeom) if i != floor)


# --- malformed specs ------------------------------------------------------------------
def _write(tmp_path: Path, text: str, name: str = "robot.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _a1_text() -> str:
    return A1_SPEC.read_text()


@pytest.mark.parametrize(("edit", "message"), [
    (('"FR_upper_joint"', '"FR_thigh_joint"'),
     r"legs\.FR\.joints \(hip\): no joint 'FR_thigh_joint' in a1\.urdf; its revolute joints: FR_hip_joint"),
    (('foot = "RL_toe"', 'foot = "RL_foot"'), r"legs\.RL\.foot: 'RL_foot' is not a body of a1\.urdf"),
    (("home = [0.0, 0.9, -1.8]", "home = [0.0, 0.9, -0.5]"),
     r"legs\.FR\.home \(knee\): expected an angle within FR_lower_joint's range \[-2\.697, -0\.9163\] rad, got -0\.5"),
    (('base_body = "trunk"', 'base_body = "FR_hip"'), r"description\.base_body: 'FR_hip' must be the root link"),
    (('base_body = "trunk"', 'base_body = "torso"'), r"description\.base_body: no body 'torso'"),
    (("kp = 35.0", "kp = -35.0"), r"actuation\.kp: expected a number > 0, got -35\.0"),
    (("kd = 0.5", 'kd = "soft"'), r"actuation\.kd: expected a finite number, got 'soft'"),
    (("physics_hz = 500", "physics_hz = 475"), r"rates\.physics_hz: expected a whole multiple of control_hz \(50\)"),
    (("[task]", "[task]\nheight = 0.3"), r"task: unknown key\(s\) height; allowed: fall_height"),
    (("home = [0.0, 0.9, -1.8]", "home = [0.0, 0.9]"), r"legs\.FR\.home: expected \[abduction, hip, knee\]: 3 numbers"),
    (('file = "pybullet_data:a1/a1.urdf"', 'file = "pybullet_data:a1/a2.urdf"'), r"description\.file: no such file"),
    (('file = "pybullet_data:a1/a1.urdf"', 'file = "not_a_package_here:a1.urdf"'),
     r"description\.file: package 'not_a_package_here' is not installed"),
    (('joints = ["RR_hip_joint"', 'joints = ["FR_hip_joint"'), r"legs: expected 12 different joints, got 'FR_hip_joint named twice'"),
])
def test_a_malformed_spec_gets_an_error_naming_the_file_and_field(tmp_path: Path, edit: tuple[str, str], message: str) -> None:
    old, new = edit
    text = _a1_text()
    assert old in text
    path = _write(tmp_path, text.replace(old, new, 1))
    with pytest.raises(RobotSpecError, match=message) as err:
        load_robot(path)
    assert str(path) in str(err.value)


def test_spec_file_errors(tmp_path: Path) -> None:
    with pytest.raises(RobotSpecError, match=r"not valid TOML"):
        load_spec(_write(tmp_path, "name = \n"))
    bad = tmp_path / "latin1.toml"
    bad.write_bytes(b'name = "caf\xe9"\n')
    with pytest.raises(RobotSpecError, match=r"latin1\.toml: not UTF-8 text"):
        load_spec(bad)
    with pytest.raises(RobotSpecError, match=r"cannot read the robot spec"):
        load_spec(tmp_path / "missing.toml")
    text = _a1_text().replace("[legs.RL]", "[legs.XX]")
    with pytest.raises(RobotSpecError, match=r"legs: unknown key\(s\) XX; allowed: FR, FL, RR, RL"):
        load_spec(_write(tmp_path, text))
    with pytest.raises(RobotSpecError, match=r"neither a shipped robot \(a1, .*go1.*\) nor a spec file path"):
        load_robot("b2")


def test_a_continuous_joint_needs_a_range_from_the_spec(tmp_path: Path) -> None:
    text = shipped_specs()["mini_cheetah"].read_text()
    text = "\n".join(line for line in text.splitlines() if not line.startswith("joint_ranges"))
    spec_file = _write(tmp_path, text)
    with pytest.raises(RobotSpecError, match=r"legs\.FR\.joints \(abduction\): 'torso_to_abduct_fr_j' has no range .*set actuation\.joint_ranges"):
        load_robot(spec_file)


def test_a_users_spec_anywhere_trains_the_task(tmp_path: Path) -> None:
    """A spec outside the package, its description given by a path relative to it."""
    urdf = load_spec("a1").description
    text = _a1_text().replace('file = "pybullet_data:a1/a1.urdf"', f'file = "{urdf}"').replace('name = "a1"', 'name = "my_a1"')
    path = _write(tmp_path, text, "my_a1.toml")
    env = QuadrupedJoystickEnv(config=task_config(ENV_ID, [f"robot={path}"]))
    obs, _ = env.reset(seed=0)
    assert env.deployment_spec.robot == "my_a1" and obs.shape == (50,)
    env.close()
    relative = resolve_description("a1.urdf", urdf.parent / "spec.toml")
    assert relative == urdf


def test_the_go1_spec_is_the_model_the_shipped_policy_trained_on() -> None:
    """Go1 is one spec among the others; its file is our MJCF, used as it is."""
    env = gym.make(ENV_ID).unwrapped
    assert env.robot.name == "go1" and env.config.robot == "go1"
    assert env.deployment_spec.joint_names[:3] == ("FR_hip_joint", "FR_thigh_joint", "FR_calf_joint")
    assert env.robot.standing_height == pytest.approx(0.289)
    np.testing.assert_array_equal(env.robot.joint_signs, np.ones(12))
    env.close()


def test_an_assembled_file_that_disagrees_with_its_spec_is_refused(tmp_path: Path) -> None:
    go1 = shipped_specs()["go1"]
    text = go1.read_text().replace("kp = 35.0", "kp = 30.0").replace('"../xmls/scene_flat.xml"', f'"{(go1.parent / "../xmls/scene_flat.xml").resolve()}"')
    with pytest.raises(RobotSpecError, match=r"actuation\.kp: expected the model's \[35\.0"):
        load_robot(_write(tmp_path, text))


def test_config_fall_height_overrides_the_specs() -> None:
    env = make("a1", False, "fall_height=0.35")
    env.reset(seed=0)
    _, _, terminated, _, _ = env.step(np.zeros(12))
    assert terminated  # the A1 starts at 0.30 m (feet touching) and settles lower: a fall
    env.close()
    assert dataclasses.replace(task_config(ENV_ID), robot="a1").fall_height < 0  # the spec's
