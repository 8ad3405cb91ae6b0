"""Beam search: keep the ``num_beams`` most probable partial sequences, extend them all by one
token per step, and collect the ones that end in a stop token as scored hypotheses.

    prompt --prefill (batch 1)--> log p(next | prompt)                      (1, V)
                                         |
     +-> candidates: beam sum + log p(next)                                 (n_live, V)
     |   torch.topk over all (beam, token) pairs                            k = (1 + n_eos) * num_beams
     |   eos candidates ranked < num_beams  --> finished hypotheses (n-best heap)
     |   the first num_beams others         --> live beams (parent beam, token)
     |   done? (early stopping, length, context)
     |                                   |
     +-- cache.reorder(parents); one batched forward of every live beam's last token

Only the cache interface is used (``model.make_cache``, ``model(idx, cache=...)``,
``cache.reorder``, ``cache.length``), so any family with a cache (KV or recurrent state) can be
searched. The number of live beams grows from 1 to ``num_beams`` as the tree widens: the first
step keeps at most V beams, never copies of the same one.

Score (Hugging Face's convention, ``BeamHypotheses.add`` with ``generated_len``):

    score = logprob / len ** length_penalty

where ``logprob`` is the sum of the log-probabilities of the new tokens and ``len`` is their
number, the stop token included, the prompt excluded. length_penalty = 0 ranks by total
log-probability (favours short outputs), 1 by mean log-probability per token; > 1 favours longer
outputs. (Wu et al. 2016, eq. 14, divide by ((5 + len) / 6) ** alpha instead, a gentler penalty
for short outputs; that form is not implemented here.)
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from axon.generate.cache import context_limit
from axon.generate.options import check_beam_options, check_stop_tokens, vocabulary


@dataclass
class BeamHypothesis:
    tokens: list[int]  # new tokens (prompt excluded, stop token included when it ended with one)
    score: float  # logprob / len(tokens) ** length_penalty
    logprob: float  # sum of the log-probabilities of the tokens


class _NBest:
    """The ``n`` best hypotheses seen so far, by score (a min-heap: the worst at the top)."""

    def __init__(self, n: int):
        self.n = n
        self.heap: list[tuple[float, int, BeamHypothesis]] = []
        self._tick = itertools.count()  # ties keep insertion order, never compare hypotheses

    def __len__(self) -> int:
        return len(self.heap)

    @property
    def worst(self) -> float:
        return self.heap[0][0]

    def add(self, hyp: BeamHypothesis) -> None:
        item = (hyp.score, -next(self._tick), hyp)
        if len(self.heap) < self.n:
            heapq.heappush(self.heap, item)
        elif hyp.score > self.worst:
            heapq.heapreplace(self.heap, item)

    def best(self, k: int) -> list[BeamHypothesis]:
        return [h for _, _, h in sorted(self.heap, key=lambda e: (e[0], e[1]), reverse=True)[:k]]


@torch.inference_mode()  # no autograd bookkeeping at all: cheaper than no_grad per op
def beam_search(
    model: nn.Module,
    prompt: Sequence[int] | torch.Tensor,
    max_new_tokens: int,
    *,
    num_beams: int = 4,
    length_penalty: float = 1.0,
    early_stopping: bool | Literal["never"] = True,
    eos_token_id: int | Collection[int] | None = None,
    num_return: int = 1,
    vocab_limit: int | None = None,
) -> list[BeamHypothesis]:
    """The ``num_return`` best continuations of one ``prompt`` (1-D token ids), best first.

    Each step extends every live beam by one token with one batched forward; candidates are the
    top (1 + number of stop ids) * num_beams (beam, token) pairs by summed log-probability, so
    that num_beams of them continue even if every beam's best tokens are stop tokens. A
    candidate ending in a stop token (``eos_token_id``, an id or a collection of ids) among the
    first num_beams becomes a finished hypothesis, kept if it is among the num_beams best by
    score (see the module docstring for the score); the best num_beams others stay live.

    Stopping, once num_beams hypotheses are finished:

    - ``early_stopping=True``: stop at once (Hugging Face's default for beam search).
    - ``early_stopping=False``: Hugging Face's heuristic: stop when the best live beam, scored at
      its current length, does not beat the worst kept hypothesis. Not exact for
      length_penalty > 0: a live beam's score (negative sum / growing len ** lp) can still rise.
    - ``early_stopping="never"``: stop only when no live beam can beat the worst kept score,
      with an exact bound. Log-probabilities are <= 0, so a live beam's sum s only falls; its
      best possible score is s / L ** lp with L the largest reachable length when lp > 0, and
      s / len ** lp with its current length when lp <= 0.

    Otherwise the search runs for ``max_new_tokens`` steps, or until the cache holds the model's
    whole context (``cache.length == block_size``: every token is predicted from at most
    block_size tokens, so prompt + output is at most block_size + 1 long); the live beams are
    then scored as hypotheses too (without a stop token). A prompt longer than block_size is a
    ValueError. Fewer than ``num_return`` hypotheses come back only when fewer exist (a tiny
    vocabulary and few steps).

    ``vocab_limit`` restricts the choice to ids < vocab_limit (a vocabulary padded for speed);
    log-probabilities are then normalised over those ids, as sampling does. The model runs in
    eval mode under inference_mode; its train/eval mode is restored afterwards.
    """
    prompt = [int(t) for t in (prompt.tolist() if isinstance(prompt, torch.Tensor) else prompt)]
    if not prompt:
        raise ValueError("the prompt needs at least one token")
    check_beam_options(max_new_tokens, num_beams, length_penalty, num_return)  # a SamplingOptionError (a ValueError)
    if early_stopping not in (True, False, "never"):
        raise ValueError(f"early_stopping must be True, False or 'never' (got {early_stopping!r})")
    block = context_limit(model)  # None: a family without a context limit (recurrent)
    if block is not None and len(prompt) > block:
        raise ValueError(f"prompt of {len(prompt)} tokens is longer than the model's context of {block} tokens")
    # The longest output: max_new_tokens, or the last token predicted with a full cache.
    max_len = max_new_tokens if block is None else min(max_new_tokens, block - len(prompt) + 1)
    if isinstance(eos_token_id, torch.Tensor):
        eos_token_id = eos_token_id.tolist()
    if eos_token_id is None:
        eos = []
    elif isinstance(eos_token_id, Collection):
        eos = sorted({int(e) for e in eos_token_id})
    else:
        eos = [int(eos_token_id)]
    check_stop_tokens("eos_token_id", eos, vocabulary(model, vocab_limit))

    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        cache = model.make_cache(1, len(prompt) + max_len)  # the family caps it at its context
        logits = model(torch.tensor([prompt], device=device), cache=cache)[:, -1]  # (1, V)
        V = logits.size(-1) if vocab_limit is None else min(vocab_limit, logits.size(-1))
        eos_t = torch.tensor(eos, dtype=torch.long, device=device)
        finished = _NBest(num_beams)
        sums = torch.zeros(1, device=device)  # (n_live,) summed log-probs of the live beams
        seqs = torch.zeros(1, 0, dtype=torch.long, device=device)  # (n_live, t) their tokens
        for t in range(1, max_len + 1):  # t: the length of the sequences this step produces
            logp = torch.log_softmax(logits[:, :V].float(), dim=-1)  # (n_rows, V)
            n_rows = logp.size(0)
            cand = (sums[:, None] + logp).view(-1)  # (n_rows * V,) every (beam, token) pair
            k = min((1 + len(eos)) * num_beams, cand.numel())
            top, flat = torch.topk(cand, k)  # sorted, best first
            parents, tokens = flat // V, flat % V
            is_eos = torch.isin(tokens, eos_t) if eos else torch.zeros_like(tokens, dtype=torch.bool)

            # A stop token among the first num_beams candidates ends a hypothesis.
            for r in is_eos[:num_beams].nonzero().flatten().tolist():
                logprob = top[r].item()
                finished.add(BeamHypothesis(seqs[parents[r]].tolist() + [tokens[r].item()],
                                            logprob / t ** length_penalty, logprob))
            keep = (~is_eos).nonzero().flatten()[:num_beams]
            if keep.numel() == 0:  # only stop tokens were possible
                break
            parents, tokens, sums = parents[keep], tokens[keep], top[keep]
            seqs = torch.cat([seqs[parents], tokens[:, None]], dim=1)  # (n_live, t)

            if len(finished) >= num_beams:
                if early_stopping is True:
                    break
                best = sums.max().item()
                length = max_len if (early_stopping == "never" and length_penalty > 0) else t
                if finished.worst >= best / length ** length_penalty:
                    break
            if t == max_len:  # max_new_tokens, or block is not None and cache.length == block
                for s, seq in zip(sums.tolist(), seqs.tolist()):
                    finished.add(BeamHypothesis(seq, s / t ** length_penalty, s))
                break
            if parents.numel() != n_rows or not torch.equal(parents, torch.arange(n_rows, device=device)):
                cache.reorder(parents)  # row i continues beam parents[i]; skipped when nothing moved
            logits = model(tokens[:, None], cache=cache)[:, -1]  # (n_live, V): one forward for all beams
    finally:
        model.train(was_training)
    return finished.best(num_return)
