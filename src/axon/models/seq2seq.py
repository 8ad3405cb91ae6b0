"""The encoder-decoder Transformer of "Attention Is All You Need" (Vaswani et al. 2017).

    source ids (B, S)                              target ids, shifted right (B, T): BOS y1 y2 ...
        |                                               |
    embed * sqrt(d) + sinusoids  (sec. 3.4, 3.5)   embed * sqrt(d) + sinusoids   (the same matrix)
        |                                               |
    +---+----------------------------+             +---+-----------------------------------+
    |  self-attention (all real      |             |  masked self-attention (causal)       |
    |  source positions)             |  x N        |  cross-attention over the memory      |  x N
    |  feed-forward                  |             |  feed-forward                         |
    +---+----------------------------+             +---+-----------------------------------+
        |                                               |
     memory (B, S, d)  ----------------------------->   |
                                                   logits = x E^T (B, T, V)  (E: the embedding)

Each sub-layer is wrapped in a residual connection and a LayerNorm. The paper normalises after
the residual sum, ``LN(x + sublayer(x))`` (post-LN, sec. 3.1; the default here);
``norm_first=True`` normalises the sub-layer's input instead, ``x + sublayer(LN(x))``, and adds a
final LayerNorm to the encoder and the decoder (pre-LN, Xiong et al. 2020; trains without the
warmup that post-LN needs). Source padding is masked everywhere the source is read; target
padding needs no mask because targets are right-padded and the decoder is causal, so no real
target position ever sees a pad.

Decoding goes through ``axon.generate``: :meth:`Transformer.conditioned` encodes the sources once
and returns the decoder conditioned on them, which has the cache interface that ``generate`` and
``beam_search`` use (``make_cache`` / ``forward(idx, cache=...)``); its cache holds the decoder's
self-attention keys/values and the cross-attention keys/values of the memory, computed once.

Fusion-in-Decoder (Izacard & Grave 2021): a source of K passages, (B, K, S) ids with a (B, K, S) mask,
is encoded passage by passage -- (B*K, S) through the encoder, each passage (with its question) on
its own -- and the K memories are concatenated, (B, K*S, d), so the decoder's cross-attention reads
all of them at once; the cost of encoding grows linearly in K, not quadratically as one long source
would. ``forward``, ``encode`` and ``conditioned`` take either shape (the ``rag`` task's reader).

The model returns logits; label-smoothed cross-entropy is ``axon.objectives.seq2seq``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from axon.errors import ConfigError
from axon.model_configs.seq2seq import PRESETS, TransformerConfig  # noqa: F401 (re-exported: the family's config and sizes)
from axon.models.base import Model
from axon.nn import (
    CausalSelfAttention,
    CrossAttention,
    FeedForward,
    SinusoidalPositions,
    key_padding_mask,
)


class EncoderLayer(nn.Module):
    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.norm_first = cfg.norm_first
        self.attn = CrossAttention(cfg.n_embd, cfg.n_head, bias=True, dropout=cfg.dropout, impl=cfg.attn_impl)
        self.norm1 = nn.LayerNorm(cfg.n_embd, eps=cfg.norm_eps)
        self.mlp = FeedForward(cfg.n_embd, cfg.hidden, cfg.activation, cfg.dropout)
        self.norm2 = nn.LayerNorm(cfg.n_embd, eps=cfg.norm_eps)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """x (B, S, C); mask (B, 1, 1, S), True = a real source token (None: no padding)."""
        if self.norm_first:
            h = self.norm1(x)
            x = x + self.attn(h, h, mask)
            return x + self.mlp(self.norm2(x))
        x = self.norm1(x + self.attn(x, x, mask))  # LN(x + Sublayer(x)), sec. 3.1
        return self.norm2(x + self.mlp(x))


class DecoderLayer(nn.Module):
    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.norm_first = cfg.norm_first
        self.self_attn = CausalSelfAttention(cfg.n_embd, cfg.n_head, cfg.n_head, bias=True, dropout=cfg.dropout,
                                             impl=cfg.attn_impl)
        self.norm1 = nn.LayerNorm(cfg.n_embd, eps=cfg.norm_eps)
        self.cross_attn = CrossAttention(cfg.n_embd, cfg.n_head, bias=True, dropout=cfg.dropout, impl=cfg.attn_impl)
        self.norm2 = nn.LayerNorm(cfg.n_embd, eps=cfg.norm_eps)
        self.mlp = FeedForward(cfg.n_embd, cfg.hidden, cfg.activation, cfg.dropout)
        self.norm3 = nn.LayerNorm(cfg.n_embd, eps=cfg.norm_eps)

    def forward(self, y: torch.Tensor, memory: torch.Tensor | None, memory_mask: torch.Tensor | None,
                cache=None, layer: int = 0, self_mask: torch.Tensor | None = None,
                memory_kv: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """y (B, T, C) attends causally to itself (through ``cache`` when decoding step by step,
        ``self_mask`` being the cache's mask), then to the memory (B, S, C) or to its precomputed
        ``memory_kv``; ``memory_mask`` (B, 1, 1, S) marks real source tokens."""
        if self.norm_first:
            y = y + self.self_attn(self.norm1(y), None, cache, layer, self_mask)
            y = y + self.cross_attn(self.norm2(y), memory, memory_mask, memory_kv)
            return y + self.mlp(self.norm3(y))
        y = self.norm1(y + self.self_attn(y, None, cache, layer, self_mask))
        y = self.norm2(y + self.cross_attn(y, memory, memory_mask, memory_kv))
        return self.norm3(y + self.mlp(y))


class Transformer(Model):
    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        if cfg.vocab_size is None:
            raise ValueError("TransformerConfig.vocab_size must be set before building the model")
        self.config = cfg
        C = cfg.n_embd
        self.embed = nn.Embedding(cfg.vocab_size, C)  # source and target share one vocabulary and one matrix
        self.pos = SinusoidalPositions(C, cfg.block_size)
        self.drop = nn.Dropout(cfg.dropout) if cfg.dropout > 0 else nn.Identity()
        self.encoder = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.enc_layers))
        self.decoder = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.dec_layers))
        # Post-LN layers already end in a LayerNorm; pre-LN stacks need one at the end.
        self.encoder_norm = nn.LayerNorm(C, eps=cfg.norm_eps) if cfg.norm_first else nn.Identity()
        self.decoder_norm = nn.LayerNorm(C, eps=cfg.norm_eps) if cfg.norm_first else nn.Identity()
        self.lm_head = nn.Linear(C, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.embed.weight
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Xavier-uniform matrices and zero biases (as the tensor2tensor and PyTorch
        implementations do), embeddings N(0, d^-1/2): times sqrt(d) they enter at unit scale."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                module.reset_parameters()
        nn.init.normal_(self.embed.weight, 0.0, self.config.n_embd ** -0.5)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())  # a tied head counted once

    def flops_per_token(self, seq_len: int | None = None) -> float:
        """Training FLOPs per position of a (source, target) pair, both ``seq_len`` long (default
        block_size; the trainer's tokens per step are batch_size * block_size pairs): 6 per weight
        of the encoder, the decoder and the output projection (tied or not), and 12 * d per key:
        encoder self-attention over the source, decoder self-attention over the target and
        cross-attention over the source (axon.models.flops)."""
        from axon.models.flops import transformer_flops_per_token

        cfg = self.config
        T = seq_len or cfg.block_size
        weights = sum(p.numel() for m in (*self.encoder, *self.decoder, self.encoder_norm, self.decoder_norm) for p in m.parameters())
        keys = [T] * cfg.enc_layers + [T + T] * cfg.dec_layers  # self-attention (+ cross-attention in the decoder)
        return transformer_flops_per_token(weights + cfg.vocab_size * cfg.n_embd, cfg.enc_layers + cfg.dec_layers,
                                           cfg.n_embd, T, layer_keys=keys)

    def embed_tokens(self, idx: torch.Tensor, positions: torch.Tensor | int = 0) -> torch.Tensor:
        """Token embeddings times sqrt(d_model) plus sinusoids (sec. 3.4, 3.5), then dropout.
        ``positions``: an int start shared by the batch, or (B, T) per-sequence positions."""
        T = idx.size(1)
        pos = self.pos(positions, T) if isinstance(positions, int) else self.pos(positions)  # (T, C) or (B, T, C)
        x = self.embed(idx) * math.sqrt(self.config.n_embd) + pos
        return self.drop(x) if self.training and self.config.dropout else x

    def _check_length(self, n: int, what: str) -> None:
        if n > self.config.block_size:
            raise ValueError(f"{what} of {n} tokens exceeds block_size {self.config.block_size}")

    def fused(self, src: torch.Tensor, src_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(memory, its mask) of a source: (B, S) -> (B, S, C), (B, S); K passages (B, K, S) -> each
        encoded alone (B*K, S, C), then side by side (B, K*S, C), (B, K*S) (Fusion-in-Decoder)."""
        if src.dim() == 2:
            return self.encode(src, src_mask), src_mask
        B, K, S = src.shape
        flat_mask = None if src_mask is None else src_mask.reshape(B * K, S)
        memory = self.encode(src.reshape(B * K, S), flat_mask)  # (B*K, S, C)
        return memory.reshape(B, K * S, -1), None if src_mask is None else src_mask.reshape(B, K * S)

    def encode(self, src: torch.Tensor, src_mask: torch.Tensor | None = None) -> torch.Tensor:
        """src (B, S) ids, src_mask (B, S) True = real token (None: no padding) -> memory (B, S, C)."""
        self._check_length(src.size(1), "source")
        mask = key_padding_mask(src_mask)
        x = self.embed_tokens(src)
        for layer in self.encoder:
            x = layer(x, mask)
        return self.encoder_norm(x)

    def decode(self, tgt: torch.Tensor, memory: torch.Tensor | None = None, src_mask: torch.Tensor | None = None,
               cache=None, pad_mask: torch.Tensor | None = None, last_only: bool = False) -> torch.Tensor:
        """tgt (B, T) ids (BOS first) -> logits (B, T, V) of the next target token at each position.

        Without a cache the decoder reads ``memory`` (B, S, C) with ``src_mask`` (B, S). With an
        :class:`~axon.generate.encoder_decoder.EncoderDecoderCache` (see :meth:`conditioned`),
        ``tgt`` continues the cached targets (``pad_mask`` marks left padding) and the memory's
        keys/values come from the cache.
        """
        T = tgt.size(1)
        if cache is None:
            self._check_length(T, "target")
            positions, self_mask, memory_mask, cross = 0, None, key_padding_mask(src_mask), None
        else:
            if cache.length + T > self.config.block_size:
                raise ValueError(f"{cache.length} cached + {T} new target tokens exceed "
                                 f"block_size {self.config.block_size}")
            positions, self_mask = cache.prepare(T, pad_mask)
            memory_mask, cross = cache.memory_mask, cache.cross
        y = self.embed_tokens(tgt, positions)
        for i, layer in enumerate(self.decoder):
            y = layer(y, memory, memory_mask, cache, i, self_mask, None if cross is None else cross[i])
        if cache is not None:
            cache.commit()
        if last_only:
            y = y[:, -1:]
        return self.lm_head(self.decoder_norm(y))  # (B, T, V)

    def forward(self, src: torch.Tensor, tgt: torch.Tensor, src_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Teacher forcing: source (B, S) -- or K passages (B, K, S), fused -- and shifted target (B, T) ->
        logits (B, T, V)."""
        memory, mask = self.fused(src, src_mask)
        return self.decode(tgt, memory, mask)

    def conditioned(self, src: torch.Tensor, src_mask: torch.Tensor | None = None) -> EncodedSource:
        """Encode ``src`` once; the result decodes targets for it through ``axon.generate``."""
        with torch.no_grad():
            memory, mask = self.fused(src, src_mask)
        return EncodedSource(self, memory, mask)

    def make_cache(self, batch_size: int, max_len: int | None = None):
        raise ConfigError("an encoder-decoder model generates from a source, not a prompt: "
                          "use `axon translate RUN_DIR --input TEXT` (or model.conditioned(src) in Python)")


class EncodedSource(nn.Module):
    """The decoder of ``model`` conditioned on encoded sources: what ``generate`` and
    ``beam_search`` decode. ``memory`` (B, S, C) with ``src_mask`` (B, S); a single source
    (B = 1) serves a batch of any size (several samples, or beams)."""

    def __init__(self, model: Transformer, memory: torch.Tensor, src_mask: torch.Tensor | None):
        super().__init__()
        self.model = model
        self.config = model.config
        self.memory, self.src_mask = memory, src_mask
        self.train(model.training)  # generate() restores this module's mode, and with it the model's

    def make_cache(self, batch_size: int, max_len: int | None = None):
        from axon.generate.encoder_decoder import EncoderDecoderCache

        memory, mask = self.memory, self.src_mask
        if batch_size != memory.size(0):
            if memory.size(0) != 1:
                raise ValueError(f"{memory.size(0)} encoded sources cannot serve a batch of {batch_size}")
            memory = memory.expand(batch_size, -1, -1)
            mask = None if mask is None else mask.expand(batch_size, -1)
        cfg = self.config
        cross = [layer.cross_attn.memory_kv(memory) for layer in self.model.decoder]  # once per source
        max_len = min(max_len or cfg.block_size, cfg.block_size)
        return EncoderDecoderCache(cfg.dec_layers, batch_size, cfg.n_head, cfg.head_dim, max_len, cross,
                                   key_padding_mask(mask), memory.dtype, memory.device)

    def forward(self, idx: torch.Tensor, cache=None, pad_mask: torch.Tensor | None = None,
                last_only: bool = False) -> torch.Tensor:
        if cache is None:
            return self.model.decode(idx, self.memory, self.src_mask, last_only=last_only)
        return self.model.decode(idx, cache=cache, pad_mask=pad_mask, last_only=last_only)
