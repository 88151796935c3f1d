"""``sim2real robots check SPEC``: does a quadruped's spec make a robot the joystick task
can train? Builds it, lets it stand under the default PD with domain randomization, and
runs gymnasium's env checker; prints what it built and each verdict."""

from __future__ import annotations

import json
import sys
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np

from sim2real.robots.quadruped import constants as consts
from sim2real.robots.quadruped.build import QuadrupedRobot, load_robot, model_xml
from sim2real.robots.quadruped.joystick import ENV_ID, QuadrupedJoystickEnv
from sim2real.robots.quadruped.robot_spec import JOINT_KINDS, RobotSpecError
from sim2real.robots.registry import task_config

if TYPE_CHECKING:
    from sim2real.cli.robots import CheckRobot

UPRIGHT_MIN = 0.95
"""Trunk up-vector z a standing robot keeps (about 18 degrees of tilt)."""
HEIGHT_FRACTION_MIN = 0.7
"""A standing robot's trunk stays above this fraction of its home height."""


def stand_trial(robot: str, seed: int, seconds: float, dr: bool) -> dict[str, Any]:
    """Hold the standing pose (zero action, told to stand, at rest) for ``seconds``."""
    config = task_config(ENV_ID, [f"robot={robot}", "init_base_velocity=0", "commands.zero_probability=1"])
    env = QuadrupedJoystickEnv(config=config, domain_randomization=dr)
    try:
        env.reset(seed=seed)
        steps = max(1, round(seconds / env.control_dt))
        min_up, min_height, fell_at = 1.0, float("inf"), None
        for i in range(steps):
            _, _, terminated, _, _ = env.step(np.zeros(12))
            min_up = min(min_up, float(env.upvector()[2]))
            min_height = min(min_height, env.trunk_height())
            if terminated:
                fell_at = (i + 1) * env.control_dt
                break
        forces = env.foot_contact_forces().copy()
        home = env.robot.standing_height
        ok = (fell_at is None and min_up >= UPRIGHT_MIN and min_height >= HEIGHT_FRACTION_MIN * home
              and bool(np.all(forces > consts.CONTACT_FORCE_THRESHOLD)))
        return {
            "seed": seed, "ok": ok, "fell_after_s": fell_at, "min_upvector_z": round(min_up, 4),
            "min_height_m": round(min_height, 4), "final_height_m": round(env.trunk_height(), 4),
            "foot_forces_n": [round(float(f), 1) for f in forces],
        }
    finally:
        env.close()


def env_checker(robot: str) -> str | None:
    """gymnasium's env checker on the task with this robot: None when it passes."""
    from gymnasium.utils.env_checker import check_env

    env = QuadrupedJoystickEnv(config=task_config(ENV_ID, [f"robot={robot}"]))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # its infinite-bounds notes are not failures
            check_env(env, skip_render_check=True)
        return None
    except Exception as err:  # the checker raises assertion and type errors alike
        return f"{type(err).__name__}: {err}"
    finally:
        env.close()


def describe_robot(robot: QuadrupedRobot) -> dict[str, Any]:
    spec = robot.spec
    joints = []
    for i, name in enumerate(robot.joint_names):
        joints.append({
            "leg": spec.legs[i // 3].name, "kind": JOINT_KINDS[i % 3], "joint": name,
            "actuator": robot.actuator_names[i], "home": spec.home_pose[i],
            "range": [round(float(x), 4) for x in robot.joint_ranges[i]],
            "torque_limit": float(robot.torque_limits[i]),
            "velocity_limit": None if robot.velocity_limits is None else float(robot.velocity_limits[i]),
            "sign": int(robot.joint_signs[i]),
        })
    return {
        "robot": spec.name, "spec": str(spec.path), "description": str(spec.description),
        "mass_kg": round(robot.total_mass, 4), "base_body": robot.base_body,
        "base_mass_kg": round(robot.base_mass, 4), "standing_height_m": round(robot.standing_height, 4),
        "kp": robot.kp[:3].tolist(), "kd": robot.kd[:3].tolist(),
        "control_hz": spec.control_hz, "physics_hz": spec.physics_hz,
        "feet": [leg.foot for leg in spec.legs], "joints": joints, "sources": spec.sources,
        "meshes": int(robot.model.nmesh),
    }


def check_robot(command: CheckRobot) -> int:
    try:
        robot = load_robot(command.spec)
    except RobotSpecError as err:
        if command.json:
            print(json.dumps({"spec": command.spec, "builds": False, "error": str(err)}, indent=2))
        else:
            print(f"builds: no\nerror: {err}", file=sys.stderr)
        return 2
    if command.xml is not None:
        command.xml.write_text(model_xml(robot.spec))
    report = describe_robot(robot)
    trials = [stand_trial(command.spec, seed, command.seconds, command.dr) for seed in range(command.episodes)]
    checker = env_checker(command.spec)
    report.update(builds=True, stands=all(t["ok"] for t in trials), stand_trials=trials,
                  stand_seconds=command.seconds, domain_randomization=command.dr,
                  env_checker="passed" if checker is None else checker)
    ok = report["stands"] and checker is None
    report["ok"] = ok
    if command.json:
        print(json.dumps(report, indent=2))
        return 0 if ok else 2
    print(f"{report['robot']}: {robot.spec.summary}")
    print(f"  spec         {report['spec']}")
    print(f"  description  {report['description']} ({report['meshes']} meshes)")
    print(f"  mass         {report['mass_kg']:.3f} kg (base {report['base_body']!r} {report['base_mass_kg']:.3f} kg); "
          f"standing height {report['standing_height_m']:.3f} m")
    print(f"  PD           Kp {report['kp']}, Kd {report['kd']} (abduction, hip, knee); "
          f"{report['physics_hz']:g} Hz physics, {report['control_hz']:g} Hz control")
    print(f"  {'leg':3} {'kind':9} {'joint':34} {'actuator':9} {'home':>6} {'range rad':>18} {'N m':>6} {'rad/s':>6} sign")
    for j in report["joints"]:
        vel = "-" if j["velocity_limit"] is None else f"{j['velocity_limit']:g}"
        rng = f"[{j['range'][0]:.3f}, {j['range'][1]:.3f}]"
        print(f"  {j['leg']:3} {j['kind']:9} {j['joint']:34} {j['actuator']:9} {j['home']:>6.2f} {rng:>18} "
              f"{j['torque_limit']:>6g} {vel:>6} {j['sign']:+d}")
    for field, source in report["sources"].items():
        print(f"  source of {field}: {source}")
    print("builds: yes")
    dr = "DR on" if command.dr else "DR off"
    for t in trials:
        verdict = "stands" if t["ok"] else (f"FELL after {t['fell_after_s']:.2f} s" if t["fell_after_s"] else "DOES NOT STAND")
        print(f"  seed {t['seed']} ({dr}, {command.seconds:g} s): {verdict}; min up-vector z {t['min_upvector_z']:.3f}, "
              f"height min {t['min_height_m']:.3f} / end {t['final_height_m']:.3f} m, foot forces {t['foot_forces_n']} N")
    print(f"stands: {'yes' if report['stands'] else 'no'}")
    print(f"gymnasium env checker: {report['env_checker']}")
    if command.xml is not None:
        print(f"wrote the built model to {command.xml}")
    print("ok: the joystick task can train this robot" if ok else "not ok: see above")
    return 0 if ok else 2
