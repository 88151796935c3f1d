"""`sim2real serve`: the gRPC policy server's command line."""

from __future__ import annotations

import asyncio
import logging
import sys

import tyro

from sim2real.serve.config import ServeConfig


def serve_main(argv: list[str], prog: str = "sim2real serve") -> int:
    try:
        config = tyro.cli(ServeConfig, args=argv, prog=prog)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=config.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    from sim2real.serve.model import DeviceUnavailableError, ModelError
    from sim2real.serve.server import serve_until_signal

    try:
        asyncio.run(serve_until_signal(config))
    except (ModelError, DeviceUnavailableError, OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


def replay_main(argv: list[str], prog: str = "sim2real replay") -> int:
    from sim2real.serve.replay import ReplayConfig

    try:
        config = tyro.cli(ReplayConfig, args=argv, prog=prog)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    from sim2real.robots.sim_replay import SimReplayError
    from sim2real.serve.client import PolicyCallError
    from sim2real.serve.importers import TableImportError
    from sim2real.serve.logs import LogError
    from sim2real.serve.model import ModelError
    from sim2real.serve.replay import ReplayError
    from sim2real.serve.replay_report import run_replay, summary_lines

    try:
        report = run_replay(config)
    except (LogError, ReplayError, ModelError, SimReplayError, PolicyCallError, TableImportError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print("\n".join(summary_lines(report)))
    print(f"report: {config.out}/report.json, summary.txt, {', '.join(report['plots']) or 'no plots'}")
    return 0


def demo_main(argv: list[str], prog: str = "sim2real demo") -> int:
    from sim2real.serve.demo import DemoConfig

    try:
        config = tyro.cli(DemoConfig, args=argv, prog=prog)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    from sim2real.serve.demo import run_demo

    run_demo(config)
    return 0
