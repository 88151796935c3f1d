"""The sweep spec: every unknown key refused (named, with the valid ones), axes expanded into
checked trial configs, and trial command lines that `sim2real train` parses back. No Ray."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import tyro

from sim2real.train import hand_judge, judge
from sim2real.train.config import TrainConfig
from sim2real.train.sac import SACConfig
from sim2real.train.sweep import SweepConfig, sweep_main
from sim2real.train.sweep_spec import (
    TASK_METRICS,
    Distribution,
    SpecError,
    check_metric,
    expand_trials,
    load_spec,
    parse_set,
    spec_from_data,
    train_flags,
)

BASE = {"env": "Pendulum-v1", "total_steps": 300, "learning_starts": 100,
        "sac": {"actor_hidden": [32, 32], "batch_size": 64}}


def spec(**tables):
    return spec_from_data({"base": BASE, **tables})


@pytest.mark.parametrize(
    ("data", "named"),
    [
        ({"base": BASE, "axis": {}}, ["[axis]", "[axes]", "[stopping]"]),
        ({"base": {**BASE, "total_step": 5}}, ["'total_step'", "total_steps", "learning_starts"]),
        ({"base": {**BASE, "sac": {"actor_l": 1e-3}}}, ["[base.sac]", "'actor_l'", "actor_lr"]),
        ({"base": BASE, "axes": {"sede": [0, 1]}}, ["'sede'", "seed", "sac.FIELD", "env_config.KEY"]),
        ({"base": BASE, "axes": {"sac.actor_l": [1]}}, ["'sac.actor_l'", "sac.actor_lr"]),
        ({"base": BASE, "axes": {"sac": {"actor_l": [1]}}}, ["'sac.actor_l'", "sac.actor_lr"]),
        ({"base": BASE, "search": {"typ": "grid"}}, ["[search]", "'typ'", "num_samples", "metric"]),
        ({"base": BASE, "resources": {"cpus": 2}}, ["[resources]", "'cpus'", "cpus_per_trial"]),
        ({"base": BASE, "stopping": {"schedular": "asha"}}, ["[stopping]", "'schedular'", "grace_steps"]),
        ({"base": BASE, "stopping": {"scheduler": "hyperband"}}, ["scheduler", "\"none\"", "\"asha\""]),
        ({"base": {**BASE, "out": "x"}}, ["out", "sets each trial"]),
        ({"base": BASE, "axes": {"resume": ["x"]}}, ["resume"]),
    ],
)
def test_an_unknown_or_misplaced_key_is_refused_naming_it_and_the_valid_ones(data, named) -> None:
    with pytest.raises(SpecError) as err:
        spec_from_data(data, "s.toml")
    for text in named:
        assert text in str(err.value), err.value
    assert str(err.value).startswith("s.toml")


def test_an_unknown_task_config_key_is_refused_naming_the_trial_and_the_fields(tmp_path: Path) -> None:
    s = spec_from_data({"base": {**BASE, "env": "sim2real/QuadrupedJoystick-v0"},
                        "axes": {"env_config": {"rewards.pos": [0.0, 0.5]}}})
    with pytest.raises(SpecError) as err:
        expand_trials(s, tmp_path)
    assert "trial t000 (env_config.rewards.pos=0.0)" in str(err.value)
    assert "'rewards.pos'" in str(err.value) and "pose" in str(err.value)


def test_a_wrongly_typed_or_out_of_range_value_is_refused_naming_the_trial_and_field(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"trial t001 \(total_steps=0\).*TrainConfig.total_steps must be >= 1"):
        expand_trials(spec(axes={"total_steps": [300, 0]}), tmp_path)
    with pytest.raises(SpecError, match=r"trial t000 .*sac.batch_size: expected int, got 'x'"):
        expand_trials(spec(axes={"sac.batch_size": ["x"]}), tmp_path)


def test_the_grid_is_the_product_of_the_axes_in_spec_order(tmp_path: Path) -> None:
    s = spec(axes={"seed": [0, 1], "sac": {"actor_lr": [1e-3, 3e-3]}}, resources={"cpus_per_trial": 2})
    trials = expand_trials(s, tmp_path)
    assert [t.trial_id for t in trials] == ["t000", "t001", "t002", "t003"]
    assert [t.params for t in trials] == [
        {"seed": 0, "sac.actor_lr": 1e-3}, {"seed": 0, "sac.actor_lr": 3e-3},
        {"seed": 1, "sac.actor_lr": 1e-3}, {"seed": 1, "sac.actor_lr": 3e-3},
    ]
    config = trials[3].config
    assert (config.seed, config.sac.actor_lr, config.sac.batch_size, config.total_steps) == (1, 3e-3, 64, 300)
    assert config.out == tmp_path / "t003"
    # A trial sized to its cores, not to the machine: 2 torch threads, 1 env worker process.
    assert (config.torch_threads, config.num_workers) == (2, 1)
    assert trials[0].configuration == {"sac.actor_lr": 1e-3} and trials[0].label == "seed=0 sac.actor_lr=0.001"


def test_env_config_axes_replace_or_add_task_overrides(tmp_path: Path) -> None:
    s = spec_from_data({
        "base": {**BASE, "env": "sim2real/QuadrupedJoystick-v0",
                 "env_config": ["rewards.pose=0.1", "episode_steps=200"]},
        "axes": {"env_config.rewards.pose": [0.0, 0.5], "env_config.nonnegative_reward": [True]},
    })
    trials = expand_trials(s, tmp_path)
    assert trials[1].config.env_config == ("episode_steps=200", "rewards.pose=0.5", "nonnegative_reward=true")


def test_random_search_draws_each_sample_once_for_every_seed(tmp_path: Path) -> None:
    data = {"axes": {"seed": [0, 1], "sac.actor_lr": {"loguniform": [1e-4, 1e-2]},
                     "sac.batch_size": {"choice": [32, 64]}},
            "search": {"type": "random", "num_samples": 3, "seed": 7}}
    trials = expand_trials(spec(**data), tmp_path)
    assert len(trials) == 6
    for first, second in zip(trials[::2], trials[1::2], strict=True):
        assert (first.params["seed"], second.params["seed"]) == (0, 1)
        assert first.configuration == second.configuration  # one draw, both seeds
    lrs = [t.params["sac.actor_lr"] for t in trials[::2]]
    assert all(1e-4 <= lr <= 1e-2 for lr in lrs) and len(set(lrs)) == 3
    again = expand_trials(spec(**data), tmp_path)
    assert [t.params for t in again] == [t.params for t in trials]  # the sampler is seeded


@pytest.mark.parametrize(
    ("tables", "match"),
    [
        ({"axes": {"sac.actor_lr": {"loguniform": [1e-4, 1e-2]}}}, "need \\[search\\] type = \"random\""),
        ({"search": {"type": "random", "num_samples": 2}, "axes": {"seed": [0]}}, "at least one distribution"),
        ({"axes": {"seed": []}}, "seed: an empty list"),
        ({"axes": {"seed": 3}}, "seed: expected a list of values"),
        ({"axes": {"x": {"uniform": [1, 0]}}}, "needs low < high"),
        ({"axes": {"sac.tau": {"gaussian": [0, 1]}}}, "a distribution is one of"),
        ({"search": {"num_samples": 4}}, "num_samples is for type = \"random\""),
        ({"stopping": {"scheduler": "asha"}}, "asha.* needs grace_steps >= 1"),
        ({"resources": {"cpus_per_trial": 0}}, "cpus_per_trial must be > 0"),
        ({"search": {"mode": "maximize"}}, "mode must be one of \"max\", \"min\""),
    ],
)
def test_inconsistent_settings_are_refused(tables, match) -> None:
    with pytest.raises(SpecError, match=match):
        spec(**tables)


def test_gpu_resources_and_the_device_must_agree(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="gpus_per_trial = 1 but device is \"cpu\""):
        expand_trials(spec(resources={"gpus_per_trial": 1}), tmp_path)
    with pytest.raises(SpecError, match="device = \"cuda\" needs \\[resources\\] gpus_per_trial > 0"):
        expand_trials(spec_from_data({"base": {**BASE, "device": "cuda"}}), tmp_path)


def test_set_adds_or_replaces_axes_with_toml_values() -> None:
    assert parse_set("sac.actor_lr=3e-4,1e-3") == ("sac.actor_lr", [3e-4, 1e-3])
    assert parse_set("sac.actor_hidden=[64, 64],[256,256]") == ("sac.actor_hidden", [[64, 64], [256, 256]])
    assert parse_set("env=Pendulum-v1,\"a,b\"") == ("env", ["Pendulum-v1", "a,b"])
    assert parse_set("normalize_obs=true,false") == ("normalize_obs", [True, False])
    with pytest.raises(SpecError, match="'sac.actr_lr'"):
        parse_set("sac.actr_lr=1")
    with pytest.raises(SpecError, match="KEY=V1,V2"):
        parse_set("seed")
    s = spec_from_data({"base": BASE, "axes": {"seed": [0, 1], "sac.tau": [0.01]}},
                       sets=["seed=5", "total_steps=200,300"])
    assert s.axes == {"seed": [5], "sac.tau": [0.01], "total_steps": [200, 300]}


def test_the_metric_must_be_one_the_trials_env_reports(tmp_path: Path) -> None:
    check_metric("return_mean", "Pendulum-v1")
    check_metric("task.walking_planar_error", "sim2real/QuadrupedJoystick-v0")
    check_metric("task.drop_rate", "sim2real/HandCubeRotate-v0")
    check_metric("reward_terms.tracking_lin_vel", "sim2real/QuadrupedJoystick-v0")
    with pytest.raises(SpecError, match="'task.fall_rate' is not in the metrics of Pendulum-v1; valid: return_mean"):
        check_metric("task.fall_rate", "Pendulum-v1")
    with pytest.raises(SpecError, match="task.worst_direction_turn_rate"):
        check_metric("task.drop_rate", "sim2real/HandValveTurn-v0")


def test_the_task_metrics_table_matches_the_judges() -> None:
    # summary() is what the trainer writes under "task" in metrics.jsonl.
    quad = judge.JudgeResult.summary(SimpleNamespace(fall_rate=0, walking_planar_error=0, turn_yaw_error=0))
    assert tuple(quad) == TASK_METRICS[judge.QUADRUPED_ENV_ID]
    for env_id in hand_judge.HAND_ENV_IDS:
        hand = hand_judge.TurnJudgeResult.summary(
            SimpleNamespace(env_id=env_id, turn_rate=0, worst_direction_turn_rate=0, drop_rate=0))
        assert tuple(hand) == TASK_METRICS[env_id]


@pytest.mark.parametrize(
    "config",
    [
        TrainConfig(env="Pendulum-v1"),
        TrainConfig(env="Pendulum-v1", seed=3, total_steps=500, num_workers=0, torch_threads=1,
                    normalize_obs=False, save_replay=True, device="auto", updates_per_step=0.5,
                    sac=SACConfig(actor_lr=1e-05, actor_hidden=(64, 32, 16), asymmetric=True,
                                  critic_layernorm=True, target_entropy=-6.0, gamma=0.97)),
        TrainConfig(env="sim2real/QuadrupedJoystick-v0", domain_randomization=False,
                    env_config=("rewards.pose=-0.5", "nonnegative_reward=true")),
    ],
)
def test_train_flags_parse_back_to_the_same_config(config: TrainConfig) -> None:
    flags = train_flags(config)
    parsed = tyro.cli(TrainConfig, args=[*flags, "--out", str(config.out)], prog="sim2real train")
    assert parsed == config, flags
    assert "--out" not in flags and "--resume" not in flags


def test_load_spec_reads_toml_with_nested_and_quoted_axes(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text(
        '[base]\nenv = "Pendulum-v1"\n[base.sac]\nbatch_size = 64\n'
        '[axes]\nseed = [0, 1]\n"sac.actor_lr" = [3e-4]\nsac.tau = [0.01, 0.02]\n'
        '[search]\nmetric = "return_mean"\nmode = "max"\n'
    )
    s = load_spec(path)
    assert s.axes == {"seed": [0, 1], "sac.actor_lr": [3e-4], "sac.tau": [0.01, 0.02]}
    assert s.base["sac"] == {"batch_size": 64}
    with pytest.raises(SpecError, match="not valid TOML"):
        path.write_text("[base\n")
        load_spec(path)
    with pytest.raises(SpecError, match="cannot read"):
        load_spec(tmp_path / "missing.toml")
    assert Distribution("choice", (1, 2)).as_json() == {"choice": [1, 2]}


# --- the command, before anything starts ---------------------------------------------------------

def test_sweep_refuses_an_unknown_key_before_anything_starts(tmp_path: Path, capsys) -> None:
    path = tmp_path / "s.toml"
    path.write_text('[base]\nenv = "Pendulum-v1"\n[axes]\nseed = [0, 1]\n"sac.learning_rate" = [1e-3]\n')
    out = tmp_path / "sweep"
    assert sweep_main([str(path), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "unknown axis 'sac.learning_rate'" in err and "sac.actor_lr" in err
    assert not out.exists()  # nothing written, no Ray started
    assert "ray" not in sys.modules or not sys.modules["ray"].is_initialized()


def test_sweep_without_ray_says_how_to_install_it(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    assert sweep_main([str(tmp_path / "s.toml"), "--out", str(tmp_path / "o")]) == 2
    assert 'pip install -e ".[sweep]"' in capsys.readouterr().err


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({}, "give a SPEC.toml"),
        ({"spec": Path("s.toml")}, "--out SWEEP_DIR is required"),
        ({"spec": Path("s.toml"), "out": Path("o"), "resume": Path("o")}, "not both"),
        ({"resume": Path("o"), "set": ("seed=1",)}, "--out and --set apply to a new sweep only"),
        ({"spec": Path("s.toml"), "out": Path("o"), "retry_failed": True}, "--retry-failed goes with --resume"),
        ({"resume": Path("o"), "address": "auto", "num_cpus": 2}, "local Ray instance"),
        ({"resume": Path("o"), "max_concurrent": 0}, "max_concurrent must be >= 1"),
    ],
)
def test_sweep_options_that_do_not_go_together_are_refused(kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        SweepConfig(**kwargs)


def test_a_new_sweep_refuses_a_used_directory(tmp_path: Path, capsys) -> None:
    path = tmp_path / "s.toml"
    path.write_text('[base]\nenv = "Pendulum-v1"\n')
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "sweep.json").write_text("{}")
    assert sweep_main([str(path), "--out", str(tmp_path / "used")]) == 2
    assert "--resume" in capsys.readouterr().err
    assert sweep_main(["--resume", str(tmp_path / "nothing")]) == 2
    assert "not a sweep directory" in capsys.readouterr().err


def test_a_second_driver_on_the_same_sweep_is_refused(tmp_path: Path, capsys) -> None:
    import fcntl

    from sim2real.train.sweep import LOCK_FILE, plan_new

    path = tmp_path / "s.toml"
    path.write_text('[base]\nenv = "Pendulum-v1"\n[axes]\nseed = [0, 1]\n')
    plan = plan_new(SweepConfig(spec=path, out=tmp_path / "sweep"))  # writes sweep.json, no Ray
    assert [t.trial_id for t in plan.to_run] == ["t000", "t001"]
    assert json.loads((tmp_path / "sweep" / "state" / "t001.json").read_text())["status"] == "pending"
    with open(tmp_path / "sweep" / LOCK_FILE, "w") as held:  # a driver running it
        fcntl.flock(held.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert sweep_main(["--resume", str(tmp_path / "sweep")]) == 2
    assert "another `sim2real sweep` is running the sweep" in capsys.readouterr().err


def test_an_interrupted_sweep_reports_where_its_unfinished_trials_stand(tmp_path: Path) -> None:
    """Means are over finished trials only; the trials still pending or running get their
    latest evaluation in a table of their own, and results.csv says which evaluation its
    numbers come from (an interrupted trial checkpoints past its last one)."""
    import csv

    from sim2real.train import sweep_results as results

    s = spec(axes={"seed": [0, 1]})
    trials = expand_trials(s, tmp_path / "sweep")
    states = {t.trial_id: results.new_state(t) for t in trials}
    states["t000"].update(status="finished", step=300, records=[
        {"step": 150, "return_mean": -900.0}, {"step": 300, "return_mean": -300.0}])
    states["t001"].update(status="pending", step=237, records=[{"step": 150, "return_mean": -800.0}])
    groups, columns = results.summarize(trials, states, "return_mean", "max")
    assert groups[0]["values"]["return_mean"] == [-300.0]  # the finished trial only
    progress = results.format_in_progress(trials, states, columns)
    assert "| t001 | seed=1 | 150 | -800 |" in progress and "t000" not in progress
    path = tmp_path / "results.csv"
    results.write_results_csv(path, trials, states, "return_mean")
    rows = {r["trial_id"]: r for r in csv.DictReader(path.open())}
    assert (rows["t001"]["step"], rows["t001"]["evaluated_at"], rows["t001"]["return_mean"]) == ("237", "150", "-800.0")
    states["t001"].update(status="finished")
    assert results.format_in_progress(trials, states, columns) == ""


def test_a_spec_that_is_not_utf8_is_refused_naming_the_byte(tmp_path: Path, capsys) -> None:
    path = tmp_path / "s.toml"
    path.write_bytes(b'[base]\nenv = "Pendulum-v1"\n# caf\xe9\n')
    out = tmp_path / "sweep"
    assert sweep_main([str(path), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "s.toml" in err and "not UTF-8" in err and "Traceback" not in err
    assert not out.exists()


def test_more_cpus_per_trial_than_the_local_ray_has_is_refused_before_anything_is_written(
        tmp_path: Path, capsys) -> None:
    path = tmp_path / "s.toml"
    path.write_text('[base]\nenv = "Pendulum-v1"\n[resources]\ncpus_per_trial = 64\n')
    out = tmp_path / "sweep"
    assert sweep_main([str(path), "--out", str(out), "--num-cpus", "2"]) == 2
    err = capsys.readouterr().err
    assert "cpus_per_trial is 64" in err and "2 CPUs" in err
    assert not out.exists()
    assert "ray" not in sys.modules or not sys.modules["ray"].is_initialized()


def test_a_new_sweep_that_cannot_start_leaves_its_out_reusable(tmp_path: Path) -> None:
    # What a sweep on a cluster (--address) does when no node can hold a trial: the refusal
    # comes after Ray starts, and takes back what planning wrote.
    from sim2real.train.sweep import LOCK_FILE, _discard_new_sweep, plan_new

    path = tmp_path / "s.toml"
    path.write_text('[base]\nenv = "Pendulum-v1"\n[axes]\nseed = [0, 1]\n')
    out = tmp_path / "sweep"
    plan = plan_new(SweepConfig(spec=path, out=out))
    (out / LOCK_FILE).write_text("")
    assert plan.new and (out / "sweep.json").is_file()
    _discard_new_sweep(plan)
    assert not out.exists()
    assert plan_new(SweepConfig(spec=path, out=out)).new  # --out is usable again


def test_the_best_so_far_line_never_goes_down(tmp_path: Path) -> None:
    from sim2real.train import sweep_results as results
    from sim2real.train.sweep import Driver, Plan

    s = spec(axes={"seed": [0, 1]})
    trials = expand_trials(s, tmp_path / "sweep")
    states = {t.trial_id: results.new_state(t) for t in trials}
    driver = Driver(Plan(tmp_path / "sweep", s, trials, states, list(trials)), SimpleNamespace())
    states["t000"].update(status="running", step=150, records=[{"step": 150, "return_mean": -640.0}])
    assert driver._best_so_far() == "-640 (t000, step 150)"
    # The trial's next evaluation is worse: the best so far stays the earlier one.
    states["t000"]["records"].append({"step": 300, "return_mean": -928.0})
    assert driver._best_so_far() == "-640 (t000, step 150)"
    states["t001"].update(status="running", step=150, records=[{"step": 150, "return_mean": -500.0}])
    assert driver._best_so_far() == "-500 (t001, step 150)"
    states["t001"]["status"] = "failed"  # a failed trial's numbers do not count
    assert driver._best_so_far() == "-640 (t000, step 150)"


def test_the_shipped_example_spec_is_the_documented_one_and_loads() -> None:
    import re

    docs = Path(__file__).resolve().parents[2] / "docs"
    documented = re.search(r"```toml\n(.*?)```", (docs / "sweeps.md").read_text(), re.S).group(1)
    shipped = (docs / "sweep.toml").read_text()
    assert shipped.endswith(documented)
    spec = load_spec(docs / "sweep.toml")
    assert spec.search.metric == "task.walking_planar_error"
    assert len(expand_trials(spec, Path("/nonexistent/sweep/trials"))) == 12
