"""Clients that never read their answers, beside an honest control loop: does the server's
memory stay bounded and does the honest client keep its latency?

Each attacker opens one StreamAct call with a fixed 64 KiB receive window (no BDP probing:
gRPC's client would otherwise grow the window and buffer answers for it) and sends valid
observations as fast as the transport lets it, never reading an answer. The honest client,
in its own process, steps a StreamAct session at 200 Hz and records each step's round trip.
The same attack runs on the main (Python) listener, the reference (HTTP/2 flow control
stops it there), and on the C++ front end (`--fast-path`, `--fast-inference cpp`).

    python benchmarks/never_read_attack.py [--attackers 8] [--seconds 30]

Prints, per listener: the honest client's p50/p99 and steps missed (no answer within the
50 ms deadline), the server's and the front end's RSS before and at the end, and how many
messages the attackers got the server to answer.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "serve" / "policies" / "quadruped_joystick.onnx"
FAST_LINE = re.compile(r"fast path .* on grpcs?://[\d.]+:(\d+)")
STREAM_METHOD = "/sim2real.v1.PolicyService/StreamAct"


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def children(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (any of its threads may have started them)."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry.name))
    return out


def attacker(target: str, obs_dim: int, stop_at: float) -> None:
    import grpc

    from sim2real.v1 import policy_pb2

    request = policy_pb2.ActRequest(observation=[0.0] * obs_dim).SerializeToString()
    channel = grpc.insecure_channel(target, options=[("grpc.http2.bdp_probe", 0),
                                                     ("grpc.http2.lookahead_bytes", 65536),
                                                     ("grpc.use_local_subchannel_pool", 1)])
    call = channel.stream_stream(STREAM_METHOD, request_serializer=None, response_deserializer=None)

    def messages():  # type: ignore[no-untyped-def]
        while time.monotonic() < stop_at:
            yield request

    answers = call(messages(), timeout=stop_at - time.monotonic() + 5)
    try:
        answers.initial_metadata()
        while time.monotonic() < stop_at:
            time.sleep(0.2)  # never reads `answers`: this is the attack
    finally:
        answers.cancel()
        channel.close()


def honest(target: str, obs_dim: int, seconds: float, out: mp.Queue) -> None:  # type: ignore[type-arg]
    from sim2real.serve.client import PolicyClient

    period = 1 / 200
    latencies: list[float] = []
    missed = 0
    with PolicyClient(target) as client, client.session(deadline_s=0.05) as loop:
        start = time.monotonic()
        step = 0
        while time.monotonic() - start < seconds:
            t0 = time.perf_counter()
            result = loop.step(np.zeros(obs_dim, np.float32))
            latencies.append(time.perf_counter() - t0)
            missed += bool(result.fallback)
            step += 1
            wait = start + step * period - time.monotonic()
            if wait > 0:
                time.sleep(wait)  # the control loop's own 200 Hz pace
    out.put((latencies, missed))


def served(metrics_port: int) -> float:
    import urllib.request

    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read().decode()
    match = re.search(r'^sim2real_requests_total\{method="StreamAct"\} ([0-9.e+]+)$', text, re.M)
    return float(match.group(1)) if match else 0.0


def run(listener: str, binary: Path, attackers: int, seconds: float) -> dict[str, float]:
    from sim2real.serve.process import spawn_server, stop_server

    with tempfile.TemporaryDirectory(prefix="s2r-attack-") as folder:
        metrics_port = 9500 + os.getpid() % 400
        proc, port, lines = spawn_server([
            "--model", str(MODEL), "--port", "0", "--device", "cpu", "--log-level", "warning",
            "--metrics-port", str(metrics_port), "--fast-path", str(binary), "--fast-port", "0",
            "--fast-uds", f"{folder}/fast.sock", "--fast-inference", "cpp",
        ])
        try:
            fast_port = next(int(m.group(1)) for line in lines if (m := FAST_LINE.search(line)))
            target = f"127.0.0.1:{fast_port if listener == 'fast path' else port}"
            front = children(proc.pid)
            from sim2real.serve.client import PolicyClient

            with PolicyClient(target) as probe:
                obs_dim = probe.info().observation_dim
            before = (rss_mb(proc.pid), rss_mb(front[0]) if front else float("nan"))
            ctx = mp.get_context("spawn")
            stop_at = time.monotonic() + seconds + 2
            bad = [ctx.Process(target=attacker, args=(target, obs_dim, stop_at)) for _ in range(attackers)]
            for p in bad:
                p.start()
            time.sleep(2)  # the attackers fill their windows before the honest client starts
            out: mp.Queue = ctx.Queue()  # type: ignore[type-arg]
            good = ctx.Process(target=honest, args=(target, obs_dim, seconds - 2, out))
            good.start()
            latencies, missed = out.get(timeout=seconds + 60)
            good.join()
            after = (rss_mb(proc.pid), rss_mb(front[0]) if front else float("nan"))
            answered = served(metrics_port)
            for p in bad:
                p.join(timeout=30)
        finally:
            stop_server(proc)
    ms = np.asarray(latencies) * 1000
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)),
            "steps": len(ms), "missed": missed, "server_rss_mb": before[0], "server_rss_end_mb": after[0],
            "front_rss_mb": before[1], "front_rss_end_mb": after[1], "answered": answered}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--attackers", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--build", type=Path, default=ROOT / "build")
    args = parser.parse_args()
    binary = args.build / "fastpath" / "sim2real_fastpath"
    for command in (["cmake", "-S", str(ROOT / "serve" / "fastpath"), "-B", str(binary.parent),
                     "-DCMAKE_BUILD_TYPE=Release"], ["cmake", "--build", str(binary.parent), "--parallel", "2"]):
        subprocess.run(command, check=True, capture_output=True)
    print(f"{args.attackers} never-reading StreamAct clients for {args.seconds:g} s beside one honest 200 Hz "
          f"client (deadline 50 ms); {os.cpu_count()} CPUs\n")
    print("| listener | honest p50 ms | honest p99 ms | missed steps | server RSS MB (start -> end) | "
          "front end RSS MB (start -> end) | messages answered |")
    print("|---|---|---|---|---|---|---|")
    for listener in ("main listener", "fast path"):
        r = run(listener, binary, args.attackers, args.seconds)
        print(f"| {listener} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['missed']}/{r['steps']} | "
              f"{r['server_rss_mb']:.0f} -> {r['server_rss_end_mb']:.0f} | {r['front_rss_mb']:.0f} -> "
              f"{r['front_rss_end_mb']:.0f} | {r['answered']:.0f} |", flush=True)


if __name__ == "__main__":
    sys.exit(main())
