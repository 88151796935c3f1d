"""Replay of logged robot trajectories: the simulated controller and CSV/NPZ importers that
make logs, policy vs log, sim replay, system identification, the `sim2real replay` report.

May import robots, logformat, serve (model loader, client) and v1; never train or cli.
"""
