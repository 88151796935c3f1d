"""``sim2real serve``: the gRPC policy server.

Its options are the fields of ``ServeConfig`` (serve/config.py), the one place a serve
flag is declared; this module only parses them and runs the server until a signal.
"""

from __future__ import annotations

import asyncio
import logging

from sim2real.cli.parsing import run_command


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

    return run_command(ServeConfig, argv, prog, body, expected)
