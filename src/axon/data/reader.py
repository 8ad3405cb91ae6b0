"""What a reader reads: each question with the passages a retriever gave it, as batches for a causal LM
(the passages concatenated before the question) or for an encoder-decoder (Fusion-in-Decoder: one source
per passage). The data of ``axon.tasks.rag``.

Text layout (a character or BPE tokenizer; PAD, BOS and EOS are the ids after the tokenizer's own, as in
``axon.data.pairs.SpecialIds``):

    concat (decoder, mamba, ...)    "<p1> <p2> ... <pk>\\nquestion: <q>\\nanswer: " + answer EOS
                                    the loss on the answer and EOS only (targets -100 elsewhere)
    fid    (seq2seq)                sources "question: <q> context: <pi>" for i = 1..k  (B, k, S)
                                    target  BOS answer -> answer EOS
    closed-book (k = 0)             "question: <q>\\nanswer: " + answer EOS  /  source "question: <q>"

A prompt longer than the model's context keeps its end (the question) and loses the start of the first
passages (counted and said); a source longer than block_size keeps its start. Training batches draw
``batch_size`` questions uniformly with replacement from a generator seeded with (seed, step,
micro_step): a pure function of its arguments (exact resume); evaluation walks the questions in order.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from axon.data.pairs import SpecialIds

IGNORE_INDEX = -100


def concat_prompt(question: str, passages: Sequence[str]) -> str:
    context = " ".join(passages)
    return (context + "\n" if context else "") + f"question: {question}\nanswer: "


def fid_sources(question: str, passages: Sequence[str]) -> list[str]:
    return [f"question: {question} context: {p}" for p in passages] or [f"question: {question}"]


class QuestionBatches:
    """Batches of questions by index: random with replacement for training, in order for evaluation."""

    def __len__(self) -> int:
        raise NotImplementedError

    def batch(self, rows):
        raise NotImplementedError

    def get_batch(self, step: int, batch_size: int, block_size: int, seed: int, micro_step: int = 0):
        rng = np.random.default_rng(np.random.SeedSequence([seed, step, micro_step]))
        return self.batch(rng.integers(0, len(self), size=batch_size).tolist())

    def iter_eval_batches(self, batch_size: int, block_size: int, max_batches: int | None = None):
        starts = range(0, len(self), batch_size)
        if max_batches is not None:
            starts = starts[:max_batches]
        return (self.batch(list(range(s, min(s + batch_size, len(self))))) for s in starts)


class ConcatAnswers(QuestionBatches):
    """Causal-LM batches (x, y) of prompt + answer + EOS, right-padded; y = -100 except at the answer."""

    def __init__(self, tokenizer, special: SpecialIds, questions: Sequence[str], contexts: Sequence[Sequence[str]],
                 answers: Sequence[str], block_size: int):
        self.special, self.block = special, block_size
        self.prompts, self.answers, self.cut = [], [], 0
        for q, ctx, a in zip(questions, contexts, answers):
            prompt = tokenizer.encode(concat_prompt(q, ctx))
            answer = (tokenizer.encode(a) + [special.eos])[: block_size]  # an answer longer than the context: its start
            room = block_size + 1 - len(answer)  # x and y are both block_size long: block_size + 1 tokens in all
            if len(prompt) > room:
                prompt, self.cut = prompt[len(prompt) - room:], self.cut + 1  # keep the question at the end
            self.prompts.append(prompt)
            self.answers.append(answer)
        if not self.prompts:
            raise ValueError("no questions")

    def __len__(self) -> int:
        return len(self.prompts)

    def batch(self, rows) -> tuple[torch.Tensor, torch.Tensor]:
        seqs = [self.prompts[r] + self.answers[r] for r in rows]
        T = max(len(s) for s in seqs) - 1
        x = torch.full((len(rows), T), self.special.pad, dtype=torch.int64)
        y = torch.full((len(rows), T), IGNORE_INDEX, dtype=torch.int64)
        for i, (r, s) in enumerate(zip(rows, seqs)):
            n = len(s) - 1
            x[i, :n] = torch.as_tensor(s[:-1])
            start = len(self.prompts[r]) - 1  # the position whose next token is the answer's first
            y[i, start:n] = torch.as_tensor(s[start + 1:])
        return x, y



class FusedAnswers(QuestionBatches):
    """Encoder-decoder batches (src (B, k, S), tgt_in (B, T), tgt_out (B, T)), PAD-padded; the objective's
    mask is src != PAD (``axon.objectives.seq2seq.Seq2SeqLoss``), and the model fuses the k passages."""

    def __init__(self, tokenizer, special: SpecialIds, questions: Sequence[str], contexts: Sequence[Sequence[str]],
                 answers: Sequence[str], block_size: int):
        self.special, self.cut = special, 0
        self.sources, self.targets = [], []
        for q, ctx, a in zip(questions, contexts, answers):
            srcs = []
            for text in fid_sources(q, ctx):
                ids = tokenizer.encode(text)[: block_size - 1]
                self.cut += len(ids) == block_size - 1
                srcs.append(ids + [special.eos])
            self.sources.append(srcs)
            self.targets.append(tokenizer.encode(a)[: block_size - 1])
        self.k = max(len(s) for s in self.sources)

    def __len__(self) -> int:
        return len(self.sources)

    def batch(self, rows) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        sp = self.special
        S = max(len(s) for r in rows for s in self.sources[r])
        T = max(len(self.targets[r]) for r in rows) + 1
        src = torch.full((len(rows), self.k, S), sp.pad, dtype=torch.int64)
        tgt_in = torch.full((len(rows), T), sp.pad, dtype=torch.int64)
        tgt_out = torch.full((len(rows), T), sp.pad, dtype=torch.int64)
        for i, r in enumerate(rows):
            for j, s in enumerate(self.sources[r]):
                src[i, j, : len(s)] = torch.as_tensor(s)
            t = self.targets[r]
            tgt_in[i, : len(t) + 1] = torch.as_tensor([sp.bos, *t])
            tgt_out[i, : len(t) + 1] = torch.as_tensor([*t, sp.eos])
        for i, r in enumerate(rows):  # a question given fewer than k passages: the empty slots hold one EOS
            for j in range(len(self.sources[r]), self.k):
                src[i, j, 0] = sp.eos
        return src, tgt_in, tgt_out


def vector_batch(vectors: np.ndarray, read: Sequence[Sequence[int]], k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, K, D) float32 vectors of each row's read passages (ids into ``vectors`` (N, D)) and the (B, K) mask of
    the slots filled; K = max(1, k), a row with fewer passages zero-filled and masked."""
    K, D = max(1, k), vectors.shape[1]
    vec = torch.zeros(len(read), K, D)
    mask = torch.zeros(len(read), K, dtype=torch.bool)
    for i, ids in enumerate(read):
        ids = list(ids)[:K]
        if ids:
            vec[i, : len(ids)] = torch.from_numpy(np.asarray(vectors[ids], dtype=np.float32))
            mask[i, : len(ids)] = True
    return vec, mask


class EmbeddedAnswers(QuestionBatches):
    """The embedding reader's batches (``axon.models.embed_reader``): (vectors (B, K, D) float32, vector_mask
    (B, K) bool, x (B, T), y (B, T)): the retriever's vectors of each question's k passages (fewer: masked), and
    the question alone as text, ``question: Q\nanswer: `` + answer EOS, the loss on the answer."""

    def __init__(self, tokenizer, special: SpecialIds, questions: Sequence[str], read: Sequence[Sequence[int]],
                 vectors: np.ndarray, answers: Sequence[str], block_size: int, k: int):
        self.text = ConcatAnswers(tokenizer, special, questions, [[] for _ in questions], answers, block_size)
        self.cut = self.text.cut
        self.read, self.vectors, self.k = [list(r) for r in read], np.asarray(vectors, dtype=np.float32), k

    def __len__(self) -> int:
        return len(self.text)

    def passage_vectors(self, rows) -> tuple[torch.Tensor, torch.Tensor]:
        return vector_batch(self.vectors, [self.read[r] for r in rows], self.k)

    def batch(self, rows):
        vec, mask = self.passage_vectors(rows)
        x, y = self.text.batch(rows)
        return vec, mask, x, y


__all__ = ["ConcatAnswers", "EmbeddedAnswers", "FusedAnswers", "QuestionBatches", "vector_batch", "IGNORE_INDEX", "concat_prompt", "fid_sources"]
