"""Checks every generation cache must pass, shared by the families' tests (KV, ring, state caches)."""

import torch


@torch.no_grad()
def check_left_padded_batch(model, vocab: int, lengths=(9, 4, 6), new_tokens: int = 8, tol: float = 1e-5) -> None:
    """A left-padded prompt batch, then ``new_tokens`` single-token steps through ``model.make_cache``,
    gives every sequence the logits it gets alone in a full forward. Pads hold arbitrary ids, so a
    cache that lets them leak in fails."""
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
    for b, (s, n) in enumerate(zip(seqs, lengths)):
        alone = model(s[None])[0]  # (n + new_tokens, V)
        torch.testing.assert_close(first[b, P - n :], alone[:n], rtol=tol, atol=tol)
        torch.testing.assert_close(torch.cat([st[b] for st in steps]), alone[n:], rtol=tol, atol=tol)
