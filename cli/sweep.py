"""`sim2real sweep`: the entry point. The sweep (spec, Ray driver, trials, results) is
train's: it runs `sim2real train` trials (train/sweep.py, docs/sweeps.md)."""

from sim2real.train.sweep import sweep_main

__all__ = ["sweep_main"]
