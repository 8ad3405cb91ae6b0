"""The generalist as a policy: prompted with one expert episode, it acts greedily.

    context = [the demonstration's tokens | this episode's timesteps so far | obs_t, '|']
              (the last ones that fit in model.block_size, cut at a timestep's start)
    logits of the next token --keep only the task's action tokens [T, T + n_actions)--> argmax
    --> a_t --env.step--> obs_{t+1} --> ...

The episodes of one evaluation run side by side, one row each: every task has a fixed number
of tokens per timestep, so their contexts are equally long and one forward serves them all.
Env seeds are fixed (``EVAL_SEED + i``): the returns are a pure function of the weights.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from axon.agents.gato.envs import SPECS, Episode
from axon.agents.gato.tokens import Vocab, episode_tokens, timestep_tokens

EVAL_SEED = 7_000_000


def context_tail(stream: np.ndarray, block_size: int, tokens_per_step: int, head: int) -> np.ndarray:
    """The last tokens of ``stream`` (whole timesteps, then ``head`` tokens of the current one) that
    fit in ``block_size``, starting at a timestep's start as the training windows do."""
    whole = (block_size - head) // tokens_per_step
    return stream[max(0, len(stream) - head - whole * tokens_per_step):]


@torch.no_grad()
def rollout(model, vocab: Vocab, name: str, demo: Episode, episodes: int, block_size: int,
            frames_of_first: int = 0, seed: int = EVAL_SEED) -> tuple[list[float], list[np.ndarray], list[int]]:
    """Run ``episodes`` episodes of task ``name`` with the model, prompted with ``demo``.
    Returns (returns, frames of the first episode (at most ``frames_of_first``), its actions)."""
    spec = SPECS[name]
    tps, head = spec.tokens_per_step, spec.obs_dim + 1
    envs = [spec.make(render_mode="rgb_array" if (i == 0 and frames_of_first) else None) for i in range(episodes)]
    obs = [env.reset(seed=seed + i)[0] for i, env in enumerate(envs)]
    prompt, _ = episode_tokens(vocab, demo.obs, demo.actions, spec.continuous_obs)
    streams = [prompt.copy() for _ in envs]
    returns, done = [0.0] * episodes, [False] * episodes
    frames, first_actions = [], []
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        for _ in range(spec.max_steps):
            if frames_of_first and not done[0] and len(frames) < frames_of_first:
                frames.append(np.asarray(envs[0].render()))
            rows = []
            for i in range(episodes):
                step, _ = timestep_tokens(vocab, np.asarray(obs[i])[None], np.zeros((1, 1), dtype=np.int64),
                                          spec.continuous_obs)
                streams[i] = np.concatenate([streams[i], step[0, :head]])
                rows.append(context_tail(streams[i], block_size, tps, head))
            x = torch.from_numpy(np.stack(rows)).to(device)
            logits = model(x, last_only=True)[:, -1, vocab.offset:vocab.offset + spec.n_actions]
            actions = logits.argmax(-1).tolist()
            for i, env in enumerate(envs):
                streams[i] = np.concatenate([streams[i], [vocab.offset + actions[i]]])
                if done[i]:
                    continue
                if i == 0:
                    first_actions.append(actions[i])
                obs[i], r, term, trunc, _ = env.step(actions[i])
                returns[i] += float(r)
                done[i] = bool(term or trunc)
            if all(done):
                break
    finally:
        model.train(was_training)
        for env in envs:
            env.close()
    return returns, frames, first_actions


@torch.no_grad()
def greedy_actions(model, vocab: Vocab, name: str, episode: Episode, block_size: int,
                   prompt: Episode | None = None) -> np.ndarray:
    """The model's greedy action at each timestep of a given (expert) episode, teacher-forced on the
    episode's own observations and actions: what it would do in each state the expert visited."""
    spec = SPECS[name]
    tps, head = spec.tokens_per_step, spec.obs_dim + 1
    stream, _ = episode_tokens(vocab, episode.obs, episode.actions, spec.continuous_obs)
    before = np.zeros(0, dtype=np.int64) if prompt is None else \
        episode_tokens(vocab, prompt.obs, prompt.actions, spec.continuous_obs)[0]
    rows = [context_tail(np.concatenate([before, stream[:t * tps + head]]), block_size, tps, head)
            for t in range(len(episode.actions))]
    out, was_training = [], model.training
    device = next(model.parameters()).device
    model.eval()
    try:
        for length in sorted({len(r) for r in rows}):  # rows of one length in one forward
            idx = [i for i, r in enumerate(rows) if len(r) == length]
            logits = model(torch.from_numpy(np.stack([rows[i] for i in idx])).to(device), last_only=True)[:, -1]
            out += list(zip(idx, logits[:, vocab.offset:vocab.offset + spec.n_actions].argmax(-1).tolist()))
    finally:
        model.train(was_training)
    return np.array([a for _, a in sorted(out)], dtype=np.int64)


def write_gif(path: str | Path, frames: list[np.ndarray], ms: int = 60, width: int = 240) -> Path | None:
    """An animated GIF of the frames (scaled to ``width`` pixels), via a temporary file, then renamed."""
    if not frames:
        return None
    from PIL import Image

    from axon.atomic import temp_path

    images = []
    for f in frames:
        im = Image.fromarray(np.asarray(f, dtype=np.uint8))
        images.append(im.resize((width, max(1, round(im.height * width / im.width))), Image.NEAREST))
    path = Path(path)
    tmp = temp_path(path, ".gif")
    images[0].save(tmp, save_all=True, append_images=images[1:], duration=ms, loop=0)
    tmp.replace(path)
    return path


def write_strip(path: str | Path, frames: list[np.ndarray], count: int = 8, height: int = 120) -> Path | None:
    """``count`` frames evenly spaced over the rollout, side by side in one PNG."""
    if not frames:
        return None
    from PIL import Image

    from axon.atomic import temp_path

    picks = [frames[int(i)] for i in np.linspace(0, len(frames) - 1, min(count, len(frames)))]
    ims = [Image.fromarray(np.asarray(f, dtype=np.uint8)) for f in picks]
    ims = [im.resize((max(1, round(im.width * height / im.height)), height)) for im in ims]
    strip = Image.new("RGB", (sum(im.width for im in ims) + 4 * (len(ims) - 1), height), (255, 255, 255))
    x = 0
    for im in ims:
        strip.paste(im, (x, 0))
        x += im.width + 4
    path = Path(path)
    tmp = temp_path(path, ".png")
    strip.save(tmp, format="PNG")
    tmp.replace(path)
    return path
