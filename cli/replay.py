"""``sim2real replay``: policy vs log, sim-to-real gap and system identification on a log.

Its options are the fields of ``ReplayConfig`` (replay/config.py); the work is
``sim2real.replay.report.run_replay``.
"""

from __future__ import annotations

from sim2real.cli.parsing import run_command


def replay_main(argv: list[str], prog: str = "sim2real replay") -> int:
    from sim2real.replay.config import ReplayConfig

    def body(config: ReplayConfig) -> int:
        from sim2real.replay.report import run_replay, summary_lines

        report = run_replay(config)
        print("\n".join(summary_lines(report)))
        print(f"report: {config.out}/report.json, summary.txt, {', '.join(report['plots']) or 'no plots'}")
        return 0

    def expected() -> tuple[type[BaseException], ...]:
        from sim2real.logformat.mcap_log import LogError
        from sim2real.replay.importers import TableImportError
        from sim2real.replay.policy_vs_log import ReplayError
        from sim2real.replay.ros2_bag import Ros2BagError
        from sim2real.replay.sim_replay import SimReplayError
        from sim2real.serve.client import PolicyCallError
        from sim2real.serve.model import ModelError

        return (LogError, ReplayError, ModelError, SimReplayError, PolicyCallError, TableImportError,
                Ros2BagError, FileNotFoundError)

    return run_command(ReplayConfig, argv, prog, body, expected)
