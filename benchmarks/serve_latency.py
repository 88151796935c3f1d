"""Policy-server latency, what a robot sees: ours next to its floor, one run.

    python benchmarks/serve_latency.py --client cpp      # the C++ client table (about 3 minutes)
    python benchmarks/serve_latency.py --client python --transport tcp   # the Python-client table
    python benchmarks/serve_latency.py                   # both clients, both transports (about 7 minutes)
    python benchmarks/serve_latency.py --client cpp --servers ours --clients 8 32 --rates 500 \\
        --py-spy prof/                                   # where our server's time goes (pip install py-spy)

Servers, each its own process, each listening on TCP 127.0.0.1 and on a Unix domain socket
(the naive one on TCP only):
- echo-cpp: clients/cpp/benchmarks/echo_server.cpp, gRPC C++ on its callback API, answers
  StreamAct with a fixed action and runs nothing: the cheapest server a client can talk to
  on the transport, so it is the floor of the C++ rows, and our excess over it is what our
  server adds (Python gRPC, the request path, the model);
- echo-py: an empty grpc.aio server with the same messages and the same read/write streaming
  style as ours: the floor of the Python rows, and in the C++ rows what Python gRPC alone
  costs;
- ours: `sim2real serve --port 0 --uds PATH` on a quadruped-sized SAC actor (45 -> 256 ->
  256 -> 12, random weights: latency does not depend on the values);
- ours-fast: the same server with its C++ front end (`--fast-path build/fastpath/sim2real_fastpath
  --fast-port 0 --fast-uds PATH --fast-inference cpp`, serve/fastpath/), measured on the front
  end's listeners: gRPC C++ carries the messages and the front end runs the policy itself
  (onnxruntime's C API, the model the Python server validated and handed over); the Python
  process only gets the steps' reports for its metrics, in batches;
- ours-fast-py: the same with `--fast-inference python`: gRPC C++ carries the messages, the
  Python request path and model answer every one (the fast path before the policy moved);
- naive: a plain thread-pool unary gRPC server running the torch actor per request (what one
  writes in an afternoon), Python rows only.

Clients:
- cpp: clients/cpp's example `control_loop`, one process per robot (its own connection and
  ControlSession over StreamAct), built with CMake into --cpp-build; at 500 Hz the ticks
  are paced with clock_nanosleep and spread over the period, all processes starting at one
  CLOCK_MONOTONIC instant; 0.5 s warm-up; a 100 ms step deadline, far beyond any normal
  answer, so that slow answers are measured rather than dropped (an error is a step that got
  no answer within it: a fallback of any kind); a 500 Hz loop whose steps take longer than
  its period falls behind (overruns), so req/s says how much of the offered rate was served;
- python: this process, asyncio, one channel per client, unary Act and StreamAct; 0.3 s
  warm-up; an error is a failed call.
At a fixed 500 Hz per client and at maximum rate (closed loop), with 1, 8 and 32 clients.
Latency is the client-measured round trip, percentiles over every answered step of every
client. CPU: the server process (all its threads, and its child processes: ours-fast's C++
front end) in percent of one core and in CPU
microseconds per answered request, the client processes per step, and the whole machine in
percent of one core (200% = both cores of a 2-core machine busy, so what else ran shows),
over the measured window (C++ rows) or the whole row (Python rows).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OBS_DIM, ACT_DIM, HIDDEN = 45, 12, (256, 256)
RATE_HZ = 500.0
CPP_DEADLINE_MS = 100.0
CPP_START_TIMEOUT_MS = 10000
CPP_WARMUP_S = 0.5
PY_WARMUP_S = 0.3
TARGET_P50_US, TARGET_P99_US = 300.0, 1000.0
"""Issue 14's targets for 8 C++ clients at 500 Hz streaming (and zero errors at 8 and 32)."""


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
def serve_echo(port: int, uds: str | None) -> None:
    """An empty server on the same transport as ours: same messages, no model, no checks."""
    import grpc

    from sim2real.v1 import policy_pb2, policy_pb2_grpc

    class Echo(policy_pb2_grpc.PolicyServiceServicer):
        async def GetPolicyInfo(self, request: Any, context: Any) -> Any:
            return policy_pb2.PolicyInfo(model_name="echo", model_version=1, observation_dim=OBS_DIM, action_dim=ACT_DIM)

        async def Act(self, request: Any, context: Any) -> Any:
            return policy_pb2.ActResponse(action=request.observation[:ACT_DIM], sequence=request.sequence)

        async def StreamAct(self, request_iterator: Any, context: Any) -> None:
            # The same read/write style as our servicer (headers first, as ours sends them:
            # the C++ session counts a stream as up once it has them), so the floor is like
            # for like.
            await context.send_initial_metadata(())
            while (request := await context.read()) is not grpc.aio.EOF:
                await context.write(policy_pb2.ActResponse(action=request.observation[:ACT_DIM], sequence=request.sequence))

    async def main() -> None:
        server = grpc.aio.server(options=[
            ("grpc.so_reuseport", 0),
            # Accept the clients' 1 s keepalive pings, as ours does.
            ("grpc.http2.min_ping_interval_without_data_ms", 500), ("grpc.http2.max_ping_strikes", 0),
        ])
        policy_pb2_grpc.add_PolicyServiceServicer_to_server(Echo(), server)
        server.add_insecure_port(f"127.0.0.1:{port}")
        if uds:
            server.add_insecure_port(f"unix:{uds}")
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


@dataclass
class Server:
    kind: str
    proc: subprocess.Popen[str]
    tcp: str
    uds: str | None
    """``unix:PATH``, or None for a server without a socket (naive)."""

    def target(self, transport: str) -> str | None:
        return self.tcp if transport == "tcp" else self.uds


@dataclass(frozen=True)
class CppBuild:
    directory: Path

    @property
    def control_loop(self) -> Path:
        return self.directory / "control_loop"

    @property
    def echo_server(self) -> Path:
        return self.directory / "sim2real_echo_server"

    @property
    def fastpath(self) -> Path:
        return self.directory / "fastpath" / "sim2real_fastpath"


def build_cpp(directory: Path) -> CppBuild:
    """Configure and build clients/cpp (incremental: a no-op when up to date)."""
    if shutil.which("cmake") is None:
        sys.exit("error: --client cpp needs cmake and Debian's gRPC (see clients/cpp/README.md), or use --client python")
    for command in (
        ["cmake", "-S", str(ROOT / "clients" / "cpp"), "-B", str(directory), "-DCMAKE_BUILD_TYPE=Release"],
        ["cmake", "--build", str(directory), "--parallel", "2"],
        ["cmake", "-S", str(ROOT / "serve" / "fastpath"), "-B", str(directory / "fastpath"), "-DCMAKE_BUILD_TYPE=Release"],
        ["cmake", "--build", str(directory / "fastpath"), "--parallel", "2"],
    ):
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            sys.exit(f"error: {' '.join(command)} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return CppBuild(directory)


def launch(kind: str, onnx_path: Path, weights: Path, sockets: Path, cpp: CppBuild | None) -> Server:
    uds = sockets / f"{kind}.sock"
    if kind == "ours":
        from sim2real.serve.process import spawn_server

        proc, port, _ = spawn_server(["--model", str(onnx_path), "--port", "0", "--uds", str(uds), "--device", "cpu",
                                      "--poll-interval", "0", "--log-level", "warning"])
        return Server(kind, proc, f"127.0.0.1:{port}", f"unix:{uds}")
    if kind in ("ours-fast", "ours-fast-py"):
        from sim2real.serve.process import spawn_server

        assert cpp is not None
        fast_uds = sockets / f"{kind}.fast.sock"
        proc, _, lines = spawn_server([
            "--model", str(onnx_path), "--port", "0", "--device", "cpu", "--poll-interval", "0",
            "--log-level", "warning", "--fast-path", str(cpp.fastpath), "--fast-port", "0", "--fast-uds", str(fast_uds),
            "--fast-inference", "cpp" if kind == "ours-fast" else "python",
        ])
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            found = [m for m in map(FAST_LINE.search, list(lines)) if m]
            if found:
                return Server(kind, proc, f"127.0.0.1:{found[0].group(1)}", f"unix:{fast_uds}")
            time.sleep(0.01)
        proc.kill()
        raise RuntimeError(f"{kind}: no fast path line in the server's output:\n" + "\n".join(lines))
    if kind == "echo-cpp":
        assert cpp is not None
        cmd = [str(cpp.echo_server), "--address", "127.0.0.1:0", "--address", f"unix:{uds}",
               "--observation-dim", str(OBS_DIM), "--action-dim", str(ACT_DIM)]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("ready "):
            raise RuntimeError(f"echo-cpp failed to start: {line}{proc.stdout.read()}")
        return Server(kind, proc, f"127.0.0.1:{int(line.split()[1])}", f"unix:{uds}")
    port = free_port()
    cmd = [sys.executable, __file__, "--_weights", str(weights)]
    if kind == "echo-py":
        cmd += ["--_serve-echo", str(port), "--_uds", str(uds)]
    else:
        cmd += ["--_serve-naive", str(port)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        if "ready" in line:
            return Server(kind, proc, f"127.0.0.1:{port}", f"unix:{uds}" if kind == "echo-py" else None)
    raise RuntimeError(f"{kind} server failed to start (exit {proc.wait()})")


# --- CPU accounting ----------------------------------------------------------------------------
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, all its threads (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS


def tree_cpu_seconds(pid: int) -> float:
    """cpu_seconds of a process and of its descendants (ours-fast: the server and its C++
    front end, which is a child process and does much of the work)."""
    total, todo, seen = 0.0, [pid], set()
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        total += cpu_seconds(current)
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                todo.extend(int(child) for child in (task / "children").read_text().split())
            except OSError:
                continue
    return total


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds per thread name (threads of one name summed)."""
    out: Counter[str] = Counter()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            name = (task / "comm").read_text().strip()
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[name] += (int(fields[11]) + int(fields[12])) / TICKS
    return dict(out)


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent not idle, since boot (/proc/stat)."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values[:8]) - idle) / TICKS


@dataclass
class CpuWindow:
    """CPU used between two samples: by the server, by the clients, by the machine."""

    server_pid: int
    client_pids: list[int]

    def start(self) -> None:
        self._t = time.perf_counter()
        self._server = tree_cpu_seconds(self.server_pid)
        self._clients = sum(cpu_seconds(pid) for pid in self.client_pids) + time.process_time()
        self._machine = machine_busy_seconds()

    def stop(self) -> dict[str, float]:
        wall = time.perf_counter() - self._t
        clients = sum(cpu_seconds(pid) for pid in self.client_pids) + time.process_time()
        return {
            "server_cpu": 100 * (tree_cpu_seconds(self.server_pid) - self._server) / wall,
            "clients_cpu": 100 * (clients - self._clients) / wall,
            "machine_cpu": 100 * (machine_busy_seconds() - self._machine) / wall,
        }


# --- clients ---------------------------------------------------------------------------------
async def run_clients(port: int | str, mode: str, clients: int, rate_hz: float | None, seconds: float) -> dict[str, float]:
    """Python clients in this process; ``port`` is a TCP port on 127.0.0.1 or a gRPC target."""
    import grpc

    from sim2real.v1 import policy_pb2, policy_pb2_grpc

    target = f"127.0.0.1:{port}" if isinstance(port, int) else port
    obs = np.random.default_rng(0).normal(size=OBS_DIM).astype(np.float32).tolist()
    latencies: list[list[int]] = [[] for _ in range(clients)]
    errors = [0] * clients
    warmup = PY_WARMUP_S

    async def one_client(i: int) -> None:
        async with grpc.aio.insecure_channel(target) as channel:
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


def run_cpp_clients(
    cpp: CppBuild, target: str, clients: int, rate_hz: float | None, seconds: float, server: Server,
    py_spy: Path | None = None,
) -> dict[str, Any]:
    """``clients`` control_loop processes against ``target``, started together; their
    round trips pooled. With ``py_spy``, our server is profiled over the measured window."""
    period_ns = 1e9 / rate_hz if rate_hz else 0.0
    # Time for every process to start, connect and open its stream before the first tick.
    start_at = time.monotonic_ns() + int((0.5 + 0.06 * clients) * 1e9)
    measure_from = start_at + int(CPP_WARMUP_S * 1e9)
    with tempfile.TemporaryDirectory(prefix="s2r-lat-") as tmp:
        procs = []
        for i in range(clients):
            # --timeout-ms: how long the GetPolicyInfo each process makes at start may be
            # retried while UNAVAILABLE (one connection attempt has ~50 ms to finish its
            # handshake, which up to 32 processes loading at once on two cores can miss); not
            # a step (those have the 100 ms deadline), so a slow start is not a serving error.
            cmd = [str(cpp.control_loop), "--address", target, "--duration", f"{seconds}",
                   "--warmup", f"{CPP_WARMUP_S}", "--deadline-ms", f"{CPP_DEADLINE_MS}", "--json",
                   "--timeout-ms", f"{CPP_START_TIMEOUT_MS}",
                   "--latencies-out", f"{tmp}/{i}.txt", "--start-at", str(start_at + int(i * period_ns / clients))]
            cmd += ["--rate", f"{rate_hz:g}"] if rate_hz else ["--max-rate"]
            procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        window = CpuWindow(server.proc.pid, [p.pid for p in procs])
        time.sleep(max(0.0, (measure_from - time.monotonic_ns()) / 1e9))
        spy = None
        if py_spy is not None:
            spy = start_py_spy(server.proc.pid, seconds, py_spy)
        threads_before = thread_cpu(server.proc.pid)
        window.start()
        time.sleep(seconds)
        cpu = window.stop()
        threads = {k: 100 * (v - threads_before.get(k, 0.0)) / seconds for k, v in thread_cpu(server.proc.pid).items()}
        outputs = [p.communicate(timeout=seconds + 120) for p in procs]
        if spy is not None:
            spy.wait(timeout=120)
        summaries, late, failed = [], 0, []
        for proc, (out, err) in zip(procs, outputs, strict=True):
            late += "in the past" in err
            lines = [line for line in out.splitlines() if line.startswith("{")]
            if proc.returncode != 0 or not lines:
                failed.append(f"exit {proc.returncode}: {err.strip()[-300:]}")
                continue
            summaries.append(json.loads(lines[-1]))
        us = [np.array(Path(f"{tmp}/{i}.txt").read_text().split(), dtype=np.float64) for i in range(clients)
              if Path(f"{tmp}/{i}.txt").exists()]
    for reason in failed:
        print(f"    a client failed: {reason}", file=sys.stderr)
    all_us = np.concatenate(us) if us else np.empty(0)
    fallbacks = sum(s["fallbacks"] for s in summaries)
    wall = float(np.mean([s["seconds"] for s in summaries])) if summaries else seconds
    result = summarize(all_us, len(all_us), fallbacks + len(failed), wall)
    return {**result, **cpu, "late_starts": late, "failed_clients": len(failed),
            "deadline_misses": sum(s["deadline_misses"] for s in summaries),
            "overruns": sum(s["overruns"] for s in summaries), "server_threads_cpu": threads}


def summarize(us: np.ndarray, n: int, errors: int, wall_s: float) -> dict[str, float]:
    if len(us) == 0:
        return {"p50_us": float("nan"), "p99_us": float("nan"), "p999_us": float("nan"), "rps": 0.0, "errors": errors, "n": 0}
    p50, p99, p999 = np.percentile(us, [50, 99, 99.9])
    return {"p50_us": float(p50), "p99_us": float(p99), "p999_us": float(p999),
            "rps": n / wall_s if wall_s > 0 else 0.0, "errors": errors, "n": n}


# --- profiling our server ------------------------------------------------------------------
def start_py_spy(pid: int, seconds: float, out: Path) -> subprocess.Popen[str]:
    """py-spy record (collapsed stacks, active threads only: where CPU goes, not where
    the loop waits) of ``pid`` for ``seconds``; written to out/<pid>-<time>.txt."""
    exe = shutil.which("py-spy")
    if exe is None:
        sys.exit("error: --py-spy needs py-spy (pip install py-spy)")
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"ours-{pid}-{time.monotonic_ns()}.txt"
    return subprocess.Popen([exe, "record", "--pid", str(pid), "--duration", str(max(1, round(seconds))),
                             "--rate", "250", "--format", "raw", "--nonblocking", "--output", str(path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True)


def _source_line(frame: str) -> str:
    """The source text of a py-spy frame "function (path:line)" in this repository ('' if
    it is not ours): py-spy names our files relative to the checkout (serve/server.py) or,
    installed, to site-packages (sim2real/serve/server.py)."""
    location = frame.rpartition(" (")[2].rstrip(")")
    path, _, line = location.rpartition(":")
    if not line.isdigit():
        return ""
    for candidate in (ROOT / path, ROOT / path.removeprefix("sim2real/")):
        if candidate.is_file():
            lines = candidate.read_text().splitlines()
            return lines[int(line) - 1] if 0 < int(line) <= len(lines) else ""
    return ""


def classify_sample(frames: list[str]) -> str:
    """Where one sampled stack's time went. Compiled code (cygrpc, protobuf's upb, numpy)
    has no Python frame of its own: its time is the calling line's, so the gRPC read and
    write of StreamAct are told apart by the source line they are called from."""
    if "onnxruntime" in frames[-1]:
        return "the model (onnxruntime run)"
    if any("prometheus_client" in f for f in frames):
        return "metrics (prometheus_client)"
    for frame in reversed(frames):
        if "serve/server.py" in frame:
            text = _source_line(frame)
            if "context.write" in text:
                return "gRPC write of the answer (cygrpc: serialize, sendmsg, waking the client)"
            if "context.read" in text:
                return "gRPC read of the request (cygrpc)"
            return "our servicer and request path (parse, checks, clamp, interceptors)"
        if "serve/" in frame:
            return "our servicer and request path (parse, checks, clamp, interceptors)"
    if any("asyncio/" in f or "selectors.py" in f for f in frames):
        return "asyncio event loop (scheduling, epoll)"
    if "threading.py" in frames[-1]:
        # grpc.aio's PollerCompletionQueue: a Python thread that polls gRPC's completion
        # queue in C and hands events to the event loop.
        return "gRPC aio poller thread (completion queue, in C)"
    return "other"


def summarize_profile(path: Path) -> dict[str, Any]:
    """Where the sampled time went, by classify_sample, and the top self-time frames."""
    buckets: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = stack.split(";")
        leaves[frames[-1]] += count
        buckets[classify_sample(frames)] += count
    return {"samples": total,
            "buckets": {k: 100 * v / total for k, v in buckets.most_common()} if total else {},
            "top_self": [(k, 100 * v / total) for k, v in leaves.most_common(12)] if total else []}


# --- main ------------------------------------------------------------------------------------
SERVERS = ("echo-cpp", "echo-py", "ours", "ours-fast", "ours-fast-py", "naive")
FAST = ("ours-fast", "ours-fast-py")
FAST_LINE = re.compile(r"fast path .* on grpcs?://[\d.]+:(\d+)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=3.0, help="measured seconds per row")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--client", choices=("cpp", "python"), nargs="+", default=["cpp", "python"],
                        help="which client library drives the servers")
    parser.add_argument("--transport", choices=("tcp", "uds"), nargs="+", default=["tcp", "uds"],
                        help="TCP on 127.0.0.1, or a Unix domain socket (sim2real serve --uds)")
    parser.add_argument("--rates", choices=("500", "max"), nargs="+", default=["500", "max"])
    parser.add_argument("--servers", choices=SERVERS, nargs="+", default=list(SERVERS))
    parser.add_argument("--repeats", type=int, default=1,
                        help="run every C++-client row this many times (interleaved) and report medians")
    parser.add_argument("--cpp-build", type=Path, default=ROOT / "build",
                        help="CMake build folder for clients/cpp (built or brought up to date here)")
    parser.add_argument("--py-spy", type=Path, default=None,
                        help="profile our server with py-spy during its C++ rows; collapsed stacks go here")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    parser.add_argument("--_serve-echo", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--_serve-naive", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--_uds", type=str, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--_weights", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._serve_echo is not None:
        return serve_echo(args._serve_echo, args._uds)
    if args._serve_naive is not None:
        return serve_naive_torch(args._serve_naive, args._weights)
    if args.repeats < 1:
        parser.error(f"--repeats: expected 1 or more, got {args.repeats}")
    if args.seconds <= 0:
        parser.error(f"--seconds: expected a positive number, got {args.seconds:g}")

    import grpc
    import onnxruntime

    cpp = build_cpp(args.cpp_build.resolve()) if "cpp" in args.client else None
    rates: list[float | None] = [RATE_HZ if r == "500" else None for r in args.rates]
    print(f"serve_latency: {platform.machine()}, {os.cpu_count()} cores, grpcio {grpc.__version__}, "
          f"onnxruntime {onnxruntime.__version__}; policy {OBS_DIM}->{HIDDEN}->{ACT_DIM}; "
          f"{args.seconds:g} s per row; load average {os.getloadavg()[0]:.2f} at the start\n")
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp, tempfile.TemporaryDirectory(prefix="s2r-", dir="/tmp") as sockets:
        onnx_path, weights = build_policy(Path(tmp))
        floor = ort_floor(onnx_path, 20000)
        rows.append({"client": "-", "transport": "-", "server": "onnxruntime in-process", "mode": "call",
                     "clients": 1, "rate": "max", **floor})
        wanted = set(args.servers)
        if cpp is None:
            wanted.discard("echo-cpp")
            wanted.difference_update(FAST)
        if "python" not in args.client:
            wanted.discard("naive")
        servers: dict[str, Server] = {}
        try:
            for kind in SERVERS:
                if kind in wanted:
                    servers[kind] = launch(kind, onnx_path, weights, Path(sockets), cpp)
            for repeat in range(args.repeats if cpp is not None else 0):
                for transport in args.transport:
                    for clients in args.clients:
                        for rate in rates:
                            for kind in ("echo-cpp", "echo-py", "ours", *FAST):
                                if kind not in servers:
                                    continue
                                server = servers[kind]
                                target = server.target(transport)
                                assert target is not None
                                spy = args.py_spy if kind in ("ours", *FAST) else None
                                result = run_cpp_clients(cpp, target, clients, rate, args.seconds, server, spy)
                                rows.append({"client": "cpp", "transport": transport, "server": kind, "mode": "stream",
                                             "clients": clients, "rate": rate_name(rate), "repeat": repeat, **result})
                                print_row(rows[-1])
            if "python" in args.client:
                plan = [("echo-py", "unary"), ("echo-py", "stream"), ("ours", "unary"), ("ours", "stream"),
                        ("naive", "unary")]
                for transport in args.transport:
                    for clients in args.clients:
                        for rate in rates:
                            for kind, mode in plan:
                                server = servers.get(kind)
                                target = server.target(transport) if server else None
                                if server is None or target is None:
                                    continue
                                window = CpuWindow(server.proc.pid, [])
                                window.start()
                                result = asyncio.run(run_clients(target, mode, clients, rate, args.seconds))
                                rows.append({"client": "python", "transport": transport, "server": kind, "mode": mode,
                                             "clients": clients, "rate": rate_name(rate), **result, **window.stop()})
                                print_row(rows[-1])
        finally:
            for server in servers.values():
                server.proc.terminate()
                server.proc.wait(timeout=30)
    print()
    print(f"onnxruntime in-process call: p50 {floor['p50_us']:.1f} us, p99 {floor['p99_us']:.1f} us\n")
    if cpp is not None:
        cpp_rows = combine_repeats([r for r in rows if r["client"] == "cpp"])
        print_cpp_table(cpp_rows)
        print_targets(cpp_rows)
    if "python" in args.client:
        print_python_table(rows, floor)
    if args.py_spy is not None:
        print_profiles(args.py_spy, rows)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


def rate_name(rate: float | None) -> str:
    return f"{rate:g} Hz" if rate else "max"


def print_row(row: dict[str, Any]) -> None:
    extra = ""
    if row.get("deadline_misses"):
        extra += f"  ({row['deadline_misses']} of the errors: no answer within {CPP_DEADLINE_MS:g} ms)"
    if row.get("late_starts"):
        extra += f"  ({row['late_starts']} clients started late)"
    print(f"  {row['client']:6} {row['transport']:3} {row['server']:8} {row['mode']:6} {row['clients']:3} clients @ "
          f"{row['rate']:7}: p50 {row['p50_us']:8.1f} us  p99 {row['p99_us']:8.1f} us  p99.9 {row['p999_us']:8.1f} us  "
          f"{row['rps']:7.0f} req/s  errors {row['errors']}  CPU server {row['server_cpu']:.0f}% "
          f"clients {row['clients_cpu']:.0f}% machine {row['machine_cpu']:.0f}%{extra}", file=sys.stderr, flush=True)


def _key(row: dict[str, Any]) -> tuple[str, str, str, int, str]:
    return (row["client"], row["transport"], row["mode"], row["clients"], row["rate"])


MEDIAN_FIELDS = ("p50_us", "p99_us", "p999_us", "rps", "server_cpu", "clients_cpu", "machine_cpu")
SUMMED_FIELDS = ("errors", "overruns")


def combine_repeats(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (transport, server, clients, rate): the median of each latency, rate and
    CPU figure over the --repeats runs, errors and overruns summed, and every run's p99 in
    ``p99_runs`` (on this 2-core VM a 10 s p99 moves by 2x from run to run, the floor's too)."""
    groups: dict[tuple[str, str, int, str], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["transport"], r["server"], r["clients"], r["rate"]), []).append(r)
    combined = []
    for runs in groups.values():
        row = dict(runs[0])
        for name in MEDIAN_FIELDS:
            row[name] = float(np.median([r[name] for r in runs]))
        for name in SUMMED_FIELDS:
            row[name] = sum(r.get(name, 0) for r in runs)
        row["runs"] = len(runs)
        row["p99_runs"] = [r["p99_us"] for r in runs]
        combined.append(row)
    return combined


def print_cpp_table(rows: list[dict[str, Any]]) -> None:
    floor = {_key(r): r for r in rows if r["server"] == "echo-cpp"}
    print("C++ client (clients/cpp control_loop, one process per client, StreamAct); floor = echo-cpp, same "
          "transport, clients and rate; overruns: 500 Hz ticks whose step ran into the next tick\n")
    repeated = any(r.get("runs", 1) > 1 for r in rows)
    if repeated:
        print(f"Medians over {max(r['runs'] for r in rows)} runs per row (errors and overruns: summed); "
              "the last column lists each run's p99.\n")
    print("| transport | server | clients | rate | p50 us | p99 us | p99.9 us | req/s | errors | overruns | "
          "p50 / floor | p99 / floor | server CPU | server CPU us/req | client CPU us/step | machine CPU |"
          + (" p99 per run us |" if repeated else ""))
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|" + ("---|" if repeated else ""))
    for r in rows:
        if r["client"] != "cpp":
            continue
        ref = floor.get(_key(r))
        ratios = ("", "")
        if ref is not None and r["server"] != "echo-cpp":
            ratios = (f"{r['p50_us'] / ref['p50_us']:.2f}x", f"{r['p99_us'] / ref['p99_us']:.2f}x")
        print(f"| {r['transport']} | {r['server']} | {r['clients']} | {r['rate']} | {r['p50_us']:.0f} | "
              f"{r['p99_us']:.0f} | {r['p999_us']:.0f} | {r['rps']:.0f} | {r['errors']} | "
              f"{r['overruns'] if r['rate'] != 'max' else ''} | {ratios[0]} | {ratios[1]} | "
              f"{r['server_cpu']:.0f}% | {per_request(r['server_cpu'], r['rps'])} | "
              f"{per_request(r['clients_cpu'], r['rps'])} | {r['machine_cpu']:.0f}% |"
              + (f" {', '.join(f'{v:.0f}' for v in r['p99_runs'])} |" if repeated else ""))
    print()


def per_request(cpu_percent: float, rps: float) -> str:
    """CPU microseconds per answered request, from a CPU share and a rate."""
    return f"{cpu_percent / 100 / rps * 1e6:.0f}" if rps > 0 else ""


def print_targets(rows: list[dict[str, Any]]) -> None:
    """Issue 14's targets for our server with the C++ client, per transport."""
    for r in rows:
        if r["client"] != "cpp" or r["server"] not in ("ours", *FAST) or r["rate"] != rate_name(RATE_HZ):
            continue
        if r["clients"] == 8:
            checks = [("p50", r["p50_us"], TARGET_P50_US), ("p99", r["p99_us"], TARGET_P99_US)]
            parts = [f"{name} {value:.0f} us (target <= {limit:.0f}: "
                     f"{'met' if value <= limit else f'missed by {value - limit:.0f} us, {value / limit:.2f}x'})"
                     for name, value, limit in checks]
            parts.append(f"errors {r['errors']} (target 0: {'met' if r['errors'] == 0 else 'missed'})")
            runs = f" (medians of {r['runs']} runs; p99 per run {', '.join(f'{v:.0f}' for v in r['p99_runs'])} us)" \
                if r.get("runs", 1) > 1 else ""
            print(f"target, {r['server']}, {r['transport']}, 8 x 500 Hz: " + "; ".join(parts) + offered(r) + runs)
        elif r["clients"] == 32:
            print(f"target, {r['server']}, {r['transport']}, 32 x 500 Hz: errors {r['errors']} (target 0: "
                  f"{'met' if r['errors'] == 0 else 'missed'}); p50 {r['p50_us']:.0f} us, p99 {r['p99_us']:.0f} us"
                  + offered(r))
    print()


def offered(row: dict[str, Any]) -> str:
    """How much of the offered 500 Hz per client was served (a loop whose steps take longer
    than the period falls behind)."""
    return f"; served {row['rps']:.0f} of the {row['clients'] * RATE_HZ:.0f} req/s offered"


def print_python_table(rows: list[dict[str, Any]], floor: dict[str, float]) -> None:
    echo = {_key(r): r for r in rows if r["server"] == "echo-py" and r["client"] == "python"}
    print("Python client (this process, asyncio); floor = echo-py + the in-process onnxruntime call\n")
    print("| transport | server | mode | clients | rate | p50 us | p99 us | p99.9 us | req/s | errors | p50 / floor | "
          "server CPU |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        if r["client"] != "python":
            continue
        ref = echo.get(_key(r))
        ratio = ""
        if ref is not None and r["server"] != "echo-py":
            ratio = f"{r['p50_us'] / (ref['p50_us'] + floor['p50_us']):.2f}x"
        print(f"| {r['transport']} | {r['server']} | {r['mode']} | {r['clients']} | {r['rate']} | {r['p50_us']:.0f} | "
              f"{r['p99_us']:.0f} | {r['p999_us']:.0f} | {r['rps']:.0f} | {r['errors']} | {ratio} | "
              f"{r['server_cpu']:.0f}% |")
    print()


def print_profiles(folder: Path, rows: list[dict[str, Any]]) -> None:
    print(f"py-spy profiles of our server ({folder}/), active Python time by where the innermost "
          "recognised frame is:\n")
    for path in sorted(folder.glob("ours-*.txt")):
        summary = summarize_profile(path)
        print(f"{path.name}: {summary['samples']} samples")
        for label, share in summary["buckets"].items():
            print(f"  {share:5.1f}%  {label}")
        print("  top self time:")
        for frame, share in summary["top_self"]:
            print(f"  {share:5.1f}%  {frame}")
        print()
    for r in rows:
        if r["client"] == "cpp" and r["server"] == "ours" and r.get("server_threads_cpu"):
            threads = ", ".join(f"{k} {v:.0f}%" for k, v in sorted(r["server_threads_cpu"].items(), key=lambda x: -x[1])
                                if v >= 1)
            print(f"server threads, {r['transport']} {r['clients']} x {r['rate']}: {threads}")


if __name__ == "__main__":
    main()
