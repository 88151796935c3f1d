"""``sim2real robots check SPEC`` and the robot listing: a user learns whether their robot
file trains before they spend an hour on it."""

from __future__ import annotations

import json
from pathlib import Path

import mujoco
import pytest

from sim2real.cli.main import main
from sim2real.robots.quadruped.robot_spec import shipped_specs


def test_check_passes_a_shipped_robot_and_reports_what_it_built(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    xml = tmp_path / "a1.xml"
    assert main(["robots", "check", "a1", "--seconds", "2", "--episodes", "2", "--xml", str(xml)]) == 0
    out = capsys.readouterr().out
    assert "builds: yes" in out and "stands: yes" in out and "gymnasium env checker: passed" in out
    assert "FR_upper_joint" in out and "12.458 kg" in out
    assert "source of torque_limits: a1.urdf <limit effort>" in out
    # The written MJCF is the model itself: MuJoCo compiles it, free joint and all.
    model = mujoco.MjModel.from_xml_path(str(xml))
    assert model.nu == 12 and model.joint("root").type == mujoco.mjtJoint.mjJNT_FREE


def test_check_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["robots", "check", "mini_cheetah", "--seconds", "1", "--episodes", "1", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and report["builds"] and report["stands"]
    signs = [j["sign"] for j in report["joints"]][:3]
    assert signs == [1, -1, -1]  # hip and knee turn about -y on the Mini Cheetah


def test_check_says_why_a_robot_does_not_stand(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """Gains too weak to hold a 12 kg robot: it builds, but sinks; exit 2 with the trial."""
    text = shipped_specs()["a1"].read_text().replace("kp = 35.0", "kp = 2.0")
    spec = tmp_path / "weak_a1.toml"
    spec.write_text(text)
    assert main(["robots", "check", str(spec), "--seconds", "3", "--episodes", "1"]) == 2
    out = capsys.readouterr().out
    assert "builds: yes" in out and "stands: no" in out and "not ok" in out


def test_check_refuses_a_spec_that_does_not_build(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    text = shipped_specs()["a1"].read_text().replace('foot = "FL_toe"', 'foot = "FL_paw"')
    spec = tmp_path / "bad.toml"
    spec.write_text(text)
    assert main(["robots", "check", str(spec)]) == 2
    err = capsys.readouterr().err
    assert "builds: no" in err and "legs.FL.foot: 'FL_paw' is not a body of a1.urdf" in err


def test_list_shows_every_shipped_quadruped(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["robots", "list", "--json", "sim2real/QuadrupedJoystick-v0"]) == 0
    (entry,) = json.loads(capsys.readouterr().out)
    robots = {r["robot"]: r for r in entry["robots"]}
    assert set(robots) == set(shipped_specs())
    assert robots["a1"]["mass_kg"] == pytest.approx(12.458) and robots["a1"]["description"] == "pybullet_data:a1/a1.urdf"


def test_rollout_runs_a_robot_from_its_spec(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["robots", "rollout", "sim2real/QuadrupedJoystick-v0", "--seconds", "1",
                 "--env-config", "robot=vision60"]) == 0
    assert "terminations 0" in capsys.readouterr().out
