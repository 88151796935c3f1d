"""Replay throughput, and what recording costs the policy server, side by side in one run.

    python benchmarks/replay_speed.py                  # about 3 minutes
    python benchmarks/replay_speed.py --steps 2000 --repeats 2 --seconds 2

Part 1: a simulated controller log (the shipped quadruped policy, domain randomization
on) is replayed through offline policy evaluation against the local ONNX model (batched
onnxruntime), and against `sim2real serve` over one StreamAct session; steps/s each,
reading the log included.

Part 2: two `sim2real serve` processes on the same policy, one with `--record` (MCAP
recording of every served step) and one without, measured with the same streaming
clients at 500 Hz per client, interleaved and repeated; the ratio of p50 and p99 latency
(recording on / off) is the cost of recording. Target: < 5% at p50, < 10% at p99.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve_latency import run_clients  # noqa: E402


def start_server(model: Path, record: Path | None) -> tuple[subprocess.Popen[str], int]:
    from sim2real.serve.process import spawn_server

    args = ["--model", str(model), "--port", "0", "--device", "cpu", "--poll-interval", "0", "--log-level", "warning"]
    proc, port, _ = spawn_server(args + (["--record", str(record)] if record is not None else []))
    return proc, port


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=5000, help="control steps in the replayed log")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0, help="measured seconds per latency row")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8])
    args = parser.parse_args()

    from sim2real.cli.demo import shipped_policy
    from sim2real.logformat.mcap_log import read_log
    from sim2real.replay.policy_vs_log import LogArrays, replay_local, replay_server
    from sim2real.replay.sim_controller import local_policy, run_controller
    from sim2real.serve.client import PolicyClient
    from sim2real.serve.model import load_model
    from sim2real.serve.process import stop_server

    model_path, _ = shipped_policy()
    print(f"replay_speed: {platform.machine()}, {os.cpu_count()} cores; shipped quadruped policy\n")
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        log_path = tmp / "sim.mcap"
        episodes = max(1, args.steps // 1000)
        run_controller("sim2real/QuadrupedJoystick-v0", local_policy(model_path), episodes=episodes,
                       max_steps=args.steps // episodes, seed=0, log_path=log_path, progress=False)

        # --- part 1: replay throughput -------------------------------------------------------
        local_rates, server_rates = [], []
        model = load_model(model_path, "q", 1, "cpu")
        proc, port = start_server(model_path, None)
        try:
            for _ in range(args.repeats):
                start = time.perf_counter()
                arrays = LogArrays.from_log(read_log(log_path))
                replay_local(arrays, model)
                local_rates.append(len(arrays.action) / (time.perf_counter() - start))
                with PolicyClient(f"127.0.0.1:{port}") as client, client.session(deadline_s=1.0) as session:
                    start = time.perf_counter()
                    arrays = LogArrays.from_log(read_log(log_path))
                    replay_server(arrays, session, realtime=False, progress=False)
                    server_rates.append(len(arrays.action) / (time.perf_counter() - start))
        finally:
            stop_server(proc)
        n = len(arrays.action)
        print(f"offline evaluation of a {n}-step log (median of {args.repeats}, reading the log included):\n")
        print("| against | steps/s | range |")
        print("|---|---|---|")
        print(f"| local ONNX (batched onnxruntime) | {np.median(local_rates):,.0f} | "
              f"{min(local_rates):,.0f}-{max(local_rates):,.0f} |")
        print(f"| sim2real serve (one StreamAct session) | {np.median(server_rates):,.0f} | "
              f"{min(server_rates):,.0f}-{max(server_rates):,.0f} |")

        # --- part 2: recording on vs off -------------------------------------------------------
        off, port_off = start_server(model_path, None)
        on, port_on = start_server(model_path, tmp / "recorded")
        rows: dict[tuple[str, int], list[dict[str, float]]] = {}
        try:
            for _ in range(args.repeats):
                for clients in args.clients:
                    for label, port in (("off", port_off), ("on", port_on)):
                        r = asyncio.run(run_clients(port, "stream", clients, 500.0, args.seconds))
                        rows.setdefault((label, clients), []).append(r)
        finally:
            for p in (off, on):
                stop_server(p)
        recorded = sum(len(read_log(f).steps) for f in sorted((tmp / "recorded").glob("*.mcap")))
        print(f"\nserver latency with recording off / on (StreamAct, 500 Hz per client, {args.seconds:g} s x "
              f"{args.repeats} interleaved repeats; medians):\n")
        print("| clients | recording | p50 us | p99 us | req/s | errors | p50 on/off | p99 on/off |")
        print("|---|---|---|---|---|---|---|---|")
        sent_on = 0
        for clients in args.clients:
            med = {label: {k: float(np.median([r[k] for r in rows[(label, clients)]])) for k in ("p50_us", "p99_us", "rps", "errors")}
                   for label in ("off", "on")}
            sent_on += sum(r["n"] + r["errors"] for r in rows[("on", clients)])
            for label in ("off", "on"):
                m = med[label]
                ratio = (f"{med['on']['p50_us'] / med['off']['p50_us']:.3f} | {med['on']['p99_us'] / med['off']['p99_us']:.3f}"
                         if label == "on" else " | ")
                print(f"| {clients} | {label} | {m['p50_us']:.0f} | {m['p99_us']:.0f} | {m['rps']:.0f} | {m['errors']:.0f} | {ratio} |")
        print(f"\nthe recording server logged {recorded} steps (clients measured {sent_on} after warm-up; "
              "warm-up requests are recorded too)")


if __name__ == "__main__":
    main()
