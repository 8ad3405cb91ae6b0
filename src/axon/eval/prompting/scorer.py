"""Scoring text with a causal language model: lm-evaluation-harness's three request types.

    loglikelihood          (context, continuation) -> (sum of log p(continuation tokens), greedy?)
    loglikelihood_rolling  document -> sum of log p(every token | the tokens before it)
    generate_until         (context, {until, max_gen_toks, ...}) -> the continuation, cut before a stop

Token boundaries, as lm-eval draws them (its issues #942, #1628): trailing whitespace of the
context moves to the front of the continuation, then the continuation's tokens are what encoding
the whole text adds to encoding the context alone:

    context "Q: 2+2?\\nA: "  continuation "4"   ->   context "Q: 2+2?\\nA:"  continuation " 4"
    whole = encode(context + continuation)          ctx = encode(context)
    continuation tokens = whole[len(ctx):]          (an empty context: ctx = [end-of-text])

One forward scores a continuation of n tokens (right-padded into a batch: a causal model's real
positions never see the padding after them):

    input     c0 c1 c2 x0 x1           (the sequence less its last token, left-truncated to the
    targets         x0 x1 x2            model's context) ; logits (B, T, V) -> log_softmax (fp32)
    sum of log p(x_i) over the last n positions; greedy = every x_i is its position's argmax

Rolling windows (``loglikelihood_rolling``), L = max_length, every token predicted exactly once:
the document is [eot] + tokens (the first token predicted from the end-of-text token) when the
tokenizer has one; without one the first token is not scored, so a perplexity counts n - 1 tokens.

    stream   e t1 t2 t3 t4 t5 t6 t7 t8 t9            L = 4, rolling_context = 1
    window 1 [e  t1 t2 t3]           scores t1..t4   (L targets)
    window 2          [t4 t5 t6 t7]  scores t5..t8   (each new target sees the L tokens before it
    window 3             [t6 t7 t8 t9] scores t9      that fit; only the new ones are scored)

Each later window predicts at most L - rolling_context + 1 new tokens, so its first new token sees
at least ``rolling_context`` tokens before it (1: lm-eval's ``get_rolling_token_windows`` with
``context_len=1``, disjoint windows; L: one new token per window, the most context, L times the work).

Batching sorts requests by length (longest first: a batch holds similar lengths, and running out of
memory shows at once) and returns results in request order; a request's numbers never depend on
the batch size or on its batch-mates (right padding for scoring; generation gives each request its
own generator, seeded from the seed and its context). Families: any whose forward is
``model(idx (B, T), pad_mask=None, last_only=False) -> logits (B, T, V)`` -- the decoder (MoE and
converted Hugging Face runs included), Mamba, the RNNs; one without a context limit
(``axon.generate.cache.context_limit`` is None) is scored in one window, through its cache.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from axon.errors import ConfigError, DataError, check_count
from axon.generate.cache import context_limit
from axon.generate.sampling import cut_at_stop, generate

#: generation_kwargs a task may give generate_until (lm-eval's names), and their defaults
GENERATION_KEYS = {"until": None, "max_gen_toks": 256, "do_sample": False, "temperature": 0.0, "top_k": None,
                   "top_p": None}


@dataclass
class _Row:
    """One forward row: ``tokens[:-1]`` is the input, the last ``n`` tokens are the scored targets."""

    tokens: list[int]
    n: int


def is_causal_lm(family: str) -> bool:
    """Whether a run of model family ``family`` can be scored (its forward gives next-token logits)."""
    from axon.models import FAMILIES

    return FAMILIES[family].task in ("lm", "ppo")  # a PPO run's forward is its policy's


def rolling_windows(n_tokens: int, max_length: int | None, rolling_context: int = 1) -> list[tuple[int, int]]:
    """The windows that predict tokens 1 .. n_tokens - 1 of a stream exactly once: a list of
    (start, end), the window's input being stream[start:end] and its scored targets the last
    ``end - previous end`` of stream[start + 1 : end + 1] (see the module docstring). ``max_length``
    None: one window."""
    last = n_tokens - 1  # the highest target index
    if last < 1:
        return []
    if max_length is None or last <= max_length:
        return [(0, last)]
    stride = max_length - rolling_context + 1  # new targets per later window
    windows, done = [(0, max_length)], max_length  # targets 1..done predicted
    while done < last:
        end = min(done + stride, last)
        windows.append((end - max_length, end))
        done = end
    return windows


class LMScorer:
    """lm-eval's ``loglikelihood``, ``loglikelihood_rolling`` and ``generate_until`` for ``model``
    (any causal LM family, see the module docstring) and its ``tokenizer`` (an Axon tokenizer:
    ``encode``, ``decode``, ``eot_id``, ``vocab_size``).

    ``batch_size``: rows per forward (or sequences per generation batch); ``max_length``: the most
    tokens one forward reads (default and at most: the model's context limit; None for a family
    without one); ``rolling_context``: the fewest tokens the first new token of a later rolling
    window sees (1, lm-eval's default, to max_length); ``seed``: of sampled generations.
    """

    def __init__(self, model, tokenizer, batch_size: int = 8, max_length: int | None = None, *,
                 rolling_context: int = 1, seed: int = 1234):
        check_count("batch_size", batch_size, 1)
        check_count("max_length", max_length, 1, optional=True)
        limit = context_limit(model)
        if max_length is not None and limit is not None and max_length > limit:
            raise ConfigError(f"max_length {max_length} is beyond the model's context of {limit} tokens")
        self.max_length = max_length if max_length is not None else limit
        check_count("rolling_context", rolling_context, 1)
        if self.max_length is not None and rolling_context > self.max_length:
            raise ConfigError(f"rolling_context {rolling_context} is beyond max_length {self.max_length}")
        self.model, self.tokenizer = model, tokenizer
        self.batch_size, self.rolling_context, self.seed = batch_size, rolling_context, seed
        self.through_cache = limit is None  # e.g. a sliding-window decoder: its plain forward stops at block_size
        self.device = next(model.parameters()).device
        self.eot_id = tokenizer.eot_id
        self.vocab_limit = min(tokenizer.vocab_size, model.config.vocab_size)

    @classmethod
    def from_run(cls, run_dir: str | Path, device: str = "auto", **kwargs) -> LMScorer:
        """The scorer of a run directory's newest checkpoint and tokenizer (keywords: ``__init__``'s).
        A run that is no causal language model, or has no tokenizer.json, is refused in one line."""
        from axon.config import load_config, run_config_file
        from axon.train.run import load_run

        family = load_config(run_config_file(run_dir)).model.family  # checked before the weights are read
        if not is_causal_lm(family):
            raise ConfigError(f"{run_dir} is a {family} run, not a causal language model: "
                              "prompted evaluation needs one (decoder, mamba, rnn, ...)")
        _, model, tokenizer = load_run(run_dir, device)
        if tokenizer is None:
            raise ConfigError(f"{run_dir} has no tokenizer.json: prompted evaluation needs the run's tokenizer")
        return cls(model, tokenizer, **kwargs)

    # --- the three request types -----------------------------------------------------------------

    def loglikelihood(self, requests: Sequence[tuple[str, str]],
                      progress: Callable[[int], None] | None = None) -> list[tuple[float, bool]]:
        """(context, continuation) -> (sum of the continuation tokens' log-probabilities, whether
        greedy decoding from the context produces exactly those tokens). ``progress(k)``: k more
        requests done."""
        rows = [self._continuation_row(ctx, cont) for ctx, cont in requests]
        return self._score(rows, None if progress is None else (lambda done: progress(len(done))))

    def loglikelihood_rolling(self, requests: Sequence[str],
                              progress: Callable[[int], None] | None = None) -> list[float]:
        """Each document's log-likelihood: the sum over its tokens, each predicted once (windows;
        without an end-of-text token the first token is not scored)."""
        rows, owner = [], []
        for i, doc in enumerate(requests):
            stream = ([self.eot_id] if self.eot_id is not None else []) + self.tokenizer.encode(doc)
            done = 0
            for start, end in rolling_windows(len(stream), self.max_length, self.rolling_context):
                rows.append(_Row(stream[start : end + 1], end - done))
                owner.append(i)
                done = end
        left = [0] * len(requests)  # windows not yet scored, per document
        for i in owner:
            left[i] += 1
        if progress is not None and left.count(0):
            progress(left.count(0))  # documents too short to score (one token, no end-of-text token)

        def windows_done(done: list[int]) -> None:
            finished = 0
            for row in done:
                left[owner[row]] -= 1
                finished += left[owner[row]] == 0
            if finished:
                progress(finished)

        totals = [0.0] * len(requests)
        for i, (ll, _) in zip(owner, self._score(rows, None if progress is None else windows_done)):
            totals[i] += ll
        return totals

    def generate_until(self, requests: Sequence[tuple[str, dict]],
                       progress: Callable[[int], None] | None = None) -> list[str]:
        """(context, generation_kwargs) -> the continuation text, cut before the first stop string
        of ``until`` (never containing it). Greedy unless ``do_sample`` and a temperature > 0."""
        plans = [self._generation_plan(ctx, kwargs) for ctx, kwargs in requests]
        out: list[str | None] = [None] * len(requests)
        groups: dict[tuple, list[int]] = {}
        for i, plan in enumerate(plans):
            groups.setdefault(plan["key"], []).append(i)
        for members in groups.values():
            members.sort(key=lambda i: -len(plans[i]["tokens"]))
            for start in range(0, len(members), self.batch_size):
                chunk = members[start : start + self.batch_size]
                for i, text in zip(chunk, self._generate([plans[i] for i in chunk])):
                    out[i] = text
                if progress is not None:
                    progress(len(chunk))
        return out

    # --- scoring ---------------------------------------------------------------------------------

    def _encode_context(self, context: str) -> list[int]:
        if context:
            return self.tokenizer.encode(context)
        if self.eot_id is None:
            raise DataError("an empty context (a prompt of nothing but whitespace) is scored from the end-of-text "
                            "token, and this tokenizer has none: give the task a non-empty doc_to_text")
        return [self.eot_id]

    def _continuation_row(self, context: str, continuation: str) -> _Row:
        stripped = context.rstrip()
        context, continuation = stripped, context[len(stripped):] + continuation  # lm-eval #942
        if context:
            whole, ctx = self.tokenizer.encode(context + continuation), self.tokenizer.encode(context)
            cont = whole[len(ctx):]  # where a merge crosses the boundary, lm-eval's choice: ctx is encode(context)
        else:
            ctx, cont = self._encode_context(""), self.tokenizer.encode(continuation)
        if self.max_length is not None and len(cont) > self.max_length:
            raise DataError(f"a continuation of {len(cont)} tokens does not fit the model's context of "
                            f"{self.max_length} tokens")
        tokens = ctx + cont
        if self.max_length is not None:
            tokens = tokens[-(self.max_length + 1):]  # left-truncated: the input is at most max_length tokens
        return _Row(tokens, len(cont))

    def _forward(self, idx: torch.Tensor) -> torch.Tensor:
        if self.through_cache:
            return self.model(idx, cache=self.model.make_cache(idx.size(0), idx.size(1)))
        return self.model(idx)

    def _score(self, rows: list[_Row], done: Callable[[list[int]], None] | None) -> list[tuple[float, bool]]:
        """(log-likelihood, greedy) of each row, in order; ``done(indices)`` after each batch."""
        out: list[tuple[float, bool] | None] = [None] * len(rows)
        empty = [i for i in range(len(rows)) if rows[i].n == 0]
        for i in empty:  # an empty continuation: log 1, and greedy decoding produces it
            out[i] = (0.0, True)
        if done is not None and empty:
            done(empty)
        order = sorted((i for i in range(len(rows)) if rows[i].n > 0), key=lambda i: -len(rows[i].tokens))
        was_training = self.model.training
        self.model.eval()
        try:
            with self.model.averaged(), torch.inference_mode():
                for start in range(0, len(order), self.batch_size):
                    chunk = order[start : start + self.batch_size]
                    for i, result in zip(chunk, self._score_batch([rows[i] for i in chunk])):
                        out[i] = result
                    if done is not None:
                        done(chunk)
        finally:
            self.model.train(was_training)
        return out

    def _score_batch(self, rows: list[_Row]) -> list[tuple[float, bool]]:
        T = max(len(r.tokens) - 1 for r in rows)
        idx = torch.zeros(len(rows), T, dtype=torch.long)
        for b, r in enumerate(rows):
            idx[b, : len(r.tokens) - 1] = torch.tensor(r.tokens[:-1])
        logits = self._forward(idx.to(self.device))  # (B, T, V)
        results = []
        for b, r in enumerate(rows):
            m = len(r.tokens) - 1
            logp = logits[b, m - r.n : m].float().log_softmax(-1)  # (n, V): the positions that predict targets
            target = torch.tensor(r.tokens[-r.n:], device=logp.device)
            ll = logp.gather(1, target[:, None]).double().sum()
            results.append((float(ll), bool((logp.argmax(-1) == target).all())))
        return results

    # --- generation ------------------------------------------------------------------------------

    def _generation_plan(self, context: str, kwargs: dict) -> dict:
        if not isinstance(kwargs, dict):
            raise ConfigError(f"generation_kwargs must be a mapping, got {kwargs!r}")
        unknown = sorted(set(kwargs) - set(GENERATION_KEYS))
        if unknown:
            raise ConfigError(f"generation_kwargs: unknown key {unknown[0]!r}; known: {', '.join(GENERATION_KEYS)}")
        o = {**GENERATION_KEYS, **kwargs}
        until = o["until"]
        until = [until] if isinstance(until, str) else list(until or [])
        if not all(isinstance(s, str) and s for s in until):
            raise ConfigError("generation_kwargs.until must be a string or a list of non-empty strings, "
                              f"got {o['until']!r}")
        check_count("generation_kwargs.max_gen_toks", o["max_gen_toks"], 1)
        temperature = float(o["temperature"]) if o["do_sample"] else 0.0
        if o["do_sample"] and o["temperature"] == 0.0 and "temperature" not in kwargs:
            temperature = 1.0  # do_sample without a temperature: the model's own distribution
        tokens = self._encode_context(context)
        if self.max_length is not None:
            room = self.max_length - o["max_gen_toks"]
            if room < 1:
                raise ConfigError(f"generation_kwargs.max_gen_toks {o['max_gen_toks']} leaves no room for the prompt "
                                  f"in the model's context of {self.max_length} tokens")
            tokens = tokens[-room:]  # left-truncated, as lm-eval does
        key = (tuple(until), o["max_gen_toks"], temperature, o["top_k"], o["top_p"])
        return {"tokens": tokens, "until": until, "max_gen_toks": o["max_gen_toks"], "temperature": temperature,
                "top_k": o["top_k"], "top_p": o["top_p"], "key": key, "context": context}

    def _generator(self, context: str) -> torch.Generator:
        digest = hashlib.sha256(f"{self.seed}\0{context}".encode()).digest()
        return torch.Generator(device=self.device).manual_seed(int.from_bytes(digest[:8], "little") >> 1)

    def _generate(self, plans: list[dict]) -> list[str]:
        p = plans[0]  # the group shares every setting but the prompt
        stops = [self.eot_id] if self.eot_id is not None else []
        generators = None if p["temperature"] == 0 else [self._generator(q["context"]) for q in plans]
        with self.model.averaged():
            gen = generate(self.model, [q["tokens"] for q in plans], p["max_gen_toks"], temperature=p["temperature"],
                           top_k=p["top_k"], top_p=p["top_p"], stop_tokens=stops, stop_strings=p["until"],
                           decode=self.tokenizer.decode, generator=generators, vocab_limit=self.vocab_limit)
        texts = []
        for tokens, reason in zip(gen.tokens, gen.finish_reasons):
            if reason == "stop_token":
                tokens = tokens[:-1]
            texts.append(cut_at_stop(self.tokenizer.decode(tokens), p["until"]))
        return texts


__all__ = ["LMScorer", "GENERATION_KEYS", "is_causal_lm", "rolling_windows"]
