"""The cube task's gait clock, the finger gait it suggests and the search that found it
(robots/hand/cube_gait.py, train/gait_search.py, robots/action_prior.py)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from sim2real.robots.action_prior import ActionPrior
from sim2real.robots.hand.cube_gait import GAIT_FILE, CubeGait, tuned_gait
from sim2real.robots.hand.cube_rotate import HandCubeRotateConfig, HandCubeRotateEnv
from sim2real.train.action_prior import PriorShift
from sim2real.train.gait_search import GaitSearchConfig, search_gait
from sim2real.train.gait_search import main as search_main
from sim2real.train.hand_judge import CUBE_ENV_ID, judge_turning


def make(frequency_hz: float = 0.5, dr: bool = True) -> HandCubeRotateEnv:
    return HandCubeRotateEnv(config=HandCubeRotateConfig(gait_frequency_hz=frequency_hz), domain_randomization=dr)


def test_without_a_clock_the_task_is_unchanged() -> None:
    env = HandCubeRotateEnv()
    assert env.observation_space.shape == (39,)
    assert env.action_prior is None
    assert not any("gait_clock" in name for name in env.observation_names + env.privileged_observation_names)


def test_the_clock_starts_at_phase_zero_and_advances_at_the_frequency_without_noise() -> None:
    env = make(0.5)
    assert env.observation_space.shape == (41,)
    assert env.observation_names[-2:] == ("gait_clock/sin", "gait_clock/cos")
    assert env.privileged_observation_names[-2:] == ("gait_clock/sin", "gait_clock/cos")
    assert env.privileged_observation_space.shape == (len(env.privileged_observation_names),)
    for seed in (0, 1):
        obs, info = env.reset(seed=seed)
        np.testing.assert_array_equal(obs[-2:], [0.0, 1.0])  # the gait was tuned from phase 0
        for k in range(1, 6):
            obs, _, _, _, info = env.step(np.zeros(16, np.float32))
            phase = 2 * math.pi * 0.5 * k * env.control_dt
            np.testing.assert_allclose(obs[-2:], [math.sin(phase), math.cos(phase)], atol=1e-6)
            np.testing.assert_array_equal(obs[-2:], info["privileged_obs"][-2:])
    # DR still puts noise on the sensors: the joint angles differ from the clean ones.
    assert not np.array_equal(obs[:16], info["privileged_obs"][:16])


def test_the_prior_is_the_shipped_gait_played_by_the_clock() -> None:
    env = make(0.5)
    prior = env.action_prior
    gait = tuned_gait()
    assert prior is not None and prior.command == () and prior.passthrough == (39, 40)
    obs = np.zeros(41)
    obs[39], obs[40] = 0.0, 1.0  # phase 0: offset + cos swing
    np.testing.assert_allclose(prior(obs), np.add(gait.offset, gait.swing_cos))
    obs[39], obs[40] = 1.0, 0.0  # a quarter period: offset + first swing
    np.testing.assert_allclose(prior(obs), np.add(gait.offset, gait.swing_0))
    obs[39], obs[40] = -1.0, 0.0
    np.testing.assert_allclose(prior(obs), np.add(gait.offset, gait.swing_1))


def test_a_prior_without_a_command_is_the_same_in_numpy_and_in_torch() -> None:
    rng = np.random.default_rng(0)
    gait = CubeGait.from_vector(0.5, rng.uniform(-0.5, 0.5, 64))
    names = tuple(f"x{i}" for i in range(39)) + ("gait_clock/sin", "gait_clock/cos")
    prior = gait.prior(names)
    obs = rng.normal(size=(7, 41))
    phase = rng.uniform(0, 2 * math.pi, 7)
    obs[:, 39], obs[:, 40] = np.sin(phase), np.cos(phase)
    shift = PriorShift(prior)
    torch_action = shift.action(torch.tensor(obs, dtype=torch.float32)).numpy()
    np.testing.assert_allclose(torch_action, prior(obs), atol=1e-5)
    assert ActionPrior.from_dict(json.loads(json.dumps(prior.to_dict()))) == prior


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"command": (1, 2)}, r"command must be \(\) or 3 observation indices"),
        ({"swing_cos": (0.1,) * 3}, r"swing_cos must be empty or one entry per action \(16\), got 3"),
        ({"offset": (0.1,) * 17}, r"offset must be empty or one entry per action \(16\), got 17"),
        ({"steer_sin": ((0.0,) * 16,) * 3, "steer_cos": ((0.0,) * 16,) * 3},
         r"steer_sin must be empty or, with a command"),
    ],
)
def test_a_malformed_prior_names_the_field(change: dict[str, object], message: str) -> None:
    base = dict(clock_sin=0, clock_cos=1, command=(), swing_0=(0.0,) * 16, swing_1=(0.0,) * 16, stand_below=1.0)
    with pytest.raises(ValueError, match=message):
        ActionPrior(**{**base, **change})


def test_a_gait_of_the_wrong_size_or_without_a_clock_is_refused() -> None:
    with pytest.raises(ValueError, match=r"CubeGait.offset must be 16 finite numbers"):
        CubeGait(0.5, (0.0,) * 15, (0.0,) * 16, (0.0,) * 16, (0.0,) * 16)
    with pytest.raises(ValueError, match=r"needs the gait clock"):
        tuned_gait().prior(HandCubeRotateEnv().observation_names)
    with pytest.raises(ValueError, match=r"gait_frequency_hz must be in \[0, 10\]"):
        HandCubeRotateConfig(gait_frequency_hz=-1.0)


def test_the_shipped_gait_turns_the_cube_open_loop_and_holding_still_does_not() -> None:
    """The file the env reads holds the search's command and score, and the gait does
    what the search said, on episodes the search never saw (DR on)."""
    record = json.loads(GAIT_FILE.read_text())
    assert record["command"].startswith("python -m sim2real.train.gait_search")
    assert record["check"]["turn_rate"] > 0.15
    env = make(tuned_gait().frequency_hz)
    prior = env.action_prior
    assert prior is not None
    config = [f"gait_frequency_hz={tuned_gait().frequency_hz}"]
    gait = judge_turning(CUBE_ENV_ID, lambda obs: prior(obs), 3, seed=500, env_config=config)
    still = judge_turning(CUBE_ENV_ID, lambda obs: np.zeros((len(obs), 16)), 3, seed=500, env_config=config)
    assert gait.turn_rate > 0.1 and gait.drop_rate <= 1 / 3, gait.format_table()
    assert abs(still.turn_rate) < 0.02, still.format_table()


def test_the_search_is_deterministic_and_writes_a_gait_the_env_can_read(tmp_path: Path) -> None:
    small = dict(iterations=2, population=4, elite=2, episodes=1, episode_steps=10, check_episodes=1)
    first = search_gait(GaitSearchConfig(**small), log=lambda line: None)
    second = search_gait(GaitSearchConfig(**small), log=lambda line: None)
    assert first["gait"] == second["gait"] and first["check"] == second["check"]
    assert [r["best_turn_rate"] for r in first["rounds"]] == [r["best_turn_rate"] for r in second["rounds"]]
    out = tmp_path / "gait.json"
    search_main(["--iterations", "1", "--population", "2", "--elite", "1", "--episodes", "1",
                 "--episode-steps", "5", "--check-episodes", "0", "--out", str(out)])
    gait = CubeGait.from_json(out)
    assert gait.frequency_hz == 0.5 and len(gait.offset) == 16
    assert json.loads(out.read_text())["command"].endswith(f"--out {out}")


def test_a_bad_search_setting_names_the_field(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        search_main(["--elite", "30", "--out", "unused.json"])
    assert "elite must be in [1, population=24], got 30" in capsys.readouterr().err
