"""The embedding reader (issue 23): a decoder that answers a question from the RETRIEVER'S VECTORS of
the passages, not from their text -- "passage embeddings as extra keys/values" of its attention.

    vectors (B, K, D), K <= max_passages                     idx (B, T) question + answer ids
    (each passage's retriever vector, e.g. a DPR run's)          |
        |                                                        wte
    MLP per passage: Linear D -> C, GELU, Linear C -> m*C        |
        | (B, K, m, C)                                           |
    + slot[rank k, slot j]  (learned, (max_passages, m, C))      |
    x vector_mask (B, K): an absent passage -> zeros             |
        | prefix (B, P = K*m, C)                                 |
        +-----------------------[prefix ; wte(idx)]--------------+
                                     |  (B, P + T, C), positions 0 .. P+T-1
    Decoder.hidden_states (axon.models.decoder), prefix_mask: causal over the whole; no position
    attends to an absent passage's slots, so in every layer each text position's keys and values
    are those of the text before it AND of the K*m passage slots
                                     |
    keep the text positions h[:, P:] -> lm_head -> logits (B, T, vocab_size)

Position t of the logits predicts idx token t+1 (targets (B, T) as a causal LM's, -100 where no loss
is taken: ``axon.objectives.embed_reader``). The model returns logits.

How it relates to the others. RETRO (Borgeaud et al. 2022, sec. 2.4) adds a separate chunked
cross-attention to some layers, whose queries are the text of a chunk and whose keys/values are
the ENCODED TOKENS of the neighbours retrieved for the chunk before it (so retrieval varies along a
long text and the neighbours' words are read). Here the passages are a prefix of the one
self-attention, read by every layer and by every text position (a question is short: one retrieval
per example), and each passage is a handful of embeddings made from its retriever vector -- the
prefix-as-memory reading, as in prefix-tuning (Li & Liang 2021), whose prefix is learned per task,
whereas this one is computed per passage (and per query, through the retrieval). What it cannot
do: the reader sees only what the retriever's vector kept of a passage (a DPR vector is trained to
score relevance, not to reproduce the text), never the passage's words, so it can answer only what
that vector encodes -- a fact that must be COPIED from the passage (a rare name, a number) is out of
reach unless the vector happens to carry it. The text readers of ``axon.tasks.rag`` (the passages
as decoder text, Fusion-in-Decoder) read the words, at the cost of their length in positions.

An absent passage (fewer than K retrieved: ``vector_mask`` False) is zeroed AND masked from every
other position's attention (``Decoder.hidden_states``' ``prefix_mask``), so the logits do not depend
on its vector at all.
"""

from __future__ import annotations

import torch
from torch import nn

from axon.model_configs.embed_reader import PRESETS, EmbedReaderConfig  # noqa: F401 (re-exported)
from axon.models.base import Model
from axon.models.decoder import Decoder


class EmbedReader(Model):
    def __init__(self, cfg: EmbedReaderConfig):
        super().__init__()
        self.config = cfg
        C, m = cfg.n_embd, cfg.slots
        # one passage vector (D) -> its m slot embeddings (m*C), a 2-layer GELU MLP (LLaVA 1.5's connector shape)
        self.passage_mlp = nn.Sequential(nn.Linear(cfg.passage_dim, C), nn.GELU(), nn.Linear(C, m * C))
        self.slot_pos = nn.Parameter(torch.empty(cfg.max_passages, m, C))  # per (passage rank, slot)
        self.decoder = Decoder(cfg.decoder_config())  # raises when vocab_size is still null
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The decoder's GPT-2 init; the passage MLP truncated normal (init_std) with zero biases; the
        slot positions N(0, init_std), as the decoder's embeddings."""
        std = self.config.init_std
        self.decoder.reset_parameters()
        for mod in self.passage_mlp:
            if isinstance(mod, nn.Linear):
                nn.init.trunc_normal_(mod.weight, std=std)
                nn.init.zeros_(mod.bias)
        nn.init.normal_(self.slot_pos, 0.0, std)

    def num_params(self) -> int:
        """Parameters, shared tensors (the decoder's tied head) once."""
        return sum({id(p): p.numel() for p in self.parameters()}.values())

    def encode_passages(self, vectors: torch.Tensor, vector_mask: torch.Tensor | None = None) -> torch.Tensor:
        """vectors (B, K, D), vector_mask (B, K) bool or None (all present) -> the prefix (B, K*m, C),
        zero at the slots of an absent passage."""
        cfg = self.config
        if vectors.dim() != 3 or vectors.size(-1) != cfg.passage_dim:
            raise ValueError(f"vectors must be (B, K, passage_dim={cfg.passage_dim}), got {tuple(vectors.shape)}")
        B, K, _ = vectors.shape
        if K > cfg.max_passages:
            raise ValueError(f"{K} passages exceed model.max_passages={cfg.max_passages}")
        if vector_mask is not None and vector_mask.shape != (B, K):
            raise ValueError(f"vector_mask must be (B, K) = {(B, K)}, got {tuple(vector_mask.shape)}")
        dtype = self.passage_mlp[0].weight.dtype
        slots = self.passage_mlp(vectors.to(dtype)).view(B, K, cfg.slots, cfg.n_embd)  # (B, K, m, C)
        slots = slots + self.slot_pos[:K]  # rank k's slot j: the same learned offset in every example
        if vector_mask is not None:
            slots = slots * vector_mask[:, :, None, None].to(slots.dtype)  # absent: zeros (and masked below)
        return slots.reshape(B, K * cfg.slots, cfg.n_embd)

    def forward(self, vectors: torch.Tensor, idx: torch.Tensor, vector_mask: torch.Tensor | None = None) -> torch.Tensor:
        """vectors (B, K, D) float, idx (B, T), vector_mask (B, K) bool or None -> logits (B, T,
        vocab_size) for the idx positions."""
        prefix = self.encode_passages(vectors, vector_mask)  # (B, P, C)
        h = self._states(prefix, idx, vector_mask)
        return self.decoder.lm_head(h[:, prefix.size(1):])

    def _states(self, prefix: torch.Tensor, idx: torch.Tensor, vector_mask: torch.Tensor | None,
                last_only: bool = False) -> torch.Tensor:
        """The decoder's states over [prefix ; idx], the absent passages' slots masked as keys."""
        pmask = None
        if vector_mask is not None and not bool(vector_mask.all()):
            pmask = vector_mask.to(torch.bool).repeat_interleave(self.config.slots, dim=1)  # (B, P)
        return self.decoder.hidden_states(idx, prefix=prefix, prefix_mask=pmask, last_only=last_only)

    def flops_per_token(self, seq_len: int | None = None) -> float:
        """Training FLOPs of ONE example divided by its T = seq_len (default block_size) text
        positions, by the late-fusion convention (``axon.models.late_fusion``), so that the trainer's
        tokens per step (batch x block_size) times this is a step's FLOPs: 6 x the passage MLP's
        weights for each of max_passages vectors + the decoder's over P + T positions (weights and
        attention over P + T keys), less the LM head at the P = max_passages * slots prefix
        positions, which it never computes. The slot offsets and the masking are not counted."""
        cfg = self.config
        T, P, K = seq_len or cfg.block_size, cfg.prefix_len, cfg.max_passages
        mlp = 6.0 * K * sum(mod.weight.numel() for mod in self.passage_mlp if isinstance(mod, nn.Linear))
        decoder = (P + T) * self.decoder.flops_per_token(P + T) - 6.0 * P * cfg.vocab_size * cfg.n_embd
        return (mlp + decoder) / T

    @torch.no_grad()
    def greedy(self, vectors: torch.Tensor, prompts: list[list[int]], max_new: int, stop_id: int | None,
               vector_mask: torch.Tensor | None = None) -> list[list[int]]:
        """Greedy answers: row b of ``vectors`` (B, K, D) with ``prompts[b]`` (at least one id each;
        lengths may differ) gets up to ``max_new`` new ids, stopping at ``stop_id`` (left out of the
        answer) or after the id that the last of the block_size text positions predicts. Returns the
        new ids.

        Batched, no cache: each step recomputes the whole sequence (answers are short). Prompts of
        different lengths are RIGHT-padded: the model is causal over idx, so the logits at row b's
        last real position do not depend on the padding after it, and each row reads its own last
        position; the new id then overwrites row b's first pad. (Left padding would shift the text
        away from the prefix and need a pad mask; right padding needs none.)"""
        if len(prompts) != vectors.size(0):
            raise ValueError(f"{len(prompts)} prompts for {vectors.size(0)} rows of vectors")
        if any(len(p) == 0 for p in prompts):
            raise ValueError("every prompt must hold at least one id: position t predicts token t+1")
        was_training = self.training
        self.eval()
        try:
            prefix = self.encode_passages(vectors, vector_mask)  # encoded once
            B, limit = len(prompts), self.config.block_size
            lengths = [len(p) for p in prompts]
            if max(lengths) > limit:
                raise ValueError(f"a prompt of {max(lengths)} ids exceeds block_size {limit}")
            width = min(max(lengths) + max_new, limit)
            idx = torch.zeros(B, width, dtype=torch.long, device=vectors.device)  # pad id 0: never read
            for b, p in enumerate(prompts):
                idx[b, : len(p)] = torch.tensor(p, dtype=torch.long)
            out: list[list[int]] = [[] for _ in range(B)]
            done = [False] * B
            for _ in range(max_new):
                active = [b for b in range(B) if not done[b]]
                if not active:
                    break
                L = max(lengths[b] for b in active)  # positions the active rows need
                h = self._states(prefix, idx[:, :L], vector_mask)[:, prefix.size(1):]  # (B, L, C)
                last = torch.tensor([min(n, L) - 1 for n in lengths], device=idx.device)
                nxt = self.decoder.lm_head(h[torch.arange(B, device=idx.device), last]).argmax(-1).tolist()  # (B,)
                for b in active:
                    if stop_id is not None and nxt[b] == stop_id:
                        done[b] = True
                        continue
                    out[b].append(nxt[b])
                    if lengths[b] == limit:  # the new id has no text position: nothing can follow it
                        done[b] = True
                    else:
                        idx[b, lengths[b]] = nxt[b]
                        lengths[b] += 1
            return out
        finally:
            self.train(was_training)


__all__ = ["EmbedReader", "EmbedReaderConfig", "PRESETS"]
