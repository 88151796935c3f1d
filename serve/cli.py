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
