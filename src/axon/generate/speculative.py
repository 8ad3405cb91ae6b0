"""Speculative decoding: a small draft model proposes, the target model verifies.

Leviathan et al. 2023, "Fast Inference from Transformers via Speculative Decoding" (alg. 1), and
Chen et al. 2023, "Accelerating Large Language Model Decoding with Speculative Sampling". One round:

    draft:   x1 ~ q1, x2 ~ q2(. | x1), ..., xk ~ qk            k cheap forwards, one token each
    target:  p1, ..., pk+1 = target(last, x1, ..., xk)          ONE forward over its cache
    accept xi with probability min(1, pi(xi) / qi(xi)), in order
      first rejection at i:  emit y ~ norm(max(0, pi - qi)) and end the round
      all k accepted:        emit a bonus token y ~ pk+1
    crop both caches back to the tokens that were kept

Each emitted token has exactly the target's distribution (Leviathan et al. thm. 3.5):
    P(y) = qi(y) min(1, pi(y)/qi(y)) + P(reject) norm(max(0, pi - qi))(y)
         = min(pi(y), qi(y)) + max(0, pi(y) - qi(y)) = pi(y),
because P(reject) = 1 - sum_y min(pi, qi) = sum_y max(0, pi - qi). So a round costs one target
forward and emits between 1 and k + 1 tokens; the acceptance rate says how many.

p and q are the processed distributions plain sampling uses (temperature, then top-k / top-p,
then softmax), so the output follows ``sampling.generate`` on the target with the same settings.
Temperature 0 is greedy: keep draft tokens while they equal the target's argmax, then emit the
target's argmax, which reproduces the target's greedy decoding exactly.

The models are used only through the cache interface (``make_cache``, ``model(idx, cache=...)``,
``cache.crop``, ``cache.length``), so any family with a cache can be target or draft.
Batch size 1: sequences in a batch accept different numbers of tokens, so their caches would
drift apart; one prompt at a time keeps the algorithm as the papers state it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from axon.generate.cache import context_limit
from axon.generate.options import SamplingOptions, check_num_draft, check_stop_tokens
from axon.generate.sampling import process_logits


@dataclass
class SpeculativeResult:
    """The new tokens and how the draft fared.

    ``proposed`` counts the draft tokens the target verified, ``accepted`` those it kept;
    ``target_calls`` / ``draft_calls`` count forwards (the target's prompt is read in its first
    verification forward, so plain cached decoding of n tokens would take n target calls).
    """

    tokens: list[int] = field(default_factory=list)
    proposed: int = 0
    accepted: int = 0
    target_calls: int = 0
    draft_calls: int = 0

    @property
    def acceptance_rate(self) -> float:
        """accepted / proposed; 0.0 when nothing was proposed."""
        return self.accepted / self.proposed if self.proposed else 0.0


def _config_value(model: nn.Module, name: str) -> int | None:
    return getattr(getattr(model, "config", None), name, None)


def _device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


@torch.inference_mode()  # no autograd bookkeeping at all: cheaper than no_grad per op
def speculative_generate(
    target: nn.Module,
    draft: nn.Module,
    prompt: Sequence[int] | torch.Tensor,
    max_new_tokens: int,
    *,
    num_draft: int = 4,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
    eos_token_id: int | Iterable[int] | None = None,
    vocab_limit: int | None = None,
) -> SpeculativeResult:
    """Continue one ``prompt`` by up to ``max_new_tokens`` tokens drawn from ``target``.

    ``draft`` proposes ``num_draft`` tokens per round (0: plain cached decoding of the target).
    Every random draw uses ``generator`` (the global RNG only when it is None), so a seeded
    generator gives reproducible output. Generation stops after an ``eos_token_id`` (kept in the
    output) or when prompt + new tokens fill the target's ``block_size``. ``vocab_limit`` restricts
    choices to ids below it (a vocabulary padded beyond the tokenizer's). Both models must share
    the vocabulary: equal ``vocab_size``, or at least ``vocab_limit`` ids each. The sampling
    settings are checked as :class:`~axon.generate.options.SamplingOptions` checks them.
    """
    if isinstance(prompt, torch.Tensor):
        if prompt.dim() != 1:
            raise ValueError(f"prompt must be 1-D (one sequence; batch size 1), got shape {tuple(prompt.shape)}")
        prompt = prompt.tolist()
    seq = [int(t) for t in prompt]
    if not seq:
        raise ValueError("prompt is empty; speculative decoding needs at least one token")
    SamplingOptions(max_new_tokens, temperature, top_k, top_p)  # checks them: a SamplingOptionError (a ConfigError)
    check_num_draft(num_draft)
    v_target, v_draft = _config_value(target, "vocab_size"), _config_value(draft, "vocab_size")
    if (v_target is not None and v_draft is not None and v_target != v_draft
            and (vocab_limit is None or vocab_limit > min(v_target, v_draft))):
        raise ValueError(
            f"target and draft vocabularies differ ({v_target} vs {v_draft} ids); speculative "
            "decoding needs a shared vocabulary (pass vocab_limit <= both when one is only padded)"
        )
    if vocab_limit is not None and vocab_limit <= 0:
        raise ValueError(f"vocab_limit must be positive, got {vocab_limit}")
    if v_target is not None and not all(0 <= t < v_target for t in seq):
        raise ValueError(f"prompt holds ids outside the target's vocabulary [0, {v_target})")
    block = context_limit(target)
    if block is not None and len(seq) > block:
        raise ValueError(f"prompt of {len(seq)} tokens exceeds the target's block_size {block}")
    eos = set() if eos_token_id is None else {eos_token_id} if isinstance(eos_token_id, int) else set(eos_token_id)
    check_stop_tokens("eos_token_id", eos, vocab_limit or v_target)

    modes = (target.training, draft.training)  # read both first: draft may be target
    target.eval()
    draft.eval()
    try:
        return _speculate(target, draft, seq, max_new_tokens, num_draft, temperature, top_k, top_p,
                          generator, eos, vocab_limit)
    finally:
        draft.train(modes[1])
        target.train(modes[0])


def _speculate(target, draft, seq, max_new_tokens, num_draft, temperature, top_k, top_p, generator, eos,
               vocab_limit) -> SpeculativeResult:
    greedy = temperature == 0
    t_block, d_block = context_limit(target), context_limit(draft)  # None: no limit (recurrent)
    t_dev, d_dev = _device(target), _device(draft)
    room = len(seq) + max_new_tokens + num_draft + 1  # the most any forward below can hold
    t_cache = target.make_cache(1, min(room, t_block) if t_block else room)
    d_cache = draft.make_cache(1, min(room, d_block) if d_block else room)

    def process(logits: torch.Tensor) -> torch.Tensor:
        """Raw logits (T, V) -> what a choice is made from: logits (greedy) or probabilities."""
        logits = logits[:, :vocab_limit].float()
        if greedy:
            return logits
        return process_logits(logits, temperature, top_k, top_p).softmax(dim=-1)

    def choose(dist: torch.Tensor) -> int:
        """Argmax (greedy) or a draw from the (unnormalised) weights ``dist`` (V,)."""
        if greedy:
            return int(dist.argmax())
        return int(torch.multinomial(dist, 1, generator=generator))

    def ids(tokens: list[int], device: torch.device) -> torch.Tensor:
        return torch.tensor([tokens], dtype=torch.long, device=device)  # (1, T)

    res = SpeculativeResult()
    # Invariant between rounds: the target's cache holds seq[:-1] (its last token is fed with the
    # drafts); the draft's cache holds a prefix of seq[:-1] and reads the rest before drafting.
    while True:
        L = len(seq)
        room = max_new_tokens - len(res.tokens)  # tokens this round may emit
        if t_block is not None:
            room = min(room, t_block - L)
        if room <= 0:
            break
        k = min(num_draft, room)
        if d_block is not None:  # the draft reads seq + x1 .. x_{k-1}
            k = max(0, min(k, d_block - L + 1))

        # 1. The draft proposes x1..xk, sampled from its processed distributions q1..qk.
        xs: list[int] = []
        qs: list[torch.Tensor] = []
        for j in range(k):
            fresh = seq[d_cache.length:] if j == 0 else xs[-1:]
            q = process(draft(ids(fresh, d_dev), cache=d_cache)[0, -1:])[0]  # (V,)
            res.draft_calls += 1
            xs.append(choose(q))
            qs.append(q.to(t_dev))

        # 2. The target scores them in one forward. n_verify distributions are needed: p1..pk to
        # judge the drafts, plus p_{k+1} for the bonus token unless the round may not emit it.
        n_verify = min(k + 1, room)
        fresh = seq[t_cache.length:] + xs[: n_verify - 1]
        logits = target(ids(fresh, t_dev), cache=t_cache)[0, -n_verify:]  # (n_verify, V)
        res.target_calls += 1
        p = process(logits)
        if qs and p.size(-1) != qs[0].size(-1):
            raise ValueError(f"target and draft give {p.size(-1)} and {qs[0].size(-1)} logits; they must share the vocabulary")

        # 3. Accept a prefix of the drafts; then one token from the residual or the bonus.
        out: list[int] = []
        n_accepted = 0
        for i, x in enumerate(xs):
            if greedy:
                keep = x == int(p[i].argmax())
            else:  # u < p(x) / q(x) has probability min(1, p(x) / q(x)); q(x) > 0 as x ~ q
                u = torch.rand((), generator=generator, device=t_dev)
                keep = bool(u * qs[i][x] < p[i, x])
            if not keep:
                if greedy:
                    out.append(int(p[i].argmax()))
                else:
                    residual = (p[i] - qs[i]).clamp(min=0)  # sampled after normalising: norm(max(0, p - q))
                    # p == q up to rounding makes it ~0, and such a rejection ~never happens.
                    out.append(choose(residual if residual.sum() > 0 else p[i]))
                break
            out.append(x)
            n_accepted += 1
        else:
            if k < n_verify:
                out.append(choose(p[k]))
        res.proposed += k
        res.accepted += n_accepted

        stop = False
        for tok in out:
            seq.append(tok)
            res.tokens.append(tok)
            if tok in eos:
                stop = True
                break
        if stop:
            break
        # Forget what was rejected: the target keeps seq[:-1]; the draft holds seq[:L] + x1..x_{k-1}
        # of which the accepted ones stay valid.
        t_cache.crop(len(seq) - 1)
        d_cache.crop(min(d_cache.length, L + n_accepted))
    return res
