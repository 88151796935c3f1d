"""The observation builder a robot controller uses (serve/observation.py): from raw sensor
readings it makes exactly the observation the MuJoCo env gives the policy, and a model or
a reading it cannot serve gets an error that names the entry."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from sim2real.robots.quadruped.joystick import QuadrupedJoystickConfig, QuadrupedJoystickEnv
from sim2real.serve.model import load_model
from sim2real.serve.observation import (
    MissingReadingError,
    ObservationBuilder,
    ObservationLayoutError,
    SensorReadings,
    quaternion_gravity,
)

SHIPPED = Path(__file__).resolve().parents[2] / "serve" / "policies"


def _metadata(env: QuadrupedJoystickEnv) -> dict[str, object]:
    spec = env.deployment_spec
    return {"observation_names": list(spec.observation_names), "joint_names": list(spec.joint_names),
            "action_offset": list(spec.default_pose), "action_dim": len(spec.action_names),
            "gait_clock_hz": env.config.gait.frequency_hz}


def _readings(env: QuadrupedJoystickEnv, command: np.ndarray, step: int) -> SensorReadings:
    return SensorReadings(
        joint_position=env.joint_pos().copy(), joint_velocity=env.joint_vel().copy(),
        orientation=env.orientation().copy(), angular_velocity=env.gyro().copy(),
        linear_velocity=env.local_linvel().copy(), command=command, time_s=step * env.control_dt,
    )


@pytest.mark.parametrize("robot", ["go1", "a1"])
def test_the_builder_makes_the_envs_observation_from_raw_readings(robot: str) -> None:
    env = QuadrupedJoystickEnv(QuadrupedJoystickConfig(robot=robot), domain_randomization=False)
    obs, info = env.reset(seed=1, options={"command": (0.4, -0.2, 0.3)})
    builder = ObservationBuilder(_metadata(env), clock_phase=env._gait_phase)
    command = np.asarray(info["command"])
    np.testing.assert_allclose(builder.build(_readings(env, command, 0)), obs, atol=1e-5)
    rng = np.random.default_rng(0)
    for step in range(1, 60):
        action = rng.uniform(-1, 1, env.action_space.shape)
        obs, *_ = env.step(action)
        builder.record_action(action)
        np.testing.assert_allclose(builder.build(_readings(env, command, step)), obs, atol=1e-5,
                                   err_msg=f"step {step}")


def test_joint_readings_by_name_equal_readings_in_order() -> None:
    metadata = load_model(SHIPPED / "a1_joystick.onnx", "a1", 1, "cpu").metadata
    builder = ObservationBuilder(metadata)
    names = builder.joint_names
    q = np.linspace(-0.5, 0.5, len(names))
    common = {"orientation": (1.0, 0, 0, 0), "angular_velocity": (0, 0, 0), "linear_velocity": (0, 0, 0),
              "command": (0.5, 0, 0), "time_s": 0.3}
    ordered = builder.build(SensorReadings(joint_position=q, joint_velocity=-q, **common))
    by_name = builder.build(SensorReadings(joint_position=dict(zip(reversed(names), reversed(q), strict=True)),
                                           joint_velocity={n: -v for n, v in zip(names, q, strict=True)}, **common))
    np.testing.assert_array_equal(ordered, by_name)


def test_gravity_from_a_quaternion() -> None:
    np.testing.assert_allclose(quaternion_gravity(np.array([1.0, 0, 0, 0])), [0, 0, -1])
    # Pitched nose-down by 90 degrees about y: gravity points along the trunk's +x.
    half = np.pi / 4
    np.testing.assert_allclose(quaternion_gravity(np.array([np.cos(half), 0, np.sin(half), 0])), [1, 0, 0], atol=1e-12)


def _good() -> dict[str, object]:
    return {"observation_names": ["gyro/x", "joint_pos/a", "gait_clock/sin", "last_action/a"],
            "joint_names": ["a"], "action_offset": [0.5], "gait_clock_hz": 2.0}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"observation_names": None}, "model metadata has no 'observation_names'"),
        ({"observation_names": ["valve/angle"]}, "observation entry 'valve/angle': no sensor reading makes it"),
        ({"observation_names": ["gyro/w"]}, "observation entry 'gyro/w': expected gyro/x, /y or /z"),
        ({"observation_names": ["joint_pos/b"]}, "joint 'b' is not in the model's joint_names"),
        ({"joint_names": None}, "model metadata has no 'joint_names'"),
        ({"action_offset": [0.1, 0.2]}, "'action_offset' has 2 entries for 1 joints"),
        ({"gait_clock_hz": "fast"}, "need model metadata 'gait_clock_hz' (a number), got 'fast'"),
        ({"observation_names": "not json"}, "expected a JSON list"),
    ],
)
def test_a_model_the_readings_cannot_serve_is_refused_naming_the_entry(change: dict, message: str) -> None:
    metadata = {**_good(), **change}
    metadata = {k: v for k, v in metadata.items() if v is not None}
    with pytest.raises(ObservationLayoutError) as err:
        ObservationBuilder(metadata)
    assert message in str(err.value)


def test_metadata_as_the_server_sends_it_json_strings() -> None:
    builder = ObservationBuilder({k: json.dumps(v) for k, v in _good().items()})
    obs = builder.build(SensorReadings(joint_position=[0.7], angular_velocity=(0.1, 0, 0), time_s=0.125))
    np.testing.assert_allclose(obs, [0.1, 0.2, np.sin(2 * np.pi * 2.0 * 0.125), 0.0], atol=1e-6)
    builder.record_action([0.25])
    assert builder.build(SensorReadings(joint_position=[0.7], angular_velocity=(0.1, 0, 0), time_s=0.0))[3] == 0.25
    builder.reset()
    assert builder.build(SensorReadings(joint_position=[0.7], angular_velocity=(0.1, 0, 0), time_s=0.0))[3] == 0.0


@pytest.mark.parametrize(
    ("readings", "message"),
    [
        (SensorReadings(joint_position=[0.7], time_s=0.0), "reading 'angular_velocity' is missing; the model's entries ['gyro/x'] need it"),
        (SensorReadings(angular_velocity=(0, 0, 0), time_s=0.0), "reading 'joint_position' is missing"),
        (SensorReadings(joint_position=[0.7], angular_velocity=(0, 0, 0)), "reading 'time_s' is missing; the model's entries ['gait_clock/sin']"),
        (SensorReadings(joint_position=[0.7, 0.1], angular_velocity=(0, 0, 0), time_s=0.0),
         "joint_position: expected 1 values in the model's joint order, got shape (2,)"),
        (SensorReadings(joint_position={"b": 0.7}, angular_velocity=(0, 0, 0), time_s=0.0),
         "joint_position: no reading for joint(s) ['a']"),
        (SensorReadings(joint_position=[0.7], angular_velocity=(0, float("nan"), 0), time_s=0.0),
         "angular_velocity: expected 3 finite numbers"),
    ],
)
def test_a_missing_or_bad_reading_names_itself(readings: SensorReadings, message: str) -> None:
    builder = ObservationBuilder(_good())
    with pytest.raises(MissingReadingError) as err:
        builder.build(readings)
    assert message in str(err.value)
    with pytest.raises(ValueError, match="action: expected 1 values"):
        builder.record_action([0.1, 0.2])
