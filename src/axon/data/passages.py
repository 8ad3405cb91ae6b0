"""Passage collections and questions about them, from the generated knowledge base or the user's JSONL files,
and DPR's training batches (the data of ``axon.tasks.dpr`` and the readers of ``axon.tasks.rag``).

Files:

* passages, one JSON object per line: ``{"id": ..., "text": "..."}`` -- ``id`` any string or integer,
  unique (default: the line number, from 0), ``text`` not empty; ``title`` is read if present and put
  before the text (``"title. text"``).
* questions: ``{"question": "...", "answer": "...", "passage_id": ...}`` -- ``passage_id`` names the passage
  that holds the answer (optional: without it no retrieval accuracy is scored for that question);
  ``split`` ``train`` or ``test`` (optional; without any, every 10th question is held out).

``axon.data.knowledge.KnowledgeBase.write`` writes these formats, so a generated collection read back from
its files is the same collection. Every malformed line is one DataError naming the file and line.

DPR batches (``RetrievalPairs``): (question ids (B, Tq), question mask, passage ids (B + H, Tp), passage mask),
the B positives first, then H = B hard negatives, one per question: the first of its BM25 negatives that is
not a positive of the batch (none when the batch holds every passage). The B positives are distinct passages,
so no question meets its own passage as a negative. Drawn from a generator seeded with (seed, step,
micro_step): a pure function of its arguments.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from axon.data.bert_tokens import pad_batch
from axon.data.knowledge import Passage, Question
from axon.errors import DataError


@dataclass
class Collection:
    """Passages (``Passage.id`` = position), their ids as the file names them, and the questions."""

    passages: list[Passage]
    keys: list[str]  # the file's id of each passage (the position's text for a generated base)
    questions: list[Question]
    source: str  # where it came from, for messages and the run's record

    def split(self, name: str) -> list[Question]:
        return [q for q in self.questions if q.split == name]


def _lines(path: Path, what: str):
    if not path.is_file():
        raise DataError(f"{path}: no such {what} file")
    try:
        raw = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not valid UTF-8 text (byte {e.start})") from None
    rows = []
    for n, line in enumerate(raw.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{n}: not valid JSON ({e.msg})") from None
        if not isinstance(obj, dict):
            raise DataError(f"{path}:{n}: expected a JSON object, got {type(obj).__name__}")
        rows.append((n, obj))
    if not rows:
        raise DataError(f"{path}: no {what}s (the file is empty)")
    return rows


def _key(value, where: str, field: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise DataError(f"{where}: {field!r} must be a string or an integer, got {value!r}")
    return str(value)


def _text(obj: dict, field: str, where: str) -> str:
    value = obj.get(field)
    if not isinstance(value, str) or not value.strip():
        raise DataError(f"{where}: expected a non-empty string under {field!r}, got {value!r}")
    return value.strip()


def read_passages(path: str | Path) -> tuple[list[Passage], list[str]]:
    """(passages, their ids) of a passages JSONL file (module docstring)."""
    path = Path(path)
    passages, keys, seen = [], [], {}
    for n, obj in _lines(path, "passage"):
        where = f"{path}:{n}"
        key = _key(obj.get("id", len(passages)), where, "id")
        if key in seen:
            raise DataError(f"{where}: passage id {key!r} repeats line {seen[key]}; ids must be unique")
        seen[key] = n
        text = _text(obj, "text", where)
        if "title" in obj:
            text = f"{_text(obj, 'title', where)}. {text}"
        passages.append(Passage(len(passages), text, str(obj.get("entity", "")), str(obj.get("relation", ""))))
        keys.append(key)
    return passages, keys


def read_questions(path: str | Path, keys: list[str]) -> list[Question]:
    """The questions of a questions JSONL file, their ``passage_id`` resolved against ``keys`` (the passages'
    ids); a question naming a passage the collection lacks is refused."""
    path = Path(path)
    position = {k: i for i, k in enumerate(keys)}
    rows = _lines(path, "question")
    has_split = any("split" in obj for _, obj in rows)
    out = []
    for i, (n, obj) in enumerate(rows, start=1):
        where = f"{path}:{n}"
        text, answer = _text(obj, "question", where), _text(obj, "answer", where)
        pid = -1
        if obj.get("passage_id") is not None:
            key = _key(obj["passage_id"], where, "passage_id")
            if key not in position:
                raise DataError(f"{where}: passage_id {key!r} is not in the passages file (a question with no passage)")
            pid = position[key]
        if has_split:
            split = obj.get("split", "train")
            if split not in ("train", "test"):
                raise DataError(f"{where}: split must be 'train' or 'test', got {split!r}")
        else:
            split = "test" if i % 10 == 0 else "train"
        out.append(Question(text, answer, pid, str(obj.get("entity", "")), split))
    for name in ("train", "test"):
        if not any(q.split == name for q in out):
            raise DataError(f"{path}: no {name} questions (mark some with \"split\": \"{name}\", or give 10 or more "
                            "questions and leave split out: every 10th is held out)")
    return out


def load_collection(passages: str | None, questions: str | None, *, entities: int = 200, seed: int = 0,
                    mentions: int = 0) -> Collection:
    """The user's files, or (both null) the generated knowledge base of ``entities`` people."""
    if passages is None and questions is None:
        from axon.data.knowledge import knowledge_base

        kb = knowledge_base(entities, seed=seed, mentions=mentions)
        return Collection(kb.passages, [str(p.id) for p in kb.passages], kb.questions,
                          f"knowledge_base(entities={entities}, seed={seed}, mentions={mentions})")
    if passages is None or questions is None:
        raise DataError("rag.passages and rag.questions go together: give both files, or neither for the generated "
                        "knowledge base")
    ps, keys = read_passages(passages)
    return Collection(ps, keys, read_questions(questions, keys), str(passages))


class RetrievalPairs:
    """DPR's batches of questions, positives and hard negatives (module docstring).

    ``questions`` / ``passages``: [CLS] ... [SEP] ids; ``positive[i]``: question i's passage; ``negatives[i]``:
    its hard-negative candidates, best first (may be empty: then a random passage)."""

    def __init__(self, questions: list[list[int]], positive: list[int], negatives: list[list[int]],
                 passages: list[list[int]], pad_id: int, hard_negatives: bool = True):
        if not questions:
            raise DataError("no questions with a passage to train the retriever on")
        self.questions, self.passages, self.pad_id = questions, passages, pad_id
        self.positive = np.asarray(positive, dtype=np.int64)
        self.negatives, self.hard = negatives, hard_negatives
        self.by_passage: dict[int, list[int]] = {}
        for i, p in enumerate(positive):
            self.by_passage.setdefault(int(p), []).append(i)
        self.distinct = np.array(sorted(self.by_passage), dtype=np.int64)

    def __len__(self) -> int:
        return len(self.questions)

    def batch(self, rows, rng: np.random.Generator | None = None):
        pos = [int(self.positive[r]) for r in rows]
        in_batch = set(pos)
        ps = list(pos)
        if self.hard and len(in_batch) < len(self.passages):  # (a batch holding every passage has no negative left)
            for r in rows:
                neg = next((n for n in self.negatives[r] if n not in in_batch), None)
                if neg is None:  # every candidate is in the batch: any other passage
                    gen = rng if rng is not None else np.random.default_rng(int(r))
                    while neg is None or neg in in_batch:
                        neg = int(gen.integers(len(self.passages)))
                ps.append(neg)
        q_ids, q_mask = pad_batch([self.questions[r] for r in rows], self.pad_id)
        p_ids, p_mask = pad_batch([self.passages[p] for p in ps], self.pad_id)
        return q_ids, q_mask, p_ids, p_mask

    def get_batch(self, step: int, batch_size: int, block_size: int, seed: int, micro_step: int = 0):
        rng = np.random.default_rng(np.random.SeedSequence([seed, step, micro_step]))
        k = min(batch_size, len(self.distinct))
        chosen = rng.choice(self.distinct, size=k, replace=False)  # B distinct positives: no false negatives
        rows = [self.by_passage[int(p)][int(rng.integers(len(self.by_passage[int(p)])))] for p in chosen]
        return self.batch(rows, rng)

    def iter_eval_batches(self, batch_size: int, block_size: int, max_batches: int | None = None):
        """Fixed batches in question order, each with distinct positives (a question whose passage is already in
        the batch waits for the next one)."""
        pending, n = list(range(len(self.questions))), 0
        while pending and (max_batches is None or n < max_batches):
            rows, seen, rest = [], set(), []
            for r in pending:
                p = int(self.positive[r])
                if len(rows) < batch_size and p not in seen:
                    rows.append(r)
                    seen.add(p)
                else:
                    rest.append(r)
            pending, n = rest, n + 1
            yield self.batch(rows)


def encode_texts(tokens, texts: list[str], block_size: int, what: str) -> list[list[int]]:
    """[CLS] text [SEP] ids of each text, cut to ``block_size`` (and said, once, on stderr)."""
    import sys

    seqs, cut = [], 0
    for ids in tokens.encode_batch(texts):
        if len(ids) + 2 > block_size:
            ids, cut = ids[: block_size - 2], cut + 1
        seqs.append(tokens.wrap(ids))
    if cut:
        print(f"{what}: cut {cut} of {len(texts)} texts to model.block_size={block_size} tokens", file=sys.stderr)
    return seqs


__all__ = ["Collection", "RetrievalPairs", "encode_texts", "load_collection", "read_passages", "read_questions"]
