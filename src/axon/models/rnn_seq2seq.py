"""RNN encoder-decoders with attention: Bahdanau et al. 2015 (additive) and Luong et al. 2015
(multiplicative, "general"), over one bidirectional GRU/LSTM encoder.

The encoder (both attentions), source ids (B, S), right-padded, ``src_mask`` (B, S) True = real:

    embed -> dropout                                    (B, S, E)
        |
    bidirectional GRU/LSTM x n_layer (packed: a pad never enters a state)
        |                                   \\
    memory h_j = [h->_j ; h<-_j]  (B, S, H)   final states [h->_m ; h<-_1] per layer
                                               s_0 = tanh(W_b [h->_m ; h<-_1])   (L, B, H)  (LSTM: c_0 = 0)

Bahdanau (``model.attention: bahdanau``), one target step t, input y_{t-1} (BOS first):

    e_tj = v^T tanh(W s_{t-1} + U h_j)        (B, S)   U h_j computed once per source
    a_tj = softmax_j(e_tj) over real j        (B, S)   pads: weight 0
    c_t  = sum_j a_tj h_j                     (B, H)
    s_t  = RNN([E y_{t-1} ; c_t], s_{t-1})    (B, H)   the context is fed into the decoder's input
    o_t  = tanh(W_o [s_t ; c_t ; E y_{t-1}])  (B, H)   the paper's deep output, tanh in place of maxout
    logits = W_y dropout(o_t)                 (B, V)

Luong (``model.attention: luong``), the "general" score, with input feeding (``model.input_feed``,
default on, sec. 3.3: the previous attentional vector joins the input; off: the input is E y_{t-1}):

    s_t  = RNN([E y_{t-1} ; h~_{t-1}], s_{t-1})   (B, H)   h~_0 = 0
    e_tj = s_t^T W_a h_j                      (B, S)   W_a h_j computed once per source
    a_tj = softmax_j(e_tj) over real j        (B, S)
    c_t  = sum_j a_tj h_j                     (B, H)
    h~_t = tanh(W_c [c_t ; s_t])              (B, H)   the attentional hidden state (no bias, as the paper)
    logits = W_y dropout(h~_t)                (B, V)

Bahdanau scores with the state *before* the step and feeds the context in; Luong scores with the
state *after* it and combines the context on the way out. Both are global attention over every
real source position. Departures from the papers: the initial state reads both directions' final
states (Bahdanau: the backward one only); one shared embedding for source and target (the
seq2seq task's one vocabulary); no maxout.

Padding: the encoder runs on a packed sequence, so a source's memory and final states do not
depend on what else is in its batch (the backward direction starts at its own last token), and
the scores of pads are -inf before the softmax, so their weights are exactly 0 and the weights
of real tokens sum to 1. Targets are right-padded and decoded left to right: no real target
position ever reads a pad.

Decoding goes through ``axon.generate`` as for the Transformer (``axon.models.seq2seq``):
:meth:`RNNSeq2Seq.conditioned` encodes the sources once and returns a decoder with the cache
interface; the cache (:class:`AttentionStateCache`, a ``RecurrentStateCache``) carries the
decoder state (and Luong's attentional vector h~, the input feed) and holds the memory, its
projected keys and mask; ``reorder`` (beam search) moves all of them together.

The model returns logits; label-smoothed cross-entropy is ``axon.objectives.seq2seq``.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from axon.errors import ConfigError
from axon.generate.state import RecurrentStateCache
from axon.model_configs.rnn_seq2seq import PRESETS, RNNSeq2SeqConfig  # noqa: F401 (re-exported: the family's config and sizes)
from axon.models.base import Model
from axon.models.rnn import CELLS, from_hx, init_forget_bias, recurrent_matmul_params, to_hx

State = tuple[torch.Tensor, ...]  # (h, [c,] [feed]), each (L or 1, B, H): the batch on dimension 1


def _normalise(scores: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """scores (B, S) -> weights (B, S): a softmax over the real positions (``mask`` True), 0 on pads."""
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return scores.softmax(dim=-1)


class AdditiveAttention(nn.Module):
    """Bahdanau's score e_j = v^T tanh(W q + U h_j)."""

    def __init__(self, query_dim: int, memory_dim: int, attn_dim: int):
        super().__init__()
        self.W = nn.Linear(query_dim, attn_dim, bias=False)
        self.U = nn.Linear(memory_dim, attn_dim, bias=True)
        self.v = nn.Linear(attn_dim, 1, bias=False)

    def keys(self, memory: torch.Tensor) -> torch.Tensor:
        return self.U(memory)  # (B, S, A), once per source

    def forward(self, query: torch.Tensor, keys: torch.Tensor, memory: torch.Tensor,
                mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """query (B, Hq) -> (context (B, H), weights (B, S))."""
        scores = self.v(torch.tanh(self.W(query)[:, None] + keys)).squeeze(-1)  # (B, S)
        weights = _normalise(scores, mask)
        return torch.bmm(weights[:, None], memory).squeeze(1), weights


class GeneralAttention(nn.Module):
    """Luong's "general" score e_j = q^T W_a h_j."""

    def __init__(self, query_dim: int, memory_dim: int):
        super().__init__()
        self.W_a = nn.Linear(memory_dim, query_dim, bias=False)

    def keys(self, memory: torch.Tensor) -> torch.Tensor:
        return self.W_a(memory)  # (B, S, Hq), once per source

    def forward(self, query, keys, memory, mask):
        scores = torch.bmm(keys, query[:, :, None]).squeeze(-1)  # (B, S)
        weights = _normalise(scores, mask)
        return torch.bmm(weights[:, None], memory).squeeze(1), weights


class AttentionStateCache(RecurrentStateCache):
    """The decoder state (``RecurrentStateCache``, batch on dimension 1) plus what every step
    reads and nothing changes: ``memory`` (B, S, H), its projected ``keys`` (B, S, A) and
    ``mask`` (B, S) or None. ``reorder`` selects all of them by the same index."""

    def __init__(self, state: State, memory: torch.Tensor, keys: torch.Tensor, mask: torch.Tensor | None):
        super().__init__(state, batch_dim=1)
        self.memory, self.keys, self.mask = memory, keys, mask

    def reorder(self, index: torch.Tensor) -> None:
        super().reorder(index)
        self.memory, self.keys = self.memory.index_select(0, index), self.keys.index_select(0, index)
        if self.mask is not None:
            self.mask = self.mask.index_select(0, index)


class RNNSeq2Seq(Model):
    def __init__(self, cfg: RNNSeq2SeqConfig):
        super().__init__()
        if cfg.vocab_size is None:
            raise ValueError("RNNSeq2SeqConfig.vocab_size must be set before building the model")
        if cfg.attention not in ("bahdanau", "luong"):  # the config loader checks; a hand-built config too
            raise ConfigError(f"model.attention: unknown attention {cfg.attention!r}; choose one of: bahdanau, luong")
        if cfg.cell not in ("gru", "lstm"):
            raise ConfigError(f"model.cell: unknown cell {cfg.cell!r}; choose one of: gru, lstm")
        self.config = cfg
        V, E, H, L = cfg.vocab_size, cfg.n_embd, cfg.hidden, cfg.n_layer
        between = cfg.dropout if L > 1 else 0.0
        self.embed = nn.Embedding(V, E)  # source and target share one vocabulary and one matrix
        self.drop = nn.Dropout(cfg.dropout) if cfg.dropout > 0 else nn.Identity()
        self.encoder = CELLS[cfg.cell](E, cfg.enc_hidden, L, batch_first=True, bidirectional=True, dropout=between)
        self.bridge = nn.Linear(H, H)  # s_0 = tanh(W_b [h->_m ; h<-_1]), per layer
        self.bahdanau = cfg.attention == "bahdanau"
        self.feed = not self.bahdanau and cfg.input_feed
        if self.bahdanau:
            self.attn = AdditiveAttention(H, H, cfg.score_dim)
            self.readout = nn.Linear(H + H + E, H)  # W_o [s_t ; c_t ; E y_{t-1}]
            dec_in = E + H
        else:
            self.attn = GeneralAttention(H, H)
            self.readout = nn.Linear(H + H, H, bias=False)  # W_c [c_t ; s_t]
            dec_in = E + (H if self.feed else 0)
        self.decoder = CELLS[cfg.cell](dec_in, H, L, batch_first=True, dropout=between)
        self.lm_head = nn.Linear(H, V)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """torch's defaults for the cells and Linear layers (uniform in +-1/sqrt(fan_in)), LSTM
        forget-gate biases at 1, embeddings uniform in +-0.1 (as ``axon.models.rnn``)."""
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.RNNBase)):
                module.reset_parameters()
        init_forget_bias(self.encoder)
        init_forget_bias(self.decoder)
        nn.init.uniform_(self.embed.weight, -0.1, 0.1)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def flops_per_token(self, seq_len: int | None = None) -> float:
        """Training FLOPs per position of a (source, target) pair, both ``seq_len`` long (default
        block_size, as ``axon.models.seq2seq`` counts): 6 per multiplying weight -- both encoder
        directions, the key projection (U or W_a, once per source position), the decoder cell, the
        query projection, the readout and the head -- plus, per target position and source key,
        6 * (attn_dim + H) for Bahdanau (v^T tanh(.), then the context sum) or 6 * 2H for Luong
        (the score's dot product and the context sum). The bridge runs once per pair: not counted."""
        cfg = self.config
        T = seq_len or cfg.block_size
        projections = [self.attn.W, self.attn.U] if self.bahdanau else [self.attn.W_a]  # v^T: per key, below
        weights = recurrent_matmul_params(self.encoder) + recurrent_matmul_params(self.decoder)
        weights += sum(m.weight.numel() for m in (*projections, self.readout, self.lm_head))
        per_key = cfg.score_dim + cfg.hidden if self.bahdanau else 2 * cfg.hidden
        return 6.0 * weights + 6.0 * T * per_key

    # --- the encoder --------------------------------------------------------------------------

    def encode(self, src: torch.Tensor, src_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, State]:
        """src (B, S) ids, right-padded, ``src_mask`` (B, S) True = real (None: no padding) ->
        (memory (B, S, H), zero on pads; the decoder's initial state)."""
        B, S = src.shape
        if S > self.config.block_size:
            raise ValueError(f"source of {S} tokens exceeds block_size {self.config.block_size}")
        if src_mask is None:
            lengths = torch.full((B,), S, dtype=torch.long)
        else:
            lengths = src_mask.sum(1).cpu()
            if bool((lengths == 0).any()):
                raise ValueError("a source has no real tokens")
            prefix = torch.arange(S, device=src_mask.device)[None] < lengths.to(src_mask.device)[:, None]
            if not torch.equal(prefix, src_mask.bool()):
                raise ValueError("src_mask must mark a prefix of each row: sources are right-padded")
        x = self.drop(self.embed(src))  # (B, S, E)
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        out, hx = self.encoder(packed)
        memory, _ = pad_packed_sequence(out, batch_first=True, total_length=S)  # (B, S, H), 0 at pads
        h_n = from_hx(hx)[0]  # (L * 2, B, H / 2): per layer, forward at the last real token, backward at the first
        L = self.config.n_layer
        both = h_n.view(L, 2, B, -1).permute(0, 2, 1, 3).reshape(L, B, -1)  # (L, B, H) = [h-> ; h<-]
        s0 = torch.tanh(self.bridge(both))  # (L, B, H)
        state: tuple[torch.Tensor, ...] = (s0,)
        if self.config.cell == "lstm":
            state = (s0, torch.zeros_like(s0))
        if self.feed:
            state = (*state, s0.new_zeros(1, B, s0.size(-1)))  # h~_0 = 0
        return memory, state

    # --- the decoder --------------------------------------------------------------------------

    def steps(self, tgt: torch.Tensor, memory: torch.Tensor, keys: torch.Tensor, mask: torch.Tensor | None,
              state: State, pad_mask: torch.Tensor | None = None
              ) -> tuple[torch.Tensor, State, torch.Tensor]:
        """Decode tgt (B, T) one position at a time from ``state``: -> (the vectors the head reads
        (B, T, H), the new state, attention weights (B, T, S)). ``pad_mask`` (B, T) False marks
        (left) padding: there a row's state is carried over unchanged."""
        n_rnn = 2 if self.config.cell == "lstm" else 1
        rnn_state, feed = state[:n_rnn], (state[n_rnn][0] if self.feed else None)
        emb = self.drop(self.embed(tgt))  # (B, T, E)
        outs, alignments = [], []
        for t in range(tgt.size(1)):
            y = emb[:, t]  # (B, E)
            if self.bahdanau:
                context, weights = self.attn(rnn_state[0][-1], keys, memory, mask)  # scored with s_{t-1}
                out, hx = self.decoder(torch.cat([y, context], -1)[:, None], to_hx(self.decoder, rnn_state))
                new_state = from_hx(hx)
                s = out[:, 0]  # (B, H)
                o = torch.tanh(self.readout(torch.cat([s, context, y], -1)))  # (B, H)
            else:
                x = torch.cat([y, feed], -1) if self.feed else y
                out, hx = self.decoder(x[:, None], to_hx(self.decoder, rnn_state))
                new_state = from_hx(hx)
                s = out[:, 0]
                context, weights = self.attn(s, keys, memory, mask)  # scored with s_t
                o = torch.tanh(self.readout(torch.cat([context, s], -1)))  # h~_t
            if pad_mask is not None:
                keep = pad_mask[:, t].view(1, -1, 1)
                new_state = tuple(torch.where(keep, new, old) for new, old in zip(new_state, rnn_state))
                if self.feed:
                    o = torch.where(keep[0], o, feed)
            rnn_state, feed = new_state, o
            outs.append(o)
            alignments.append(weights)
        state = (*rnn_state, feed[None]) if self.feed else tuple(rnn_state)
        return torch.stack(outs, 1), state, torch.stack(alignments, 1)

    def head(self, out: torch.Tensor) -> torch.Tensor:
        return self.lm_head(self.drop(out))  # (B, T, V)

    def _teacher_forced(self, src, tgt, src_mask):
        if tgt.size(1) > self.config.block_size:
            raise ValueError(f"target of {tgt.size(1)} tokens exceeds block_size {self.config.block_size}")
        memory, state = self.encode(src, src_mask)
        return self.steps(tgt, memory, self.attn.keys(memory), src_mask, state)

    def forward(self, src: torch.Tensor, tgt: torch.Tensor, src_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Teacher forcing: source (B, S) and shifted target (B, T) -> logits (B, T, V)."""
        out, _, _ = self._teacher_forced(src, tgt, src_mask)
        return self.head(out)

    def alignments(self, src: torch.Tensor, tgt: torch.Tensor, src_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The attention weights a_tj of a teacher-forced pass, (B, T, S): each row sums to 1 over
        the real source tokens and is 0 on pads."""
        return self._teacher_forced(src, tgt, src_mask)[2]

    def conditioned(self, src: torch.Tensor, src_mask: torch.Tensor | None = None) -> ConditionedDecoder:
        """Encode ``src`` once; the result decodes targets for it through ``axon.generate``."""
        with torch.no_grad():
            memory, state = self.encode(src, src_mask)
            keys = self.attn.keys(memory)
        return ConditionedDecoder(self, memory, keys, src_mask, state)

    def make_cache(self, batch_size: int, max_len: int | None = None):
        raise ConfigError("an encoder-decoder model generates from a source, not a prompt: "
                          "use `axon translate RUN_DIR --input TEXT` (or model.conditioned(src) in Python)")


class ConditionedDecoder(nn.Module):
    """The decoder of ``model`` conditioned on encoded sources: what ``generate`` and
    ``beam_search`` decode. A single source (B = 1) serves a batch of any size (beams, samples)."""

    def __init__(self, model: RNNSeq2Seq, memory: torch.Tensor, keys: torch.Tensor, mask: torch.Tensor | None,
                 state: State):
        super().__init__()
        self.model = model
        self.config = model.config
        self.memory, self.keys, self.mask, self.state = memory, keys, mask, state
        self.train(model.training)  # generate() restores this module's mode, and with it the model's

    def make_cache(self, batch_size: int, max_len: int | None = None) -> AttentionStateCache:
        """The initial decoder state and the memory, for ``batch_size`` rows (``max_len`` is not
        needed: the state has a fixed size)."""
        memory, keys, mask, state = self.memory, self.keys, self.mask, self.state
        if batch_size != memory.size(0):
            if memory.size(0) != 1:
                raise ValueError(f"{memory.size(0)} encoded sources cannot serve a batch of {batch_size}")
            memory, keys = memory.expand(batch_size, -1, -1), keys.expand(batch_size, -1, -1)
            mask = None if mask is None else mask.expand(batch_size, -1)
            state = tuple(s.expand(-1, batch_size, -1).contiguous() for s in state)
        return AttentionStateCache(state, memory, keys, mask)

    def forward(self, idx: torch.Tensor, cache: AttentionStateCache | None = None,
                pad_mask: torch.Tensor | None = None, last_only: bool = False) -> torch.Tensor:
        """idx (B, T) target ids -> logits (B, T, V); with a cache, idx continues the cached targets."""
        m = self.model
        if cache is None:
            out, _, _ = m.steps(idx, self.memory, self.keys, self.mask, self.state, pad_mask)
        else:
            idx_new, mask_new = idx, pad_mask
            idx, pad_mask, replay, state = cache.begin(idx, pad_mask)  # tokens pending after a crop come first
            out, state, _ = m.steps(idx, cache.memory, cache.keys, cache.mask, state, pad_mask)
            cache.commit(state, idx_new, mask_new)
            out = out[:, replay:]
        if last_only:
            out = out[:, -1:]
        return m.head(out)


__all__ = ["RNNSeq2SeqConfig", "RNNSeq2Seq", "PRESETS", "AttentionStateCache", "ConditionedDecoder"]
