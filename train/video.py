"""Render a policy so a person can look at what it does: a captioned video of the judged
commands, or a strip of frames as one PNG (for docs).

Rendering is offscreen (MuJoCo's renderer). On a headless Linux machine without
MUJOCO_GL set this module selects EGL (Mesa renders on the CPU when there is no GPU).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sim2real.train import judge
from sim2real.train.judge import Policy, joystick_caption  # noqa: F401  (re-exported)


def use_offscreen_gl() -> None:
    """Pick EGL when nothing is chosen and there is no display (must run before mujoco
    creates a GL context)."""
    if "MUJOCO_GL" not in os.environ and not os.environ.get("DISPLAY"):
        os.environ["MUJOCO_GL"] = "egl"


def caption(frame: np.ndarray, lines: Sequence[str]) -> np.ndarray:
    """The frame with text in its top-left corner, on a dark band so it reads on any floor."""
    from PIL import Image, ImageDraw

    image = Image.fromarray(frame)
    draw = ImageDraw.Draw(image)
    height = 14 * len(lines) + 8
    draw.rectangle((0, 0, image.width, height), fill=(20, 20, 20))
    for i, line in enumerate(lines):
        draw.text((6, 4 + 14 * i), line, fill=(255, 255, 255))
    return np.asarray(image)


def policy_frames(
    policy: Policy,
    env_id: str,
    seed: int,
    domain_randomization: bool,
    env_config: Sequence[str],
    commands: Sequence[Any] | None,
    seconds: float,
    width: int = 640,
    height: int = 480,
    progress: bool = True,
) -> tuple[list[np.ndarray], int]:
    """Frames of the policy (captioned), and the frame rate. A task with a judge: one
    episode per case (joystick command, turn direction), ``seconds`` each, captioned with
    what the judge measures; other envs: the first ``seconds`` of episodes. ``progress``:
    a bar on stderr with the frames rendered, their rate and the time left (software
    rendering takes minutes)."""
    from tqdm import tqdm

    use_offscreen_gl()
    frames: list[np.ndarray] = []
    if judge.has_judge(env_id):
        env = judge.make_env(env_id, domain_randomization, env_config, render_mode="rgb_array")
        env.set_render_size(height, width)
        fps = int(env.metadata.get("render_fps", round(1.0 / env.control_dt)))
        steps = max(1, round(seconds / env.control_dt))
        cases = list(commands or judge.default_cases(env_id))
        bar = tqdm(total=len(cases) * (steps + 1), unit="frame", desc="render", disable=not progress, leave=False)

        def sink(frame: np.ndarray, lines: list[str]) -> None:
            frames.append(caption(frame, lines))
            bar.update(1)

        try:
            for case in cases:
                judge.run_case_episode(env_id, env, policy, case, seed, frame_sink=sink,
                                       max_steps=steps)
        finally:
            bar.close()
            env.close()
        return frames, fps
    return _plain_env_frames(policy, env_id, seed, domain_randomization, env_config, seconds,
                             width, height, progress)


def _plain_env_frames(
    policy: Policy, env_id: str, seed: int, domain_randomization: bool,
    env_config: Sequence[str], seconds: float, width: int, height: int, progress: bool = True,
) -> tuple[list[np.ndarray], int]:
    from tqdm import tqdm

    from sim2real.robots import registry
    from sim2real.train.evaluate import env_kwargs

    kwargs: dict[str, Any] = env_kwargs(env_id, domain_randomization, env_config)
    if env_id in registry.ENVS:
        env = registry.make(env_id, render_mode="rgb_array", **kwargs)
        env.unwrapped.set_render_size(height, width)
    else:
        try:
            env = registry.make(env_id, render_mode="rgb_array", width=width, height=height)
        except TypeError:  # an env that renders at its own size only (classic control)
            env = registry.make(env_id, render_mode="rgb_array")
    try:
        fps = int(env.metadata.get("render_fps", 50))
        low, high = env.action_space.low, env.action_space.high
        obs, _ = env.reset(seed=seed)
        frames = [np.asarray(env.render())]
        episode_return = 0.0
        total = max(1, round(seconds * fps))
        bar = tqdm(total=total + 1, initial=1, unit="frame", desc="render", disable=not progress, leave=False)
        for t in range(total):
            action = np.clip(policy(obs[None].astype(np.float32))[0], -1.0, 1.0)
            obs, reward, terminated, truncated, _ = env.step(low + (action + 1.0) * 0.5 * (high - low))
            episode_return += float(reward)
            frames.append(caption(np.asarray(env.render()),
                                  [f"t={(t + 1) / fps:4.1f} s  return so far {episode_return:.2f}"]))
            bar.update(1)
            if terminated or truncated:
                episode_return = 0.0
                obs, _ = env.reset()
        bar.close()
        return frames, fps
    finally:
        env.close()


def write_video(frames: Sequence[np.ndarray], fps: int, out: Path) -> Path:
    """Frames to an .mp4 (H.264) or .gif, written aside and renamed (an interrupted
    render never leaves a truncated file)."""
    import imageio.v2 as imageio

    out = Path(out)
    if out.suffix.lower() not in (".mp4", ".gif"):
        raise ValueError(f"video must end in .mp4 or .gif, got {str(out)!r}")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.partial{out.suffix}")
    kwargs: dict[str, Any] = {"fps": fps}
    if out.suffix.lower() == ".mp4":
        kwargs.update(codec="libx264", macro_block_size=8, quality=7)
    try:
        with imageio.get_writer(tmp, **kwargs) as writer:
            for frame in frames:
                writer.append_data(frame)
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def write_frame_strip(frames: Sequence[np.ndarray], out: Path, count: int = 8, columns: int = 4) -> Path:
    """``count`` frames evenly spaced over ``frames``, tiled ``columns`` wide, as one PNG."""
    from PIL import Image

    if not frames:
        raise ValueError("no frames to make a strip of")
    count = max(1, min(count, len(frames)))
    picks = [frames[i] for i in np.linspace(0, len(frames) - 1, count).round().astype(int)]
    columns = max(1, min(columns, count))
    rows = -(-count // columns)
    h, w = picks[0].shape[:2]
    canvas = np.full((rows * h, columns * w, 3), 255, dtype=np.uint8)
    for i, frame in enumerate(picks):
        r, c = divmod(i, columns)
        canvas[r * h:(r + 1) * h, c * w:(c + 1) * w] = frame[..., :3]
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.partial")
    try:
        Image.fromarray(canvas).save(tmp, format="PNG")
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def render_policy_video(
    policy: Policy,
    env_id: str,
    out: Path,
    seed: int = 0,
    domain_randomization: bool = True,
    env_config: Sequence[str] = (),
    commands: Sequence[Any] | None = None,
    seconds: float = 6.0,
    width: int = 640,
    height: int = 480,
) -> Path:
    frames, fps = policy_frames(policy, env_id, seed, domain_randomization, env_config,
                                commands, seconds, width, height)
    return write_video(frames, fps, out)
