"""`sim2real serve` as a child process: start it and learn its port, stop it gracefully.

The demo, the replay benchmark and the tests that need a real process (signals, exit
codes) all go through these two functions, so there is one place that knows how the
server announces itself and how it is stopped.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
import time
from typing import IO

SPAWN_KEEP_LINES = 10_000


def _drain(stream: IO[str], lines: list[str]) -> None:
    for line in stream:
        if len(lines) < SPAWN_KEEP_LINES:
            lines.append(line.rstrip())


STARTUP_LINE = re.compile(r" on (?:grpcs?://[\d.]+:(\d+)|unix:)")
"""The server's "serving ... on grpc://HOST:PORT [and unix:PATH]" line (or "on unix:PATH"
alone, with --no-tcp)."""


def spawn_server(args: list[str], timeout: float = 120.0) -> tuple[subprocess.Popen[str], int, list[str]]:
    """Start `sim2real serve ARGS` as a subprocess; return it, the TCP port from its startup
    line (0 when it listens only on a Unix socket: --uds with --no-tcp; the socket is the
    --uds path given), and the lines printed up to it. Its output keeps being drained afterwards so it
    never blocks on a full pipe, and appended to that list (the first SPAWN_KEEP_LINES
    lines), so a test can read what the server logged at shutdown. Raises RuntimeError
    with the output if it does not start."""
    proc = subprocess.Popen(
        # The same command a user runs (sim2real.cli is the console script's package).
        [sys.executable, "-m", "sim2real.cli", "serve", *args],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip())
        match = STARTUP_LINE.search(line)
        if match:
            threading.Thread(target=_drain, args=(proc.stdout, lines), daemon=True).start()
            return proc, int(match.group(1) or 0), lines
    proc.kill()
    proc.wait()
    raise RuntimeError("the policy server did not start:\n" + "\n".join(lines))


def stop_server(proc: subprocess.Popen[str], timeout: float = 30.0) -> int:
    """SIGTERM (the server drains in-flight calls, then exits 0); killed if it has not
    exited within ``timeout`` seconds. Returns the exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait()
    return proc.returncode
