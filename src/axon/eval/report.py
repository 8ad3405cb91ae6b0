"""One-line summaries of results, as the commands print them.

``axon eval`` prints :func:`metrics_line` of :func:`axon.train.run.evaluate_run`'s metrics; ``axon
train`` and ``axon finetune`` print :func:`train_line` / :func:`finetune_line` of the summary
``axon.train.train`` returns. Which parts appear depends on the metrics the run's task produced
(bits per character for text, accuracy for classifiers and masked-LM, BLEU for seq2seq, ...).
"""

from __future__ import annotations


def metrics_line(metrics: dict) -> str:
    """``"val: loss 1.2345 | perplexity 3.4361 | ... | tokens 111540"``: floats to 4 decimals."""
    return f"{metrics['split']}: " + " | ".join(
        f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items() if k != "split")


def _run_parts(result: dict) -> list[str]:
    return [f"run: {result['run_dir']}", f"steps {result['step']}", f"{result['elapsed']:.1f} s"]


def train_line(result: dict) -> str:
    """``"run: runs/x | steps 2000 | 61.3 s | val loss 1.4725 | 2.124 bits/char"`` and the parts
    the run has: active parameters of a mixture of experts, LoRA's trainable parameters,
    accuracy (classifiers, masked-LM), BLEU, chrF and exact match (seq2seq)."""
    parts = _run_parts(result)
    if result.get("active_params", result["params"]) < result["params"]:  # a mixture of experts
        parts.append(f"params {result['params']:,} ({result['active_params']:,} active per token)")
    if "trainable_params" in result:  # LoRA
        parts.append(f"trainable {result['trainable_params']:,} of {result['params']:,} params")
    if result.get("val_loss") is not None:
        parts.append(f"val loss {result['val_loss']:.4f}")
    if "val_bits_per_char" in result:
        parts.append(f"{result['val_bits_per_char']:.3f} bits/char")
    if "val_accuracy" in result:  # classifiers (and masked-LM: the share of blanks filled right)
        parts.append(f"val accuracy {result['val_accuracy']:.4f}")
    if "val_bleu" in result:  # seq2seq: greedy translations of the validation set
        parts.append(f"BLEU {result['val_bleu']:.2f} | chrF {result['val_chrf']:.2f} | exact match {result['val_exact_match']:.4f}")
    return " | ".join(parts)


def finetune_line(result: dict) -> str:
    """A fine-tuned classifier: loss, accuracy and the majority-class baseline to beat; a
    fine-tuned causal LM (sft): the loss per response token and its perplexity."""
    parts = _run_parts(result)
    if result.get("val_loss") is not None:  # None: no evaluation (an empty validation split, a stopped run)
        parts.append(f"val loss {result['val_loss']:.4f}")
    if "val_accuracy" in result:
        parts.append(f"val accuracy {result['val_accuracy']:.4f}")
    if "val_majority_baseline" in result:
        parts.append(f"majority baseline {result['val_majority_baseline']:.4f}")
    if "val_accuracy" not in result and "val_perplexity" in result:
        parts.append(f"val perplexity {result['val_perplexity']:.4f}")
    return " | ".join(parts)
