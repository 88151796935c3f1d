"""Step many envs across CPU cores: the calling process plus one worker process per
remaining core, each stepping a slice of the envs.

gymnasium's AsyncVectorEnv runs one process per env, pickles every step's info dict
through a pipe and leaves the main process idle; on our 2-core machines a vectorized
quadruped steps *slower* than a single env that way (benchmarks/sim_speed.py). Here:
- each worker steps a slice of envs in a loop and writes observations, rewards, done flags,
  privileged observations and reward terms straight into shared memory; a pipe carries
  only the (rare) reset infos, reset seeds and errors;
- the calling process steps its own slice instead of waiting, so N cores need N-1 workers;
- the handoff is a pair of semaphores per worker, tried in a spin loop for a few ms before
  blocking: on these VMs waking a process blocked in a read costs about as much as an env
  step, while the fallback to blocking leaves the cores free when the caller is busy with
  something else (a SAC update).

Episodes autoreset in the same step (gymnasium's SAME_STEP mode): the returned observation
of a finished env is its new episode's first one and ``infos["final_obs"]`` holds the last.
"""

from __future__ import annotations

import dataclasses
import multiprocessing as mp
import os
import signal
import time
import traceback
from multiprocessing.connection import Connection
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space


@dataclasses.dataclass(frozen=True)
class _Layout:
    """Sizes of the shared buffers, read once from a probe env."""

    num_envs: int
    obs_dim: int
    act_dim: int
    privileged_dim: int  # 0 when the env has no privileged observation
    reward_terms: tuple[str, ...]


class _SharedBuffers:
    """Numpy views on shared memory, one row per env."""

    def __init__(self, layout: _Layout, raw: dict[str, Any] | None = None) -> None:
        n = layout.num_envs
        shapes: dict[str, tuple[tuple[int, ...], type]] = {
            "actions": ((n, layout.act_dim), np.float32),
            "obs": ((n, layout.obs_dim), np.float32),
            "final_obs": ((n, layout.obs_dim), np.float32),
            "privileged": ((n, layout.privileged_dim), np.float32),
            "final_privileged": ((n, layout.privileged_dim), np.float32),
            "rewards": ((n,), np.float64),
            "terminated": ((n,), np.bool_),
            "truncated": ((n,), np.bool_),
            "reward_terms": ((n, len(layout.reward_terms)), np.float64),
        }
        self.raw = raw or {
            name: mp.RawArray("b", max(1, int(np.prod(shape)) * np.dtype(dtype).itemsize))
            for name, (shape, dtype) in shapes.items()
        }
        self.arrays = {
            name: np.frombuffer(self.raw[name], dtype=dtype, count=int(np.prod(shape))).reshape(shape)
            for name, (shape, dtype) in shapes.items()
        }


class WorkerError(RuntimeError):
    """An env raised inside a worker process, or a worker died; carries its traceback."""


# How long a wait spins before it blocks, s. Longer than a worker's slice of env steps at
# the rates we run (a few ms), short enough not to steal a core from a busy caller for long.
SPIN_SECONDS = 0.005

# Commands, written to a worker's control word before its `go` semaphore is released.
_STEP, _RESET, _CLOSE = 1, 2, 3
# What a worker left in the pipe, written to its reply word before `done` is released.
_NO_REPLY, _REPLY, _ERROR = 0, 1, 2


def _acquire(semaphore: Any, spin_seconds: float, alive: Any) -> bool:
    """Acquire ``semaphore``: spin on a non-blocking try, then block in short slices.

    Returns False when ``alive()`` turns false while blocked (the other side died).
    Semaphores rather than pipe reads for the handoff: a try-acquire is one atomic
    operation, and it orders the shared-memory writes made before the release.
    """
    if semaphore.acquire(False):
        return True
    deadline = time.perf_counter() + spin_seconds
    while time.perf_counter() < deadline:
        if semaphore.acquire(False):
            return True
    while not semaphore.acquire(timeout=0.1):
        if not alive():
            return False
    return True


def _worker(
    conn: Connection,
    go: Any,
    done: Any,
    control: Any,
    env_id: str,
    env_kwargs: dict[str, Any],
    first: int,
    count: int,
    layout: _Layout,
    raw: dict[str, Any],
) -> None:
    # One thread per worker: BLAS/OpenMP threads would fight the other workers for cores.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    # Ctrl-C in a terminal reaches the whole process group; the parent decides when the
    # workers stop (a trainer checkpoints first), so workers ignore it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    import sim2real.robots  # noqa: F401  (registers our envs in this process)

    parent = mp.parent_process()
    parent_alive = parent.is_alive if parent is not None else (lambda: True)
    buffers = _SharedBuffers(layout, raw).arrays
    envs: list[gym.Env] = []
    rows = range(first, first + count)
    try:
        envs = [gym.make(env_id, **env_kwargs) for _ in rows]
        conn.send(("ready", None))
        while _acquire(go, SPIN_SECONDS, parent_alive):
            command = control[0]
            if command == _CLOSE:
                break
            if command == _STEP:
                reply = _step_all(envs, rows, buffers, layout)
            else:
                reply = _reset_all(envs, rows, buffers, conn.recv())
            # Release first, then send: a large reply must not fill the pipe while the
            # parent still waits on `done` (it reads the pipe only after acquiring).
            control[1] = _REPLY if reply else _NO_REPLY
            done.release()
            if reply:
                conn.send(reply)
    except (KeyboardInterrupt, EOFError, BrokenPipeError):
        pass
    except Exception:  # noqa: BLE001 - reported to the parent with the traceback
        control[1] = _ERROR
        done.release()
        conn.send(traceback.format_exc())
    finally:
        for env in envs:
            env.close()
        conn.close()


def _write_reset(buffers: dict[str, np.ndarray], row: int, obs: np.ndarray, info: dict[str, Any]) -> None:
    buffers["obs"][row] = obs
    if buffers["privileged"].shape[1]:
        buffers["privileged"][row] = info["privileged_obs"]


def _reset_all(
    envs: list[gym.Env], rows: range, buffers: dict[str, np.ndarray], seeds: list[int | None]
) -> dict[int, dict[str, Any]]:
    infos = {}
    for env, row in zip(envs, rows, strict=True):
        obs, info = env.reset(seed=seeds[row])
        _write_reset(buffers, row, obs, info)
        infos[row] = info
    return infos


def _step_all(
    envs: list[gym.Env], rows: range, buffers: dict[str, np.ndarray], layout: _Layout
) -> dict[int, dict[str, Any]]:
    """Step every env of this worker; returns the reset infos of envs that autoreset."""
    actions = buffers["actions"]
    has_privileged = layout.privileged_dim > 0
    reset_infos = {}
    for env, row in zip(envs, rows, strict=True):
        obs, reward, terminated, truncated, info = env.step(actions[row])
        buffers["rewards"][row] = reward
        buffers["terminated"][row] = terminated
        buffers["truncated"][row] = truncated
        if layout.reward_terms:
            terms = info["reward_terms"]
            buffers["reward_terms"][row] = [terms[name] for name in layout.reward_terms]
        if has_privileged:
            buffers["privileged"][row] = info["privileged_obs"]
        if terminated or truncated:
            buffers["final_obs"][row] = obs
            if has_privileged:
                buffers["final_privileged"][row] = info["privileged_obs"]
            obs, info = env.reset()
            _write_reset(buffers, row, obs, info)
            reset_infos[row] = info
        else:
            buffers["obs"][row] = obs
    return reset_infos


class SubprocVectorEnv(VectorEnv):
    """``num_envs`` copies of ``env_id``, split between this process and ``num_workers``
    worker processes (default: one per core beyond this one's).

    ``infos`` after a step: ``privileged_obs`` (when the env has one), ``reward_terms``
    (dict of arrays, when the env reports them), ``_final`` (bool mask of envs whose
    episode ended this step), ``final_obs`` / ``final_privileged_obs`` (their last
    observations) and ``reset_infos`` (env index -> the info of its new episode, e.g. the
    sampled domain randomization).
    """

    metadata = {"autoreset_mode": AutoresetMode.SAME_STEP}

    def __init__(
        self,
        env_id: str,
        num_envs: int,
        num_workers: int | None = None,
        env_kwargs: dict[str, Any] | None = None,
        context: str = "spawn",
    ) -> None:
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        if num_workers is None:
            num_workers = (os.cpu_count() or 1) - 1
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        num_workers = min(num_workers, num_envs - 1)
        self.num_workers = num_workers
        """Worker processes stepping envs beside this one."""
        self.env_id = env_id
        env_kwargs = dict(env_kwargs or {})
        layout = self._probe(env_id, num_envs, env_kwargs)
        self._layout = layout
        self._buffers = _SharedBuffers(layout)
        self.num_envs = num_envs
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)

        ctx = mp.get_context(context)
        self._conns: list[Connection] = []
        self._processes: list[mp.process.BaseProcess] = []
        self._closed = False
        # This process takes the first slice, then each worker one of the rest.
        base, extra = divmod(num_envs, num_workers + 1)
        counts = [base + (1 if part < extra else 0) for part in range(num_workers + 1)]
        self._local_rows = range(0, counts[0])
        self._local_envs: list[gym.Env] = []
        first = counts[0]
        self._go: list[Any] = []
        self._done: list[Any] = []
        self._control: list[Any] = []
        for worker, count in enumerate(counts[1:]):
            parent, child = ctx.Pipe()
            go, done, control = ctx.Semaphore(0), ctx.Semaphore(0), ctx.RawArray("i", 2)
            process = ctx.Process(
                target=_worker,
                args=(child, go, done, control, env_id, env_kwargs, first, count, layout,
                      self._buffers.raw),
                daemon=True,
                name=f"sim2real-env-worker-{worker}",
            )
            process.start()
            child.close()
            self._conns.append(parent)
            self._processes.append(process)
            self._go.append(go)
            self._done.append(done)
            self._control.append(control)
            first += count
        from sim2real.robots.registry import make

        self._local_envs = [make(env_id, **env_kwargs) for _ in self._local_rows]
        for conn in self._conns:
            try:
                status, payload = conn.recv()
            except EOFError:
                status, payload = "error", "the worker exited while making its envs"
            if status != "ready":
                self.close()
                raise WorkerError(f"a {env_id} worker failed to start:\n{payload}")

    @property
    def privileged_dim(self) -> int:
        """Size of the envs' privileged observation (0 when they have none)."""
        return self._layout.privileged_dim

    def _probe(self, env_id: str, num_envs: int, env_kwargs: dict[str, Any]) -> _Layout:
        from sim2real.robots.registry import make

        env = make(env_id, **env_kwargs)
        try:
            if not isinstance(env.action_space, gym.spaces.Box):
                raise TypeError(f"{env_id} must have a Box action space, got {env.action_space}")
            self.single_observation_space = env.observation_space
            self.single_action_space = env.action_space
            _, info = env.reset(seed=0)
            _, _, _, _, step_info = env.step(np.zeros(env.action_space.shape, env.action_space.dtype))
            privileged = info.get("privileged_obs")
            return _Layout(
                num_envs=num_envs,
                obs_dim=int(np.prod(env.observation_space.shape)),
                act_dim=int(np.prod(env.action_space.shape)),
                privileged_dim=0 if privileged is None else int(np.size(privileged)),
                reward_terms=tuple(step_info.get("reward_terms", {})),
            )
        finally:
            env.close()

    def _run(self, command: int, seeds: list[int | None] | None = None) -> dict[int, dict[str, Any]]:
        """Start ``command`` in every worker, do this process's slice, gather the results."""
        for conn, go, control in zip(self._conns, self._go, self._control, strict=True):
            control[0] = command
            go.release()
            if command == _RESET:
                conn.send(seeds)
        buffers = self._buffers.arrays
        local_error: BaseException | None = None
        reset_infos: dict[int, dict[str, Any]] = {}
        try:
            if command == _STEP:
                reset_infos = _step_all(self._local_envs, self._local_rows, buffers, self._layout)
            else:
                reset_infos = _reset_all(self._local_envs, self._local_rows, buffers, seeds)
        except BaseException as err:  # gather the workers first so the protocol stays in step
            local_error = err
        worker_error = None
        for conn, done, control, process in zip(
            self._conns, self._done, self._control, self._processes, strict=True
        ):
            if not _acquire(done, SPIN_SECONDS, process.is_alive):
                worker_error = f"worker {process.name} died (exit code {process.exitcode})"
                continue
            if control[1] == _REPLY:
                reset_infos.update(conn.recv())
            elif control[1] == _ERROR:
                worker_error = f"an env failed in worker {process.name}:\n{conn.recv()}"
        if worker_error is not None:
            self.close()
            raise WorkerError(f"{self.env_id}: {worker_error}")
        if local_error is not None:
            raise local_error
        return reset_infos

    def reset(
        self, *, seed: int | list[int | None] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        if seed is None or isinstance(seed, int):
            seeds = [None if seed is None else seed + i for i in range(self.num_envs)]
        else:
            if len(seed) != self.num_envs:
                raise ValueError(f"seed list must have {self.num_envs} entries, got {len(seed)}")
            for i, s in enumerate(seed):
                if s is not None and (isinstance(s, bool) or not isinstance(s, int)):
                    raise ValueError(f"seed[{i}] must be an int or None, got {s!r}")
            seeds = list(seed)
        reset_infos = self._run(_RESET, seeds)
        buffers = self._buffers.arrays
        infos: dict[str, Any] = {"reset_infos": reset_infos}
        if self._layout.privileged_dim:
            infos["privileged_obs"] = buffers["privileged"].copy()
        return buffers["obs"].copy(), infos

    def step(
        self, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        actions = np.asarray(actions, dtype=np.float32)
        expected = (self.num_envs, self._layout.act_dim)
        if actions.shape != expected:
            raise ValueError(f"actions must have shape {expected}, got {actions.shape}")
        buffers = self._buffers.arrays
        buffers["actions"][:] = actions
        reset_infos = self._run(_STEP)
        done = buffers["terminated"] | buffers["truncated"]
        infos: dict[str, Any] = {"_final": done.copy(), "reset_infos": reset_infos}
        if done.any():
            infos["final_obs"] = buffers["final_obs"].copy()
        if self._layout.privileged_dim:
            infos["privileged_obs"] = buffers["privileged"].copy()
            if done.any():
                infos["final_privileged_obs"] = buffers["final_privileged"].copy()
        if self._layout.reward_terms:
            terms = buffers["reward_terms"]
            infos["reward_terms"] = {
                name: terms[:, k].copy() for k, name in enumerate(self._layout.reward_terms)
            }
        return (
            buffers["obs"].copy(),
            buffers["rewards"].copy(),
            buffers["terminated"].copy(),
            buffers["truncated"].copy(),
            infos,
        )

    def close_extras(self, **kwargs: Any) -> None:
        if self._closed:
            return
        self._closed = True
        for go, control, process in zip(self._go, self._control, self._processes, strict=True):
            if process.is_alive():
                control[0] = _CLOSE
                go.release()
        for process in self._processes:
            process.join(timeout=5)
            if process.is_alive():
                process.terminate()
                process.join(timeout=5)
        for conn in self._conns:
            conn.close()
        for env in self._local_envs:
            env.close()
