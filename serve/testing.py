"""Helpers for tests and benchmarks of the server; production code never imports them.

``BackgroundServer`` runs a PolicyServer in this process on its own event-loop thread, so
a test can call it with a client and reach into it (its repository, its recorder);
``wait_until`` polls a condition. To run the real command in a child process use
``sim2real.serve.process.spawn_server`` instead.
"""

from __future__ import annotations

import asyncio
import threading
import time

from sim2real.serve.config import ServeConfig
from sim2real.serve.server import PolicyServer


class BackgroundServer:
    """A PolicyServer on its own event-loop thread, in this process.

        with BackgroundServer(ServeConfig(model=path, port=0)) as srv:
            PolicyClient(f"127.0.0.1:{srv.port}")
    """

    def __init__(self, config: ServeConfig) -> None:
        self.server = PolicyServer(config)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="sim2real-serve", daemon=True)
        self._started = False

    def start(self) -> BackgroundServer:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self.server.start(), self._loop)
        try:
            future.result(timeout=120)
        except BaseException:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)
            raise
        self._started = True
        return self

    @property
    def port(self) -> int:
        assert self.server.addresses is not None and self.server.addresses.grpc_port is not None, "no TCP listener"
        return self.server.addresses.grpc_port

    @property
    def target(self) -> str:
        return f"{self.server.config.host}:{self.port}"

    @property
    def uds_target(self) -> str:
        """``unix:PATH`` of the --uds listener."""
        assert self.server.addresses is not None and self.server.addresses.uds is not None, "no --uds listener"
        return f"unix:{self.server.addresses.uds}"

    def run(self, coro: object, timeout: float = 60) -> object:
        """Run a coroutine on the server's loop (e.g. a health change) and wait for it."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)  # type: ignore[arg-type]

    def stop(self, grace: float = 0.0) -> None:
        if self._started:
            self.run(self.server.stop(grace), timeout=grace + 30)
            self._started = False
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
        self._loop.close()

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def wait_until(predicate: object, timeout: float = 10.0, interval: float = 0.01) -> bool:
    """Poll ``predicate()`` until true or ``timeout``; for tests."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(interval)
    return False
