"""The ``classify`` task: one label per text, from a file users bring.

Files (``data.train_file``, ``data.val_file``):

* ``.jsonl``: one JSON object per line, ``{"text": "...", "label": "..."}`` (keys
  ``data.text_field`` / ``data.label_field``; a label may be a string or an integer);
* ``.tsv``: ``text<TAB>label`` per line (the label is after the last tab, so the text may hold
  tabs; it cannot hold newlines).

Reading the files: ``axon.data.files`` (``resolve_file``, ``read_examples``); batches:
``axon.data.labelled``. Without ``data.val_file``, every 10th example of the training file (the 10th, 20th, ...) is held
out for validation. The label set is the sorted distinct labels of the training examples,
saved as ``labels.json`` in the run directory (id = position in the list). Refused, each with a
line naming the file and line: an empty line or text, a JSON line that is not an object with
both keys, a TSV line without a tab, a validation label absent from training, a file with
fewer than two labels. Texts longer than ``model.block_size`` tokens ([CLS] and [SEP] included)
are refused unless ``data.truncate=true``, which keeps their first block_size - 2 tokens (and
says how many were cut).

Tokenizer: with ``train.init_from`` (fine-tuning) the pretrained run's own ``tokenizer.json``;
otherwise ``data.tokenizer``: char, wordpiece or bpe built from the training texts with BERT's
special tokens, or a path to a tokenizer.json (``axon.data.bert_tokens``). Each text is
encoded ``[CLS] text [SEP]``.

Batches follow the classification contract of every classifier family (``axon.data.labelled``).
Scores: accuracy and the majority baseline at every evaluation; the final result and ``axon eval``
add ``macro_f1`` over the whole split (``axon.eval.classification``), the figure ``axon baseline``
prints beside accuracy.

Fine-tuning a pretrained encoder under a new head: ``axon.tasks.finetune.load_pretrained_body``
is this task's ``init_weights``.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from axon.data.bert_tokens import BERT_TOKENIZER_KINDS, BertTokens, build_bert_tokenizer
from axon.data.files import read_examples, read_splits
from axon.data.labelled import LabelledTexts, encode_examples
from axon.errors import ConfigError, DataError
from axon.tasks.base import TaskSetup, set_vocab_size
from axon.tasks.finetune import init_run_dir, load_pretrained_body

LABELS_FILE = "labels.json"


def classify_tokenizer(cfg, train_texts: list[str]):
    from axon.data.tokenizers import check_tokenizer_choice, load_tokenizer

    if cfg.train.init_from:
        file = init_run_dir(cfg.train.init_from) / "tokenizer.json"
        if not file.is_file():
            raise ConfigError(f"train.init_from: {file} not found; fine-tuning encodes text with the pretrained run's tokenizer")
        return load_tokenizer(file)
    check_tokenizer_choice(cfg.data.tokenizer, BERT_TOKENIZER_KINDS)
    return build_bert_tokenizer(cfg.data.tokenizer, train_texts, cfg.data.vocab_size)  # char, wordpiece, bpe, or a path


def _fill_model_fields(cfg, num_labels: int) -> None:
    mcfg = cfg.model  # the family's config, not a module
    if not hasattr(mcfg, "num_labels"):
        raise ConfigError(f"task: classify needs a classifier; model family {mcfg.family!r} has no num_labels "
                          "(use e.g. model.family=bert with model.head=classify)")
    if getattr(mcfg, "head", "classify") != "classify":
        raise ConfigError(f"model.head: the classify task trains a classification head; set model.head=classify (got {mcfg.head})")
    if mcfg.num_labels is None:
        mcfg.num_labels = num_labels
    elif mcfg.num_labels != num_labels:
        raise ConfigError(f"model.num_labels={mcfg.num_labels} but the training file has {num_labels} labels; "
                          "leave model.num_labels null to take them from the file")


def classify_task(cfg, device: torch.device) -> TaskSetup:
    from axon.objectives.classification import Classification

    data = cfg.data
    train_ex, train_file, val_ex, val_file = read_splits(
        data, lambda path: read_examples(path, data.text_field, data.label_field))
    labels = sorted({e.label for e in train_ex})
    if len(labels) < 2:
        raise DataError(f"{train_file}: a classifier needs at least two labels, found {labels}")
    index = {label: i for i, label in enumerate(labels)}
    for e in val_ex:
        if e.label not in index:
            shown = ", ".join(labels[:10]) + (", ..." if len(labels) > 10 else "")
            raise DataError(f"{val_file}:{e.line}: label {e.label!r} does not occur in the training file {train_file} "
                            f"(its labels: {shown})")
    _fill_model_fields(cfg, len(labels))
    tokenizer = classify_tokenizer(cfg, [e.text for e in train_ex])
    tokens = BertTokens(tokenizer)
    set_vocab_size(cfg, tokenizer.vocab_size)
    block = cfg.model.block_size
    train_seqs, cut_train = encode_examples(train_ex, tokens, block, data.truncate, str(train_file))
    val_seqs, cut_val = encode_examples(val_ex, tokens, block, data.truncate, str(val_file))
    if cut_train or cut_val:
        print(f"classify: cut {cut_train} of {len(train_ex)} training and {cut_val} of {len(val_ex)} validation texts "
              f"to block_size={block} tokens (data.truncate)", file=sys.stderr)
    train = LabelledTexts(train_seqs, [index[e.label] for e in train_ex], tokens.pad_id)
    val = LabelledTexts(val_seqs, [index[e.label] for e in val_ex], tokens.pad_id)
    counts = Counter(train.labels.tolist())
    top = max(counts, key=lambda i: (counts[i], -i))  # the training set's most frequent label (ties: the first)
    majority = {split: float(np.mean(ds.labels == top)) for split, ds in (("train", train), ("val", val))}

    def summarize(loss: float, split: str) -> dict:
        return {"majority_baseline": majority[split]}  # accuracy of always answering the training majority label

    def scores(model, split: str) -> dict:
        """Macro F1 of the model's predictions over the whole split (axon.eval.classification)."""
        from axon.eval.classification import macro_f1, predict_labels

        data = {"train": train, "val": val}[split]
        gold, pred = predict_labels(model, data.iter_eval_batches(cfg.train.batch_size, block))
        return {"macro_f1": macro_f1(gold, pred, len(labels))}

    def write_labels(path: Path) -> None:
        path.write_text(json.dumps({"labels": labels, "train_file": str(data.train_file),
                                    "val_file": data.val_file}, indent=1, ensure_ascii=False) + "\n")

    return TaskSetup(train_data=train, val_data=val, objective=Classification(), tokenizer=tokenizer,
                     summarize=summarize, extra_files={LABELS_FILE: write_labels}, model_metrics=scores,
                     init_weights=load_pretrained_body)
