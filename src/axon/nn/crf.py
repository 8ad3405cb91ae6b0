"""A linear-chain conditional random field over tag sequences (Lafferty et al. 2001).

The layer on top of a tagger's per-token emission scores (a BiLSTM's or BERT's logits). A tag
sequence y_1..y_n scores

    s(x, y) = start[y_1] + sum_t emit[t, y_t] + sum_{t>1} trans[y_{t-1}, y_t] + end[y_n]

and p(y | x) = exp(s(x, y)) / Z(x), Z summing over all K^n tag sequences.

    emissions (B, T, K)    mask (B, T) bool, True on real tokens (a left-aligned prefix)
          |
          +--> nll(emissions, tags, mask)  -> (B,)  log Z - s(x, y)    forward algorithm
          |        alpha_1 = start + emit_1                        (B, K)
          |        alpha_t = logsumexp_i(alpha_{t-1}[i] + trans[i, :]) + emit_t   where mask_t
          |        log Z   = logsumexp(alpha_n + end)
          |
          +--> decode(emissions, mask) -> list of B tag lists, each of its sequence's length
                   Viterbi: max instead of logsumexp, with back-pointers (B, T, K)

``trans[i, j]`` is the score of tag j following tag i. Padded positions (mask False) leave alpha
unchanged, so a sequence's Z only sees its own length; every sequence needs at least one real
token (mask[:, 0] all True). Everything is in log space, batched over B, and runs in float64 when
the parameters and emissions are float64 (the tests check against brute force to 1e-10).
"""

from __future__ import annotations

import torch
from torch import nn

from axon.errors import ConfigError


class CRF(nn.Module):
    """Linear-chain CRF with ``num_tags`` tags: transitions (K, K), start (K,) and end (K,) scores."""

    def __init__(self, num_tags: int) -> None:
        super().__init__()
        if not isinstance(num_tags, int) or isinstance(num_tags, bool) or num_tags < 1:
            raise ConfigError(f"num_tags must be an integer >= 1, got {num_tags!r}")
        self.num_tags = num_tags
        self.transitions = nn.Parameter(torch.empty(num_tags, num_tags))
        self.start = nn.Parameter(torch.empty(num_tags))
        self.end = nn.Parameter(torch.empty(num_tags))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for p in (self.transitions, self.start, self.end):
            nn.init.uniform_(p, -0.1, 0.1)

    def _check(self, emissions: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        if emissions.dim() != 3 or emissions.size(-1) != self.num_tags:
            raise ValueError(f"emissions must be (B, T, {self.num_tags}), got {tuple(emissions.shape)}")
        B, T, _ = emissions.shape
        if T < 1:
            raise ValueError("emissions need at least one position (T >= 1)")
        if mask is None:
            return torch.ones(B, T, dtype=torch.bool, device=emissions.device)
        if mask.shape != (B, T):
            raise ValueError(f"mask must be (B, T) = {(B, T)}, got {tuple(mask.shape)}")
        mask = mask.bool()
        if not bool(mask[:, 0].all()):
            raise ValueError("every sequence needs a real first token (mask[:, 0] all True)")
        return mask

    def score(self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """s(x, y) for each sequence: (B,). ``tags`` (B, T) long; padded positions are ignored."""
        mask = self._check(emissions, mask)
        m = mask.to(emissions.dtype)
        emit = emissions.gather(-1, tags.unsqueeze(-1)).squeeze(-1)  # (B, T)
        s = self.start[tags[:, 0]] + (emit * m).sum(1)
        if tags.size(1) > 1:
            trans = self.transitions[tags[:, :-1], tags[:, 1:]]  # (B, T-1)
            s = s + (trans * m[:, 1:]).sum(1)
        last = mask.long().sum(1) - 1  # index of each sequence's last real token
        return s + self.end[tags.gather(1, last.unsqueeze(1)).squeeze(1)]

    def log_partition(self, emissions: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """log Z(x) by the forward algorithm: (B,)."""
        mask = self._check(emissions, mask)
        alpha = self.start + emissions[:, 0]  # (B, K)
        for t in range(1, emissions.size(1)):
            # (B, K, 1) + (K, K) -> (B, K_prev, K_next), reduce over prev
            nxt = torch.logsumexp(alpha.unsqueeze(2) + self.transitions, dim=1) + emissions[:, t]
            alpha = torch.where(mask[:, t].unsqueeze(1), nxt, alpha)
        return torch.logsumexp(alpha + self.end, dim=1)

    def nll(self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """-log p(tags | emissions) per sequence: (B,) (take ``.mean()`` or ``.sum()`` for a loss)."""
        return self.log_partition(emissions, mask) - self.score(emissions, tags, mask)

    forward = nll

    @torch.no_grad()
    def decode(self, emissions: torch.Tensor, mask: torch.Tensor | None = None) -> list[list[int]]:
        """The highest-scoring tag sequence of each input by Viterbi: B lists, each as long as its mask."""
        mask = self._check(emissions, mask)
        B, T, K = emissions.shape
        score = self.start + emissions[:, 0]  # (B, K): best score of a path ending in each tag
        backptr = []
        for t in range(1, T):
            cand = score.unsqueeze(2) + self.transitions  # (B, K_prev, K_next)
            best, idx = cand.max(dim=1)
            nxt = best + emissions[:, t]
            keep = mask[:, t].unsqueeze(1)
            score = torch.where(keep, nxt, score)
            # a padded step points each tag at itself, so backtracking passes through it unchanged
            ident = torch.arange(K, device=emissions.device).expand(B, K)
            backptr.append(torch.where(keep, idx, ident))
        last = (score + self.end).argmax(dim=1)  # (B,)
        lengths = mask.long().sum(1).tolist()
        path = [last]
        for bp in reversed(backptr):
            last = bp.gather(1, last.unsqueeze(1)).squeeze(1)
            path.append(last)
        path = torch.stack(path[::-1], dim=1).tolist()
        return [p[:n] for p, n in zip(path, lengths)]
