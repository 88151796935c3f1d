"""The ``sim2real`` command: the command table (main.py), one entry point per command
(train.py, robots.py, serve.py, replay.py) and the end-to-end demo (demo.py).

May import every other room; no room imports this one.
"""
