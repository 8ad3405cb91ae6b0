"""Autoregressive generation with a cache: greedy, temperature, top-k, top-p, min-p,
repetition penalty, stop tokens and strings, batches of prompts of different lengths.

    prompts --left-pad--> prefill (one forward over every prompt) --> logits of the last token
        ^                                                                   |
        |        process: repetition penalty -> temperature -> top-k/top-p/min-p
        |                                                                   |
    decode step (one forward of one new token per sequence) <-- pick: argmax or sample

Context policy: a prompt longer than the model's context (block_size) is an error; a sequence
that reaches the context stops with finish reason "context". Positions are never wrapped or
slid, so no token is ever computed at a wrong position. A family without a context limit
(recurrent; ``axon.generate.cache.context_limit`` is None) only stops at max_new_tokens or a stop.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass

import torch
from torch import nn

from axon.generate.cache import context_limit
from axon.generate.layout import column_major_linears
from axon.generate.options import SamplingOptions, check_stop_tokens, vocabulary


def filter_logits(logits: torch.Tensor, top_k: int | None = None, top_p: float | None = None,
                  min_p: float | None = None) -> torch.Tensor:
    """Set logits outside the allowed set to -inf. logits: (B, V).

    - top_k keeps the k largest;
    - top_p keeps the smallest set of highest-probability tokens whose mass reaches top_p
      (nucleus sampling, Holtzman et al. 2020), always at least one;
    - min_p keeps tokens whose probability is at least min_p times the top token's (Nguyen et
      al. 2024).
    """
    if top_k is not None and 0 < top_k < logits.size(-1):
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and 0 < top_p < 1:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        probs = sorted_logits.softmax(dim=-1)
        # Drop a token when the mass before it already reaches top_p.
        drop_sorted = (probs.cumsum(dim=-1) - probs) >= top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    if min_p is not None and min_p > 0:
        probs = logits.softmax(dim=-1)
        logits = logits.masked_fill(probs < min_p * probs.max(dim=-1, keepdim=True).values, float("-inf"))
    return logits


def apply_repetition_penalty(logits: torch.Tensor, seen: torch.Tensor, penalty: float) -> torch.Tensor:
    """CTRL's penalty (Keskar et al. 2019): a token already in the sequence has its logit divided
    by ``penalty`` when positive, multiplied when negative. seen: (B, V) bool."""
    if penalty == 1.0:
        return logits
    penalised = torch.where(logits > 0, logits / penalty, logits * penalty)
    return torch.where(seen, penalised, logits)


def process_logits(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
                   min_p: float | None = None) -> torch.Tensor:
    """The distribution sampling draws from, as logits: temperature, then the filters.
    (Speculative decoding uses the same function, so both sample the same distribution.)"""
    return filter_logits(logits / temperature, top_k, top_p, min_p)


@dataclass
class Generation:
    tokens: list[list[int]]  # new tokens of each sequence (prompt excluded, stop token included)
    finish_reasons: list[str]  # "length", "stop_token", "stop_string" or "context"
    # with ``logprobs=True``: (B, steps) fp32 on the model's device, column t the log-probability of new token t
    # under the distribution it was drawn from, and that distribution's entropy (columns past a sequence's end:
    # junk, its tokens dropped); else None
    logprobs: torch.Tensor | None = None
    entropies: torch.Tensor | None = None


def generate(
    model: nn.Module,
    prompts: Sequence[Sequence[int]] | torch.Tensor,
    max_new_tokens: int | None = None,
    *,
    options: SamplingOptions | None = None,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    min_p: float | None = None,
    repetition_penalty: float = 1.0,
    stop_tokens: Sequence[int] = (),
    stop_strings: Sequence[str] = (),
    decode: Callable[[list[int]], str] | None = None,
    generator: torch.Generator | Sequence[torch.Generator] | None = None,
    vocab_limit: int | None = None,
    on_token: Callable[[int, int], None] | None = None,
    logprobs: bool = False,
    allowed: Callable[[list[list[int]]], torch.Tensor] | None = None,
) -> Generation:
    """Continue each prompt by up to ``max_new_tokens`` tokens; ``temperature=0`` is greedy.

    ``prompts``: lists of token ids (any lengths; left-padded into one batch) or a (B, T) tensor.
    A sequence stops at a token in ``stop_tokens`` (kept in its output), when its decoded new
    text contains one of ``stop_strings`` (needs ``decode``; the text is cut before the stop
    string by the caller with :func:`cut_at_stop`), or at the context limit. Randomness comes
    only from ``generator``: the same seed gives the same text, and the global RNG is untouched.
    A list of generators, one per sequence (after ``num_samples``), draws each sequence's tokens
    from its own: a sequence's text then does not depend on which others share its batch (PPO's
    rollouts, split over processes, rely on it).
    ``on_token(b, token)`` is called for each new token as it is produced (streaming; see
    :class:`axon.generate.stream.StreamPrinter`). ``logprobs=True`` also returns, per new token,
    its log-probability under the distribution it was drawn from (after the repetition penalty,
    the temperature and the filters; greedy: the model's own) and that distribution's entropy
    (``Generation.logprobs``, ``.entropies``): what a rollout would otherwise measure with a
    second forward over every answer (``axon.tasks.grpo``).
    ``allowed(sequences) -> (B, V) bool`` constrains each step: given every sequence so far (prompt
    and new tokens), the tokens it may take next; the others get probability 0 before the
    penalty, the temperature and the filters (e.g. an image span of exactly n codes,
    ``axon.generate.modal.ImageSpans``). A row with no allowed token is a ValueError.

    The sampling settings are ``max_new_tokens`` and the keywords from ``temperature`` to
    ``repetition_penalty``, or one :class:`SamplingOptions` as ``options`` instead of them (whose
    ``num_samples`` > 1 continues each prompt that many times, the samples of a prompt next to each
    other). Either way they are checked first: a value out of range (``temperature=-1``,
    ``top_p=2``, NaN) raises :class:`~axon.generate.options.SamplingOptionError`, a ConfigError;
    so does a stop token outside the vocabulary (``vocab_limit``, else the model's), which could
    never be produced.
    """
    options = _sampling_options(options, max_new_tokens, temperature, top_k, top_p, min_p, repetition_penalty)
    if stop_strings and decode is None:
        raise ValueError("stop_strings need a decode function")
    check_stop_tokens("stop_tokens", stop_tokens, vocabulary(model, vocab_limit))
    if isinstance(prompts, torch.Tensor):
        prompts = prompts.tolist()
    prompts = [list(p) for p in prompts for _ in range(options.num_samples)]
    if any(len(p) == 0 for p in prompts):
        raise ValueError("every prompt needs at least one token")
    block = context_limit(model)
    longest = max(len(p) for p in prompts)
    if block is not None and longest > block:
        raise ValueError(f"prompt of {longest} tokens is longer than the model's context of {block} tokens")
    device = next(model.parameters()).device
    B = len(prompts)
    if generator is not None and not isinstance(generator, torch.Generator) and len(generator) != B:
        raise ValueError(f"{len(generator)} generators for {B} sequences; give one per sequence (or one for all)")
    was_training = model.training
    model.eval()
    with ExitStack() as stack:
        if B == 1 and device.type == "cpu":  # one sequence: every matmul is a GEMV (see generate.layout)
            stack.enter_context(column_major_linears(model))
        stack.enter_context(torch.inference_mode())  # no autograd bookkeeping at all: cheaper than no_grad per op
        stack.callback(model.train, was_training)
        o = options
        return _generate(model, prompts, o.max_new_tokens, device, temperature=o.temperature, top_k=o.top_k,
                         top_p=o.top_p, min_p=o.min_p, repetition_penalty=o.repetition_penalty, stop_tokens=stop_tokens,
                         stop_strings=stop_strings, decode=decode, generator=generator, vocab_limit=vocab_limit,
                         on_token=on_token, logprobs=logprobs, allowed=allowed)


_DEFAULTS = (None, 1.0, None, None, None, 1.0)  # generate's own max_new_tokens .. repetition_penalty


def _sampling_options(options, max_new_tokens, temperature, top_k, top_p, min_p, repetition_penalty) -> SamplingOptions:
    """``options``, or the SamplingOptions of the keywords (which checks them)."""
    given = (max_new_tokens, temperature, top_k, top_p, min_p, repetition_penalty)
    if options is None:
        if max_new_tokens is None:
            raise TypeError("generate() needs max_new_tokens (or options=SamplingOptions(...))")
        return SamplingOptions(max_new_tokens, temperature, top_k, top_p, min_p, repetition_penalty)
    if not isinstance(options, SamplingOptions):
        raise TypeError(f"options must be a SamplingOptions, got {type(options).__name__}")
    if given != _DEFAULTS:
        raise TypeError("give options=SamplingOptions(...) or max_new_tokens and the sampling keywords, not both")
    return options


def _generate(model, prompts, max_new_tokens, device, *, temperature, top_k, top_p, min_p, repetition_penalty,
              stop_tokens, stop_strings, decode, generator, vocab_limit, on_token, logprobs=False,
              allowed=None) -> Generation:
    """The loop of :func:`generate`, which has checked the arguments and set up eval mode."""
    B, block, longest = len(prompts), context_limit(model), max(len(p) for p in prompts)

    idx = torch.zeros(B, longest, dtype=torch.long, device=device)
    pad = torch.zeros(B, longest, dtype=torch.bool, device=device)
    for b, p in enumerate(prompts):  # left padding: every sequence's last token in the last slot
        idx[b, longest - len(p):] = torch.tensor(p, device=device)
        pad[b, longest - len(p):] = True
    V = vocab_limit or model.config.vocab_size
    seen = torch.zeros(B, V, dtype=torch.bool, device=device) if repetition_penalty != 1.0 else None
    if seen is not None:
        for b, p in enumerate(prompts):
            seen[b, torch.tensor([t for t in p if t < V], dtype=torch.long, device=device)] = True

    room = longest + max_new_tokens if block is None else min(block, longest + max_new_tokens)
    cache = model.make_cache(B, room)  # room for what this call can use
    full_vocab = V == model.config.vocab_size

    def next_logits(logits: torch.Tensor) -> torch.Tensor:  # (B, T, vocab) -> (B, V), fp32
        logits = logits[:, -1] if full_vocab else logits[:, -1, :V]
        return logits if logits.dtype == torch.float32 else logits.float()

    logits = next_logits(model(idx, cache=cache, pad_mask=None if bool(pad.all()) else pad, last_only=True))  # (B, V)
    out: list[list[int]] = [[] for _ in range(B)]
    reasons: list[str | None] = [None] * B
    stop_set = set(stop_tokens)
    step_logp: list[torch.Tensor] = []
    step_entropy: list[torch.Tensor] = []
    for step in range(max_new_tokens):
        if allowed is not None:
            logits = constrain(logits, allowed([p + o for p, o in zip(prompts, out)]))
        if seen is not None:
            logits = apply_repetition_penalty(logits, seen, repetition_penalty)
        if temperature == 0:
            nxt = logits.argmax(dim=-1)
            dist = logits
        else:
            dist = process_logits(logits, temperature, top_k, top_p, min_p)
            probs = dist.softmax(dim=-1)
            nxt = draw(probs, generator)
        if logprobs:  # of the distribution drawn from: log softmax(dist)[nxt], and its entropy
            if temperature == 0:
                probs = dist.softmax(dim=-1)
            step_logp.append(dist.gather(1, nxt[:, None]).squeeze(1) - dist.logsumexp(dim=-1))
            step_entropy.append(torch.special.entr(probs).sum(-1))  # -p log p, 0 where p = 0 (filtered)
        if seen is not None:
            seen[torch.arange(B, device=device), nxt] = True
        for b, tok in enumerate(nxt.tolist()):
            if reasons[b] is not None:
                continue
            out[b].append(tok)
            if on_token is not None:
                on_token(b, tok)
            if tok in stop_set:
                reasons[b] = "stop_token"
            elif stop_strings and any(s in decode(out[b]) for s in stop_strings):
                reasons[b] = "stop_string"
        if all(r is not None for r in reasons):
            break
        if step == max_new_tokens - 1:
            break
        if block is not None and cache.length >= block:
            reasons = [r or "context" for r in reasons]
            break
        # Finished sequences keep decoding (their tokens are dropped): batch shapes stay fixed.
        logits = next_logits(model(nxt[:, None], cache=cache))
    if logprobs:
        return Generation(out, [r or "length" for r in reasons], torch.stack(step_logp, 1),
                          torch.stack(step_entropy, 1))
    return Generation(out, [r or "length" for r in reasons])


def constrain(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``logits`` (B, V) with the tokens ``mask`` (B, V) does not allow set to -inf."""
    mask = mask.to(logits.device)
    if mask.shape != logits.shape:
        raise ValueError(f"allowed() returned a mask of shape {tuple(mask.shape)} for logits of {tuple(logits.shape)}")
    if not bool(mask.any(-1).all()):
        raise ValueError("allowed() left a sequence no token to take")
    return logits.masked_fill(~mask, float("-inf"))


def draw(probs: torch.Tensor, generator: torch.Generator | Sequence[torch.Generator] | None) -> torch.Tensor:
    """One token per row of ``probs`` (B, V): from one generator (``torch.multinomial``), or row b
    from ``generator[b]`` by inverting its cumulative distribution at one uniform draw u_b of that
    generator: the first token whose cumulative probability (float64) exceeds u_b x the row's
    total. The same distribution as multinomial's, for one random number per row rather than the V
    exponentials multinomial draws per row (a rollout of 64 rows, vocabulary 8,192: ~1.5 ms a
    step instead of ~12). A token of probability 0 is never drawn."""
    if generator is None or isinstance(generator, torch.Generator):
        return torch.multinomial(probs, 1, generator=generator).squeeze(1)
    u = torch.cat([torch.rand(1, generator=g, dtype=torch.float64, device=g.device) for g in generator])  # (B,)
    cdf = probs.double().cumsum(-1)  # (B, V)
    total = cdf[:, -1]
    x = torch.minimum(u.to(cdf.device) * total, torch.nextafter(total, torch.zeros_like(total)))  # < total
    return torch.searchsorted(cdf, x[:, None], right=True).squeeze(1)  # the first cdf > x: a token with p > 0


def cut_at_stop(text: str, stop_strings: Sequence[str]) -> str:
    """``text`` up to (not including) the earliest stop string."""
    cuts = [text.find(s) for s in stop_strings if s in text]
    return text[: min(cuts)] if cuts else text
