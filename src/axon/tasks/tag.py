"""The ``tag`` task: one tag per word (BIO named-entity tags, or any tag set), from CoNLL files.

Files (``data.train_file``, ``data.val_file``): CoNLL format, a word and its tag per line (the tag
in the last column), blank lines between sentences (``axon.data.conll.read_conll``). Without
``data.val_file``, every 10th sentence of the training file (the 10th, 20th, ...) is held out for
validation, as classify holds out examples. The tag set is the sorted distinct tags of the training
sentences, saved as ``tags.json`` in the run directory (id = position in the list). A validation tag
absent from training is refused with a line naming the file and its first line with that tag (the
model could never predict it, and a silent O would hide entities from the recall).

    sentences --> rnn_tagger: word ids (WordVocab from the training words, <unk> / <Unk> below
              |               model.vocab_min_count; saved as vocab.txt; model.word_dropout)
              +-> bert (head: tag): [CLS] sub-tokens [SEP], each word's tag at its first
                                    sub-token, -100 elsewhere (axon.data.tagged)
    batch (ids, attention_mask, labels) --> model --> emissions (B, T, K)
          --> TokenTagging: per-word cross-entropy, or the CRF's NLL when the model has one
              (model.crf: true on rnn_tagger; axon.objectives.tagging)

Sentences longer than ``model.block_size`` (words for rnn_tagger, sub-tokens with [CLS] and [SEP]
for bert) are refused unless ``data.truncate=true``, which keeps their first words (in training
and in the scores alike) and says how many were cut.

Scores: the trainer's evaluation reports the mean per-word loss and token accuracy (``accuracy``,
Viterbi's tags under a CRF); each evaluation also logs, and the final result and ``axon eval``
add, the entity-level ``precision``, ``recall`` and ``f1`` (seqeval, ``axon.eval.tagging``) and
``token_accuracy`` of the whole split's predicted tags.

Tokenizer (bert): with ``train.init_from`` (fine-tuning, ``axon finetune RUN --task=tag``) the
pretrained run's ``tokenizer.json``, and ``axon.tasks.finetune.load_pretrained_body`` loads its
encoder under the new head; otherwise ``data.tokenizer`` built from the training sentences, as
classify does. rnn_tagger has no tokenizer: its vocabulary is rebuilt from the training file.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from axon.data.conll import read_conll
from axon.data.files import read_splits
from axon.data.tagged import TaggedSentences, WordVocab, encode_subtokens, encode_words, unknown_ids
from axon.errors import ConfigError, DataError
from axon.tasks.base import TaskSetup, set_vocab_size
from axon.tasks.finetune import load_pretrained_body

TAGS_FILE = "tags.json"
VOCAB_FILE = "vocab.txt"
FAMILIES = ("rnn_tagger", "bert")


def _first_line_with_tag(path, tag: str) -> int | None:
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            cols = line.split()
            if len(cols) >= 2 and cols[0] != "-DOCSTART-" and cols[-1] == tag:
                return n
    return None


def _fill_model_fields(cfg, num_labels: int) -> None:
    mcfg = cfg.model
    if mcfg.family not in FAMILIES:
        raise ConfigError("task: tag needs a tagger; set model.family=rnn_tagger, or model.family=bert with model.head=tag")
    if mcfg.family == "bert" and mcfg.head != "tag":
        raise ConfigError(f"model.head: the tag task trains a token-classification head; set model.head=tag (got {mcfg.head})")
    if mcfg.num_labels is None:
        mcfg.num_labels = num_labels
    elif mcfg.num_labels != num_labels:
        raise ConfigError(f"model.num_labels={mcfg.num_labels} but the training file has {num_labels} tags; "
                          "leave model.num_labels null to take them from the file")


def tag_task(cfg, device: torch.device) -> TaskSetup:
    from axon.eval.tagging import tagging_scores
    from axon.objectives.tagging import TokenTagging, predict_tags

    data, mcfg = cfg.data, cfg.model
    train_s, train_file, val_s, val_file = read_splits(
        data, lambda path: read_conll(path).sentences, example="bundled:ner/train.conll", what="sentences")
    tags = sorted({t for _, ts in train_s for t in ts})
    if len(tags) < 2:
        raise DataError(f"{train_file}: a tagger needs at least two tags, found {tags}")
    index = {t: i for i, t in enumerate(tags)}
    for _, ts in val_s:
        for t in ts:
            if t not in index:
                line = _first_line_with_tag(val_file, t)
                shown = ", ".join(tags[:12]) + (", ..." if len(tags) > 12 else "")
                raise DataError(f"{val_file}:{line}: tag {t!r} does not occur in the training file {train_file} "
                                f"(its tags: {shown}); the tagger could never predict it")
    _fill_model_fields(cfg, len(tags))
    train_ids = [[index[t] for t in ts] for _, ts in train_s]
    val_ids = [[index[t] for t in ts] for _, ts in val_s]
    train_words, val_words = [w for w, _ in train_s], [w for w, _ in val_s]
    block = mcfg.block_size
    tokenizer, extra, dropout = None, {}, {}
    if mcfg.family == "rnn_tagger":
        vocab = WordVocab(train_words, mcfg.vocab_min_count, mcfg.lowercase)
        if mcfg.vocab_size is None:
            mcfg.vocab_size = len(vocab)
        elif mcfg.vocab_size != len(vocab):
            raise ConfigError(f"model.vocab_size={mcfg.vocab_size} but the training words give {len(vocab)} "
                              "(<pad>, <unk>, <Unk> and the kept words); leave model.vocab_size null")
        encode = lambda s, ids, src: encode_words(s, ids, vocab, block, data.truncate, src)  # noqa: E731
        pad_id = 0
        extra[VOCAB_FILE] = vocab.save
        dropout = dict(unknown=unknown_ids(train_words, block), word_dropout=mcfg.word_dropout)
    else:
        from axon.data.bert_tokens import BertTokens
        from axon.tasks.classify import classify_tokenizer

        tokenizer = classify_tokenizer(cfg, [" ".join(w) for w in train_words])
        tokens = BertTokens(tokenizer)
        set_vocab_size(cfg, tokenizer.vocab_size)
        encode = lambda s, ids, src: encode_subtokens(s, ids, tokens, block, data.truncate, src)  # noqa: E731
        pad_id = tokens.pad_id
    train_seqs, train_labels, cut_train = encode(train_words, train_ids, str(train_file))
    val_seqs, val_labels, cut_val = encode(val_words, val_ids, str(val_file))
    if cut_train or cut_val:
        print(f"tag: cut {cut_train} of {len(train_s)} training and {cut_val} of {len(val_s)} validation sentences "
              f"to model.block_size={block} (data.truncate); the scores count the words kept", file=sys.stderr)
    train = TaggedSentences(train_seqs, train_labels, pad_id, **dropout)
    val = TaggedSentences(val_seqs, val_labels, pad_id)
    splits = {"train": train, "val": val}

    def scores(model, split: str) -> dict:
        """Entity P/R/F1 and token accuracy of the model's tags for every sentence of the split."""
        gold, pred = predict_tags(model, splits[split].iter_eval_batches(cfg.train.batch_size, block))
        return tagging_scores([[tags[i] for i in g] for g in gold], [[tags[i] for i in p] for p in pred])

    def write_tags(path: Path) -> None:
        path.write_text(json.dumps({"tags": tags, "train_file": str(data.train_file), "val_file": data.val_file},
                                   indent=1, ensure_ascii=False) + "\n")

    return TaskSetup(train_data=train, val_data=val, objective=TokenTagging(), tokenizer=tokenizer,
                     extra_files={TAGS_FILE: write_tags, **extra}, model_metrics=scores,
                     eval_fn=lambda model, step, run_dir: scores(model, "val"),
                     init_weights=load_pretrained_body)
