"""Checks every generation cache must pass, shared by the families' tests (KV, ring, state caches),
and the bound cached and full-forward logits are compared with.

A cache computes the same mathematics as a full forward in another summation order (other batch
and sequence shapes, hence other kernels and blockings): kind 2 of tests/numerics.py, whose bound
needs the longest reduction n on the path and the number of reductions depth it passes through in
sequence. ``reductions`` reads both from the model's config.
"""

import torch
from numerics import assert_close_orders, order_tol


def reductions(model, steps: int, encoder: bool = False) -> tuple[int, int]:
    """(n, depth) of tests/numerics.py for the logits of ``model`` over ``steps`` positions.

    n: the longest reduction on the path (a width, an MLP width, a gate's inputs, the positions
    attended over or scanned); depth: the layers in sequence + 1 for the head. A recurrent cell
    sends its state through a matrix product at every step, so there every (layer, step) is one
    more reduction the error passes through: depth n_layer x steps + 1. Mamba's scan is an
    elementwise linear recurrence, a decayed sum over the steps: a reduction of length steps.
    A progressive decoder counts the blocks it has now (a grown copy is one more in sequence). An
    encoder-decoder counts its decoder layers, plus the encoder's when ``encoder`` (the two paths
    encode the source on different shapes, so the memory itself differs); steps: the longer of the
    source and target positions attended over.
    """
    cfg = model.config
    if cfg.family in ("decoder", "progressive", "reward"):  # reward: the scalar head in place of the LM head
        return max(cfg.n_embd, cfg.hidden, steps), len(model.blocks) + 1
    if cfg.family == "seq2seq":
        return max(cfg.n_embd, cfg.hidden, steps), cfg.dec_layers + 1 + (cfg.enc_layers if encoder else 0)
    if cfg.family == "rnn":  # a gate sums W_ih x + W_hh h: n_embd (first layer) or hidden inputs, + hidden
        return max(cfg.n_embd, cfg.hidden) + cfg.hidden, cfg.n_layer * steps + 1
    if cfg.family == "rnn_seq2seq":  # the widest sum: Bahdanau's readout [s; c; E y] or a gate's [E y; c] + state;
        # the error passes the encoder's and the decoder's steps, then the attention, readout and head
        return cfg.n_embd + 2 * cfg.hidden, 2 * cfg.n_layer * steps + 3
    if cfg.family == "mamba":
        return max(cfg.n_embd, cfg.d_inner, steps), cfg.n_layer + 1
    if cfg.family == "conv_attention":  # pre blocks, down, inner blocks, up, post blocks, head
        outer, inner = cfg.level(inner=False), cfg.level(inner=True)
        n = max(outer.hidden, inner.hidden, cfg.shorten * cfg.n_embd, cfg.inner_embd, steps)
        return n, cfg.n_pre_layer + cfg.n_inner_layer + cfg.n_post_layer + 3
    if cfg.family == "routed":  # each position comes from one expert: the widest and deepest bound
        counts = [reductions(e, steps, encoder) for e in model.experts]
        return max(n for n, _ in counts), max(d for _, d in counts)
    raise ValueError(f"no reduction count for family {cfg.family!r}")


def assert_same_logits(model, actual: torch.Tensor, expected: torch.Tensor, steps: int, msg: str | None = None,
                       encoder: bool = False) -> None:
    """``actual`` equals ``expected`` up to summation order, for logits of ``model`` over ``steps``
    positions (tests/numerics.py, kind 2)."""
    n, depth = reductions(model, steps, encoder=encoder)
    assert_close_orders(actual, expected, n=n, depth=depth, msg=msg)


@torch.no_grad()
def check_left_padded_batch(model, vocab: int, lengths=(9, 4, 6), new_tokens: int = 8, tol: float | None = None) -> None:
    """A left-padded prompt batch, then ``new_tokens`` single-token steps through ``model.make_cache``,
    gives every sequence the logits it gets alone in a full forward. Pads hold arbitrary ids, so a
    cache that lets them leak in fails. ``tol``: None compares with the summation-order bound
    (``assert_same_logits``); a float is an absolute bound on |batched - alone|."""
    seqs = [torch.randint(1, vocab, (n + new_tokens,)) for n in lengths]  # prompt + continuation
    B, P = len(lengths), max(lengths)
    prompts = torch.randint(0, vocab, (B, P))
    pad = torch.zeros(B, P, dtype=torch.bool)
    for b, (s, n) in enumerate(zip(seqs, lengths)):
        prompts[b, P - n :] = s[:n]
        pad[b, P - n :] = True
    cache = model.make_cache(B)
    first = model(prompts, cache=cache, pad_mask=pad)
    steps = [model(torch.stack([s[n + t] for s, n in zip(seqs, lengths)])[:, None], cache=cache) for t in range(new_tokens)]
    assert torch.isfinite(first).all()  # pad rows too

    def close(actual, expected, what):
        if tol is None:
            assert_same_logits(model, actual, expected, steps=P + new_tokens, msg=what)
        else:
            assert (actual - expected).abs().max().item() <= tol, what

    for b, (s, n) in enumerate(zip(seqs, lengths)):
        alone = model(s[None])[0]  # (n + new_tokens, V)
        close(first[b, P - n :], alone[:n], f"prompt of sequence {b}")
        close(torch.cat([st[b] for st in steps]), alone[n:], f"steps of sequence {b}")


def logprob_tol(model, tokens: int, steps: int, scale: float) -> float:
    """The bound on a sum of ``tokens`` log-probabilities of ``model`` (a search's score) against the
    same sum from full forwards: each term is a logit (``reductions(model, steps)``) through a
    log-softmax over the vocabulary (one more reduction, of length vocab_size), and the terms' errors
    add. ``scale``: the largest |logit| involved."""
    n, depth = reductions(model, steps)
    return order_tol(torch.float32, n=max(n, model.config.vocab_size), depth=tokens * (depth + 1), scale=max(1.0, scale))
