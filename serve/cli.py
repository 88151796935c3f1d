"""Entry points of `sim2real serve`, `sim2real replay` and `sim2real demo`.

Each parses its typed config with tyro; a config that fails validation, and an expected
failure at run time (bad model, bad log, port in use), is one `error:` line and exit 2.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import sys
from collections.abc import Callable
from typing import TypeVar

import tyro

ConfigT = TypeVar("ConfigT")


def _run(
    config_cls: type[ConfigT], argv: list[str], prog: str, body: Callable[[ConfigT], int],
    expected: Callable[[], tuple[type[BaseException], ...]],
) -> int:
    parsed = tyro.cli(_unvalidated(config_cls), args=argv, prog=prog)
    try:
        config = config_cls(**{f.name: getattr(parsed, f.name) for f in dataclasses.fields(parsed) if f.init})
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        return body(config)
    except expected() as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def _unvalidated(config_cls: type[ConfigT]) -> type[ConfigT]:
    """``config_cls`` with its ``__post_init__`` skipped, for tyro to fill in.

    tyro answers a ValueError from a config's own validation with a multi-line box; the
    config is built again from the parsed fields outside tyro, so a misuse (e.g.
    ``--model X --version-policy specific:2``) is one ``error:`` line, exit 2. Same
    fields, docstrings and help text (tyro reads them from the parent class).
    """
    return type(config_cls.__name__, (config_cls,), {  # type: ignore[return-value]
        "__post_init__": lambda self: None,
        "__doc__": config_cls.__doc__,
        "__module__": config_cls.__module__,
        "__qualname__": config_cls.__qualname__,
    })


def serve_main(argv: list[str], prog: str = "sim2real serve") -> int:
    from sim2real.serve.config import ServeConfig

    def body(config: ServeConfig) -> int:
        from sim2real.serve.server import serve_until_signal

        logging.basicConfig(
            level=config.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
        asyncio.run(serve_until_signal(config))
        return 0

    def expected() -> tuple[type[BaseException], ...]:
        from sim2real.serve.model import DeviceUnavailableError, ModelError

        return (ModelError, DeviceUnavailableError, OSError, ValueError)

    return _run(ServeConfig, argv, prog, body, expected)


def replay_main(argv: list[str], prog: str = "sim2real replay") -> int:
    from sim2real.serve.replay import ReplayConfig

    def body(config: ReplayConfig) -> int:
        from sim2real.serve.replay_report import run_replay, summary_lines

        report = run_replay(config)
        print("\n".join(summary_lines(report)))
        print(f"report: {config.out}/report.json, summary.txt, {', '.join(report['plots']) or 'no plots'}")
        return 0

    def expected() -> tuple[type[BaseException], ...]:
        from sim2real.robots.sim_replay import SimReplayError
        from sim2real.serve.client import PolicyCallError
        from sim2real.serve.importers import TableImportError
        from sim2real.serve.logs import LogError
        from sim2real.serve.model import ModelError
        from sim2real.serve.replay import ReplayError

        return (LogError, ReplayError, ModelError, SimReplayError, PolicyCallError, TableImportError,
                FileNotFoundError)

    return _run(ReplayConfig, argv, prog, body, expected)


def demo_main(argv: list[str], prog: str = "sim2real demo") -> int:
    from sim2real.serve.demo import DemoConfig

    def body(config: DemoConfig) -> int:
        from sim2real.serve.demo import run_demo

        run_demo(config)
        return 0

    def expected() -> tuple[type[BaseException], ...]:
        from sim2real.serve.model import ModelError

        return (ModelError, RuntimeError, OSError)

    return _run(DemoConfig, argv, prog, body, expected)
