"""ROS 2 bags (replay/ros2_bag.py): a bag of standard messages written by `rosbags` (the
PyBullet driver records one) imports into our log with every mapped field, the observation
built from the sensor messages equals the one the policy saw, and a bag with a missing
topic or a bad mapping gets an error that names it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sim2real.cli.main import main
from sim2real.logformat.mcap_log import read_log
from sim2real.replay.bullet_robot import BulletQuadruped, ResetDistribution
from sim2real.replay.ros2_bag import DEFAULT_TOPICS, Ros2BagError, import_ros2_bag, parse_topics
from sim2real.serve.model import load_model

pytest.importorskip("rosbags")
pytest.importorskip("pybullet")

SHIPPED = Path(__file__).resolve().parents[2] / "serve" / "policies"
A1_POLICY = SHIPPED / "a1_joystick.onnx"
STEPS = 60


@pytest.fixture(scope="module")
def metadata() -> dict[str, str]:
    return load_model(A1_POLICY, "a1", 1, "cpu").metadata


def _record(metadata: dict[str, str], folder: Path, storage: str = "mcap", episodes: int = 2) -> tuple[Path, Path]:
    """Drive the Bullet A1 with its policy; our log and the ROS 2 bag of the same drive."""
    from sim2real.train.export import OnnxPolicy

    policy = OnnxPolicy(A1_POLICY)
    bag, log = folder / f"bag_{storage}", folder / f"log_{storage}.mcap"
    env = BulletQuadruped("a1", metadata, reset_distribution=ResetDistribution(episode_steps=STEPS),
                          log_path=log, ros2_bag=bag, ros2_storage=storage)
    try:
        for episode in range(episodes):
            obs, _ = env.reset(seed=episode, options={"command": (0.5, 0.0, 0.2)})
            for _ in range(STEPS):
                obs, *_ = env.step(policy(obs[None])[0])
    finally:
        env.close()
    return bag, log


@pytest.fixture(scope="module")
def recorded(metadata: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return _record(metadata, tmp_path_factory.mktemp("ros2"))


def _arrays(path: Path, field: str) -> np.ndarray:
    return np.array([list(getattr(s, field)) for s in read_log(path).steps])


def test_a_sqlite3_bag_imports_too(metadata: dict[str, str], tmp_path: Path) -> None:
    """rosbag2's other storage (the default before Iron); the MCAP one is the fixture's."""
    bag, log = _record(metadata, tmp_path, "sqlite3", episodes=1)
    assert any(p.suffix == ".db3" for p in bag.iterdir())
    out = tmp_path / "imported.mcap"
    summary = import_ros2_bag(bag, metadata, out)
    assert summary["steps"] == STEPS and summary["observation"] == "topic"
    imported = read_log(out)
    assert imported.info.source == "ros2" and imported.info.robot == "a1"
    np.testing.assert_array_equal(_arrays(out, "observation"), _arrays(log, "observation"))


def test_every_mapped_field_lands_in_the_log(recorded: tuple[Path, Path], metadata: dict[str, str],
                                             tmp_path: Path) -> None:
    bag, log = recorded
    out = tmp_path / "imported.mcap"
    summary = import_ros2_bag(bag, metadata, out)
    assert summary == {**summary, "steps": 2 * STEPS, "episodes": 2, "skipped": 0, "step_topic": "/policy/action"}
    assert set(summary["topics"]) == set(DEFAULT_TOPICS)
    imported, original = read_log(out), read_log(log)
    assert [s.episode for s in imported.steps] == [s.episode for s in original.steps]
    for field in ("observation", "action", "joint_target", "base_position"):
        np.testing.assert_allclose(_arrays(out, field), _arrays(log, field), atol=1e-6, err_msg=field)
    # Joint and IMU readings are the sensors' (with their noise), not the simulator's truth:
    # close to it, never equal.
    for field, noise in (("joint_position", 0.03), ("joint_velocity", 1.5), ("base_angular_velocity", 0.2)):
        difference = np.abs(_arrays(out, field) - _arrays(log, field))
        assert 0 < difference.max() <= noise + 1e-5, field
    assert len(imported.steps[0].base_orientation) == 4 and len(imported.steps[0].base_linear_velocity) == 3


def test_the_observation_built_from_sensor_messages_is_the_policys(recorded: tuple[Path, Path],
                                                                   metadata: dict[str, str], tmp_path: Path) -> None:
    """Without the observation and action topics: the observation is built by the
    controller library from JointState, Imu, Odometry, Twist and the gait phase, and the
    action read back from the joint commands: the policy's own, to float32."""
    bag, log = recorded
    out = tmp_path / "built.mcap"
    summary = import_ros2_bag(bag, metadata, out, ["observation=/not/recorded", "action=/not/recorded"])
    assert summary["observation"] == "built" and summary["step_topic"] == "/joint_commands"
    np.testing.assert_allclose(_arrays(out, "observation"), _arrays(log, "observation"), atol=1e-5)
    np.testing.assert_allclose(_arrays(out, "action"), _arrays(log, "action"), atol=1e-5)


def test_replay_reads_a_bag(recorded: tuple[Path, Path], tmp_path: Path,
                            capsys: pytest.CaptureFixture[str]) -> None:
    bag, _ = recorded
    code = main(["replay", str(bag), "--model", str(A1_POLICY), "--out", str(tmp_path / "report"),
                 "--windows", "4", "--horizon", "10"])
    out = capsys.readouterr().out
    assert code == 0
    assert "(ROS 2 bag, imported to" in out and "action RMSE 0.0000" in out
    assert (tmp_path / "report" / "imported.mcap").is_file()


@pytest.mark.parametrize(
    ("topics", "message"),
    [
        (["imu=/missing", "observation=/none"], "need topic '/missing' (imu), which the bag lacks"),
        (["odometry=/imu/data"], "topic '/imu/data' (odometry) carries sensor_msgs/msg/Imu; expected nav_msgs/msg/Odometry"),
        (["action=/none", "joint_commands=/none"], "the bag has neither '/none' (action) nor '/none' (joint_commands)"),
        (["gait_phase=/none", "observation=/none"], "gait_clock/* need topic '/none' (gait_phase)"),
    ],
)
def test_a_missing_topic_or_bad_mapping_is_named(recorded: tuple[Path, Path], metadata: dict[str, str],
                                                 tmp_path: Path, topics: list[str], message: str) -> None:
    bag, _ = recorded
    with pytest.raises(Ros2BagError) as err:
        import_ros2_bag(bag, metadata, tmp_path / "x.mcap", topics)
    assert message in str(err.value)
    # Refused before the log is opened: no half-written file is left behind.
    assert not (tmp_path / "x.mcap").exists()


def test_a_bag_whose_joint_names_differ_is_refused(recorded: tuple[Path, Path], metadata: dict[str, str],
                                                   tmp_path: Path) -> None:
    import json

    bag, _ = recorded
    other = dict(metadata)
    other["joint_names"] = json.dumps(["knee_" + n for n in json.loads(metadata["joint_names"])])
    other["observation_names"] = json.dumps([n.replace("joint_pos/", "joint_pos/knee_").replace("joint_vel/", "joint_vel/knee_")
                                             for n in json.loads(metadata["observation_names"])])
    with pytest.raises(Ros2BagError, match=r"topic '/joint_states': no position for joint\(s\) \['knee_FR_hip_joint'"):
        import_ros2_bag(bag, other, tmp_path / "x.mcap", ["observation=/none", "action=/none"])


@pytest.mark.parametrize(
    ("items", "message"),
    [(["lidar=/scan"], "unknown key 'lidar'"), (["imu"], "expected KEY=/topic"), (["imu=imu"], "expected KEY=/topic")],
)
def test_topic_mapping_errors(items: list[str], message: str) -> None:
    with pytest.raises(Ros2BagError, match=message):
        parse_topics(items)


def test_replay_of_a_bag_needs_a_model_and_a_bag_needs_a_folder(recorded: tuple[Path, Path], tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    bag, log = recorded
    assert main(["replay", str(bag), "--out", str(tmp_path / "r")]) == 2
    assert "is a ROS 2 bag: give --model" in capsys.readouterr().err
    assert main(["replay", str(log), "--ros2-topics", "imu=/imu", "--out", str(tmp_path / "r")]) == 2
    assert "--ros2-topics applies to ROS 2 bags" in capsys.readouterr().err
