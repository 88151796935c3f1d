"""The options of `sim2real replay`, declared once: ``ReplayConfig`` (the command's flags are
generated from its fields; cli/replay.py parses them, replay/report.py runs them)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import tyro


@dataclass
class ReplayConfig:
    """Replay a trajectory log: offline policy evaluation, sim-to-real gap, system identification."""

    log: Annotated[Path, tyro.conf.Positional, tyro.conf.arg(metavar="LOG")]
    """An MCAP log (from `sim2real serve --record`, the simulated controller, or an importer)."""
    model: Path | None = None
    """Compare against this ONNX policy, run locally."""
    server: str | None = None
    """Compare against a policy server at HOST:PORT, or unix:PATH for `sim2real serve --uds
    PATH` on this computer (one StreamAct stream)."""
    out: Path = Path("replay_report")
    """Directory for report.json, summary.txt and the PNG plots (written atomically)."""
    realtime: bool = False
    """With --server: send at the log's own timing (measures latency under the real rate)."""
    deadline_ms: float = 20.0
    """With --server: per-step deadline; later answers count as misses."""
    token_file: Path | None = None
    """With --server: bearer token file."""
    tls_ca: Path | None = None
    """With --server: CA bundle for TLS."""
    window: int = 50
    """Length (steps) of the worst-error windows reported."""
    ood_z: float = 4.0
    """Flag observations further than this many training std from the training mean."""
    sim: bool = True
    """Sim replay (the sim-to-real gap) when the log has joint and base state (--no-sim: skip)."""
    horizon: int = 25
    """Open-loop steps per sim-replay window."""
    windows: int = 16
    """Sim-replay windows sampled from the log."""
    sysid: bool = False
    """Also identify the dynamics parameters that best explain the log (a minute or two)."""
    sysid_parameters: tuple[str, ...] = ("floor_friction", "kp_scale", "joint_damping_scale", "latency_steps")
    """Dynamics parameters to identify (the others stay nominal; also kd_scale,
    trunk_added_mass). Fewer is firmer: Kp scale and trunk mass trade off against each
    other on a robot that mostly stands, as do Kd and joint damping."""
    sysid_rounds: int = 12
    """Cross-entropy rounds of the system identification."""
    sysid_population: int = 32
    """Candidates per round."""
    mapping: list[str] = dataclasses.field(default_factory=list)
    """For a .csv/.npz LOG: FIELD=PATTERN entries, e.g. observation=obs_* action=act_*
    joint_position=q_* timestamp_s=time (see sim2real.replay.importers)."""
    env_id: str = ""
    """For a .csv/.npz LOG: the env it came from (enables sim replay for the quadruped)."""
    rate_hz: float | None = None
    """For a .csv/.npz LOG without timestamps: the control rate."""
    ros2_topics: list[str] = dataclasses.field(default_factory=list)
    """For a ROS 2 bag LOG (a rosbag2 folder): KEY=/topic entries over the defaults
    (joint_states=/joint_states imu=/imu/data odometry=/odom command=/cmd_vel
    joint_commands=/joint_commands observation=/policy/observation action=/policy/action
    gait_phase=/policy/gait_phase; see sim2real.replay.ros2_bag). Needs --model: its
    metadata lays out the observation and the action."""
    allow_damaged: bool = False
    """Use the readable part of a truncated or corrupted log instead of stopping."""
    seed: int = 0

    def __post_init__(self) -> None:
        if self.model is not None and self.server is not None:
            raise ValueError("give at most one of --model and --server")
        for name in ("window", "horizon", "windows", "sysid_rounds", "sysid_population"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: expected >= 1, got {getattr(self, name)}")
        if self.deadline_ms <= 0:
            raise ValueError(f"deadline_ms: expected > 0, got {self.deadline_ms}")
        if self.ood_z <= 0:
            raise ValueError(f"ood_z: expected > 0, got {self.ood_z}")
