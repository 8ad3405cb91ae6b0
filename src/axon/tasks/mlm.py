"""The ``mlm`` task: BERT's masked-language-model pretraining on a token stream.

The data (text source, tokenizer, [CLS] window [SEP] batches and their masking) is
``axon.data.masking``; the task adds the objective (``MaskedLM``: cross-entropy on the masked
positions), the perplexity of the masked tokens, and samples.txt's fill-in-the-blanks.
"""

from __future__ import annotations

import math

import torch

from axon.data.bert_tokens import BertTokens
from axon.data.masking import IGNORE_INDEX, MaskedWindows, load_streams
from axon.errors import ConfigError
from axon.tasks.base import TaskSetup, set_vocab_size


def make_fill_in_sampler(val: MaskedWindows, tokens: BertTokens, block_size: int):
    """sample_fn(model, step) -> text: the first validation window with some words blanked, and
    the model's guesses for the blanks (samples.txt shows what the model has learned)."""

    @torch.no_grad()
    def sample(model, step: int) -> str:
        inputs, mask, labels = next(iter(val.iter_eval_batches(1, min(block_size, 66), 1)))
        device = next(model.parameters()).device
        predict = labels != IGNORE_INDEX
        was_training = model.training
        model.eval()
        guess = model(inputs.to(device), mask.to(device), predict=predict.to(device)).argmax(-1).cpu()
        model.train(was_training)
        shown = inputs[0].clone()
        shown[predict[0]] = tokens.mask_id
        filled = shown.clone()
        filled[predict[0]] = guess
        truth = inputs[0].clone()
        truth[predict[0]] = labels[0][predict[0]]
        body = slice(1, -1)  # without [CLS] and [SEP]
        right = int((guess == labels[0][predict[0]]).sum())
        return (f"blanked:   {tokens.decode(shown[body].tolist())!r}\n"
                f"filled in: {tokens.decode(filled[body].tolist())!r}\n"
                f"original:  {tokens.decode(truth[body].tolist())!r}\n"
                f"{right}/{int(predict.sum())} blanks right")

    return sample


def mlm_task(cfg, device: torch.device) -> TaskSetup:
    from axon.objectives.mlm import MaskedLM

    if getattr(cfg.model, "head", "mlm") != "mlm":
        raise ConfigError(f"model.head: the mlm task trains the masked-LM head; set model.head=mlm (got {cfg.model.head})")
    tokenizer, train_stream, val_stream = load_streams(cfg)
    tokens = BertTokens(tokenizer)
    set_vocab_size(cfg, tokenizer.vocab_size)
    train = MaskedWindows(train_stream, tokens, cfg.data.mask_prob)
    val = MaskedWindows(val_stream, tokens, cfg.data.mask_prob)
    for split in (train, val):  # now, not at the first step or evaluation
        split.check_windows(cfg.model.block_size)

    def summarize(loss: float, split: str) -> dict:
        return {"perplexity": math.exp(min(loss, 700.0))}  # of the masked tokens

    return TaskSetup(train_data=train, val_data=val, objective=MaskedLM(), tokenizer=tokenizer,
                     sample_fn=make_fill_in_sampler(val, tokens, cfg.model.block_size), summarize=summarize)
