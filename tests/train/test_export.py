"""ONNX export: the model contract, metadata, and agreement with the trainer's own
deterministic policy; robots end to end."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import onnx
import pytest
import torch

from sim2real.cli.train import policy_from_source
from sim2real.robots import get_record
from sim2real.train.config import TrainConfig
from sim2real.train.export import OnnxPolicy, RunPolicy, export_onnx, read_metadata
from sim2real.train.judge import default_cases, has_judge
from sim2real.train.policy import DeterministicPolicy
from sim2real.train.sac import SACConfig
from sim2real.train.trainer import Trainer, prepare_trainer

TINY = SACConfig(actor_hidden=(32, 32), critic_hidden=(32, 32), batch_size=64)


QUADRUPED = "sim2real/QuadrupedJoystick-v0"


@pytest.fixture(scope="module")
def quadruped_trainer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Trainer]:
    """A quadruped run trained for a few hundred steps (the normalizer has real statistics,
    the actor has had updates), its Trainer kept open: the trainer's own deterministic
    policy, which its evaluations run, is what the export must reproduce."""
    trainer = prepare_trainer(TrainConfig(
        env=QUADRUPED, total_steps=400, seed=3, out=tmp_path_factory.mktemp("quad") / "run",
        learning_starts=200, num_envs=2, num_workers=0, eval_interval=0, eval_episodes=1,
        checkpoint_interval=400, sac=TINY,
    ))
    try:
        trainer.open_run()
        # Checkpoints at its last step (checkpoint_interval): the file holds this very
        # state. (train() would add the final judged evaluation, a minute of CPU here.)
        trainer.run_loop()
        yield trainer
    finally:
        trainer.close()


@pytest.fixture(scope="module")
def quadruped_run(quadruped_trainer: Trainer) -> Path:
    return quadruped_trainer.run_dir


def _observations(trainer: Trainer) -> dict[str, np.ndarray]:
    """Observation batches: from the policy's own rollout, around the normalizer's
    statistics, far outside them (normalized beyond the clip) and a single row."""
    env = gym.make(QUADRUPED)
    obs, _ = env.reset(seed=0)
    real = []
    for _ in range(200):
        real.append(obs)
        obs, _, term, trunc, _ = env.step(trainer.deterministic_policy(obs[None])[0])
        if term or trunc:
            obs, _ = env.reset()
    env.close()
    rng = np.random.default_rng(1)
    mean, std = trainer.obs_norm.mean, trainer.obs_norm.std
    near = (mean + std * rng.normal(0, 2, (300, len(mean)))).astype(np.float32)
    far = (mean + std * rng.normal(0, 40, (100, len(mean)))).astype(np.float32)
    return {"rollout": np.array(real, np.float32), "near": near, "far": far, "one": near[:1]}


def _assert_acts_as_the_trainer(trainer: Trainer, policy: Callable[[np.ndarray], np.ndarray]) -> None:
    for name, batch in _observations(trainer).items():
        expected = trainer.deterministic_policy(batch)
        got = policy(batch)
        assert got.shape == expected.shape == (len(batch), 12), name
        np.testing.assert_allclose(got, expected, atol=1e-5, err_msg=f"{name} observations")
        assert np.all(np.abs(got) <= 1.0)


def test_onnx_acts_as_the_trainers_deterministic_policy(quadruped_trainer: Trainer, tmp_path: Path) -> None:
    """onnxruntime on the exported file == the policy the trainer evaluated, on a trained
    run (not the module the exporter traced, which would agree with itself whatever the
    export dropped)."""
    trainer = quadruped_trainer
    path = tmp_path / "policy.onnx"
    result = export_onnx(trainer.run_dir, path)
    assert result["max_abs_error"] <= 1e-5
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    (inp,), (out,) = model.graph.input, model.graph.output
    assert inp.name == "observation" and out.name == "action"
    assert inp.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert inp.type.tensor_type.shape.dim[0].dim_param == "batch"  # dynamic batch
    assert inp.type.tensor_type.shape.dim[1].dim_value == 50  # with the velocity estimate and gait clock

    # The comparison can see the normalizer: dropping it changes the actions a lot, and
    # the far batch lies beyond the clip.
    observations = _observations(trainer)
    with torch.no_grad():
        raw_actor = trainer.sac.actor.act(torch.as_tensor(observations["near"])).numpy()
    assert np.abs(raw_actor - trainer.deterministic_policy(observations["near"])).max() > 0.1
    norm = trainer.obs_norm
    assert np.abs((observations["far"] - norm.mean) / norm.std).max() > 2 * norm.clip

    _assert_acts_as_the_trainer(trainer, OnnxPolicy(path).raw)


def test_eval_of_a_run_and_of_its_export_act_the_same(quadruped_trainer: Trainer, tmp_path: Path) -> None:
    """`sim2real eval RUN_DIR` and `sim2real eval exported.onnx` load policies (the same
    policy_from_source) that give the trainer's actions on the same observations."""
    path = tmp_path / "policy.onnx"
    export_onnx(quadruped_trainer.run_dir, path)
    from_run = policy_from_source(quadruped_trainer.run_dir, None, 0)
    from_onnx = policy_from_source(path, None, 0)
    assert isinstance(from_run, RunPolicy) and isinstance(from_onnx, OnnxPolicy)
    _assert_acts_as_the_trainer(quadruped_trainer, from_run)
    _assert_acts_as_the_trainer(quadruped_trainer, from_onnx)


def _without_normalizer(policy: DeterministicPolicy) -> None:
    policy.set_normalizer(None)


def _without_clip(policy: DeterministicPolicy) -> None:
    policy.clip = float("inf")


@pytest.mark.slow
@pytest.mark.parametrize("broken", [_without_normalizer, _without_clip], ids=["no-normalizer", "no-clip"])
def test_export_tests_fail_on_an_export_that_drops_part_of_the_policy(
    quadruped_trainer: Trainer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    broken: Callable[[DeterministicPolicy], None],
) -> None:
    """The two tests above are sensitive: a checkpoint loader that drops the observation
    normalization (or its clip) makes an export and a `sim2real eval RUN_DIR` that agree
    with each other, and with the module traced (what the old parity test and the export's
    own check compare), but not with the trainer."""
    import sim2real.train.export as export_module

    real = export_module.policy_from_checkpoint

    def loader(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> DeterministicPolicy:
        policy = real(tensors, meta)
        broken(policy)
        return policy

    monkeypatch.setattr(export_module, "policy_from_checkpoint", loader)
    path = tmp_path / "policy.onnx"
    export_onnx(quadruped_trainer.run_dir, path)  # its own check passes
    run_policy, onnx_policy = RunPolicy(quadruped_trainer.run_dir), OnnxPolicy(path)
    far = _observations(quadruped_trainer)["far"]
    np.testing.assert_allclose(onnx_policy.raw(far), run_policy(far), atol=1e-5)
    for policy in (onnx_policy.raw, run_policy):
        with pytest.raises(AssertionError):
            _assert_acts_as_the_trainer(quadruped_trainer, policy)


def test_onnx_and_checkpoint_evaluate_identically(quadruped_run: Path, tmp_path: Path) -> None:
    from sim2real.train.evaluate import evaluate

    path = tmp_path / "policy.onnx"
    export_onnx(quadruped_run, path)
    env_id = "sim2real/QuadrupedJoystick-v0"
    from_run = evaluate(RunPolicy(quadruped_run), env_id, episodes=2, seed=5)
    from_onnx = evaluate(OnnxPolicy(path), env_id, episodes=2, seed=5)
    np.testing.assert_array_equal(from_run.lengths, from_onnx.lengths)
    np.testing.assert_allclose(from_run.returns, from_onnx.returns, rtol=1e-3)


def test_metadata_round_trips(quadruped_run: Path, tmp_path: Path) -> None:
    path = tmp_path / "policy.onnx"
    export_onnx(quadruped_run, path)
    meta = read_metadata(path)
    env = gym.make("sim2real/QuadrupedJoystick-v0").unwrapped
    spec = env.deployment_spec
    assert meta["env_id"] == "sim2real/QuadrupedJoystick-v0"
    assert json.loads(meta["observation_names"]) == list(spec.observation_names)
    assert json.loads(meta["joint_names"]) == list(spec.joint_names)
    assert json.loads(meta["action_offset"]) == list(spec.default_pose)
    assert json.loads(meta["action_scale"]) == [0.2, 0.4, 0.4] * 4  # abduction, hip, knee
    assert json.loads(meta["kp"]) == [35.0] * 12 and json.loads(meta["kd"]) == [0.5] * 12
    assert json.loads(meta["control_rate_hz"]) == 50.0
    assert json.loads(meta["training_steps"]) == 400
    dr = json.loads(meta["domain_randomization"])
    assert dr["floor_friction"] == {"low": 0.4, "high": 1.0} and dr["enabled"] is True
    assert meta["sim2real_version"]
    assert len(json.loads(meta["observation_mean"])) == 50
    # No pickle anywhere in the artifact: it is a plain ONNX protobuf.
    assert b"\x80\x04" not in path.read_bytes()[:2]


@pytest.mark.parametrize("env_id", ["sim2real/QuadrupedJoystick-v0", "sim2real/HandCubeRotate-v0"])
def test_robot_train_export_eval_end_to_end(env_id: str, tmp_path: Path) -> None:
    """train -> export -> eval of the ONNX, with task config overrides that must travel
    along: the run's config, the model's metadata and the evaluation's episode length."""
    sim2real = shutil.which("sim2real")
    assert sim2real
    overrides = ["episode_steps=40", "rewards.termination=-50"]
    run, onnx_path = tmp_path / "run", tmp_path / "policy.onnx"
    train = subprocess.run(
        [sim2real, "train", "--env", env_id, "--total-steps", "300", "--learning-starts", "150",
         "--num-envs", "2", "--eval-interval", "0", "--eval-episodes", "1", "--out", str(run),
         "--sac.actor-hidden", "32", "--sac.critic-hidden", "32", "--sac.batch-size", "32",
         "--sac.asymmetric", "--env-config", *overrides],
        capture_output=True, text=True, timeout=600,
    )
    assert train.returncode == 0, train.stderr[-2000:]
    assert (run / "learning_curve.png").is_file()
    # The run records the revision of the env's defaults its overrides apply to (the quadruped's).
    pinned = ["defaults_revision=2", *overrides] if env_id == "sim2real/QuadrupedJoystick-v0" else overrides
    assert json.loads((run / "config.json").read_text())["env_config"] == pinned
    export = subprocess.run([sim2real, "export", str(run), "-o", str(onnx_path)],
                            capture_output=True, text=True, timeout=300)
    assert export.returncode == 0, export.stderr[-2000:]
    evaluation = subprocess.run(
        [sim2real, "eval", str(onnx_path), "--episodes", "1", "--no-dr", "--json"],
        capture_output=True, text=True, timeout=600,
    )
    assert evaluation.returncode == 0, evaluation.stderr[-2000:]
    report = json.loads(evaluation.stdout)
    # The joystick task is judged: one episode per command, with task metrics.
    judged = has_judge(env_id)
    assert report["env_id"] == env_id
    assert report["episodes"] == (len(default_cases(env_id)) if judged else 1)
    assert ("task" in report) == judged
    assert json.loads(read_metadata(onnx_path)["env_config"]) == pinned
    # The overridden 40-step episode, not the default 400/1000 (shorter only if it fell).
    assert report["length_mean"] == 40 or (report["terminated"] >= 1 and report["length_mean"] < 40)
    config = get_record(env_id).load_config_class()()
    clip = {"nonnegative_clip"} if getattr(config, "nonnegative_reward", False) else set()
    assert set(report["reward_terms"]) == set(config.rewards.__dataclass_fields__) | clip
    if env_id == QUADRUPED:
        # Seeing the trained policy: eval --video and robots view --policy (ONNX and run
        # directory), on the task config the policy trained with (joystick commands).
        video, strip = tmp_path / "judge.mp4", tmp_path / "strip.png"
        result = subprocess.run(
            [sim2real, "eval", str(onnx_path), "--episodes", "1", "--commands", "fwd=0.5,0,0",
             "--video", str(video), "--video-seconds", "0.3"],
            capture_output=True, text=True, timeout=600,
        )
        assert result.returncode == 0, result.stderr[-2000:]
        assert "| fwd (0.5, 0, 0) |" in result.stdout and video.stat().st_size > 1000
        for policy in (onnx_path, run):
            result = subprocess.run(
                [sim2real, "robots", "view", env_id, "--policy", str(policy), "--command",
                 "fwd=0.5,0,0", "--seconds", "0.3", "--out", str(strip), "--frames", "4",
                 "--width", "64", "--height", "48"],
                capture_output=True, text=True, timeout=600,
            )
            assert result.returncode == 0, result.stderr[-2000:]
            from PIL import Image

            assert Image.open(strip).size == (4 * 64, 48)
        wrong = subprocess.run(
            [sim2real, "robots", "view", "sim2real/HandCubeRotate-v0", "--policy", str(onnx_path)],
            capture_output=True, text=True, timeout=600,
        )
        assert wrong.returncode == 2 and "was trained on sim2real/QuadrupedJoystick-v0" in wrong.stderr


def test_export_and_eval_errors_are_clear(tmp_path: Path) -> None:
    sim2real = shutil.which("sim2real")
    assert sim2real
    missing = subprocess.run([sim2real, "export", str(tmp_path / "none")], capture_output=True, text=True)
    assert missing.returncode == 2 and "no checkpoint at" in missing.stderr
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    result = subprocess.run([sim2real, "eval", str(bad)], capture_output=True, text=True)
    assert result.returncode == 2 and "not a loadable ONNX model" in result.stderr
    result = subprocess.run([sim2real, "eval", "zero"], capture_output=True, text=True)
    assert result.returncode == 2 and "needs --env" in result.stderr


def test_baselines_evaluate_with_the_given_task_overrides() -> None:
    """`sim2real eval zero|random --env ...`: the references a trained policy is judged by."""
    sim2real = shutil.which("sim2real")
    assert sim2real
    reports = {}
    for baseline in ("zero", "random"):
        result = subprocess.run(
            [sim2real, "eval", baseline, "--env", "sim2real/HandCubeRotate-v0", "--episodes", "2",
             "--env-config", "episode_steps=15", "--json"],
            capture_output=True, text=True, timeout=300,
        )
        assert result.returncode == 0, result.stderr[-2000:]
        reports[baseline] = json.loads(result.stdout)
        assert reports[baseline]["length_mean"] == 15
    # Holding still costs no action rate; random actions do.
    assert reports["zero"]["reward_terms"]["action_rate"] == 0.0
    assert reports["random"]["reward_terms"]["action_rate"] < -0.1


def _export_short_quadruped_run(tmp_path: Path, robot: str, total_steps: int) -> Path:
    """A few updates of the joystick task on ``robot`` (robot=NAME or robot=PATH), exported."""
    config = TrainConfig(
        env=QUADRUPED, env_config=(robot,), total_steps=total_steps, seed=0, out=tmp_path / "run",
        learning_starts=100, num_envs=1, num_workers=0, eval_interval=0, eval_episodes=1,
        checkpoint_interval=total_steps, sac=TINY,
    )
    trainer = prepare_trainer(config)
    try:
        trainer.open_run()
        trainer.run_loop()
    finally:
        trainer.close()
    path = tmp_path / "policy.onnx"
    export_onnx(tmp_path / "run", path)
    return path


def test_an_a1_policy_names_the_a1s_joints(tmp_path: Path) -> None:
    """A robot built from a description file: the exported model says which robot and
    which joints (the URDF's names), with the A1's gains and standing pose."""
    path = _export_short_quadruped_run(tmp_path, "robot=a1", total_steps=200)
    meta = read_metadata(path)
    joints = json.loads(meta["joint_names"])
    assert joints[:3] == ["FR_hip_joint", "FR_upper_joint", "FR_lower_joint"] and len(joints) == 12
    assert meta["robot"] == "a1"
    assert "robot=a1" in json.loads(meta["env_config"])
    assert json.loads(meta["torque_limits"]) == [20.0, 55.0, 55.0] * 4  # a1.urdf's efforts
    assert json.loads(meta["velocity_limits"]) == [52.4, 28.6, 28.6] * 4  # and velocities
    assert json.loads(meta["action_offset"]) == [0.0, 0.9, -1.8] * 4  # Menagerie a1's home
    assert "joint_pos/FR_upper_joint" in json.loads(meta["observation_names"])
    # sim2real eval rebuilds the A1 from the recorded task config.
    policy = OnnxPolicy(path)
    assert policy.env_config and "robot=a1" in policy.env_config


def test_eval_warns_when_the_robot_changed_since_export(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A policy records the hash of its robot's spec and description; evaluated after the
    spec was edited, `sim2real eval` says so (and still runs, on today's robot)."""
    from sim2real.cli.main import main as cli_main
    from sim2real.robots.quadruped.robot_spec import shipped_specs

    spec = tmp_path / "my_a1.toml"
    spec.write_text(shipped_specs()["a1"].read_text().replace('name = "a1"', 'name = "my_a1"'))
    path = _export_short_quadruped_run(tmp_path, f"robot={spec}", total_steps=120)
    assert len(read_metadata(path)["robot_sha256"]) == 64
    args = ["eval", str(path), "--episodes", "1", "--commands", "stand=0,0,0", "--json"]
    assert cli_main(args) == 0
    assert "warning" not in capsys.readouterr().err  # the same robot
    spec.write_text(spec.read_text().replace("kd = 0.5", "kd = 0.6"))
    assert cli_main(args) == 0
    assert "warning: the robot 'my_a1' is not the one this policy was exported for" in capsys.readouterr().err
