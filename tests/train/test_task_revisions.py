"""Revisions of a task's defaults: the quadruped's defaults changed to the walking recipe
(revision 2) and every policy trained before keeps the task it was trained on."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest

from sim2real.robots.quadruped.robot_spec import load_spec
from sim2real.robots.registry import pin_revision, recorded_overrides, task_config
from sim2real.train.checkpoint import load_checkpoint, save_checkpoint
from sim2real.train.config import TrainConfig, load_run_config
from sim2real.train.evaluate import evaluate
from sim2real.train.export import OnnxPolicy, RunPolicy, export_onnx, read_metadata
from sim2real.train.sac import SACConfig
from sim2real.train.trainer import CHECKPOINT, CONFIG, prepare_trainer

QUADRUPED = "sim2real/QuadrupedJoystick-v0"
REVISION_1 = Path(__file__).parents[1] / "robots" / "data" / "quadruped_joystick_defaults_rev1.json"
"""Every field of the joystick task's config as the defaults were before revision 2,
written out from that code (2026-12-01) before the defaults changed."""


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def test_revision_1_is_the_task_as_it_was_field_for_field() -> None:
    expected = json.loads(REVISION_1.read_text())
    revision_1 = _plain(task_config(QUADRUPED, ["defaults_revision=1"]))
    assert revision_1.pop("defaults_revision") == 1
    # Fields added since, whose defaults keep the task as it was: the robot (go1, the only
    # one then) and its fall height, now read from the robot's spec unless set; the ground
    # (the flat floor, the only one then).
    assert revision_1.pop("robot") == "go1"
    assert revision_1.pop("terrain")["kind"] == "flat"
    # The widening knobs (issue 26), off: full torque whatever Kp, no incline.
    assert revision_1["randomization"].pop("torque_limit_follows_kp") is False
    assert revision_1["randomization"].pop("incline_deg") == {"low": 0.0, "high": 0.0}
    assert revision_1["fall_height"] < 0 and load_spec("go1").fall_height == expected["fall_height"]
    revision_1["fall_height"] = expected["fall_height"]
    assert revision_1 == expected
    # ... and today's defaults differ from it (else there would be no revision).
    assert _plain(task_config(QUADRUPED)) != {**expected, "defaults_revision": 2}


def test_the_revision_applies_first_wherever_it_stands() -> None:
    config = task_config(QUADRUPED, ["action_scale=0.3", "defaults_revision=1", "gait.frequency_hz=2"])
    assert (config.defaults_revision, config.action_scale, config.gait.frequency_hz) == (1, 0.3, 2.0)
    assert config.init_base_velocity == 0.0  # from revision 1
    with pytest.raises(ValueError, match=r"defaults_revision must be 1 or 2, got 3"):
        task_config(QUADRUPED, ["defaults_revision=3"])


def test_new_records_pin_today_and_old_records_read_as_revision_1() -> None:
    assert pin_revision(QUADRUPED, ["a=1"]) == ("defaults_revision=2", "a=1")
    assert pin_revision(QUADRUPED, ["defaults_revision=1", "a=1"]) == ("defaults_revision=1", "a=1")
    assert recorded_overrides(QUADRUPED, ["a=1"]) == ("defaults_revision=1", "a=1")
    assert recorded_overrides(QUADRUPED, ["defaults_revision=2"]) == ("defaults_revision=2",)
    # Envs without revisions (the hand's, gymnasium's) are left alone.
    for env_id in ("sim2real/HandValveTurn-v0", "Pendulum-v1"):
        assert pin_revision(env_id, []) == () == recorded_overrides(env_id, [])


TINY = SACConfig(actor_hidden=(16,), critic_hidden=(16,), batch_size=32)


def _as_written_before_revisions(run: Path) -> None:
    """Rewrite a run's config.json and checkpoint the way the code before revisions wrote
    them: the overrides without the defaults_revision item."""
    data = json.loads((run / CONFIG).read_text())
    data["env_config"] = [item for item in data["env_config"] if not item.startswith("defaults_revision=")]
    (run / CONFIG).write_text(json.dumps(data))
    tensors, meta = load_checkpoint(run / CHECKPOINT)
    meta["config"]["env_config"] = data["env_config"]
    save_checkpoint(run / CHECKPOINT, tensors, meta)


def test_a_run_and_a_policy_from_before_the_change_keep_their_task(tmp_path: Path) -> None:
    run = tmp_path / "old"
    trainer = prepare_trainer(TrainConfig(
        env=QUADRUPED, total_steps=100, out=run, learning_starts=50, num_envs=1, num_workers=0,
        eval_interval=0, checkpoint_interval=100, env_config=("defaults_revision=1", "rewards.pose=0.5"), sac=TINY,
    ))
    try:
        trainer.open_run()
        trainer.run_loop()
    finally:
        trainer.close()
    _as_written_before_revisions(run)
    assert json.loads((run / CONFIG).read_text())["env_config"] == ["rewards.pose=0.5"]

    # Today's defaults would give this 45-input policy 50 observations; it reads as revision 1.
    policy = RunPolicy(run)
    assert policy.env_config == ("defaults_revision=1", "rewards.pose=0.5")
    assert load_run_config(run).env_config == ("defaults_revision=1", "rewards.pose=0.5")
    result = evaluate(policy, QUADRUPED, episodes=1, seed=0, env_config=policy.env_config)
    assert result.task is not None and len(result.returns) == 7
    resumed = prepare_trainer(TrainConfig(resume=run, total_steps=200))
    try:
        assert resumed.obs_dim == 45 and resumed.config.env_config[0] == "defaults_revision=1"
    finally:
        resumed.close()

    # Exported now, the model records the revision; an export from before reads as revision 1.
    path = tmp_path / "old.onnx"
    export_onnx(run, path)
    assert json.loads(read_metadata(path)["env_config"]) == ["defaults_revision=1", "rewards.pose=0.5"]
    model = onnx.load(str(path))
    for prop in model.metadata_props:
        if prop.key == "env_config":
            prop.value = json.dumps(["rewards.pose=0.5"])
    onnx.save(model, str(path))
    assert OnnxPolicy(path).env_config == ("defaults_revision=1", "rewards.pose=0.5")
    obs = np.zeros((1, 45), np.float32)
    np.testing.assert_allclose(OnnxPolicy(path)(obs), policy(obs), atol=1e-5)


def test_a_new_run_records_todays_revision(tmp_path: Path) -> None:
    run = tmp_path / "new"
    trainer = prepare_trainer(TrainConfig(
        env=QUADRUPED, total_steps=8, out=run, learning_starts=4, num_envs=1, num_workers=0,
        eval_interval=0, checkpoint_interval=8, sac=TINY,
    ))
    try:
        trainer.open_run()
        trainer.run_loop()
        assert trainer.obs_dim == 50  # today's task: velocity estimate and gait clock
    finally:
        trainer.close()
    assert json.loads((run / CONFIG).read_text())["env_config"] == ["defaults_revision=2"]
    assert RunPolicy(run).env_config == ("defaults_revision=2",)
