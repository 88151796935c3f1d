"""Training: SAC (networks, update, replay buffer, trainer), the task judges, evaluation
and ONNX export of the deterministic actor.

May import robots only (the command line that drives it lives in cli/).
"""
