"""Policy-server latency on loopback: ours next to its floor and a naive reference, one run.

    python benchmarks/serve_latency.py                 # full table (about 3 minutes)
    python benchmarks/serve_latency.py --seconds 2 --clients 1 8

What runs (each server in its own process, every client in this one, on asyncio with one
channel per client, i.e. one HTTP/2 connection per robot):
- floor: onnxruntime's in-process call time for the policy, and an empty gRPC echo server
  (same messages, same asyncio transport, no model) for unary and streaming calls;
- ours: `sim2real serve` with the same ONNX policy, unary and StreamAct;
- naive reference: a plain thread-pool unary gRPC server that runs the torch actor per
  request (what one writes in an afternoon).
Each at a fixed 500 Hz per client and at maximum rate (closed loop), with 1, 8 and 32
clients. The policy is a quadruped-sized SAC actor (45 -> 256 -> 256 -> 12, random
weights: latency does not depend on the values). Latency is client-measured round trip.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from concurrent import futures
from pathlib import Path
from typing import Any

import numpy as np

OBS_DIM, ACT_DIM, HIDDEN = 45, 12, (256, 256)
RATE_HZ = 500.0


# --- the policy, as torch weights (safetensors) and as ONNX --------------------------------
def build_policy(out: Path) -> tuple[Path, Path]:
    import torch
    from safetensors.torch import save_file

    from sim2real.train.networks import Actor

    torch.manual_seed(0)
    actor = Actor(OBS_DIM, ACT_DIM, HIDDEN).eval()

    class Deterministic(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.actor = actor

        def forward(self, observation: torch.Tensor) -> torch.Tensor:
            return self.actor.act(observation)

    weights = out / "actor.safetensors"
    save_file(actor.state_dict(), str(weights))
    onnx_path = out / "policy.onnx"
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            Deterministic(), (torch.zeros(1, OBS_DIM),), str(onnx_path), input_names=["observation"],
            output_names=["action"], dynamic_axes={"observation": {0: "batch"}, "action": {0: "batch"}},
            opset_version=17, dynamo=False,
        )
    import onnx

    model = onnx.load(str(onnx_path))
    for key, value in {"observation_dim": OBS_DIM, "action_dim": ACT_DIM, "env_id": "bench"}.items():
        prop = model.metadata_props.add()
        prop.key, prop.value = key, json.dumps(value)
    onnx.save(model, str(onnx_path))
    return onnx_path, weights


def ort_floor(onnx_path: Path, calls: int) -> dict[str, float]:
    from sim2real.serve.model import SessionTuning, load_model

    model = load_model(onnx_path, "floor", 1, "cpu", SessionTuning())
    obs = np.random.default_rng(0).normal(size=OBS_DIM).astype(np.float32)
    for _ in range(200):
        model.run_one(obs)
    times = np.empty(calls)
    for i in range(calls):
        t = time.perf_counter_ns()
        model.run_one(obs)
        times[i] = time.perf_counter_ns() - t
    return summarize(times / 1e3, calls, 0, times.sum() / 1e9)


# --- reference servers (run as subprocesses of this script) ---------------------------------
def serve_echo(port: int) -> None:
    """An empty server on the same transport as ours: same messages, no model, no checks."""
    import grpc

    from sim2real.v1 import policy_pb2, policy_pb2_grpc

    class Echo(policy_pb2_grpc.PolicyServiceServicer):
        async def Act(self, request: Any, context: Any) -> Any:
            return policy_pb2.ActResponse(action=request.observation[:ACT_DIM], sequence=request.sequence)

        async def StreamAct(self, request_iterator: Any, context: Any) -> None:
            # The same read/write style as our servicer, so the floor is like for like.
            while (request := await context.read()) is not grpc.aio.EOF:
                await context.write(policy_pb2.ActResponse(action=request.observation[:ACT_DIM], sequence=request.sequence))

    async def main() -> None:
        server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
        policy_pb2_grpc.add_PolicyServiceServicer_to_server(Echo(), server)
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        print("ready", flush=True)
        await server.wait_for_termination()

    asyncio.run(main())


def serve_naive_torch(port: int, weights: Path) -> None:
    """The afternoon version: sync thread-pool server, torch actor per request."""
    import grpc
    import torch
    from safetensors.torch import load_file

    from sim2real.train.networks import Actor
    from sim2real.v1 import policy_pb2, policy_pb2_grpc

    actor = Actor(OBS_DIM, ACT_DIM, HIDDEN)
    actor.load_state_dict(load_file(str(weights)))
    actor.eval()

    class Naive(policy_pb2_grpc.PolicyServiceServicer):
        def Act(self, request: Any, context: Any) -> Any:
            with torch.no_grad():
                action = actor.act(torch.tensor([list(request.observation)], dtype=torch.float32))[0]
            return policy_pb2.ActResponse(action=action.tolist(), sequence=request.sequence)

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16), options=[("grpc.so_reuseport", 0)])
    policy_pb2_grpc.add_PolicyServiceServicer_to_server(Naive(), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    print("ready", flush=True)
    server.wait_for_termination()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def launch(kind: str, onnx_path: Path, weights: Path) -> tuple[subprocess.Popen[str], int]:
    if kind == "ours":
        from sim2real.serve.process import spawn_server

        proc, port, _ = spawn_server(["--model", str(onnx_path), "--port", "0", "--device", "cpu",
                                      "--poll-interval", "0", "--log-level", "warning"])
        return proc, port
    port = free_port()
    cmd = [sys.executable, __file__, f"--_serve-{kind}", str(port), "--_weights", str(weights)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        if "ready" in line:
            return proc, port
    raise RuntimeError(f"{kind} server failed to start (exit {proc.wait()})")


# --- clients ---------------------------------------------------------------------------------
async def run_clients(port: int, mode: str, clients: int, rate_hz: float | None, seconds: float) -> dict[str, float]:
    import grpc

    from sim2real.v1 import policy_pb2, policy_pb2_grpc

    obs = np.random.default_rng(0).normal(size=OBS_DIM).astype(np.float32).tolist()
    latencies: list[list[int]] = [[] for _ in range(clients)]
    errors = [0] * clients
    warmup = 0.3

    async def one_client(i: int) -> None:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = policy_pb2_grpc.PolicyServiceStub(channel)
            start = time.perf_counter()
            end = start + warmup + seconds
            period = 1.0 / rate_hz if rate_hz else 0.0
            # Spread the clients' ticks over one period, as independent robots would be.
            next_tick = start + (i / clients) * period
            seq = 0
            call = stub.StreamAct() if mode == "stream" else None
            try:
                while True:
                    now = time.perf_counter()
                    if now >= end:
                        break
                    if period:
                        if next_tick > now:
                            await asyncio.sleep(next_tick - now)
                        next_tick += period
                    seq += 1
                    request = policy_pb2.ActRequest(observation=obs, sequence=seq)
                    t = time.perf_counter_ns()
                    try:
                        if call is not None:
                            await call.write(request)
                            response = await call.read()
                        else:
                            response = await stub.Act(request, timeout=1.0)
                        ok = response.sequence == seq and not response.HasField("error")
                    except grpc.aio.AioRpcError:
                        ok = False
                    elapsed = time.perf_counter_ns() - t
                    if time.perf_counter() - start < warmup:
                        continue
                    if ok:
                        latencies[i].append(elapsed)
                    else:
                        errors[i] += 1
            finally:
                if call is not None:
                    await call.done_writing()

    t0 = time.perf_counter()
    await asyncio.gather(*(one_client(i) for i in range(clients)))
    wall = time.perf_counter() - t0 - warmup
    all_us = np.concatenate([np.asarray(x, dtype=np.float64) for x in latencies]) / 1e3
    return summarize(all_us, len(all_us), sum(errors), wall)


def summarize(us: np.ndarray, n: int, errors: int, wall_s: float) -> dict[str, float]:
    if len(us) == 0:
        return {"p50_us": float("nan"), "p99_us": float("nan"), "p999_us": float("nan"), "rps": 0.0, "errors": errors, "n": 0}
    p50, p99, p999 = np.percentile(us, [50, 99, 99.9])
    return {"p50_us": float(p50), "p99_us": float(p99), "p999_us": float(p999),
            "rps": n / wall_s if wall_s > 0 else 0.0, "errors": errors, "n": n}


# --- main ------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=3.0, help="measured seconds per row")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    parser.add_argument("--_serve-echo", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--_serve-naive", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--_weights", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._serve_echo is not None:
        return serve_echo(args._serve_echo)
    if args._serve_naive is not None:
        return serve_naive_torch(args._serve_naive, args._weights)

    import grpc
    import onnxruntime

    print(f"serve_latency: {platform.machine()}, {os.cpu_count()} cores, grpcio {grpc.__version__}, "
          f"onnxruntime {onnxruntime.__version__}; policy {OBS_DIM}->{HIDDEN}->{ACT_DIM}; "
          f"{args.seconds:g} s per row\n")
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path, weights = build_policy(Path(tmp))
        floor = ort_floor(onnx_path, 20000)
        rows.append({"server": "onnxruntime in-process", "mode": "call", "clients": 1, "rate": "max", **floor})
        plan = [("echo", "unary"), ("echo", "stream"), ("ours", "unary"), ("ours", "stream"), ("naive", "unary")]
        procs: dict[str, tuple[subprocess.Popen[str], int]] = {}
        try:
            for kind in ("echo", "ours", "naive"):
                procs[kind] = launch(kind, onnx_path, weights)
            for clients in args.clients:
                for rate in (RATE_HZ, None):
                    for kind, mode in plan:
                        port = procs[kind][1]
                        result = asyncio.run(run_clients(port, mode, clients, rate, args.seconds))
                        rows.append({"server": kind, "mode": mode, "clients": clients,
                                     "rate": f"{rate:g} Hz" if rate else "max", **result})
                        print_row(rows[-1])
        finally:
            for proc, _ in procs.values():
                proc.terminate()
                proc.wait(timeout=30)
    print()
    print_table(rows, floor)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


def print_row(row: dict[str, Any]) -> None:
    print(f"  {row['server']:6} {row['mode']:6} {row['clients']:3} clients @ {row['rate']:7}: "
          f"p50 {row['p50_us']:8.1f} us  p99 {row['p99_us']:8.1f} us  {row['rps']:8.0f} req/s  "
          f"errors {row['errors']}", file=sys.stderr, flush=True)


def print_table(rows: list[dict[str, Any]], floor: dict[str, float]) -> None:
    echo = {(r["mode"], r["clients"], r["rate"]): r for r in rows if r["server"] == "echo"}
    print(f"onnxruntime in-process call: p50 {floor['p50_us']:.1f} us, p99 {floor['p99_us']:.1f} us\n")
    print("| server | mode | clients | rate | p50 us | p99 us | p99.9 us | req/s | errors | p50 / floor |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        if r["server"] == "onnxruntime in-process":
            continue
        ref = echo.get(("unary" if r["mode"] == "unary" else "stream", r["clients"], r["rate"]))
        ratio = ""
        if ref is not None and r["server"] != "echo":
            # Floor = the empty echo on the same transport plus the model's own call time.
            ratio = f"{r['p50_us'] / (ref['p50_us'] + floor['p50_us']):.2f}x"
        print(f"| {r['server']} | {r['mode']} | {r['clients']} | {r['rate']} | {r['p50_us']:.0f} | "
              f"{r['p99_us']:.0f} | {r['p999_us']:.0f} | {r['rps']:.0f} | {r['errors']} | {ratio} |")


if __name__ == "__main__":
    main()
