"""The ``rag`` task: a reader that answers questions from the passages a retriever gives it (Lewis et al.
2020; Izacard & Grave 2021), or from its weights alone (closed-book).

    question --retriever (rag.retriever)--> k passages (rag.read_passages) --reader--> answer
                 none:   no passages (closed-book: the answer must be in the weights)
                 oracle: the gold passage, with k-1 BM25 passages beside it at a random place
                 bm25:   BM25's top k (axon.retrieval.bm25)
                 RUN:    a dpr run's top k (axon.tasks.dpr: its encoders, exact inner-product search)

The reader is the model family's: a causal LM (decoder, mamba, ...) reads the k passages concatenated before
the question; seq2seq reads them Fusion-in-Decoder style, each passage encoded with the question on its own
and the decoder attending to all (``axon.data.reader``). Retrieval is fixed before training (as FiD trains
on a frozen retriever's passages), for the training and the held-out questions alike.

Data: the ``rag`` section's collection (``axon.tasks.dpr.collection``): the generated knowledge base, whose
test questions are about entities no training question asked about, or the user's passages and questions.
Metrics at every evaluation and in the result: ``val_em`` (exact match of the greedy answer after SQuAD's
normalisation: lower case, no punctuation, no articles), ``val_hit`` (the share of held-out questions whose
gold passage is among the k read), and EM split by it, ``val_em_hit`` / ``val_em_miss`` -- retrieval bounds
answering (docs/rag.md).
"""

from __future__ import annotations

import re
import string
import sys
from pathlib import Path

import numpy as np
import torch

from axon.data.pairs import SpecialIds
from axon.data.passages import Collection
from axon.errors import ConfigError, DataError
from axon.tasks.base import TaskSetup, set_vocab_size
from axon.tasks.dpr import collection

RETRIEVERS = ("none", "oracle", "bm25")  # or a dpr run directory


def normalize_answer(text: str) -> str:
    """SQuAD's normalisation (Rajpurkar et al. 2016, its evaluation script): lower case, punctuation and the
    articles a/an/the removed, white space collapsed."""
    text = "".join(ch for ch in text.lower() if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def exact_match(prediction: str, answer: str) -> bool:
    return normalize_answer(prediction) == normalize_answer(answer)


class Retrieval:
    """The passages each question reads: ``search(questions, k) -> (Q, k) ids`` by ``rag.retriever``."""

    def __init__(self, spec: str, coll: Collection, device: torch.device | str = "cpu", seed: int = 0,
                 what: str = "rag.retriever"):
        self.spec, self.coll, self.seed = spec, coll, seed
        self.bm25 = None
        self.dense = None
        if spec in ("oracle", "bm25"):
            from axon.retrieval.bm25 import BM25, tokenize

            self.bm25 = BM25([tokenize(p.text) for p in coll.passages])
        elif spec != "none":
            self.dense = open_dense(spec, [p.text for p in coll.passages], device, what)

    def search(self, questions, k: int) -> list[list[int]]:
        """Passage ids per question (``questions``: knowledge_base/passages Question objects)."""
        from axon.retrieval.bm25 import tokenize

        if self.spec == "none" or k == 0:
            return [[] for _ in questions]
        if self.dense is not None:
            return self.dense.search([q.text for q in questions], k)[1].tolist()
        ranked = self.bm25.top_k([tokenize(q.text) for q in questions], k + 1)
        if self.spec == "bm25":
            return [row[:k].tolist() for row in ranked]
        out = []  # oracle: gold + the k-1 best others, the gold at a random place (a seeded draw per question)
        for i, (q, row) in enumerate(zip(questions, ranked)):
            if q.passage_id < 0:
                raise DataError(f"rag.retriever=oracle needs every question's passage_id; {q.text!r} has none")
            others = [int(p) for p in row if p != q.passage_id][: k - 1]
            at = int(np.random.default_rng([self.seed, i]).integers(k))
            out.append(others[:at] + [q.passage_id] + others[at:])
        return out


def open_dense(run_dir: str, passages: list[str], device, what: str = "rag.retriever"):
    """A dpr run's encoders over ``passages`` (a Retriever with exact search); ``what``: the setting that named
    the run, for messages."""
    from axon.data.bert_tokens import BertTokens
    from axon.retrieval.dense import Retriever
    from axon.train.run import load_run

    path = Path(run_dir)
    if not path.is_dir():
        raise ConfigError(f"{what}: {run_dir} is no run directory; give {', '.join(RETRIEVERS)} or a dpr run directory")
    cfg, model, tokenizer = load_run(path, str(device))
    if cfg.model.family != "dpr":
        raise ConfigError(f"{what}: {run_dir} is a {cfg.model.family} run; a dense retriever is a dpr run")
    return Retriever(model, BertTokens(tokenizer), passages, cfg.model.block_size, device)


def reader_tokenizer(cfg, coll: Collection):
    from axon.data.tokenizers import KINDS, build_tokenizer, check_tokenizer_choice, load_tokenizer

    if cfg.train.init_from:
        from axon.tasks.finetune import init_run_dir

        return load_tokenizer(init_run_dir(cfg.train.init_from) / "tokenizer.json")
    check_tokenizer_choice(cfg.data.tokenizer, KINDS)
    from axon.data.reader import concat_prompt

    texts = [p.text for p in coll.passages] + [concat_prompt(q.text, []) + q.answer + " context:" for q in coll.questions]
    return build_tokenizer(cfg.data.tokenizer, texts, cfg.data.vocab_size)


class Reader:
    """One run's reading: the questions, their passages, the batches, and greedy answers."""

    def __init__(self, cfg, coll: Collection, tokenizer, retrieval: Retrieval):
        from axon.data.reader import ConcatAnswers, FusedAnswers

        self.cfg, self.coll, self.tokenizer, self.retrieval = cfg, coll, tokenizer, retrieval
        self.special = SpecialIds.for_tokenizer(tokenizer)
        self.k = 0 if cfg.rag.retriever == "none" else cfg.rag.read_passages
        self.fid = cfg.model.family == "seq2seq"
        self.questions = {"train": coll.split("train"), "val": coll.split("test")}
        if cfg.rag.eval_questions:
            self.questions["val"] = self.questions["val"][: cfg.rag.eval_questions]
        self.read = {split: retrieval.search(qs, self.k) for split, qs in self.questions.items()}
        self.embedded = cfg.model.family == "embed_reader"
        if self.embedded:
            from axon.data.reader import EmbeddedAnswers

            self.vectors = passage_vectors(cfg, retrieval)
            self.data = {split: EmbeddedAnswers(tokenizer, self.special, [q.text for q in qs], self.read[split],
                                                self.vectors, [q.answer for q in qs], cfg.model.block_size, self.k)
                         for split, qs in self.questions.items()}
        else:
            kind = FusedAnswers if self.fid else ConcatAnswers
            self.data = {split: kind(tokenizer, self.special, [q.text for q in qs], self.contexts(split),
                                     [q.answer for q in qs], cfg.model.block_size)
                         for split, qs in self.questions.items()}
        cut = sum(d.cut for d in self.data.values())
        if cut:
            print(f"rag: {cut} inputs cut to model.block_size={cfg.model.block_size} tokens "
                  "(raise it, or read fewer passages)", file=sys.stderr)

    def contexts(self, split: str) -> list[list[str]]:
        return [[self.coll.passages[p].text for p in ids] for ids in self.read[split]]

    def answer(self, model, questions: list[str], contexts: list[list[str]], max_new: int) -> list[str]:
        return read_answers(model, self.tokenizer, self.fid, self.cfg.model.block_size, questions, contexts, max_new)

    def answer_split(self, model, split: str, rows: list[int], max_new: int) -> list[str]:
        """Greedy answers to the questions ``rows`` of ``split`` as they were retrieved for the run."""
        qs = [self.questions[split][r] for r in rows]
        if not self.embedded:
            ctx = self.contexts(split)
            return self.answer(model, [q.text for q in qs], [ctx[r] for r in rows], max_new)
        vec, mask = self.data[split].passage_vectors(rows)
        return embedded_answers(model, self.tokenizer, [q.text for q in qs], vec, mask, max_new)

    def scores(self, model, split: str = "val") -> dict[str, float]:
        qs = self.questions[split]
        preds = self.answer_split(model, split, list(range(len(qs))), self.cfg.rag.max_answer_tokens)
        em = np.array([exact_match(p, q.answer) for p, q in zip(preds, qs)], dtype=float)
        out = {"em": float(em.mean())}
        gold = [q.passage_id for q in qs]
        if self.k and all(g >= 0 for g in gold):
            hit = np.array([g in ids for g, ids in zip(gold, self.read[split])])
            out["hit"] = float(hit.mean())
            if hit.any():
                out["em_hit"] = float(em[hit].mean())
            if (~hit).any():
                out["em_miss"] = float(em[~hit].mean())
        return out


@torch.no_grad()
def read_answers(model, tokenizer, fid: bool, block: int, questions: list[str], contexts: list[list[str]], max_new: int,
                 batch_size: int = 64) -> list[str]:
    """Greedy answers of a reader ``model`` to ``questions``, each reading its ``contexts`` (passage texts):
    Fusion-in-Decoder for an encoder-decoder (``fid``), else the passages concatenated before the question."""
    from axon.data.reader import concat_prompt, fid_sources
    from axon.generate import generate

    sp, tok = SpecialIds.for_tokenizer(tokenizer), tokenizer
    device = next(model.parameters()).device
    was = model.training
    model.eval()
    out: list[str] = []
    for s in range(0, len(questions), batch_size):
        qs, cs = questions[s : s + batch_size], contexts[s : s + batch_size]
        if fid:
            srcs = [[tok.encode(t)[: block - 1] + [sp.eos] for t in fid_sources(q, c)] for q, c in zip(qs, cs)]
            K, S = max(len(x) for x in srcs), max(len(y) for x in srcs for y in x)
            src = torch.full((len(qs), K, S), sp.pad, dtype=torch.int64)
            for i, x in enumerate(srcs):
                for j in range(K):
                    y = x[j] if j < len(x) else [sp.eos]  # a missing passage: one EOS, as in training
                    src[i, j, : len(y)] = torch.as_tensor(y)
            src = src.to(device)
            gen = generate(model.conditioned(src, src != sp.pad), [[sp.bos]] * len(qs), max_new, temperature=0.0,
                           stop_tokens=[sp.eos])
        else:
            prompts = []
            for q, c in zip(qs, cs):
                ids = tok.encode(concat_prompt(q, c))
                prompts.append(ids[max(0, len(ids) - (block - max_new)):])  # keep the question, room to answer
            gen = generate(model, prompts, max_new, temperature=0.0, stop_tokens=[sp.eos])
        out += [tok.decode(sp.strip(ids)) for ids in gen.tokens]
    model.train(was)
    return out


def passage_vectors(cfg, retrieval: Retrieval):
    """The embedding reader's input: the dpr run's vectors of every passage (N, D), fixed (the retriever is frozen)."""
    if retrieval.dense is None:
        raise ConfigError(f"model.family=embed_reader reads a dpr run's passage vectors: set rag.retriever to a dpr run "
                          f"directory (got {cfg.rag.retriever!r})")
    vectors = retrieval.dense.passage_vectors()
    if vectors.shape[1] != cfg.model.passage_dim:
        raise ConfigError(f"model.passage_dim={cfg.model.passage_dim}, but the dpr run's vectors have {vectors.shape[1]} "
                          f"dimensions: set model.passage_dim={vectors.shape[1]}")
    if cfg.rag.read_passages > cfg.model.max_passages:
        raise ConfigError(f"rag.read_passages={cfg.rag.read_passages} exceeds model.max_passages={cfg.model.max_passages}")
    return vectors


@torch.no_grad()
def embedded_answers(model, tokenizer, questions: list[str], vectors: torch.Tensor, mask: torch.Tensor,
                     max_new: int) -> list[str]:
    """Greedy answers of an embedding reader given the passages' vectors (B, K, D) and the questions' text."""
    from axon.data.reader import concat_prompt

    sp = SpecialIds.for_tokenizer(tokenizer)
    device = next(model.parameters()).device
    prompts = [tokenizer.encode(concat_prompt(q, [])) for q in questions]
    new = model.greedy(vectors.to(device), prompts, max_new, sp.eos, mask.to(device))
    return [tokenizer.decode(sp.strip(ids)) for ids in new]


def rag_task(cfg, device: torch.device) -> TaskSetup:
    from axon.objectives.seq2seq import Seq2SeqLoss
    from axon.objectives.sft import ResponseLM

    rc = cfg.rag
    if rc.retriever not in RETRIEVERS and Path(rc.retriever).is_dir():
        rc.retriever = str(Path(rc.retriever).resolve())  # recorded absolute, as the collection's files
    coll = collection(cfg)
    if not coll.split("test"):
        raise DataError(f"{coll.source}: no test questions to score the reader on")
    retrieval = Retrieval(rc.retriever, coll, device, seed=rc.kb_seed)
    tokenizer = reader_tokenizer(cfg, coll)
    reader = Reader(cfg, coll, tokenizer, retrieval)
    set_vocab_size(cfg, reader.special.vocab_size)
    if reader.embedded:
        from axon.objectives.embed_reader import EmbeddedAnswerLM

        objective = EmbeddedAnswerLM(cfg.train.z_loss)
    else:
        objective = Seq2SeqLoss(reader.special.pad, cfg.train.label_smoothing) if reader.fid else ResponseLM()

    def eval_fn(model, step: int, run_dir: Path) -> dict:
        return reader.scores(model, "val")

    def model_metrics(model, split: str) -> dict:
        return reader.scores(model, "val" if split != "train" else "train")

    def sample_fn(model, step: int) -> str:
        qs = reader.questions["val"][:4]
        ctx = reader.contexts("val")[:4]
        preds = reader.answer_split(model, "val", list(range(len(qs))), rc.max_answer_tokens)
        return "\n\n".join(f"read: {' | '.join(c) or '(nothing: closed-book)'}\nQ: {q.text}\nA: {p}   (gold: {q.answer})"
                           for q, c, p in zip(qs, ctx, preds))

    return TaskSetup(train_data=reader.data["train"], val_data=reader.data["val"], objective=objective,
                     tokenizer=tokenizer, sample_fn=sample_fn, eval_fn=eval_fn, model_metrics=model_metrics)


def ask(run_dir: str | Path, questions: list[str], passages: str | Path | None = None, k: int | None = None,
        retriever: str | None = None, device: str = "cpu") -> list[dict]:
    """``axon rag``: a rag run's answers to ``questions``, each with the passages its retriever read. The
    collection is the run's own, or ``passages`` (a passages JSONL: e.g. the knowledge base with a fact
    edited -- the reader is not retrained, only what it reads changes); ``k``: passages read (default: the
    run's rag.read_passages); ``retriever``: bm25, none or a dpr run (default: the run's own). Returns per question {"question", "passages": [(id, text)], "answer"}."""
    from axon.data.knowledge import Question
    from axon.data.passages import read_passages
    from axon.train.run import load_run

    cfg, model, tokenizer = load_run(run_dir, device)
    if cfg.task != "rag":
        raise ConfigError(f"{run_dir} is a {cfg.task or cfg.model.family} run, not a rag reader")
    if passages is not None:
        ps, keys = read_passages(passages)
        coll = Collection(ps, keys, [], str(passages))
    else:
        coll = collection(cfg)
    k = cfg.rag.read_passages if k is None else k
    if k < 0:
        raise ConfigError(f"--k must be >= 0, got {k}")
    spec = retriever or cfg.rag.retriever
    if spec == "oracle":
        raise ConfigError(f"{run_dir} read oracle (gold) passages in training; a new question has no gold passage: "
                          "give --retriever bm25 or a dpr run")
    retrieval = Retrieval(spec, coll, device, what="--retriever" if retriever else "rag.retriever")
    qs = [Question(q, "", -1, "", "test") for q in questions]
    read = retrieval.search(qs, k)
    if cfg.model.family == "embed_reader":  # the passages' vectors by the run's own dpr retriever
        from axon.data.reader import vector_batch

        vectors = passage_vectors(cfg, retrieval if retrieval.dense is not None else Retrieval(cfg.rag.retriever, coll, device))
        vec, mask = vector_batch(vectors, read, k)
        answers = embedded_answers(model, tokenizer, questions, vec, mask, cfg.rag.max_answer_tokens)
    else:
        contexts = [[coll.passages[i].text for i in ids] for ids in read]
        answers = read_answers(model, tokenizer, cfg.model.family == "seq2seq", cfg.model.block_size, questions,
                               contexts, cfg.rag.max_answer_tokens)
    return [{"question": q, "passages": [(coll.keys[i], coll.passages[i].text) for i in ids], "answer": a}
            for q, ids, a in zip(questions, read, answers)]


__all__ = ["Reader", "Retrieval", "ask", "exact_match", "normalize_answer", "rag_task"]
