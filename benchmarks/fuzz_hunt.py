"""A longer fuzz hunt than the default test run: every fuzz target with fresh random cases.

    python benchmarks/fuzz_hunt.py                    # 2,000 examples per target
    python benchmarks/fuzz_hunt.py --examples 20000 --out docs/fuzz.json

The default test run (`python -m pytest`) runs each target on a fixed set of 150 derandomized
examples (seconds); here each target draws ``--examples`` new ones (hypothesis with
``FUZZ_EXAMPLES`` set: the tests' own settings switch to random generation). A target fails
when hypothesis finds a counterexample; it prints the smallest one it can shrink to.

Targets: request parsing and PolicyCore.act, the server answering random bytes on the wire
(tests/fuzz/test_fuzz_requests.py), the checkpoint loader and the MCAP reader under random
truncation and byte flips (tests/fuzz/test_fuzz_files.py), the model repository scanner
with random folder names and files (tests/serve/test_repository.py).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

TARGETS = (
    "tests/fuzz/test_fuzz_requests.py::test_random_bytes_parse_or_are_invalid_argument",
    "tests/fuzz/test_fuzz_requests.py::test_mutated_requests_parse_or_are_invalid_argument",
    "tests/fuzz/test_fuzz_requests.py::test_act_answers_any_request_safely_or_with_a_structured_error",
    "tests/fuzz/test_fuzz_requests.py::test_the_server_answers_random_bytes_in_kind_and_keeps_serving",
    "tests/fuzz/test_fuzz_files.py::test_checkpoint_loader_never_returns_damaged_tensors",
    "tests/fuzz/test_fuzz_files.py::test_mcap_reader_recovers_every_intact_chunk",
    "tests/serve/test_repository.py::test_fuzz_scanner_never_raises_and_serves_the_right_version",
)


def run_target(target: str, examples: int, timeout: float) -> dict[str, object]:
    env = {**os.environ, "FUZZ_EXAMPLES": str(examples)}
    start = time.perf_counter()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=",
             "--import-mode=importlib", target],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout,
        )
        seconds = time.perf_counter() - start
        out = proc.stdout + proc.stderr
        passed = len(re.findall(r"(\d+) passed", out)) and int(re.findall(r"(\d+) passed", out)[-1])
        failed = int(re.findall(r"(\d+) failed", out)[-1]) if re.findall(r"(\d+) failed", out) else 0
        outcome = "pass" if proc.returncode == 0 else "FAIL"
        detail = "" if proc.returncode == 0 else out[-3000:]
    except subprocess.TimeoutExpired:
        seconds, passed, failed, outcome, detail = time.perf_counter() - start, 0, 0, "timeout", ""
    # Parametrized targets run once per parameter, each with ``examples`` examples.
    cases = max(1, int(passed or 0) + failed)
    return {"target": target, "examples_per_case": examples, "cases": cases,
            "executions": examples * cases, "outcome": outcome, "seconds": round(seconds, 1),
            "detail": detail}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=2000, help="hypothesis examples per target")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds per target")
    parser.add_argument("--out", type=Path, default=None, help="write the table as JSON here")
    args = parser.parse_args()
    rows = []
    print(f"fuzz hunt: {args.examples} fresh examples per target; {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores")
    for target in TARGETS:
        row = run_target(target, args.examples, args.timeout)
        rows.append(row)
        print(f"  {row['outcome']:7} {row['executions']:>7} executions {row['seconds']:>7.1f} s  {target}",
              flush=True)
        if row["detail"]:
            print(row["detail"])
    failures = [r for r in rows if r["outcome"] != "pass"]
    total = sum(int(r["executions"]) for r in rows)
    print(f"{total} executions, {len(failures)} target(s) failed")
    if args.out:
        args.out.write_text(json.dumps({"examples_per_target": args.examples, "rows": rows}, indent=2) + "\n")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
