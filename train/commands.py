"""Entry points of `sim2real train` (and, as they land, eval and export)."""

from __future__ import annotations

import sys

import tyro

from sim2real.train.config import TrainConfig


def train_main(argv: list[str], prog: str = "sim2real train") -> int:
    config = tyro.cli(TrainConfig, args=argv, prog=prog)
    from sim2real.train.trainer import run_training

    try:
        final = run_training(config)
    except (ValueError, RuntimeError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    run_dir = config.resume or config.out
    print(
        f"done: {final['step']} steps, final eval return {final['return_mean']:.2f} "
        f"+- {final['return_std']:.2f} over {final['episodes']} episodes; run in {run_dir} "
        f"(checkpoint.safetensors, learning_curve.png, tb/)"
    )
    return 0
