"""torch threads for SAC updates, idle and on a busy machine: torch's default, 1, 2 and the
trainer's rule (train/threads.py) side by side.

    python benchmarks/torch_threads.py [--updates 60] [--busy 2]

Each row runs `--updates` updates at the quadruped recipe's shapes (benchmarks/update_cost.py:
256x256 networks, batch 256, LayerNorm critics, asymmetric critic) in a fresh process with
that thread count, first on the machine as it is ("idle": stop other work for clean
figures), then beside `--busy` processes that each spin a core (what a second training run
or a build does). The rule's choice is computed for each case from the cores and the load
the busy processes make (one each, what the 1-minute load average settles to).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CHILD = """
import json, sys, time, torch
sys.path.insert(0, {bench!r})
from update_cost import make, time_updates
threads = {threads}
if threads:
    torch.set_num_threads(threads)
sac, batch = make({{}})
time_updates(sac, batch, 5)  # warm up
elapsed = time_updates(sac, batch, {updates})
print(json.dumps({{"threads": torch.get_num_threads(), "ms_per_update": 1000 * elapsed}}))  # seconds per update
"""


def measure(threads: int | None, updates: int) -> dict[str, float]:
    code = CHILD.format(bench=os.path.join(ROOT, "benchmarks"), threads=threads or 0, updates=updates)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=3600)
    return json.loads(out.stdout.strip().splitlines()[-1])


def spin() -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def main() -> None:
    from sim2real.train.threads import default_torch_threads, usable_cores

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=60)
    parser.add_argument("--busy", type=int, default=2)
    args = parser.parse_args()
    cores = usable_cores()
    print(f"{args.updates} SAC updates per row (recipe shapes), {cores} usable cores, "
          f"load average now {os.getloadavg()[0]:.1f}\n")
    print("| machine | threads | ms per update | x the rule's |")
    print("|---|---|---|---|")
    for label, busy in (("idle", 0), (f"{args.busy} cores spinning", args.busy)):
        spinners = [spin() for _ in range(busy)]
        try:
            time.sleep(0.5 if busy else 0)  # the spinners are running
            rule = default_torch_threads(0, cores=cores, load=float(busy))
            rows = {"rule": measure(rule, args.updates)}
            for name, threads in (("torch default", None), ("1", 1), ("2", 2)):
                rows[name] = measure(threads, args.updates)
        finally:
            for p in spinners:
                p.kill()
                p.wait()
        base = rows["rule"]["ms_per_update"]
        for name, row in rows.items():
            shown = f"{name} ({row['threads']:.0f})" if name in ("rule", "torch default") else name
            print(f"| {label} | {shown} | {row['ms_per_update']:.1f} | {row['ms_per_update'] / base:.2f} |", flush=True)


if __name__ == "__main__":
    main()
