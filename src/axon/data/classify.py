"""The ``classify`` task: one label per text, from a file users bring.

Files (``data.train_file``, ``data.val_file``):

* ``.jsonl``: one JSON object per line, ``{"text": "...", "label": "..."}`` (keys
  ``data.text_field`` / ``data.label_field``; a label may be a string or an integer);
* ``.tsv``: ``text<TAB>label`` per line (the label is after the last tab, so the text may hold
  tabs; it cannot hold newlines).

Without ``data.val_file``, every 10th example of the training file (the 10th, 20th, ...) is held
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

Batches follow the classification contract of every classifier family: (input_ids (B, T)
int64, attention_mask (B, T) bool, True = a real token, labels (B,) int64), right-padded to
the longest text of the batch. Training batches draw ``batch_size`` examples uniformly with
replacement from a generator seeded with (seed, step, micro_step) (exact resume); the
validation set is every validation example, in file order.

Fine-tuning a pretrained encoder under a new head: ``load_pretrained_body`` (this task's
``init_weights``) copies every tensor of the ``train.init_from`` checkpoint that the classifier
has, leaves the classifier's own head (``HEAD_PREFIXES``) at its initialisation, drops the
pretraining head, and prints what it did; anything else that does not match is an error.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from axon.data.bert_tokens import BertTokens, build_bert_tokenizer, pad_batch
from axon.data.files import Example, read_examples, resolve_file
from axon.errors import CheckpointError, ConfigError, DataError
from axon.train.tasks import TaskSetup, register_task, set_vocab_size

VAL_EVERY = 10  # without data.val_file: the 10th, 20th, ... training examples are the validation set
LABELS_FILE = "labels.json"
#: Parameter-name prefixes of heads: a fine-tuning model may leave its own at their initialisation,
#: and a pretraining checkpoint's are dropped (BERT's MLM head, pooler and classifier).
HEAD_PREFIXES = ("mlm.", "pooler.", "classifier.")


class LabelledTexts:
    """Encoded examples as classification batches (module docstring)."""

    def __init__(self, seqs: list[list[int]], labels: list[int], pad_id: int):
        if not seqs:
            raise DataError("no examples")
        self.seqs, self.labels, self.pad_id = seqs, np.asarray(labels, dtype=np.int64), pad_id

    def __len__(self) -> int:
        return len(self.seqs)

    def batch(self, rows) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        ids, mask = pad_batch([self.seqs[i] for i in rows], self.pad_id)
        return ids, mask, torch.from_numpy(self.labels[np.asarray(rows)])

    def get_batch(self, step: int, batch_size: int, block_size: int, seed: int, micro_step: int = 0):
        rng = np.random.default_rng(np.random.SeedSequence([seed, step, micro_step]))
        return self.batch(rng.integers(0, len(self.seqs), size=batch_size))

    def iter_eval_batches(self, batch_size: int, block_size: int, max_batches: int | None = None):
        starts = range(0, len(self.seqs), batch_size)
        if max_batches is not None:
            starts = starts[:max_batches]
        return (self.batch(range(s, min(s + batch_size, len(self.seqs)))) for s in starts)


def encode_examples(examples: list[Example], tokens: BertTokens, block_size: int, truncate: bool,
                    source: str) -> tuple[list[list[int]], int]:
    """[CLS] text [SEP] ids of each example, and how many were cut to ``block_size``."""
    seqs, cut = [], 0
    for ex, ids in zip(examples, tokens.encode_batch([e.text for e in examples])):
        if len(ids) + 2 > block_size:
            if not truncate:
                raise DataError(f"{source}:{ex.line}: the text is {len(ids) + 2} tokens with [CLS] and [SEP], more than "
                                f"model.block_size={block_size}; shorten it, raise model.block_size, or set "
                                "data.truncate=true to keep the first tokens")
            ids, cut = ids[: block_size - 2], cut + 1
        seqs.append(tokens.wrap(ids))
    return seqs, cut


def init_run_dir(source: str | Path) -> Path:
    """The run directory of ``train.init_from`` (a run, or one of its ``step_*`` checkpoints)."""
    path = Path(source)
    return path.parent.parent if (path / "state.json").is_file() and path.parent.name == "checkpoints" else path


def classify_tokenizer(cfg, train_texts: list[str]):
    from axon.data.tokenizers import load_tokenizer

    if cfg.train.init_from:
        file = init_run_dir(cfg.train.init_from) / "tokenizer.json"
        if not file.is_file():
            raise ConfigError(f"train.init_from: {file} not found; fine-tuning encodes text with the pretrained run's tokenizer")
        return load_tokenizer(file)
    return build_bert_tokenizer(cfg.data.tokenizer, train_texts, cfg.data.vocab_size)  # char, wordpiece, bpe, or a path


def _fill_model_fields(cfg, num_labels: int) -> None:
    model = cfg.model
    if not hasattr(model, "num_labels"):
        raise ConfigError(f"task: classify needs a classifier; model family {model.family!r} has no num_labels "
                          "(use e.g. model.family=bert with model.head=classify)")
    if getattr(model, "head", "classify") != "classify":
        raise ConfigError(f"model.head: the classify task trains a classification head; set model.head=classify (got {model.head})")
    if model.num_labels is None:
        model.num_labels = num_labels
    elif model.num_labels != num_labels:
        raise ConfigError(f"model.num_labels={model.num_labels} but the training file has {num_labels} labels; "
                          "leave model.num_labels null to take them from the file")


def load_pretrained_body(model: torch.nn.Module, source: str | Path) -> dict:
    """Initialise ``model`` from the newest valid checkpoint of ``source`` (a run directory or a
    ``step_*`` directory), keeping the model's own head where the checkpoint has none (or one of
    another shape). Returns {"checkpoint", "loaded", "initialised", "dropped"} and prints it."""
    from safetensors.torch import load_file

    from axon.train.checkpoint import list_checkpoints, verify_checkpoint

    path = Path(source)
    candidates = list_checkpoints(path / "checkpoints") if (path / "checkpoints").is_dir() else [path]
    ckpt, problems = None, []
    for c in candidates:
        try:
            verify_checkpoint(c)
            ckpt = c
            break
        except CheckpointError as e:
            problems.append(str(e))
    if ckpt is None:
        why = f" ({problems[0]})" if problems else ""
        raise ConfigError(f"train.init_from: no valid checkpoint in {path}{why}")
    state = load_file(str(ckpt / "model.safetensors"))
    own = model.state_dict()
    is_head = lambda k: k.startswith(HEAD_PREFIXES)  # noqa: E731
    loaded, fresh = {}, []
    for k, t in own.items():
        if k in state and state[k].shape == t.shape:
            loaded[k] = state[k]
        elif is_head(k):
            fresh.append(k)
        elif k in state:
            raise CheckpointError(f"{ckpt}: {k} has shape {tuple(state[k].shape)}, the model needs {tuple(t.shape)}; "
                                  "fine-tuning keeps the pretrained architecture")
        else:
            raise CheckpointError(f"{ckpt}: no tensor {k}; is it a run of this architecture?")
    dropped = sorted(k for k in state if k not in loaded)
    stray = [k for k in dropped if not is_head(k)]
    if stray:
        raise CheckpointError(f"{ckpt}: tensor {stray[0]} has no place in this model; is it a run of this architecture?")
    model.load_state_dict({**own, **loaded})
    report = {"checkpoint": str(ckpt), "loaded": len(loaded), "initialised": fresh, "dropped": dropped}
    groups = lambda names: ", ".join(sorted({n.split(".")[0] for n in names})) or "none"  # noqa: E731
    print(f"init_from {ckpt}: loaded {len(loaded)} tensors; new (initialised here): {groups(fresh)}; "
          f"dropped from the checkpoint: {groups(dropped)}", file=sys.stderr)
    return report


@register_task("classify")
def classify_task(cfg, device: torch.device) -> TaskSetup:
    from axon.objectives.classification import Classification

    data = cfg.data
    train_file = resolve_file(data.train_file, "data.train_file", data)
    train_ex = read_examples(train_file, data.text_field, data.label_field)
    if data.val_file is not None:
        val_file = resolve_file(data.val_file, "data.val_file", data)
        val_ex = read_examples(val_file, data.text_field, data.label_field)
    else:
        val_file = train_file
        val_ex = [e for i, e in enumerate(train_ex, 1) if i % VAL_EVERY == 0]
        train_ex = [e for i, e in enumerate(train_ex, 1) if i % VAL_EVERY != 0]
        if not val_ex:
            raise DataError(f"{train_file}: fewer than {VAL_EVERY} examples; give data.val_file for validation")
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

    def write_labels(path: Path) -> None:
        path.write_text(json.dumps({"labels": labels, "train_file": str(data.train_file),
                                    "val_file": data.val_file}, indent=1, ensure_ascii=False) + "\n")

    return TaskSetup(train_data=train, val_data=val, objective=Classification(), tokenizer=tokenizer,
                     summarize=summarize, extra_files={LABELS_FILE: write_labels},
                     init_weights=load_pretrained_body)


#: Model fields a fine-tuning run may set; the rest of the architecture is the pretrained run's.
FINETUNE_FIELDS = ("head", "num_labels", "pooling", "dropout", "attn_impl")


def finetune_config(pretrained: str | Path, recipe: str | Path | None = None, overrides: list[str] | None = None):
    """The config of ``axon finetune PRETRAINED_RUN``: the pretrained run's model with a
    classification head (``model.head=classify``), its tokenizer, ``task: classify`` and
    ``train.init_from`` = the run; the recipe and ``--section.key=value`` overrides give the rest
    (data files, optim, schedule, train). From the recipe's model section only
    ``FINETUNE_FIELDS`` are read (a recipe also used from scratch names an architecture that
    must not replace the pretrained one); a command-line model override of another field that
    differs from the pretrained value is an error."""
    from axon.config import build_config, load_yaml, merge, parse_overrides

    run = Path(pretrained)
    if not (run / "config.yaml").is_file():
        raise ConfigError(f"{run} is not a run directory (no config.yaml)")
    if not (run / "tokenizer.json").is_file():
        raise ConfigError(f"{run} has no tokenizer.json; fine-tuning encodes text with the pretrained run's tokenizer")
    pre = load_yaml(run / "config.yaml").get("model") or {}
    data = load_yaml(recipe) if recipe else {}
    over = parse_overrides(overrides or [])
    model = {**pre, "head": "classify", "num_labels": None}
    model.update({k: v for k, v in (data.get("model") or {}).items() if k in FINETUNE_FIELDS})
    for k, v in (over.pop("model", None) or {}).items():
        if k not in FINETUNE_FIELDS and v != model.get(k):
            raise ConfigError(f"--model.{k}: fine-tuning keeps the pretrained run's architecture ({k}={model.get(k)!r}); "
                              f"the model fields it can set are {', '.join(FINETUNE_FIELDS)}")
        model[k] = v
    for key in ("train.init_from", "data.tokenizer"):
        section, name = key.split(".")
        if name in (over.get(section) or {}):
            raise ConfigError(f"--{key}: axon finetune sets it to the pretrained run ({run})")
    data = merge(data, over)
    data["model"] = model
    data["task"] = data.get("task") or "classify"
    data = merge(data, {"train": {"init_from": str(run)}, "data": {"tokenizer": str(run / "tokenizer.json")}})
    return build_config(data)
