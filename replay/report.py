"""`sim2real replay`: run the analyses on a log and write report.json, summary.txt and PNGs.

Everything is written into a temporary sibling directory and renamed into place at the
end, so an interrupted run never leaves a half-written report.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from sim2real.logformat.mcap_log import Log, read_log
from sim2real.replay.config import ReplayConfig
from sim2real.replay.policy_vs_log import (
    LogArrays,
    PolicyComparison,
    ReplayError,
    check_sizes,
    out_of_distribution,
    replay_local,
    replay_server,
)


def _metadata_array(model: Any, key: str) -> np.ndarray | None:
    value = model.metadata_value(key) if model is not None else None
    return np.asarray(value, np.float32) if isinstance(value, list) else None


def _policy_section(config: ReplayConfig, log: Log, arrays: LogArrays) -> tuple[dict[str, Any] | None, np.ndarray | None]:
    if config.model is None and config.server is None:
        return None, None
    action_names = list(log.info.action_names) or [f"action/{i}" for i in range(arrays.action.shape[1])]
    obs_names = list(log.info.observation_names)
    if config.model is not None:
        from sim2real.serve.model import load_model

        model = load_model(config.model, config.model.stem, 1, "cpu")
        check_sizes(arrays, model.obs_dim, model.act_dim, f"model {config.model}", log.path)
        start = time.perf_counter()
        replayed = replay_local(arrays, model)
        seconds = time.perf_counter() - start
        section: dict[str, Any] = {"source": str(config.model), "steps_per_second": len(arrays.action) / seconds}
        mean, std = _metadata_array(model, "observation_mean"), _metadata_array(model, "observation_std")
    else:
        from sim2real.serve.client import PolicyClient
        from sim2real.serve.security import read_token

        token = read_token(config.token_file)
        with PolicyClient(config.server, token=token, tls_ca=config.tls_ca) as client:  # type: ignore[arg-type]
            info = client.info()
            check_sizes(arrays, info.observation_dim, info.action_dim, f"server {config.server} ({info.model_name})", log.path)
            with client.session(deadline_s=config.deadline_ms / 1e3) as session:
                served = replay_server(arrays, session, config.realtime)
        replayed = served.pop("actions")
        fallback = served.pop("fallback_mask")
        section = {"source": f"server {config.server}", "model": info.model_name, "model_version": info.model_version,
                   "realtime": config.realtime, **served}
        mean = np.asarray(json.loads(info.metadata["observation_mean"]), np.float32) if "observation_mean" in info.metadata else None
        std = np.asarray(json.loads(info.metadata["observation_std"]), np.float32) if "observation_std" in info.metadata else None
    logged = arrays.fallback
    if config.model is not None and logged is not None and logged.any() and not logged.all():
        # The log's fallback steps hold the controller's held action, not the policy's answer
        # to that step's observation: the policy cannot match them. Compared without them,
        # and the error over every step is kept to show what they did.
        section["log_fallbacks"] = int(logged.sum())
        section["compared_steps"] = int((~logged).sum())
        every = PolicyComparison(replayed, arrays.action, action_names, config.window).report()
        section["rmse_all_steps"] = every["rmse"]
        section["max_abs_error_all_steps"] = every["max_abs_error"]
        comparison = PolicyComparison(replayed[~logged], arrays.action[~logged], action_names, config.window)
    elif config.server is not None and fallback.any():
        # Fallback actions are the client's, not the policy's: compare only real answers.
        if fallback.all():
            raise ReplayError(f"every step fell back ({section['fallbacks']}); is the server at {config.server} answering?")
        section["compared_steps"] = int((~fallback).sum())
        comparison = PolicyComparison(replayed[~fallback], arrays.action[~fallback], action_names, config.window)
    else:
        comparison = PolicyComparison(replayed, arrays.action, action_names, config.window)  # type: ignore[arg-type]
    section.update(comparison.report())
    section["out_of_distribution"] = out_of_distribution(arrays.observation, mean, std, obs_names, config.ood_z)
    return section, replayed


def _sim_section(config: ReplayConfig, log: Log, arrays: LogArrays) -> dict[str, Any] | None:
    from sim2real.replay.sim_replay import (
        SimReplayer,
        SimReplayError,
        choose_windows,
        default_sysid_parameters,
        gap_report,
        replay_state_fields,
        replayable,
        supported_envs,
    )

    steps = log.steps
    if not config.sim:
        return None
    env_id = log.info.env_id
    if not replayable(env_id):
        if not env_id:
            return {"skipped": "the log names no env (an imported table names none unless --env-id is given): "
                               f"give --env-id, one of {list(supported_envs())}"}
        return {"skipped": f"sim replay supports {list(supported_envs())}, the log is from {env_id}"}
    missing = [field for field in replay_state_fields(env_id) if not len(getattr(steps[0], field))]
    if missing:
        return {"skipped": f"the log has no {', '.join(missing)} (recorded by a server: observations and actions "
                           "only, or by a controller that did not log that state); sim replay of "
                           f"{env_id} needs it"}
    rng = np.random.default_rng(config.seed)
    replayer = SimReplayer(log.info.env_id, list(log.info.action_scale), list(log.info.action_offset),
                           env_config=list(log.info.env_config))
    try:
        logged_joints = tuple(log.info.joint_names)
        if logged_joints and logged_joints != tuple(replayer.spec.joint_names):
            return {"skipped": f"the log's joints {list(logged_joints[:3])}... are not those of the robot its "
                               f"env_config builds ({replayer.spec.robot}: {list(replayer.spec.joint_names[:3])}...); "
                               "the log's LogInfo.env_config must name its robot (robot=NAME or a spec path)"}
        windows = choose_windows(steps, config.horizon, config.windows, rng)
        section: dict[str, Any] = {"nominal": gap_report(replayer, steps, arrays.action, windows)}
        if config.sysid:
            from sim2real.replay.sysid import identify

            parameters = tuple(config.sysid_parameters)
            if not set(parameters) <= set(replayer.parameters):
                default = next(f.default for f in dataclasses.fields(ReplayConfig) if f.name == "sysid_parameters")
                if parameters != tuple(default):
                    raise SimReplayError(
                        f"--sysid-parameters {list(parameters)}: {log.info.env_id} has "
                        f"{list(replayer.parameters)}"
                    )
                # Not chosen by the user: the default is the quadruped's; use this robot's.
                parameters = default_sysid_parameters(env_id)
            fit = identify(replayer, steps, arrays.action, windows, parameters=parameters,
                           rounds=config.sysid_rounds,
                           population=config.sysid_population, seed=config.seed)
            section["sysid"] = fit.as_dict()
            replayer.set_parameters(fit.best)
            section["fitted"] = gap_report(replayer, steps, arrays.action, windows)
        truth = [json.loads(e.dynamics_json) for e in log.episodes.values() if e.dynamics_json]
        if truth:
            section["logged_dynamics"] = truth[0] if len(truth) == 1 else {"episodes": len(truth), "first": truth[0]}
        return section
    finally:
        replayer.close()


def damage_lines(damage: dict[str, Any]) -> list[str]:
    """What a damaged log lost (report["damage"], from LogDamage.as_dict)."""
    lost = damage["steps_lost"]
    lost_text = "an unknown number of steps" if lost is None else f"{lost} steps"
    head = (f"DAMAGED LOG (read with --allow-damaged): {damage['steps_recovered']} steps recovered, "
            f"{lost_text} lost")
    extra = [text for flag, text in ((damage["truncated"], "the file was cut short"),
                                     (damage["info_lost"], "its LogInfo was lost")) if flag]
    lines = [head + (f"; {', '.join(extra)}" if extra else "")]
    for r in damage["skipped"]:
        held = [f"{r['chunks']} chunk{'s' if r['chunks'] != 1 else ''}" if r["chunks"] is not None else "",
                f"{r['steps']} steps" if r["steps"] is not None else ""]
        what = ", ".join(h for h in held if h)
        lines.append(f"  skipped bytes {r['start']}-{r['end']}{f' ({what})' if what else ''}: {r['reason']}")
    lines += [f"  {note}" for note in damage["notes"]]
    return lines


def summary_lines(report: dict[str, Any]) -> list[str]:
    lines = [f"log: {report['log']} ({report['steps']} steps, {report['episodes']} episodes, source {report['source']})"]
    if report.get("damage"):
        lines += damage_lines(report["damage"])
    policy = report.get("policy")
    if policy:
        lines.append(f"policy vs log ({policy['source']}): action RMSE {policy['rmse']:.4f}, max |error| {policy['max_abs_error']:.4f}")
        if policy.get("log_fallbacks"):
            lines.append(f"  over the {policy['compared_steps']} steps the policy answered; the log's "
                         f"{policy['log_fallbacks']} fallback steps (deadline missed: the controller held its "
                         f"last action) are left out. Over every step: RMSE {policy['rmse_all_steps']:.4f}, "
                         f"max |error| {policy['max_abs_error_all_steps']:.4f}")
        worst = max(policy["per_joint"], key=lambda j: j["rmse"])
        lines.append(f"  worst joint: {worst['name']} (RMSE {worst['rmse']:.4f}); worst window: steps "
                     f"{policy['worst_windows'][0]['start_step']}-{policy['worst_windows'][0]['end_step']}")
        ood = policy["out_of_distribution"]
        if ood.get("available"):
            lines.append(f"  observations beyond {ood['z_limit']:g} training std: {ood['steps_flagged']} steps "
                         f"({100 * ood['fraction_flagged']:.1f}%)")
        if "latency_p50_us" in policy:
            lines.append(f"  server latency p50 {policy['latency_p50_us']:.0f} us, p99 {policy['latency_p99_us']:.0f} us, "
                         f"deadline misses {policy['deadline_misses']}, fallbacks {policy['fallbacks']}")
    sim = report.get("sim")
    if sim and "skipped" in sim:
        lines.append(f"sim replay: skipped ({sim['skipped']})")
    elif sim:
        nominal = sim["nominal"]
        lines.append(f"sim-to-real gap (nominal sim, {nominal['windows']} windows x {nominal['horizon']} steps): "
                     f"mean joint error {nominal['mean_abs_error_rad']:.4f} rad, at the horizon "
                     f"{nominal['mean_abs_error_by_horizon_rad'][-1]:.4f} rad")
        for i, obj in enumerate(nominal.get("object", [])):
            fitted = sim.get("fitted", {}).get("object", [])
            after = f"; identified dynamics {fitted[i]['mean_abs_error_rad']:.4f} rad" if i < len(fitted) else ""
            lines.append(f"  {obj['name']} angle: mean error {obj['mean_abs_error_rad']:.4f} rad, at the horizon "
                         f"{obj['final_abs_error_rad']:.4f} rad (nominal sim){after}")
        if "sysid" in sim:
            fit = sim["sysid"]
            lines.append(f"system identification: error {fit['nominal_mse_rad2']:.2e} -> {fit['best_mse_rad2']:.2e} rad^2 "
                         f"({100 * fit['improvement_over_nominal']:.0f}% lower)")
            truth = sim.get("logged_dynamics", {})
            truth = truth.get("first", truth) if isinstance(truth, dict) else {}
            for p in fit["parameters"]:
                where = "inside" if p["inside_trained_range"] else "OUTSIDE"
                if not p["identified"]:
                    where = "not pinned down by this log; value uncertain, not judged against"
                actual = truth.get(p["name"]) if isinstance(truth, dict) else None
                # A simulated log knows the truth (per-joint values: their mean).
                known = f"  (log's true value {float(np.mean(actual)):.3f})" if actual is not None else ""
                lines.append(f"  {p['name']:20} {p['fit']:8.3f}  {where} trained range "
                             f"[{p['trained_range'][0]:g}, {p['trained_range'][1]:g}]  (sensitivity {p['sensitivity']:.2f}){known}")
            verdict = fit["all_inside_trained_ranges"]
            lines.append("  identified parameters inside the trained ranges: "
                         + ("n/a (the log pins down none)" if verdict is None else "yes" if verdict else "NO"))
    return lines


def _plots(directory: Path, report: dict[str, Any], arrays: LogArrays, replayed: np.ndarray | None) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    if replayed is not None:
        names = [j["name"] for j in report["policy"]["per_joint"]]
        n = len(names)
        cols = 4
        rows = int(np.ceil(n / cols))
        fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 2.2 * rows), sharex=True, squeeze=False)
        span = slice(0, min(len(arrays.action), 500))
        t = np.arange(len(arrays.action))[span]
        for i, ax in enumerate(axes.flat):
            if i >= n:
                ax.axis("off")
                continue
            ax.plot(t, arrays.action[span, i], label="logged", lw=1.2)
            ax.plot(t, replayed[span, i], label="replayed", lw=1.0, ls="--")
            ax.set_title(names[i], fontsize=8)
            ax.set_ylim(-1.05, 1.05)
        axes.flat[0].legend(fontsize=7)
        fig.suptitle(f"logged vs replayed actions (first {len(t)} steps)")
        fig.tight_layout()
        fig.savefig(directory / "actions.png", dpi=90)
        plt.close(fig)
        written.append("actions.png")
    sim = report.get("sim")
    if sim and "nominal" in sim:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        h = np.arange(1, sim["nominal"]["horizon"] + 1)
        ax.plot(h, sim["nominal"]["mean_abs_error_by_horizon_rad"], label="nominal sim")
        if "fitted" in sim:
            ax.plot(h, sim["fitted"]["mean_abs_error_by_horizon_rad"], label="identified dynamics")
        ax.set_xlabel("open-loop steps from a logged state")
        ax.set_ylabel("mean |joint error| (rad)")
        ax.set_title("sim-to-real gap over the horizon")
        ax.legend()
        fig.tight_layout()
        fig.savefig(directory / "gap.png", dpi=90)
        plt.close(fig)
        written.append("gap.png")
    if sim and "sysid" in sim:
        params = sim["sysid"]["parameters"]
        fig, axes = plt.subplots(len(params), 1, figsize=(6, 0.9 * len(params) + 0.8), squeeze=False)
        for ax, p in zip(axes.flat, params, strict=True):
            lo, hi = p["search_bounds"]
            ax.axvspan(*p["trained_range"], color="tab:green", alpha=0.25, label="trained range")
            color = "tab:gray" if not p["identified"] else "tab:blue" if p["inside_trained_range"] else "tab:red"
            ax.axvline(p["fit"], color=color, lw=2, ls="-" if p["identified"] else ":", label="fit")
            ax.set_xlim(lo, hi)
            ax.set_yticks([])
            ax.set_ylabel(p["name"], rotation=0, ha="right", va="center", fontsize=8)
        axes.flat[0].legend(fontsize=7, loc="upper right")
        fig.suptitle("identified dynamics vs the ranges the policy trained on\n"
                     "(dotted grey: not pinned down by this log)", fontsize=9)
        fig.tight_layout()
        fig.savefig(directory / "sysid.png", dpi=90)
        plt.close(fig)
        written.append("sysid.png")
    return written


def _replace_dir(tmp: Path, out: Path) -> None:
    """Move the finished report into place: the old one (if any) is swapped out whole."""
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        out.rename(old)
    tmp.rename(out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def run_replay(config: ReplayConfig, described_as: str | None = None) -> dict[str, Any]:
    """Replay ``config.log`` and write the report; ``described_as`` names the log in the
    report where it is an import (the file the user gave, not the temporary MCAP)."""
    from sim2real.replay.ros2_bag import import_ros2_bag, is_ros2_bag

    if is_ros2_bag(Path(config.log)):
        if config.model is None:
            raise ReplayError(f"{config.log} is a ROS 2 bag: give --model, whose metadata lays out the observation "
                              "and the action to read from its topics")
        from sim2real.serve.model import load_model

        metadata = load_model(Path(config.model), Path(config.model).stem, 1, "cpu").metadata
        with tempfile.TemporaryDirectory() as tmp:
            imported = Path(tmp) / "imported.mcap"
            summary = import_ros2_bag(Path(config.log), metadata, imported, config.ros2_topics)
            label = f"{config.log} (ROS 2 bag, imported to {Path(config.out) / 'imported.mcap'})"
            report = run_replay(dataclasses.replace(config, log=imported, ros2_topics=[]), described_as=label)
            shutil.copy(imported, Path(config.out) / "imported.mcap")
            report["imported_from"] = str(config.log)
            report["ros2_import"] = summary
            return report
    if config.ros2_topics:
        raise ReplayError(f"--ros2-topics applies to ROS 2 bags (rosbag2 folders); {config.log} is not one")
    if Path(config.log).suffix.lower() in (".csv", ".npz"):
        from sim2real.replay.importers import import_table

        with tempfile.TemporaryDirectory() as tmp:
            imported = Path(tmp) / "imported.mcap"
            import_table(config.log, config.mapping, imported, env_id=config.env_id, rate_hz=config.rate_hz)
            kind = Path(config.log).suffix.lower().lstrip(".").upper()
            label = f"{config.log} ({kind}, imported to {Path(config.out) / 'imported.mcap'})"
            report = run_replay(dataclasses.replace(config, log=imported), described_as=label)
            shutil.copy(imported, Path(config.out) / "imported.mcap")
            report["imported_from"] = str(config.log)
            return report
    log = read_log(config.log, allow_damaged=config.allow_damaged)
    arrays = LogArrays.from_log(log)
    if config.model is None and config.server is None and not config.sim:
        raise ReplayError("nothing to do: give --model or --server, or leave sim replay on")
    report: dict[str, Any] = {
        "log": described_as or str(config.log), "source": log.info.source, "env_id": log.info.env_id,
        "steps": len(log.steps), "episodes": len(set(arrays.episode.tolist())),
    }
    if log.damage is not None:
        # --allow-damaged read past damage: the report must say what its numbers lack.
        report["damage"] = log.damage.as_dict()
    policy, replayed = _policy_section(config, log, arrays)
    if policy is not None:
        report["policy"] = policy
    sim = _sim_section(config, log, arrays)
    if sim is not None:
        report["sim"] = sim
    out = Path(config.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        report["plots"] = _plots(tmp, report, arrays, replayed)
        (tmp / "report.json").write_text(json.dumps(report, indent=1, default=float))
        (tmp / "summary.txt").write_text("\n".join(summary_lines(report)) + "\n")
        _replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return report
