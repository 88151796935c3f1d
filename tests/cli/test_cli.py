"""The `sim2real` console script, run for real (subprocess) and in-process."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from sim2real.cli.main import main

SIM2REAL = shutil.which("sim2real")


def read_video(path: Path) -> np.ndarray:
    """Decode a clip in a fresh interpreter: imageio forks ffmpeg, and a fork from this
    process, where earlier tests ran gRPC threads, can leave the child without its pipes.
    (A comprehension, not list(): the reader's len() is inf, which list() preallocates.)"""
    code = ("import sys, numpy as np, imageio.v2 as iio; "
            "np.save(sys.argv[2], np.stack([f for f in iio.get_reader(sys.argv[1])]))")
    npy = path.with_suffix(".frames.npy")
    subprocess.run([sys.executable, "-c", code, str(path), str(npy)], check=True, timeout=120)
    return np.load(npy)


def run(*args: str) -> subprocess.CompletedProcess[str]:
    assert SIM2REAL, "the sim2real console script is not installed"
    return subprocess.run([SIM2REAL, *args], capture_output=True, text=True, timeout=300)


def test_top_level_help_lists_the_commands() -> None:
    result = run("--help")
    assert result.returncode == 0
    assert "robots" in result.stdout


def test_unknown_command_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["trian"]) == 2
    assert "unknown command 'trian'" in capsys.readouterr().err
    assert main([]) == 2


def test_robots_lists_both_tasks_with_sizes_and_dr() -> None:
    result = run("robots")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "sim2real/QuadrupedJoystick-v0" in out and "sim2real/HandCubeRotate-v0" in out
    assert "floor_friction" in out and "U(0.4, 1)" in out


def test_robots_json_is_machine_readable(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["robots", "list", "--json", "sim2real/QuadrupedJoystick-v0"]) == 0
    (entry,) = json.loads(capsys.readouterr().out)
    assert entry["observation_dim"] == 50 and entry["action_dim"] == 12
    assert entry["control_rate_hz"] == 50 and entry["physics_rate_hz"] >= 500
    assert entry["domain_randomization"]["latency_steps"]["distribution"] == "U{0..1}"


def test_robots_unknown_env_names_the_valid_ones(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["robots", "sim2real/Nope-v0"]) == 2
    err = capsys.readouterr().err
    assert "unknown env id 'sim2real/Nope-v0'" in err and "sim2real/HandCubeRotate-v0" in err


@pytest.mark.parametrize("env_id", ["sim2real/QuadrupedJoystick-v0", "sim2real/HandCubeRotate-v0"])
def test_view_renders_a_real_clip(tmp_path: Path, env_id: str) -> None:
    out = tmp_path / "clip.mp4"
    result = run("robots", "view", env_id, "--out", str(out), "--seconds", "0.5",
                 "--width", "160", "--height", "120")
    assert result.returncode == 0, result.stderr
    frames = read_video(out)
    assert len(frames) >= 10
    assert frames[0].shape == (120, 160, 3)
    assert np.std(frames[-1]) > 5, "blank frame"
    assert not list(tmp_path.glob(".*partial*")), "temporary file left behind"


def test_view_runs_the_prior_on_the_task_config_asked_for(tmp_path: Path) -> None:
    """The cube's finger gait exists only with its clock (--env-config); without it the
    prior baseline is refused with the reason."""
    out = tmp_path / "gait.png"
    result = run("robots", "view", "sim2real/HandCubeRotate-v0", "--policy", "prior", "--env-config",
                 "gait_frequency_hz=0.5", "--out", str(out), "--seconds", "0.3", "--frames", "2",
                 "--width", "96", "--height", "64")
    assert result.returncode == 0, result.stderr
    assert out.stat().st_size > 0
    result = run("robots", "view", "sim2real/HandCubeRotate-v0", "--policy", "prior",
                 "--out", str(out), "--seconds", "0.3")
    assert result.returncode == 2 and "suggests none" in result.stderr


def test_view_rejects_bad_options(tmp_path: Path) -> None:
    result = run("robots", "view", "sim2real/QuadrupedJoystick-v0", "--seconds", "-1")
    assert result.returncode != 0
    assert "seconds must be > 0" in result.stderr
    result = run("robots", "view", "sim2real/QuadrupedJoystick-v0", "--out", str(tmp_path / "x.avi"))
    assert result.returncode != 0 and "must end in .mp4 or .gif" in result.stderr


def test_module_entry_point() -> None:
    result = subprocess.run([sys.executable, "-m", "sim2real.cli", "--help"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "robots" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["eval", "zero", "--env", "Pendulum-v1", "--commands", "f=1,0,0"],
         "--commands applies to the tasks with a judge only, not Pendulum-v1"),
        (["eval", "zero", "--env", "sim2real/QuadrupedJoystick-v0", "--commands", "f=1,0"],
         "expected [NAME=]VX,VY,YAW"),
        (["robots", "view", "sim2real/HandCubeRotate-v0", "--command", "f=1,0,0"],
         "direction 'f=1,0,0': expected ccw"),
        (["robots", "view", "sim2real/HandCubeRotate-v0", "--command", "cw"],
         "only judged ['counter-clockwise'], not clockwise"),
        (["robots", "view", "Pendulum-v1", "--command", "f=1,0,0"],
         "--command applies to the tasks with a judge only"),
        (["robots", "view", "sim2real/QuadrupedJoystick-v0", "--policy", "no/such/run"],
         "is neither zero, random, an .onnx file, a run directory nor a .safetensors checkpoint"),
    ],
)
def test_judge_and_view_misuse_is_refused_with_the_reason(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(args) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["eval", "zero", "--env", "sim2real/QuadrupedJoystick-v0", "--video", "x.avi"],
         "video must end in .mp4 or .gif"),
        (["eval", "zero", "--env", "sim2real/QuadrupedJoystick-v0", "--video-seconds", "0"],
         "video_seconds must be > 0"),
        (["robots", "view", "sim2real/QuadrupedJoystick-v0", "--frames", "0"], "frames must be in 1..64"),
    ],
)
def test_bad_render_options_are_refused_before_any_work(args: list[str], message: str) -> None:
    result = run(*args)
    assert result.returncode != 0 and message in result.stderr


class _DictObservationEnv(gym.Env):  # Box actions, but a Dict observation: not trainable here
    observation_space = gym.spaces.Dict({"x": gym.spaces.Box(-1, 1, (2,))})
    action_space = gym.spaces.Box(-1, 1, (1,))


class _ImageObservationEnv(gym.Env):  # Box both, but a 2-D observation: not flat
    observation_space = gym.spaces.Box(0, 1, (4, 4))
    action_space = gym.spaces.Box(-1, 1, (1,))


@pytest.fixture(scope="module")
def odd_envs() -> dict[str, str]:
    ids = {"dict": "sim2real_test/DictObservation-v0", "image": "sim2real_test/ImageObservation-v0"}
    for key, cls in (("dict", _DictObservationEnv), ("image", _ImageObservationEnv)):
        if ids[key] not in gym.registry:
            gym.register(id=ids[key], entry_point=cls)
    return ids


def _one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ("Nope-v0", "unknown env id 'Nope-v0'"),
        ("CartPole-v1", "needs a flat (1-D) Box action space, got Discrete(2)"),
        ("dict", "needs a flat (1-D) Box observation space, got Dict("),
        ("image", "needs a flat (1-D) Box observation space, got Box(0.0, 1.0, (4, 4)"),
    ],
)
def test_train_on_an_env_it_cannot_train_is_one_line_exit_2(
    env: str, message: str, odd_envs: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env_id = odd_envs.get(env, env)
    assert main(["train", "--env", env_id, "--out", str(tmp_path / "run"), "--num-workers", "0"]) == 2
    assert message in _one_line_error(capsys)


def _run_dir(tmp_path: Path, **changes: object) -> Path:
    import dataclasses

    from sim2real.train.config import TrainConfig

    run = tmp_path / "run"
    run.mkdir()
    data = {**dataclasses.asdict(TrainConfig(env="Pendulum-v1")), "out": str(run)}  # as the trainer writes it
    for dotted, value in changes.items():
        *parents, key = dotted.split("__")
        target = data
        for parent in parents:
            target = target[parent]
        target[key] = value
    (run / "config.json").write_text(json.dumps(data))
    return run


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"total_steps": "100"}, "total_steps: expected int, got '100' (str)"),
        ({"domain_randomization": 1}, "domain_randomization: expected bool, got 1 (int)"),
        ({"sac__actor_hidden": [64, "x"]}, "sac.actor_hidden[1]: expected int, got 'x' (str)"),
        ({"device": "tpu"}, "device: expected one of ['cpu', 'cuda', 'auto'], got 'tpu'"),
        ({"sac": [1, 2]}, "sac: expected a JSON object of SACConfig fields, got list"),
        ({"frobnicate": 1}, "unknown key frobnicate (not fields of TrainConfig)"),
        ({"sac__warp_factor": 9}, "unknown key sac.warp_factor (not fields of SACConfig)"),
        ({"env": None}, "env: expected the env id the run trained on (a string), got None"),
        ({"num_envs": 0}, "TrainConfig.num_envs must be >= 1, got 0"),
    ],
)
def test_resume_of_a_run_with_a_bad_config_json_names_the_field(
    changes: dict[str, object], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = _run_dir(tmp_path, **changes)
    assert main(["train", "--resume", str(run)]) == 2
    err = _one_line_error(capsys)
    assert f"{run / 'config.json'}: " in err and message in err


def test_resume_misuse_says_what_is_wrong(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "file").write_text("x")
    (tmp_path / "empty").mkdir()
    bad_json = _run_dir(tmp_path)
    (bad_json / "config.json").write_text('{"env": "Pendulum-v1", ')
    for target, message in ((tmp_path / "file", "is a file; expected a run directory"),
                            (tmp_path / "missing", "no such directory"),
                            (tmp_path / "empty", "no config.json in it"),
                            (bad_json, "config.json: not valid JSON")):
        assert main(["train", "--resume", str(target)]) == 2
        err = _one_line_error(capsys)
        assert str(target) in err and message in err, err


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from sim2real.train.config import TrainConfig
    from sim2real.train.sac import SACConfig
    from sim2real.train.trainer import run_training

    out = tmp_path_factory.mktemp("cli") / "run"
    run_training(TrainConfig(env="Pendulum-v1", total_steps=64, out=out, learning_starts=32, num_workers=0,
                             eval_interval=0, eval_episodes=1, checkpoint_interval=64,
                             sac=SACConfig(actor_hidden=(8,), critic_hidden=(8,), batch_size=16)))
    return out


def test_export_refuses_an_output_folder_that_does_not_exist(
    tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "a" / "b" / "c.onnx"
    assert main(["export", str(tiny_run), "-o", str(target)]) == 2
    err = _one_line_error(capsys)
    assert f"the folder {target.parent} does not exist" in err
    assert not (tmp_path / "a").exists()  # nothing created
    (tmp_path / "dir.onnx").mkdir()
    assert main(["export", str(tiny_run), "-o", str(tmp_path / "dir.onnx")]) == 2
    assert "is a folder" in _one_line_error(capsys)
    assert main(["export", str(tiny_run), "-o", str(tmp_path / "ok.onnx")]) == 0
    assert (tmp_path / "ok.onnx").is_file()


def test_the_prior_baseline_is_the_trot_alone(capsys: pytest.CaptureFixture[str]) -> None:
    """`sim2real eval prior`: the gait the env suggests, open loop (what --action-prior
    starts from), judged like a policy: it walks where the zero action stands."""
    rows = {}
    for baseline in ("prior", "zero"):
        assert main(["eval", baseline, "--env", "sim2real/QuadrupedJoystick-v0", "--commands", "f=0.5,0,0",
                     "--episodes", "1", "--no-dr", "--env-config", "episode_steps=150", "--json"]) == 0
        (rows[baseline],) = json.loads(capsys.readouterr().out)["task"]["commands"]
    assert rows["prior"]["measured_vx"] > 0.2 and abs(rows["zero"]["measured_vx"]) < 0.05, rows
    assert main(["eval", "prior", "--env", "sim2real/QuadrupedJoystick-v0", "--env-config", "gait.frequency_hz=0"]) == 2
    assert "the prior baseline needs an env that suggests an action" in capsys.readouterr().err


def test_export_never_replaces_a_file_unless_asked(tiny_run: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "policy.onnx"
    target.write_bytes(b"an earlier export")
    assert main(["export", str(tiny_run), "-o", str(target)]) == 2
    err = _one_line_error(capsys)
    assert str(target) in err and "--overwrite" in err
    assert target.read_bytes() == b"an earlier export"  # untouched
    assert main(["export", str(tiny_run), "-o", str(target), "--overwrite"]) == 0
    assert target.read_bytes().startswith(b"\x08")  # an ONNX protobuf now


def test_train_never_lands_on_an_existing_run(tiny_run: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """A run folder given again as --out is refused, every file in it byte for byte as it
    was; --overwrite clears it and trains anew; without --out a fresh folder is made."""
    files = sorted(p for p in tiny_run.rglob("*") if p.is_file())
    before = {p: p.read_bytes() for p in files}
    small = ["--env", "Pendulum-v1", "--total-steps", "64", "--learning-starts", "32", "--num-envs", "1",
             "--num-workers", "0", "--eval-interval", "0", "--eval-episodes", "1", "--checkpoint-interval", "64",
             "--sac.actor-hidden", "8", "--sac.critic-hidden", "8", "--sac.batch-size", "16", "--seed", "5"]
    assert main(["train", *small, "--out", str(tiny_run)]) == 2
    err = _one_line_error(capsys)
    assert f"--out {tiny_run} holds a run already" in err and "--resume" in err and "--overwrite" in err
    assert {p: p.read_bytes() for p in files} == before
    # A sweep's log beside an empty run folder is no run: that folder is fine.
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / "train.log").write_text("=== sweep trial\n")
    assert main(["train", *small, "--out", str(fresh)]) == 0
    assert (fresh / "train.log").read_text() == "=== sweep trial\n"
    capsys.readouterr()
    # --overwrite: the old run is gone, a new one of seed 5 is there.
    assert main(["train", *small, "--out", str(tiny_run), "--overwrite"]) == 0
    capsys.readouterr()
    config = json.loads((tiny_run / "config.json").read_text())
    assert config["seed"] == 5 and config["overwrite"] is False
    assert len((tiny_run / "metrics.jsonl").read_text().splitlines()) == 1
    # No --out: a new folder under runs/ named after the env and the time.
    monkeypatch.chdir(tmp_path)
    assert main(["train", *small]) == 0
    out = capsys.readouterr().out
    made = list((tmp_path / "runs").iterdir())
    assert len(made) == 1 and made[0].name.startswith("Pendulum-v1-") and str(made[0].name) in out


def test_resume_applies_what_may_change_and_refuses_the_rest(tiny_run: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    """--resume with flags: the experiment's own (env, seed, learner) are refused, named,
    with nothing written; how long and how often are applied and said."""
    from sim2real.train.checkpoint import load_checkpoint

    files = sorted(p for p in tiny_run.rglob("*") if p.is_file())
    before = {p: p.read_bytes() for p in files}
    step = load_checkpoint(tiny_run / "checkpoint.safetensors")[1]["step"]
    for flags, named in ((["--env", "Ant-v5"], "--env Ant-v5"), (["--sac.actor-lr", "0.01"], "--sac.actor-lr 0.01"),
                         (["--seed", "9"], "--seed 9"), (["--total-steps", str(step)], f"at step {step} already")):
        assert main(["train", "--resume", str(tiny_run), *flags]) == 2, flags
        err = _one_line_error(capsys)
        assert named in err, err
        assert {p: p.read_bytes() for p in files} == before
    assert main(["train", "--resume", str(tiny_run), "--total-steps", str(step + 32), "--eval-episodes", "2"]) == 0
    captured = capsys.readouterr()
    assert f"--total-steps {step + 32} (was {step})" in captured.err + captured.out
    assert "--eval-episodes 2 (was 1)" in captured.err + captured.out
    assert "refill" in captured.err  # no replay buffer was saved: said, with its cost
    assert load_checkpoint(tiny_run / "checkpoint.safetensors")[1]["step"] == step + 32
    assert json.loads((tiny_run / "config.json").read_text())["eval_episodes"] == 2


def test_ordinary_mistakes_are_one_error_line(tiny_run: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """A quadruped policy on the valve task names both envs; a text file as a demo's model
    says it is no ONNX model; the README's own Pendulum policy renders a video (pygame
    comes with the install) and its evaluation says nothing of DR."""
    from sim2real.train.judge import QUADRUPED_ENV_ID

    shipped = Path(__file__).resolve().parents[2] / "serve" / "policies" / "quadruped_joystick.onnx"
    assert main(["eval", str(shipped), "--env", "sim2real/HandValveTurn-v0", "--episodes", "1"]) == 2
    err = _one_line_error(capsys)
    assert "takes 50 observations" in err and QUADRUPED_ENV_ID in err and "sim2real/HandValveTurn-v0 gives" in err
    fake = tmp_path / "fake.onnx"
    fake.write_text("hello")
    assert main(["demo", "--model", str(fake), "--out", str(tmp_path / "demo")]) == 2
    assert "is not an ONNX model" in _one_line_error(capsys)
    onnx = tmp_path / "pendulum.onnx"
    assert main(["export", str(tiny_run), "-o", str(onnx)]) == 0
    capsys.readouterr()
    video = tmp_path / "judge.mp4"
    assert main(["eval", str(onnx), "--episodes", "1", "--video", str(video), "--video-seconds", "1"]) == 0
    out = capsys.readouterr().out
    assert video.stat().st_size > 1000 and "DR on" not in out and "DR off" not in out


def test_rendering_shows_its_progress(tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Minutes of software rendering are not silent: a bar counts the frames."""
    from sim2real.train.video import policy_frames

    onnx = tmp_path / "p.onnx"
    assert main(["export", str(tiny_run), "-o", str(onnx)]) == 0
    capsys.readouterr()
    from sim2real.train.export import OnnxPolicy

    frames, _ = policy_frames(OnnxPolicy(onnx), "Pendulum-v1", 0, False, (), None, 0.5)
    err = capsys.readouterr().err
    assert "render" in err and f"/{len(frames)} [" in err and "frame/s" in err
