"""LEAP-class 16-DoF four-finger hand: model, in-hand cube rotation, valve turning, domain
randomization."""
