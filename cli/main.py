"""The ``sim2real`` command: one console script, one subcommand per job.

SUBCOMMANDS below is the whole command table: each entry names the function in
``sim2real.cli.<command>`` that starts it. Each subcommand's options are generated (tyro)
from the config dataclass of the room that implements it (``TrainConfig`` in train/,
``ServeConfig`` in serve/config.py, ``ReplayConfig`` in replay/config.py, ...), so a flag
is declared exactly once, next to the code that uses it. Entry points are imported only
when their command runs, so ``sim2real --help`` loads neither torch nor onnxruntime.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Sequence

# name -> (one-line help, "module:function" taking (argv, prog) and returning an exit code)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "train": (
        "train a SAC policy (auto temperature) on a robot task or any Box-action gymnasium env",
        "sim2real.cli.train:train_main",
    ),
    "eval": (
        "evaluate a run's or an ONNX file's deterministic policy: return and reward terms",
        "sim2real.cli.train:eval_main",
    ),
    "export": (
        "export a run's deterministic actor to ONNX with deployment metadata",
        "sim2real.cli.train:export_main",
    ),
    "sweep": (
        "many training runs (grid/random search over config fields and seeds) on Ray, locally or on a cluster",
        "sim2real.cli.sweep:sweep_main",
    ),
    "serve": (
        "serve ONNX policies over gRPC (onnxruntime, hot reload, health, metrics, TLS)",
        "sim2real.cli.serve:serve_main",
    ),
    "replay": (
        "replay a trajectory log: policy vs log, sim-to-real gap, system identification",
        "sim2real.cli.replay:replay_main",
    ),
    "demo": (
        "end to end: serve the shipped quadruped policy, drive the simulated robot over gRPC, replay the log",
        "sim2real.cli.demo:demo_main",
    ),
    "robots": (
        "list robots and tasks (sizes, control rate, DR ranges, the quadruped robot specs); `robots check SPEC` tests a robot spec, `robots view` renders a rollout",
        "sim2real.cli.robots:main",
    ),
}


def _usage() -> str:
    lines = [
        "usage: sim2real COMMAND [options]",
        "",
        "sim2real: train robot policies in MuJoCo under domain randomization, deploy them.",
        "",
        "commands:",
    ]
    lines += [f"  {name:10} {help_}" for name, (help_, _) in SUBCOMMANDS.items()]
    lines += ["", "Run `sim2real COMMAND --help` for the options of a command."]
    return "\n".join(lines)


def _load(entry_point: str) -> Callable[[list[str], str], int]:
    module_name, _, attr = entry_point.partition(":")
    return getattr(importlib.import_module(module_name), attr)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(_usage())
        return 0 if args else 2
    # mujoco picks its OpenGL backend when first imported; on a headless machine offscreen
    # rendering (`robots view`) needs EGL, so choose it before any subcommand imports mujoco.
    if "MUJOCO_GL" not in os.environ and not os.environ.get("DISPLAY"):
        os.environ["MUJOCO_GL"] = "egl"
    name, rest = args[0], args[1:]
    if name not in SUBCOMMANDS:
        print(
            f"sim2real: unknown command {name!r}; choose from: {', '.join(SUBCOMMANDS)}",
            file=sys.stderr,
        )
        return 2
    return _load(SUBCOMMANDS[name][1])(rest, f"sim2real {name}")


if __name__ == "__main__":
    sys.exit(main())
