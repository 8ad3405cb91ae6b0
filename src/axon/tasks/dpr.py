"""The ``dpr`` task: train DPR's question and passage encoders (family ``dpr``; Karpukhin et al. 2020) on
questions with their gold passages, and score retrieval against BM25.

Data (``rag`` section; ``axon.data.passages``): the generated knowledge base (``rag.kb_entities``,
``rag.kb_seed``, ``rag.kb_mentions``) or the user's passages and questions (``rag.passages``,
``rag.questions``). The training questions are the ``train`` split's (those naming a passage); validation
is the ``test`` split's -- the knowledge base splits by entity, so no test question's entity was trained on.

Each batch: B questions with B distinct gold passages, and one BM25 hard negative per question (the best
BM25 passage that is not its gold one; ``rag.hard_negatives``), the loss in-batch negatives' cross-entropy
(``axon.objectives.retrieval``). At each evaluation the whole collection is encoded and every held-out
question searched exactly: ``val_top1``, ``val_top5``, ``val_top20`` (DPR's top-k retrieval accuracy),
beside BM25's on the same questions (``bm25_top*``, in every evaluation record and the final result).

Tokenizer: ``data.tokenizer`` (char, wordpiece or bpe with BERT's special tokens, built from the passages and
the training questions), or with ``train.init_from`` a BERT (mlm) run's own, whose encoder then starts both
DPR encoders (DPR starts from BERT-Base).
"""

from __future__ import annotations

from pathlib import Path

import torch

from axon.data.bert_tokens import BERT_TOKENIZER_KINDS, BertTokens, build_bert_tokenizer
from axon.data.passages import Collection, RetrievalPairs, encode_texts, load_collection
from axon.errors import ConfigError, DataError
from axon.retrieval.bm25 import BM25, hits_at_k, tokenize
from axon.tasks.base import TaskSetup, set_vocab_size
from axon.tasks.finetune import init_run_dir, load_pretrained_body

NEGATIVE_CANDIDATES = 8  # BM25 negatives kept per question; a batch takes the first not among its positives
KS = (1, 5, 20)


def collection(cfg) -> Collection:
    """The run's passages and questions; the files are recorded absolute in the run's config.yaml (so ``axon rag``,
    ``axon eval`` and ``--resume`` find them from any directory)."""
    rc = cfg.rag
    for name in ("passages", "questions"):
        path = getattr(rc, name)
        if path is not None and Path(path).is_file():
            setattr(rc, name, str(Path(path).resolve()))
    return load_collection(rc.passages, rc.questions, entities=rc.kb_entities, seed=rc.kb_seed, mentions=rc.kb_mentions)


def bm25_negatives(bm25: BM25, questions, k: int = NEGATIVE_CANDIDATES) -> list[list[int]]:
    """Each question's best BM25 passages but its gold one, best first (DPR sec. 3.2: "the top passages returned
    by BM25 which don't contain the answer" -- here: which are not the gold passage)."""
    ranked = bm25.top_k([tokenize(q.text) for q in questions], k + 1)
    return [[int(p) for p in row if p != q.passage_id][:k] for row, q in zip(ranked, questions)]


def dpr_tokenizer(cfg, texts: list[str]):
    from axon.data.tokenizers import check_tokenizer_choice, load_tokenizer

    if cfg.train.init_from:
        file = init_run_dir(cfg.train.init_from) / "tokenizer.json"
        if not file.is_file():
            raise ConfigError(f"train.init_from: {file} not found; DPR encodes text with the pretrained run's tokenizer")
        return load_tokenizer(file)
    check_tokenizer_choice(cfg.data.tokenizer, BERT_TOKENIZER_KINDS)
    return build_bert_tokenizer(cfg.data.tokenizer, texts, cfg.data.vocab_size)


def init_encoders(model, source) -> dict:
    """``train.init_from``: a BERT run starts both encoders (its MLM head dropped); a DPR run loads whole."""
    from axon.config import load_config

    run = init_run_dir(source)
    family = load_config(run / "config.yaml").model.family if (run / "config.yaml").is_file() else "dpr"
    if family == "dpr":
        return load_pretrained_body(model, source, heads=())
    if family != "bert":
        raise ConfigError(f"train.init_from: {source} is a {family} run; DPR starts from a bert (mlm) run or a dpr run")
    report = load_pretrained_body(model.question_encoder, source)
    if model.passage_encoder is not model.question_encoder:
        load_pretrained_body(model.passage_encoder, source)
    return report


class DPRData:
    """The collection encoded for one run: tokens, training and validation pairs, BM25 and its scores."""

    def __init__(self, cfg, coll: Collection, tokenizer):
        self.coll, self.tokens = coll, BertTokens(tokenizer)
        block = cfg.model.block_size
        self.passage_seqs = encode_texts(self.tokens, [p.text for p in coll.passages], block, "dpr passages")
        self.bm25 = BM25([tokenize(p.text) for p in coll.passages])
        train_q = [q for q in coll.split("train") if q.passage_id >= 0]
        val_q = [q for q in coll.split("test") if q.passage_id >= 0]
        if not train_q:
            raise DataError(f"{coll.source}: no training question names a passage (passage_id); DPR learns from them")
        if not val_q:
            raise DataError(f"{coll.source}: no test question names a passage (passage_id); retrieval cannot be scored")
        if cfg.rag.eval_questions:
            val_q = val_q[: cfg.rag.eval_questions]
        self.val_questions = val_q
        self.pairs = {}
        for split, qs in (("train", train_q), ("val", val_q)):
            seqs = encode_texts(self.tokens, [q.text for q in qs], block, f"dpr {split} questions")
            self.pairs[split] = RetrievalPairs(seqs, [q.passage_id for q in qs], bm25_negatives(self.bm25, qs),
                                               self.passage_seqs, self.tokens.pad_id, cfg.rag.hard_negatives)
        gold = [q.passage_id for q in val_q]
        self.bm25_hits = hits_at_k(self.bm25.top_k([tokenize(q.text) for q in val_q], max(KS)), gold, KS)

    def dense_hits(self, model, k: int = max(KS)) -> dict[str, float]:
        """DPR's top-k accuracy on the held-out questions: every passage encoded, exact inner-product search."""
        from axon.retrieval.dense import encode
        from axon.retrieval.index import exact_search

        device = next(model.parameters()).device
        was = model.training
        model.eval()
        P = encode(model.encode_passages, self.passage_seqs, self.tokens.pad_id, device)
        Q = encode(model.encode_questions, self.pairs["val"].questions, self.tokens.pad_id, device)
        model.train(was)
        _, ids = exact_search(Q, P, k)
        return hits_at_k(ids, [q.passage_id for q in self.val_questions], KS)


def dpr_task(cfg, device: torch.device) -> TaskSetup:
    from axon.models.base import unwrap
    from axon.objectives.retrieval import DPRLoss

    coll = collection(cfg)
    texts = [p.text for p in coll.passages] + [q.text for q in coll.split("train")]
    tokenizer = dpr_tokenizer(cfg, texts)
    set_vocab_size(cfg, tokenizer.vocab_size)
    data = DPRData(cfg, coll, tokenizer)
    bm25 = {f"bm25_{k}": v for k, v in data.bm25_hits.items()}

    def summarize(loss: float, split: str) -> dict:
        return dict(bm25)  # the lexical baseline on the same held-out questions

    def eval_fn(model, step: int, run_dir: Path) -> dict:
        return data.dense_hits(unwrap(model))

    def model_metrics(model, split: str) -> dict:
        return {**data.dense_hits(unwrap(model)), **bm25}

    return TaskSetup(train_data=data.pairs["train"], val_data=data.pairs["val"], objective=DPRLoss(),
                     tokenizer=tokenizer, summarize=summarize, eval_fn=eval_fn, model_metrics=model_metrics,
                     init_weights=init_encoders)



# ----------------------------------------------------------------------------------------------
# axon index build | query: a passage collection searched by BM25 or a dpr run


def build_index(passages: str | Path, out: str | Path, retriever: str = "bm25", kind: str = "exact",
                device: str = "cpu") -> dict:
    """An index folder for ``passages`` (a passages JSONL): ``passages.jsonl`` (a copy), ``collection.json``
    (the retriever), and for a dpr run ``retriever`` the passage vectors in a ``DenseIndex`` of ``kind``.
    Returns the record written to collection.json."""
    import json

    from axon.data.passages import read_passages
    from axon.retrieval.index import DenseIndex
    from axon.tasks.rag import open_dense

    ps, keys = read_passages(passages)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "passages.jsonl").write_text("".join(json.dumps({"id": k, "text": p.text}, ensure_ascii=False) + "\n"
                                                for k, p in zip(keys, ps)), encoding="utf-8")
    record = {"retriever": "bm25", "passages": len(ps), "source": str(Path(passages).resolve())}
    if retriever != "bm25":
        dense = open_dense(retriever, [p.text for p in ps], device, "--retriever")
        DenseIndex(dense.passage_vectors(), kind).save(out / "dense")
        record.update(retriever=str(Path(retriever).resolve()), kind=kind)
    (out / "collection.json").write_text(json.dumps(record, indent=1) + "\n")
    return record


class IndexSearch:
    """An index folder (:func:`build_index`) opened for questions: ``search(texts, k)`` -> per question a list of
    (passage id, text, score), best first."""

    def __init__(self, folder: str | Path, device: str = "cpu"):
        import json

        from axon.data.passages import read_passages

        folder = Path(folder)
        if not (folder / "collection.json").is_file():
            raise DataError(f"{folder}: not an index folder (no collection.json); build one with axon index build")
        self.record = json.loads((folder / "collection.json").read_text())
        self.passages, self.keys = read_passages(folder / "passages.jsonl")
        if self.record["retriever"] == "bm25":
            self.bm25, self.dense = BM25([tokenize(p.text) for p in self.passages]), None
        else:
            from axon.retrieval.index import DenseIndex
            from axon.tasks.rag import open_dense

            self.bm25 = None
            self.dense = open_dense(self.record["retriever"], [p.text for p in self.passages], device)
            self.dense.index = DenseIndex.load(folder / "dense")

    def search(self, questions: list[str], k: int) -> list[list[tuple[str, str, float]]]:
        if self.bm25 is not None:
            scores = self.bm25.batch_scores([tokenize(q) for q in questions])  # (Q, N)
            ids = (-scores).argsort(axis=1, kind="stable")[:, :k]
            top = [[(int(i), float(scores[r, i])) for i in row] for r, row in enumerate(ids)]
        else:
            s, ids = self.dense.search(questions, k)
            top = [[(int(i), float(v)) for i, v in zip(row, srow) if i >= 0] for row, srow in zip(ids, s)]
        return [[(self.keys[i], self.passages[i].text, v) for i, v in row] for row in top]


__all__ = ["DPRData", "IndexSearch", "bm25_negatives", "build_index", "collection", "dpr_task", "init_encoders"]
