"""The stress suite (train/stress.py, `sim2real eval --stress`): every world judged on the
same seeds and cases as nominal, ratios to nominal, targets, JSON, the PNG, bad input."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from sim2real.cli.main import main
from sim2real.train.export import OnnxPolicy
from sim2real.train.judge import JoystickCommand
from sim2real.train.stress import NOMINAL, run_stress, scenarios_for, select

SHIPPED = Path(__file__).resolve().parents[2] / "serve" / "policies"
QUADRUPED = "sim2real/QuadrupedJoystick-v0"
VALVE = "sim2real/HandValveTurn-v0"
FORWARD = JoystickCommand("forward 0.5", 0.5, 0.0, 0.0)


@pytest.fixture(scope="module")
def walker_stress():
    policy = OnnxPolicy(SHIPPED / "quadruped_joystick.onnx")
    # Short episodes (3 s, the first second not judged): the structure, not the verdict.
    config = (*policy.env_config, "episode_steps=150")
    return run_stress(QUADRUPED, policy, 1, 0, True, config, [FORWARD],
                      ["weak motors", "step", "all of them"])


def test_nominal_comes_first_then_the_scenarios_asked_for(walker_stress) -> None:
    names = [row.scenario.name for row in walker_stress.rows]
    assert names == ["nominal", "weak motors", "step", "all of them"]
    assert walker_stress.rows[0].scenario is NOMINAL
    for row in walker_stress.rows:
        assert [r.command for r in row.result.rows] == [FORWARD]
        assert len(row.result.episodes) == 1


def test_ratios_are_to_nominal_and_targets_apply_to_single_worlds(walker_stress) -> None:
    nominal = walker_stress.nominal.walking_planar_error
    assert math.isfinite(nominal) and nominal > 0
    for row in walker_stress.rows:
        m = walker_stress.metrics(row.result)
        assert m["planar_error_ratio"] == pytest.approx(row.result.walking_planar_error / nominal)
        targets = walker_stress.targets(row)
        if row.scenario.name in ("nominal", "all of them"):
            assert targets == {}
        else:
            assert set(targets) == {"fall_rate", "planar_error_ratio"}
            assert targets["planar_error_ratio"]["met"] == (m["planar_error_ratio"] <= 2.0)
    missed = walker_stress.failed
    assert set(missed) <= {"weak motors", "step"}


def test_the_worlds_differ_from_nominal(walker_stress) -> None:
    # Weakened motors and a step across the path cannot leave the walk exactly as it was:
    # a suite whose worlds were silently not applied would read nominal in every row.
    errors = {row.scenario.name: row.result.walking_planar_error for row in walker_stress.rows}
    assert errors["weak motors"] != errors["nominal"]
    assert errors["step"] != errors["nominal"]


def test_json_and_plot(walker_stress, tmp_path: Path) -> None:
    data = json.loads(json.dumps(walker_stress.as_dict(), allow_nan=False))
    assert [s["name"] for s in data["scenarios"]] == ["nominal", "weak motors", "step", "all of them"]
    step = data["scenarios"][2]
    assert step["env_config"] == ["terrain.kind=step", "terrain.height=0.04", "terrain.distance=0.6"]
    assert step["training"] == "flat floor"
    assert "4 cm step" in step["held_out"]
    png = tmp_path / "stress.png"
    walker_stress.plot(png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = walker_stress.format_table()
    assert table.count("\n") == 1 + len(walker_stress.rows)
    assert "| nominal |" in table


def test_an_unknown_scenario_is_refused_with_the_known_ones() -> None:
    scenarios = scenarios_for(QUADRUPED)
    with pytest.raises(ValueError, match=r"unknown stress scenario\(s\) \['lava'\].*'low friction'"):
        select(scenarios, ["lava"])
    assert [s.name for s in select(scenarios, ["pushes", "low friction"])] == ["low friction", "pushes"]


def test_the_cube_has_no_stress_suite() -> None:
    with pytest.raises(ValueError, match="HandCubeRotate-v0 has no stress suite.*HandValveTurn-v0"):
        scenarios_for("sim2real/HandCubeRotate-v0")


def test_cli_stress_json_on_the_valve(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["eval", "zero", "--env", VALVE, "--stress", "--episodes", "1", "--env-config",
                 "episode_steps=10", "--stress-scenarios", "weak motors", "latency", "--json"])
    out = capsys.readouterr().out
    assert code == 0
    data = json.loads(out)
    assert [s["name"] for s in data["scenarios"]] == ["nominal", "weak motors", "latency"]
    assert set(data["scenarios"][1]["targets"]) == {"worst_direction_turn_rate"}
    # Holding still turns nothing: every single world misses the turn-rate target.
    assert data["targets_missed"] == ["weak motors", "latency"]


def test_cli_stress_table_and_plot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    png = tmp_path / "worlds.png"
    code = main(["eval", "zero", "--env", QUADRUPED, "--stress", "--episodes", "1", "--commands",
                 "f=0.5,0,0", "--env-config", "episode_steps=60", "--stress-scenarios", "low friction",
                 "--stress-plot", str(png)])
    out = capsys.readouterr().out
    assert code == 0
    assert "| low friction | floor friction 0.3 | U(0.4, 1) |" in out
    assert "targets (every single-perturbation world)" in out
    assert png.is_file()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--stress", "--stress-scenarios", "lava"], "unknown stress scenario(s) ['lava']"),
        (["--stress-plot", "x.png"], "apply with --stress only"),
        (["--stress", "--stress-plot", "x.gif"], "stress_plot must end in .png"),
    ],
)
def test_cli_stress_errors(args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["eval", "zero", "--env", QUADRUPED, "--episodes", "1", *args])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert message in err


def test_rows_quote_the_policys_training_while_judging_in_the_nominal_world() -> None:
    # A policy trained on rough ground with wider motor ranges, judged in the default world:
    # the judged world is env_config's, the "training" column is the training config's.
    policy = OnnxPolicy(SHIPPED / "quadruped_joystick.onnx")
    judged = (*policy.env_config, "episode_steps=100")
    trained = (*judged, "terrain.kind=rough", "terrain.height=0.02", "randomization.kp_scale.low=0.7",
               "randomization.torque_limit_follows_kp=true")
    result = run_stress(QUADRUPED, policy, 1, 0, True, judged, [FORWARD], ["weak motors", "slope up"],
                        trained_env_config=trained)
    plain = run_stress(QUADRUPED, policy, 1, 0, True, judged, [FORWARD], ["weak motors", "slope up"])
    quoted = {row.scenario.name: row.scenario.training for row in result.rows}
    assert quoted["weak motors"] == "Kp x U(0.7, 1.1), torque limit x the same draw"
    assert quoted["slope up"].startswith("rough ground")
    assert {row.scenario.name: row.scenario.training for row in plain.rows}["slope up"] == "flat floor"
    # Same world judged either way: the numbers agree exactly.
    for a, b in zip(result.rows, plain.rows, strict=True):
        assert a.result.walking_planar_error == b.result.walking_planar_error
