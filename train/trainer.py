"""The SAC training loop: collect with vectorized envs, update, evaluate, checkpoint."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from sim2real.robots.action_prior import ActionPrior
from sim2real.robots.registry import pin_revision
from sim2real.robots.vector import SubprocVectorEnv
from sim2real.train import hand_judge, judge
from sim2real.train.action_prior import PriorShift
from sim2real.train.best_policy import BEST, selection_key, selection_text
from sim2real.train.checkpoint import (
    CheckpointError,
    flatten_optimizer,
    load_checkpoint,
    save_checkpoint,
    unflatten_optimizer,
)
from sim2real.train.colored_noise import ColoredNoise
from sim2real.train.config import (
    RUN_CONFIG_FILE,
    RunDirError,
    TrainConfig,
    check_env,
    claim_run_dir,
    config_to_dict,
    default_run_dir,
    load_run_config,
    resume_config,
)
from sim2real.train.evaluate import env_kwargs, evaluate
from sim2real.train.metrics_log import trim_metrics
from sim2real.train.normalizer import RunningNormalizer
from sim2real.train.policy import DeterministicPolicy, with_prefix
from sim2real.train.replay_buffer import ReplayBuffer, ReplayFileError
from sim2real.train.sac import SAC
from sim2real.train.threads import default_torch_threads, machine_load_average, usable_cores

CHECKPOINT = "checkpoint.safetensors"
CONFIG = RUN_CONFIG_FILE
METRICS = "metrics.jsonl"
NOISE_SEQUENCE_STEPS = 1000
"""Length of a colored exploration-noise sequence: one quadruped episode (20 s at 50 Hz).
The paper draws one per episode; a longer episode continues with a fresh sequence."""
REPLAY = "replay.npz"
CURVE = "learning_curve.png"


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for, but torch sees no CUDA device")
    return torch.device(name)


class Trainer:
    """One training run in ``config.out``."""

    def __init__(self, config: TrainConfig) -> None:
        self.config = config
        self.run_dir = Path(config.out)
        self.resume_notes: list[str] = []
        """What a resume could not restore and what it costs, said once the resume is accepted."""
        self.device = resolve_device(config.device)
        # Taken before the env workers start, so that the load is the rest of the machine's.
        machine_load = machine_load_average()
        torch.manual_seed(config.seed)
        self.rng = np.random.default_rng(config.seed)
        # Colored exploration noise (white: None, the actor's own sampling). Its own
        # generator, seeded from the run's seed, so white-noise runs draw exactly what they
        # always drew from self.rng.
        beta = config.sac.exploration_noise_beta
        self.noise = (
            ColoredNoise(beta, config.num_envs, 0, NOISE_SEQUENCE_STEPS, np.random.default_rng([config.seed, 1]))
            if beta > 0 else None
        )
        assert config.env is not None
        self.envs = SubprocVectorEnv(
            config.env,
            config.num_envs,
            num_workers=config.num_workers,
            env_kwargs=env_kwargs(config.env, config.domain_randomization, config.env_config),
        )
        # torch's threads: as asked, else what is left of the cores (train/threads.py).
        threads = config.torch_threads or default_torch_threads(self.envs.num_workers, load=machine_load)
        torch.set_num_threads(threads)
        self.torch_threads = threads
        self.threads_note = None if config.torch_threads else (
            f"torch threads: {threads} ({usable_cores()} cores, {self.envs.num_workers} env worker processes, "
            f"load average {machine_load:.1f}; --torch-threads N to choose)")
        """Said when the run starts (not when a resume is refused before it)."""
        obs_space, act_space = self.envs.single_observation_space, self.envs.single_action_space
        if len(obs_space.shape) != 1 or len(act_space.shape) != 1:
            raise ValueError(
                f"{config.env}: SAC here needs flat Box observations and actions, got "
                f"{obs_space} and {act_space}"
            )
        self.obs_dim, self.act_dim = obs_space.shape[0], act_space.shape[0]
        if self.noise is not None:
            self.noise.act_dim = self.act_dim
        # Our policies act in [-1, 1]; a gymnasium env's Box is mapped onto that range.
        self.action_low = act_space.low.astype(np.float32)
        self.action_high = act_space.high.astype(np.float32)
        priv_dim = self.envs.privileged_dim
        if config.sac.asymmetric and priv_dim == 0:
            raise ValueError(
                f"SACConfig.asymmetric needs an env with a privileged observation; "
                f"{config.env} has none"
            )
        self.privileged_dim = priv_dim if config.sac.asymmetric else 0
        self.action_prior = env_action_prior(config, self.obs_dim, self.act_dim) if config.action_prior else None
        self.sac = SAC(
            config.sac, self.obs_dim, self.act_dim,
            critic_obs_dim=self.privileged_dim or None, device=self.device,
            actor_prior=PriorShift(self.action_prior) if self.action_prior is not None else None,
        )
        if self.action_prior is not None:
            # The residual starts at zero: the initial policy is exactly the prior (plus its
            # exploration noise), as in residual RL; the head still gets gradients.
            with torch.no_grad():
                self.sac.actor.mean.weight.zero_()
                self.sac.actor.mean.bias.zero_()
        self.obs_norm = RunningNormalizer(
            self.obs_dim, passthrough=self.action_prior.passthrough if self.action_prior is not None else ()
        )
        # The exported and `sim2real eval`-ed policy, sharing the live actor: evaluations
        # during training measure exactly what export will write.
        self.policy = DeterministicPolicy(self.sac.actor, self.obs_dim).to(self.device)
        self.critic_norm = RunningNormalizer(self.privileged_dim) if self.privileged_dim else None
        self.buffer = ReplayBuffer(
            config.buffer_size, self.obs_dim, self.act_dim, self.privileged_dim
        )
        self.step = 0
        self.episodes = 0
        self._writer: Any = None
        self._last_eval: dict[str, Any] | None = None
        self.best_key: tuple[float, float] | None = None
        """The rank of best.safetensors (train/best_policy.py), None before the first
        evaluation."""
        self.stop_requested = False
        """Set (e.g. by Ctrl-C / SIGTERM) to end the run at the next step boundary, with a
        checkpoint, instead of losing everything since the last periodic one."""

    # --- policy --------------------------------------------------------------------------
    def to_env_action(self, action: np.ndarray) -> np.ndarray:
        """[-1, 1] policy action -> the env's Box (identity for our robots)."""
        return self.action_low + (action + 1.0) * 0.5 * (self.action_high - self.action_low)

    def deterministic_policy(self, obs: np.ndarray) -> np.ndarray:
        """Raw observations -> [-1, 1] actions of the tanh(mean) actor (normalizer not updated).

        :class:`DeterministicPolicy` with the normalizer's current statistics: the module the
        exporter traces, so this is what the ONNX file and `sim2real eval` compute."""
        self.policy.set_normalizer(self.obs_norm if self.config.normalize_obs else None)
        return self.policy.act(obs)

    def _normalize(self, norm: RunningNormalizer | None, x: np.ndarray) -> np.ndarray:
        if norm is None or not self.config.normalize_obs:
            return np.asarray(x, np.float32)
        return norm.normalize(x)

    # --- main loop ---------------------------------------------------------------------
    def train(self) -> dict[str, Any]:
        """The whole run: collect and update to total_steps, then a final evaluation,
        checkpoint and learning curve. Returns the final evaluation record."""
        if self.threads_note:
            tqdm.write(self.threads_note, file=sys.stderr)
        self.open_run()
        self.run_loop()
        if self.stop_requested and self.step < self.config.total_steps:
            # Interrupted: checkpoint now, skip the final evaluation (the user wants out).
            self.save()
            self._writer.close()
            self.plot_learning_curve()
            return {**(self._last_eval or {"step": self.step}), "interrupted_at": self.step}
        final = self._last_eval if self._last_eval and self._last_eval["step"] == self.step else self._evaluate()
        self.save()
        self._writer.close()
        self.plot_learning_curve()
        return final

    def open_run(self) -> None:
        """Create the run directory, its config.json and the TensorBoard writer."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / CONFIG).write_text(json.dumps(config_to_dict(self.config), indent=2))
        from torch.utils.tensorboard import SummaryWriter

        self._writer = SummaryWriter(str(self.run_dir / "tb"))

    def run_loop(self) -> None:
        """Collect and update until total_steps, with the periodic evaluations and
        checkpoints the config asks for (no final ones)."""
        cfg = self.config
        obs, infos = self.envs.reset(seed=cfg.seed + 1000 * self.episodes)
        priv = infos.get("privileged_obs")
        n = cfg.num_envs
        ep_return = np.zeros(n)
        ep_length = np.zeros(n, dtype=int)
        ep_terms: dict[str, np.ndarray] = {}
        recent_returns: list[float] = []
        pending_updates = 0.0
        last_metrics: dict[str, float] = {}
        next_eval = self._next_multiple(cfg.eval_interval) if cfg.eval_interval else math.inf
        next_ckpt = self._next_multiple(cfg.checkpoint_interval)
        next_log = self._next_multiple(cfg.log_interval)
        started, start_step = time.perf_counter(), self.step
        bar = tqdm(total=cfg.total_steps, initial=self.step, unit="step", dynamic_ncols=True,
                   mininterval=1.0,
                   desc=f"train {cfg.env}")
        try:
            while self.step < cfg.total_steps and not self.stop_requested:
                if self.step < cfg.learning_starts and self.action_prior is None:
                    actions = self.rng.uniform(-1.0, 1.0, (n, self.act_dim)).astype(np.float32)
                else:
                    with torch.no_grad():
                        x = torch.as_tensor(self._normalize(self.obs_norm, obs), device=self.device)
                        if self.noise is None:
                            actions = self.sac.actor(x)[0].cpu().numpy()
                        else:
                            mean, log_std = self.sac.actor.distribution_params(x)
                            eps = torch.as_tensor(self.noise.sample(), device=self.device)
                            actions = self.sac.actor.squash(x, mean + log_std.exp() * eps).cpu().numpy()
                next_obs, rewards, terminated, truncated, infos = self.envs.step(self.to_env_action(actions))
                done = terminated | truncated
                real_next_obs = next_obs.copy()
                next_priv = infos.get("privileged_obs")
                real_next_priv = None if next_priv is None else next_priv.copy()
                if done.any():
                    real_next_obs[done] = infos["final_obs"][done]
                    if real_next_priv is not None:
                        real_next_priv[done] = infos["final_privileged_obs"][done]
                self.buffer.add(
                    obs, actions, rewards, real_next_obs, terminated.astype(np.float32),
                    priv if self.privileged_dim else None,
                    real_next_priv if self.privileged_dim else None,
                )
                self.obs_norm.update(obs)
                if self.critic_norm is not None and priv is not None:
                    self.critic_norm.update(priv)

                ep_return += rewards
                ep_length += 1
                for name, values in infos.get("reward_terms", {}).items():
                    ep_terms.setdefault(name, np.zeros(n))[:] += values
                for i in np.flatnonzero(done):
                    if self.noise is not None:
                        self.noise.reset(int(i))
                    self.episodes += 1
                    recent_returns = [*recent_returns[-19:], float(ep_return[i])]
                    self._scalar("episode/return", ep_return[i])
                    self._scalar("episode/length", ep_length[i])
                    for name, sums in ep_terms.items():
                        self._scalar(f"episode/reward_terms/{name}", sums[i])
                        sums[i] = 0.0
                    ep_return[i], ep_length[i] = 0.0, 0
                obs, priv = next_obs, next_priv
                self.step += n
                bar.update(n)

                # Gate on the buffer, not only the step count: a run resumed without its
                # saved replay buffer refills it with the current policy before updating,
                # instead of fitting the critics to a handful of fresh transitions.
                if self.step >= cfg.learning_starts and len(self.buffer) >= min(cfg.learning_starts, self.buffer.capacity):
                    pending_updates += n * cfg.updates_per_step
                    while pending_updates >= 1.0:
                        last_metrics = self._update()
                        pending_updates -= 1.0

                if self.step >= next_log:
                    next_log = self._next_multiple(cfg.log_interval)
                    sps = (self.step - start_step) / max(time.perf_counter() - started, 1e-9)
                    self._scalar("time/steps_per_second", sps)
                    for name, value in last_metrics.items():
                        self._scalar(name, value)
                    bar.set_postfix(
                        ret=f"{np.mean(recent_returns):.1f}" if recent_returns else "-",
                        alpha=f"{self.sac.alpha:.3f}", refresh=False,
                    )
                if self.step >= next_eval:
                    next_eval = self._next_multiple(cfg.eval_interval)
                    self._evaluate()
                if self.step >= next_ckpt:
                    next_ckpt = self._next_multiple(cfg.checkpoint_interval)
                    self.save()
        finally:
            bar.close()

    def _next_multiple(self, interval: int) -> int:
        return (self.step // interval + 1) * interval

    def _scalar(self, name: str, value: float) -> None:
        self._writer.add_scalar(name, float(value), self.step)

    def _update(self) -> dict[str, float]:
        batch = self.buffer.sample(self.config.sac.batch_size, self.rng, self.device)
        if self.config.normalize_obs:
            batch["obs"] = self.obs_norm.normalize_torch(batch["obs"])
            batch["next_obs"] = self.obs_norm.normalize_torch(batch["next_obs"])
        if self.privileged_dim:
            norm = self.critic_norm if self.config.normalize_obs else None
            batch["critic_obs"] = norm.normalize_torch(batch["privileged"]) if norm else batch["privileged"]
            batch["next_critic_obs"] = (
                norm.normalize_torch(batch["next_privileged"]) if norm else batch["next_privileged"]
            )
        return self.sac.update(batch)

    def _evaluate(self) -> dict[str, Any]:
        cfg = self.config
        assert cfg.env is not None
        episodes = cfg.eval_episodes
        if judge.has_judge(cfg.env):
            # eval_episodes spread over the judge's cases (at least one each): the periodic
            # check stays cheap, the full judge is `sim2real eval`.
            episodes = max(1, math.ceil(cfg.eval_episodes / len(judge.default_cases(cfg.env))))
        result = evaluate(
            self.deterministic_policy, cfg.env, episodes, seed=10_000 + cfg.seed,
            domain_randomization=cfg.domain_randomization, env_config=cfg.env_config,
        )
        record = {"step": self.step, "updates": self.sac.updates, "time": time.time(),
                  **result.as_dict()}
        key = selection_key(record)
        record["best"] = self.best_key is None or key > self.best_key
        if record["best"]:
            self.best_key = key
            if cfg.keep_best:
                self.save(self.run_dir / BEST, replay=False)
        with open(self.run_dir / METRICS, "a") as f:
            f.write(json.dumps(record) + "\n")
        self.plot_learning_curve()  # a long run's curve is worth a look before it ends
        self._scalar("eval/return_mean", result.mean_return)
        for name, value in result.reward_terms.items():
            self._scalar(f"eval/reward_terms/{name}", value)
        task_text = ""
        if result.task is not None:
            for name, value in result.task.summary().items():
                self._scalar(f"eval/task/{name}", value)
            for name, value in result.task.row_scalars().items():
                self._scalar(f"eval/task/{name}", value)
            task_text = f"; {result.task.short_text()}"
        self._last_eval = record
        best_text = ""
        if record["best"] and cfg.keep_best:
            best_text = f"; best so far ({selection_text(key, result.task is not None)}): saved {BEST}"
        tqdm.write(
            f"step {self.step}: eval return {result.mean_return:.2f} +- {result.std_return:.2f} "
            f"over {len(result.returns)} episodes, alpha {self.sac.alpha:.4f}{task_text}{best_text}"
        )
        return record

    # --- checkpoints -------------------------------------------------------------------
    def save(self, path: Path | None = None, replay: bool = True) -> None:
        """The whole training state to ``path`` (default: the run's checkpoint), and the
        replay buffer too when the config saves it and ``replay``."""
        tensors: dict[str, torch.Tensor] = {}
        for name, module in self.sac.modules().items():
            tensors.update({f"{name}.{k}": v for k, v in module.state_dict().items()})
        tensors["log_alpha"] = self.sac.log_alpha.detach()
        optimizers = {}
        for name, optimizer in self.sac.optimizers().items():
            opt_tensors, opt_meta = flatten_optimizer(name, optimizer.state_dict())
            tensors.update(opt_tensors)
            optimizers[name] = opt_meta
        tensors["torch_rng"] = torch.get_rng_state()
        norms = {"obs": self.obs_norm}
        if self.critic_norm is not None:
            norms["critic"] = self.critic_norm
        for name, norm in norms.items():
            tensors.update({f"norm.{name}.{k}": torch.as_tensor(v) for k, v in norm.state().items()})
        if self.config.save_replay and replay:
            self.buffer.save(self.run_dir / REPLAY)
        save_checkpoint(
            path or self.run_dir / CHECKPOINT,
            tensors,
            {
                "step": self.step,
                "episodes": self.episodes,
                "updates": self.sac.updates,
                "env_id": self.config.env,
                "obs_dim": self.obs_dim,
                "act_dim": self.act_dim,
                "privileged_dim": self.privileged_dim,
                "action_low": self.action_low.tolist(),
                "action_high": self.action_high.tolist(),
                "numpy_rng": self.rng.bit_generator.state,
                "optimizers": optimizers,
                "config": config_to_dict(self.config),
                "replay_saved": self.config.save_replay,
                "action_prior": self.action_prior.to_dict() if self.action_prior is not None else None,
                "best_key": list(self.best_key) if self.best_key is not None else None,
            },
        )

    def load(self, path: Path) -> None:
        tensors, meta = load_checkpoint(path)
        for key, expected in (("obs_dim", self.obs_dim), ("act_dim", self.act_dim),
                              ("privileged_dim", self.privileged_dim)):
            if meta[key] != expected:
                raise ValueError(f"checkpoint {path}: {key} is {meta[key]}, this run's env has {expected}")
        for name, module in self.sac.modules().items():
            module.load_state_dict(with_prefix(tensors, name))
        with torch.no_grad():
            self.sac.log_alpha.copy_(tensors["log_alpha"])
        for name, optimizer in self.sac.optimizers().items():
            optimizer.load_state_dict(unflatten_optimizer(name, tensors, meta["optimizers"][name]))
        torch.set_rng_state(tensors["torch_rng"])
        norms = {"obs": self.obs_norm, "critic": self.critic_norm}
        for name, norm in norms.items():
            if norm is not None:
                norm.load_state({k: v.numpy() for k, v in with_prefix(tensors, f"norm.{name}").items()})
        self.rng.bit_generator.state = meta["numpy_rng"]
        self.step, self.episodes, self.sac.updates = meta["step"], meta["episodes"], meta["updates"]
        # The rank to beat: best.safetensors' own (it may be of steps after this checkpoint,
        # which the resumed run trains again; it stays a policy that was evaluated).
        saved = meta.get("best_key")
        best = self.run_dir / BEST
        if best.is_file():
            try:
                saved = load_checkpoint(best)[1].get("best_key")
            except CheckpointError as err:
                # Not worth losing the run over. The policy it held is gone, so its rank
                # is no bar: the next evaluation writes a whole file again.
                tqdm.write(f"warning: {err}; {BEST} will be rewritten at the next evaluation", file=sys.stderr)
                saved = None
        self.best_key = tuple(saved) if saved else None
        if meta.get("replay_saved"):
            self._resume_replay()
        else:
            self.resume_notes.append(
                f"resume: the run saved no replay buffer (--save-replay was off): the next "
                f"{self.config.learning_starts} steps refill it (--learning-starts) before updates go on")

    def _resume_replay(self) -> None:
        """The saved replay buffer back, or, when it is missing or unreadable, an empty one
        and a warning that says what the refill costs (the damaged file is kept aside, not
        overwritten by the next save)."""
        path = self.run_dir / REPLAY
        refill = (f"resuming with an empty buffer: the next {self.config.learning_starts} steps refill it "
                  "(--learning-starts) before updates go on")
        if not path.is_file():
            tqdm.write(f"warning: {path} is missing; {refill}", file=sys.stderr)
            return
        try:
            buffer = ReplayBuffer.load(path)
            dims = (buffer.obs_dim, buffer.act_dim, buffer.privileged_dim)
            expected = (self.obs_dim, self.act_dim, self.privileged_dim)
            if dims != expected:
                raise ReplayFileError(f"replay file {path} holds (obs, action, privileged) sizes {dims}, "
                                      f"this run's env has {expected}")
        except ReplayFileError as err:
            aside = path.with_name(f"{REPLAY}.unreadable")
            os.replace(path, aside)
            tqdm.write(f"warning: {err}; kept as {aside.name}; {refill}", file=sys.stderr)
            return
        self.buffer = buffer

    # --- learning curve ------------------------------------------------------------------
    def plot_learning_curve(self) -> Path | None:
        return plot_learning_curve(self.run_dir)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self.envs.close()


def env_action_prior(config: TrainConfig, obs_dim: int, act_dim: int) -> ActionPrior:
    """The ``action_prior`` of the env ``config`` trains on (one local instance, closed)."""
    from sim2real.robots import registry

    assert config.env is not None
    env = registry.make(config.env, **env_kwargs(config.env, config.domain_randomization, config.env_config))
    try:
        prior = getattr(env.unwrapped, "action_prior", None)
    finally:
        env.close()
    if prior is None:
        hint = {
            "sim2real/QuadrupedJoystick-v0": " (it needs gait.frequency_hz > 0, its default 4)",
            "sim2real/HandCubeRotate-v0": " (it needs a gait clock: --env-config gait_frequency_hz=0.5)",
        }.get(config.env, "")
        raise ValueError(f"TrainConfig.action_prior: {config.env} suggests no action with this config{hint}")
    if len(prior.swing_0) != act_dim or max(prior.passthrough) >= obs_dim:
        raise ValueError(
            f"TrainConfig.action_prior: the env's prior is for {len(prior.swing_0)} actions and observation "
            f"index {max(prior.passthrough)}, the env has {act_dim} actions and {obs_dim} observations"
        )
    return prior


def plot_learning_curve(run_dir: Path) -> Path | None:
    """Evaluation return (mean and std band) against steps, from metrics.jsonl, as PNG;
    for a task with a judge also the tracking errors and the fall rate (what the policy
    does, which return alone does not tell)."""
    path = run_dir / METRICS
    if not path.is_file():
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if not records:
        return None
    steps = np.array([r["step"] for r in records])
    mean = np.array([r["return_mean"] for r in records])
    std = np.array([r["return_std"] for r in records])
    task = [r.get("task") for r in records]

    def num(value: Any) -> float:  # metrics.jsonl writes "nothing to judge" as null
        return np.nan if value is None else float(value)

    judged = all(t is not None for t in task)
    config = json.loads((run_dir / CONFIG).read_text()) if (run_dir / CONFIG).is_file() else {}
    turning = judged and "directions" in task[-1]
    panels = 1
    if judged:
        panels = 3 if not turning or "drop_rate" in task[-1] else 2
    if panels > 1:
        fig, axes = plt.subplots(1, panels, figsize=(5.4 * panels, 4), gridspec_kw={"wspace": 0.55})
    else:
        fig, ax0 = plt.subplots(figsize=(7, 4))
        axes = [ax0]
    ax = axes[0]
    ax.plot(steps, mean, marker="o")
    ax.fill_between(steps, mean - std, mean + std, alpha=0.25)
    ax.set_xlabel("environment steps")
    ax.set_ylabel("evaluation return (deterministic policy)")
    ax.grid(alpha=0.3)
    if judged and turning:
        _plot_turning(axes[1:], steps, task, num)
    elif judged:
        _plot_tracking(axes[1:], steps, task, num)
    fig.suptitle(f"SAC on {config.get('env', '?')} (seed {config.get('seed', '?')})")
    from matplotlib.ticker import FuncFormatter

    for axis in axes:  # 25k, not 25000: long runs' tick labels would run together
        axis.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x / 1000:g}k" if x else "0"))
    if panels > 1:
        fig.subplots_adjust(left=0.05 * 3 / panels, right=0.97, bottom=0.13, top=0.88)
    else:
        fig.tight_layout()
    out = run_dir / CURVE
    # Redrawn after every evaluation of a long run: write aside and rename, so an image
    # viewer watching the file never reads half a PNG.
    tmp = out.with_name(f".{out.name}.partial")
    fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
    os.replace(tmp, out)
    return out


def _plot_tracking(axes: Any, steps: np.ndarray, task: list[dict[str, Any]],
                   num: Callable[[Any], float]) -> None:
    """Quadruped: tracking errors per command, and the fall rate."""
    ax = axes[0]
    walking = [num(t["walking_planar_error"]) for t in task]
    ax.plot(steps, walking, marker="o", color="k", label="walking commands (mean)")
    for i, row in enumerate(task[-1]["commands"]):
        values = [num(t["commands"][i]["planar_error"]) if i < len(t["commands"]) else np.nan for t in task]
        ax.plot(steps, values, lw=0.8, alpha=0.6, label=row["command"])
    turn = [num(t["turn_yaw_error"]) for t in task]
    ax.plot(steps, turn, marker="s", ls="--", color="tab:red", label="yaw-rate error, turn (rad/s)")
    ax.axhline(judge.TARGET_WALKING_PLANAR_ERROR, color="k", ls=":", lw=1, label="target, walking (m/s)")
    ax.axhline(judge.TARGET_TURN_YAW_ERROR, color="tab:red", ls=":", lw=1, label="target, turn (rad/s)")
    ax.set_xlabel("environment steps")
    ax.set_ylabel("tracking error (m/s; rad/s for the yaw-rate line)")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.grid(alpha=0.3)
    _plot_failures(axes[1], steps, [100 * t["fall_rate"] for t in task],
                   100 * judge.TARGET_FALL_RATE, "falls (% of judged episodes)")


def _plot_turning(axes: Any, steps: np.ndarray, task: list[dict[str, Any]],
                  num: Callable[[Any], float]) -> None:
    """Hand: turn rate per direction (and drops of the free cube)."""
    ax = axes[0]
    for i, row in enumerate(task[-1]["directions"]):
        values = [num(t["directions"][i]["turn_rate"]) if i < len(t["directions"]) else np.nan for t in task]
        ax.plot(steps, values, marker="o", label=row["direction"])
    cube = "drop_rate" in task[-1]
    target = hand_judge.TARGET_CUBE_TURN_RATE if cube else hand_judge.TARGET_VALVE_TURN_RATE
    ax.axhline(target, color="k", ls=":", lw=1, label="target")
    ax.axhline(0.0, color="k", lw=0.5)
    ax.set_xlabel("environment steps")
    ax.set_ylabel("turn rate in the commanded direction (rad/s)")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    if cube:
        _plot_failures(axes[1], steps, [100 * num(t["drop_rate"]) for t in task],
                       100 * hand_judge.TARGET_CUBE_DROP_RATE, "drops (% of judged episodes)")


def _plot_failures(ax: Any, steps: np.ndarray, percent: list[float], target: float, label: str) -> None:
    ax.plot(steps, percent, marker="o", color="tab:red")
    ax.axhline(target, color="k", ls=":", lw=1, label="target")
    ax.set_xlabel("environment steps")
    ax.set_ylabel(label)
    ax.set_ylim(-2, 102)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)


def run_training(config: TrainConfig, given: set[str] | None = None) -> dict[str, Any]:
    """Start or resume a run; returns the final evaluation record. ``given``: the fields
    the command line set (resume_config), where one is known."""
    trainer = prepare_trainer(config, given)
    previous = _stop_on_signals(trainer)
    try:
        return {**trainer.train(), "run_dir": str(trainer.run_dir)}
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        trainer.close()


def prepare_trainer(config: TrainConfig, given: set[str] | None = None) -> Trainer:
    """The Trainer of a new run, or of a resumed one (``config.resume``) with its checkpoint
    loaded: what run_training trains, apart so a test can inspect the restored state.
    The caller closes it. ``given`` (the fields a command line set): on --resume, those
    that may change are applied and said, the others refused (config.resume_config);
    without it, only a --total-steps other than the default is taken."""
    resume = config.resume
    if resume is not None:
        run_dir = Path(resume)
        saved = dataclasses.replace(load_run_config(run_dir), out=run_dir)  # RunDirError naming the problem
        if given is None:
            given = {"total_steps"} if config.total_steps != TrainConfig.total_steps else set()
        resumed, applied = resume_config(saved, config, given)
        for line in applied:
            tqdm.write(f"resume: {line}")
        config = dataclasses.replace(resumed, resume=None)
    assert config.env is not None
    if resume is None:
        # A new run never lands on an old one: a fresh folder by default, and a folder that
        # holds a run is refused (or cleared with --overwrite) before anything is written.
        out = Path(config.out) if config.out is not None else default_run_dir(config.env)
        claim_run_dir(out, config.overwrite)
        config = dataclasses.replace(config, out=out, overwrite=False)
    # The run records which revision of the env's defaults its overrides apply to, so it
    # keeps its task (and its exported policy its observation layout) when they change.
    config = dataclasses.replace(config, env_config=pin_revision(config.env, config.env_config))
    # Before any worker process starts: an unknown id or a non-Box env is one clear error.
    check_env(config.env, env_kwargs(config.env, config.domain_randomization, config.env_config))
    trainer = Trainer(config)
    if resume is not None:
        try:
            trainer.load(Path(resume) / CHECKPOINT)
        except BaseException:
            trainer.close()
            raise
        if "total_steps" in (given or ()) and config.total_steps <= trainer.step:
            trainer.close()
            raise RunDirError(f"--resume {resume}: the run is at step {trainer.step} already; --total-steps "
                              f"{config.total_steps} would train nothing (give more steps)")
        for note in trainer.resume_notes:
            tqdm.write(note, file=sys.stderr)
        # Evaluations after the checkpoint are of steps the resumed run trains again: keep
        # one record per step in metrics.jsonl and the learning curve.
        trim_metrics(Path(resume) / METRICS, trainer.step)
    return trainer


def _stop_on_signals(trainer: Trainer) -> dict[int, Any]:
    """First Ctrl-C or SIGTERM: finish the current step, checkpoint, exit cleanly (resume
    with --resume). A second Ctrl-C interrupts at once (the last periodic checkpoint stays
    valid: checkpoints are written atomically)."""
    if threading.current_thread() is not threading.main_thread():
        return {}

    def request_stop(signum: int, frame: Any) -> None:
        if trainer.stop_requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        trainer.stop_requested = True
        print(f"\n{signal.Signals(signum).name}: stopping after this step and saving a checkpoint "
              "(Ctrl-C again to abort without it)", flush=True)

    return {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
