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

Tagging with a trained run (``axon tag``; :func:`load_tagger`, :func:`tag_sentences`,
:func:`score_conll`), litgpt-style plain functions under the command:

    run dir: config.yaml, tags.json, checkpoints/
             + vocab.txt (rnn_tagger) or tokenizer.json (bert, head: tag)
        |  load_tagger(run_dir)              -> Tagger(cfg, model in eval mode, tags, encode)
    "Romeo is in Verona" --axon.data.ner.tokenize--> [Romeo, is, in, Verona]
        |  tag_sentences(tagger, [[words]])  the training encoding (word ids, or [CLS] pieces [SEP]
        |                                    with each word read at its first piece), batches of
        |                                    train.batch_size, predict_tags: argmax, or Viterbi
        v                                    under a CRF (decode_words)
    [[B-PER, O, O, B-LOC]]   --entities()--> [("PER", "Romeo"), ("LOC", "Verona")]

    score_conll(tagger, FILE.conll) -> {precision, recall, f1, token_accuracy, sentences}: the
    sentences encoded and cut (data.truncate) as in training, batched in file order as the
    trainer's final scores are, so the run's own validation file gives exactly its val_f1.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
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



def entities(words: list[str], tags: list[str]) -> list[tuple[str, str]]:
    """(type, words joined by spaces) of each entity of a tagged sentence, read as conlleval and
    seqeval's default mode read BIO: B-X opens an X entity, I-X continues an open X entity and
    opens one after O or another type; any other tag (O, or a tag without a B-/I- prefix) is none."""
    out, kind = [], None
    for w, t in zip(words, tags):
        prefix, _, k = t.partition("-")
        if prefix == "I" and k and k == kind:
            out[-1][1].append(w)
        elif prefix in ("B", "I") and k:
            kind = k
            out.append((k, [w]))
        else:
            kind = None
    return [(k, " ".join(ws)) for k, ws in out]


@dataclass
class Tagger:
    """A trained tag run ready to tag words (:func:`load_tagger`)."""

    run_dir: Path
    cfg: object
    model: torch.nn.Module
    tags: list[str]
    encode: Callable  # (sentences, tag_ids, truncate, source) -> (seqs, labels, sentences cut): the training encoding
    length: Callable  # words -> the positions the sentence takes (words, or pieces with [CLS] and [SEP])
    pad_id: int


def load_tagger(run_dir, device: str = "auto") -> Tagger:
    """The run in ``run_dir`` (a tag run: rnn_tagger, or bert with head: tag), its newest checkpoint,
    tag set (tags.json) and word encoding (vocab.txt, or the run's tokenizer.json)."""
    from axon.config import load_config, run_config_file
    from axon.errors import reading
    from axon.tasks import task_name
    from axon.train.run import load_run

    run_dir = Path(run_dir)
    cfg = load_config(run_config_file(run_dir))  # the task first: no weights are read for a refusal
    if task_name(cfg) != "tag":
        raise ConfigError(f"{run_dir} is a {cfg.model.family} run trained for {task_name(cfg)!r}, not a tagger (a tag run)")
    with reading(run_dir / TAGS_FILE, "tag set"):
        tags = json.loads((run_dir / TAGS_FILE).read_text(encoding="utf-8"))["tags"]
    cfg, model, tokenizer = load_run(run_dir, device)
    block = cfg.model.block_size
    if cfg.model.family == "rnn_tagger":
        vocab = WordVocab.load(run_dir / VOCAB_FILE, cfg.model.lowercase)
        if len(vocab) != cfg.model.vocab_size:
            raise DataError(f"{run_dir / VOCAB_FILE}: {len(vocab)} words, but the model has {cfg.model.vocab_size}")
        encode = lambda s, ids, cut, src: encode_words(s, ids, vocab, block, cut, src)  # noqa: E731
        return Tagger(run_dir, cfg, model, tags, encode, len, 0)
    from axon.data.bert_tokens import BertTokens

    if tokenizer is None:
        raise ConfigError(f"{run_dir} has no tokenizer.json; a bert tagger reads words through the run's tokenizer")
    tokens = BertTokens(tokenizer)
    encode = lambda s, ids, cut, src: encode_subtokens(s, ids, tokens, block, cut, src)  # noqa: E731
    length = lambda words: sum(max(len(p), 1) for p in tokens.encode_batch(list(words))) + 2  # noqa: E731
    return Tagger(run_dir, cfg, model, tags, encode, length, tokens.pad_id)


def _predict(tagger: Tagger, seqs, labels) -> tuple[list[list[str]], list[list[str]]]:
    from axon.objectives.tagging import predict_tags

    data = TaggedSentences(seqs, labels, tagger.pad_id)
    bs, block = tagger.cfg.train.batch_size, tagger.cfg.model.block_size  # the trainer's evaluation batches
    gold, pred = predict_tags(tagger.model, data.iter_eval_batches(bs, block))
    return [[tagger.tags[i] for i in g] for g in gold], [[tagger.tags[i] for i in p] for p in pred]


def tag_sentences(tagger: Tagger, sentences: list[list[str]], source: str = "input") -> list[list[str]]:
    """One predicted tag per word of each sentence. An empty sentence, or one longer than the run's
    model.block_size (words, or sub-tokens with [CLS] and [SEP]), is refused naming ``source`` and
    its number (1-based)."""
    if not sentences:
        raise DataError(f"{source}: no sentences to tag")
    block = tagger.cfg.model.block_size
    for i, words in enumerate(sentences):
        if not words:
            raise DataError(f"{source} {i + 1}: no words to tag (an empty sentence)")
        n = tagger.length(words)
        if n > block:
            unit = "words" if tagger.cfg.model.family == "rnn_tagger" else "sub-tokens with [CLS] and [SEP]"
            raise DataError(f"{source} {i + 1}: {n} {unit}, more than the run's model.block_size={block}; split it")
    seqs, labels, _ = tagger.encode(sentences, [[0] * len(w) for w in sentences], False, source)
    return _predict(tagger, seqs, labels)[1]


def score_conll(tagger: Tagger, path, sentences: list | None = None) -> dict:
    """Entity precision, recall, F1 (seqeval) and token accuracy of the run's tags on a CoNLL file,
    and its number of sentences: on the run's own validation file, exactly the run's final val_*
    scores (same encoding, data.truncate, batches and order). A tag the run never saw is refused
    naming the file's first line with it. ``sentences``: the file's, read already (read_conll)."""
    from axon.eval.tagging import tagging_scores

    sentences = read_conll(path).sentences if sentences is None else sentences
    index = {t: i for i, t in enumerate(tagger.tags)}
    for _, ts in sentences:
        for t in ts:
            if t not in index:
                raise DataError(f"{path}:{_first_line_with_tag(path, t)}: tag {t!r} is not one of the run's tags "
                                f"({', '.join(tagger.tags[:12])}{', ...' if len(tagger.tags) > 12 else ''})")
    seqs, labels, _ = tagger.encode([w for w, _ in sentences], [[index[t] for t in ts] for _, ts in sentences],
                                    tagger.cfg.data.truncate, str(path))
    gold, pred = _predict(tagger, seqs, labels)
    return {**tagging_scores(gold, pred), "sentences": len(sentences)}
