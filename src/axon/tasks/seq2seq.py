"""The ``seq2seq`` task: sentence pairs for encoder-decoder models.

The data (TSV files of ``source<TAB>target``, one tokenizer for both sides, special ids after
the tokenizer's own, length-bucketed batches) is ``axon.data.pairs``; the task adds the
objective (label-smoothed cross-entropy, ``axon.objectives.seq2seq``) and the scores.

Scores: the trainer's evaluation reports the plain cross-entropy and teacher-forced token
accuracy; each evaluation also writes the validation BLEU, chrF and exact match of greedy
translations and the first translations into samples.txt (``train.sample_tokens=0`` turns that
off), and the final result of a run and ``axon eval`` add them as ``bleu``, ``chrf`` and
``exact_match`` (``axon.eval.translation``).
"""

from __future__ import annotations

import torch

from axon.data.pairs import PairDataset, SpecialIds, build_pair_tokenizer, pair_splits
from axon.errors import ConfigError
from axon.model_configs import FAMILY_CONFIGS
from axon.tasks.base import TaskSetup, set_vocab_size


#: the families whose config declares ``encoder_decoder`` (the contract in docs/adding-a-family.md)
ENCODER_DECODERS = tuple(name for name, f in FAMILY_CONFIGS.items() if getattr(f.config, "encoder_decoder", False))


def encoder_decoder(model_cfg) -> bool:
    """Whether a run's model section is an encoder-decoder: ``forward(src, tgt_in, src_mask)`` and
    ``conditioned(src, src_mask)``, what this task, ``axon eval`` and ``axon translate`` call."""
    return getattr(model_cfg, "encoder_decoder", False)


def seq2seq_task(cfg, device: torch.device) -> TaskSetup:
    from axon.eval.translation import evaluate_translation, format_examples
    from axon.objectives.seq2seq import Seq2SeqLoss

    if not encoder_decoder(cfg.model):
        raise ConfigError(f"task seq2seq needs an encoder-decoder model (model.family={' or '.join(ENCODER_DECODERS)}), "
                          f"got {cfg.model.family!r}")
    train_pairs, val_pairs, train_name, val_name = pair_splits(cfg.data)
    tokenizer = build_pair_tokenizer(cfg.data, train_pairs, val_pairs)
    special = SpecialIds.for_tokenizer(tokenizer)
    set_vocab_size(cfg, special.vocab_size)
    block = cfg.model.block_size
    train = PairDataset(train_pairs, tokenizer, special, block, train_name)
    val = PairDataset(val_pairs, tokenizer, special, block, val_name)
    splits = {"train": train_pairs, "val": val_pairs}

    def model_metrics(model, split: str) -> dict:
        """BLEU, chrF and exact match of greedy translations of the split's sources."""
        pairs = splits[split]
        m = evaluate_translation(model, tokenizer, [p.source for p in pairs], [p.target for p in pairs])
        return {k: v for k, v in m.items() if k != "translations"}

    def sample_fn(model, step: int) -> str:
        """samples.txt: the validation metrics (greedy) and the first few translations."""
        m = evaluate_translation(model, tokenizer, [p.source for p in val_pairs], [p.target for p in val_pairs])
        head = f"val BLEU {m['bleu']:.2f} | chrF {m['chrf']:.2f} | exact match {m['exact_match']:.4f}"
        return head + "\n" + format_examples(val_pairs[:8], m["translations"][:8])

    return TaskSetup(
        train_data=train, val_data=val, objective=Seq2SeqLoss(special.pad, cfg.train.label_smoothing),
        tokenizer=tokenizer, sample_fn=sample_fn, model_metrics=model_metrics,
    )
