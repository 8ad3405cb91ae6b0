"""The ``lm`` task: next-token prediction on a token stream (the bundled corpus or a prepared directory).

Metrics: perplexity and bits per token, character and byte (the split's characters and bytes
per token from its ``meta.json``); samples.txt: text continued from ``train.sample_prompt``.
"""

from __future__ import annotations

import torch

from axon.config import RunConfig
from axon.errors import DataError
from axon.tasks.base import TaskSetup, set_vocab_size


def lm_task(cfg, device: torch.device) -> TaskSetup:
    from axon.data.cache import resolve_data_dir, split_ratios
    from axon.data.loader import open_prepared
    from axon.objectives import CausalLM

    data_dir = resolve_data_dir(cfg.data)
    tokenizer, train, val = open_prepared(data_dir)
    for split in (train, val):  # now, not at the first step or evaluation
        split.check_windows(cfg.model.block_size)
    set_vocab_size(cfg, tokenizer.vocab_size)

    def summarize(loss: float, split: str) -> dict:  # perplexity, bits per token / char / byte
        from axon.eval import language_model_metrics

        return {k: v for k, v in language_model_metrics(loss, *split_ratios(data_dir, split)).items() if k != "loss"}

    return TaskSetup(
        train_data=train, val_data=val,
        objective=CausalLM(z_loss=cfg.train.z_loss), tokenizer=tokenizer,
        sample_fn=make_sampler(tokenizer, cfg, device), summarize=summarize,
    )


def make_sampler(tokenizer, cfg: RunConfig, device: torch.device):
    """sample_fn(model, step) -> text, for samples.txt; seeded so it never touches the global RNG."""
    from axon.generate import generate

    def sample(model, step: int) -> str:
        try:
            ids = tokenizer.encode(cfg.train.sample_prompt) or [0]
        except DataError:
            ids = [0]
        gen = torch.Generator(device=device).manual_seed(cfg.train.seed + step)
        ids = ids[-cfg.model.block_size :]
        out = generate(model, [ids], cfg.train.sample_tokens, temperature=1.0, generator=gen, vocab_limit=tokenizer.vocab_size)
        return tokenizer.decode(ids + out.tokens[0])

    return sample
