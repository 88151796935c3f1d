"""The default torch thread count: what is left of the cores (train/threads.py)."""

from __future__ import annotations

import pytest

from sim2real.train.threads import default_torch_threads


@pytest.mark.parametrize(
    ("cores", "workers", "load", "threads"),
    [
        (2, 0, 0.0, 2),   # an idle 2-core machine, envs in-process: both cores
        (2, 1, 0.0, 1),   # one core steps envs in a worker process
        (2, 0, 1.2, 1),   # something else keeps a core busy
        (2, 0, 3.0, 1),   # the busy machine (load near 3): one thread, never zero
        (16, 3, 2.4, 11),
        (1, 0, 0.0, 1),
    ],
)
def test_threads_are_the_cores_left(cores: int, workers: int, load: float, threads: int) -> None:
    assert default_torch_threads(workers, cores=cores, load=load) == threads


def test_the_trainer_uses_the_rule_unless_told(tmp_path, monkeypatch, capsys) -> None:
    import torch

    from sim2real.train import threads as threads_module
    from sim2real.train.config import TrainConfig
    from sim2real.train.sac import SACConfig
    from sim2real.train.trainer import Trainer

    monkeypatch.setattr(threads_module, "usable_cores", lambda: 2)
    small = {"env": "Pendulum-v1", "num_envs": 1, "num_workers": 0,
             "sac": SACConfig(actor_hidden=(8,), critic_hidden=(8,), batch_size=16)}
    before = torch.get_num_threads()
    try:
        monkeypatch.setattr("sim2real.train.trainer.machine_load_average", lambda: 3.0)
        trainer = Trainer(TrainConfig(out=tmp_path / "a", **small))
        trainer.close()
        assert trainer.torch_threads == 1 == torch.get_num_threads()
        assert trainer.threads_note is not None and trainer.threads_note.startswith("torch threads: 1 (2 cores")
        trainer = Trainer(TrainConfig(out=tmp_path / "b", torch_threads=2, **small))
        trainer.close()
        assert trainer.torch_threads == 2 == torch.get_num_threads()
        assert trainer.threads_note is None  # asked for: nothing to say
    finally:
        torch.set_num_threads(before)
