"""BERT (Devlin et al. 2019): a bidirectional Transformer encoder, pretrained by masked-LM.

    ids (B, T), token types (B, T), attention mask (B, T) (True = a real token, False = padding)
        |
    wte[ids] + wpe[0..T-1] + wtt[types] -> LayerNorm -> dropout             (sec. 3.2, fig. 2)
        |
    +---+---------------------------------------------+
    |  x = LN(x + attention(x over real tokens))       |  x n_layer   post-LN, as "Attention Is All
    |  x = LN(x + W2 gelu(W1 x))                       |              You Need"; exact (erf) GELU
    +---+---------------------------------------------+
        |
    hidden (B, T, C) --+-- head "mlm":      LN(gelu(W h)) E^T + b   -> (B, T, V)  E = wte, tied
                       +-- head "classify": dropout(pool(h)) W + b -> (B, num_labels)
                       +-- head "tag":      dropout(h) W + b       -> (B, T, num_labels)  one score
                       |                    vector per token (the tag task reads each word's first)
                       +-- head "none":     h itself (features, sentence embeddings)

Every position attends to every real position in both directions; padding is masked out of the
keys, so a pad token (whatever its id) never changes a real token's output. ``pool`` is
``cls``: BERT's pooler tanh(W h_[CLS] + b) (sec. 4.1), or ``mean`` / ``max`` over real tokens.

Masked-LM pretraining predicts only the ~15% chosen positions: ``forward(..., predict=mask)``
runs the MLM head on those rows alone, (N, V) instead of (B, T, V). The masking itself lives in
the data (``axon.data.masking``), the losses in ``axon.objectives``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from axon.model_configs.bert import PRESETS, BertConfig  # noqa: F401 (re-exported: the family's config and sizes)
from axon.models.flops import transformer_flops_per_token
from axon.nn import CrossAttention, GeluMLP, key_padding_mask
from axon.models.base import Model


def masked_mean(h: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of h (B, T, C) over the real positions of ``mask`` (B, T) -> (B, C)."""
    if mask is None:
        return h.mean(1)
    m = mask.to(h.dtype).unsqueeze(-1)  # (B, T, 1)
    return (h * m).sum(1) / m.sum(1).clamp(min=1.0)


def masked_max(h: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Channel-wise max of h (B, T, C) over the real positions of ``mask`` (B, T) -> (B, C)."""
    if mask is None:
        return h.amax(1)
    return h.masked_fill(~mask.bool().unsqueeze(-1), float("-inf")).amax(1)


class EncoderLayer(nn.Module):
    """Post-LN: x = LN(x + attn(x)); x = LN(x + mlp(x)) (BERT keeps the original Transformer's order)."""

    def __init__(self, cfg: BertConfig):
        super().__init__()
        # Self-attention is attention of x over itself: the shared module with memory = x.
        self.attn = CrossAttention(cfg.n_embd, cfg.n_head, bias=True, dropout=cfg.dropout, impl=cfg.attn_impl)
        self.norm1 = nn.LayerNorm(cfg.n_embd, eps=cfg.norm_eps)
        self.mlp = GeluMLP(cfg.n_embd, cfg.hidden, bias=True, dropout=cfg.dropout, approximate="none")
        self.norm2 = nn.LayerNorm(cfg.n_embd, eps=cfg.norm_eps)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        x = self.norm1(x + self.attn(x, x, mask))  # mask (B, 1, 1, T) or None
        return self.norm2(x + self.mlp(x))


class MaskedLMHead(nn.Module):
    """BERT's MLM head: transform h -> LN(gelu(W h + b)), then scores against every token
    embedding plus a per-token bias, logits = t E^T + b_out (the decoder is the input embedding)."""

    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.dense = nn.Linear(cfg.n_embd, cfg.n_embd)
        self.norm = nn.LayerNorm(cfg.n_embd, eps=cfg.norm_eps)
        self.bias = nn.Parameter(torch.zeros(cfg.vocab_size))

    def forward(self, h: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        t = self.norm(F.gelu(self.dense(h)))  # (..., C)
        return F.linear(t, embedding, self.bias)  # (..., V)


class Bert(Model):
    def __init__(self, cfg: BertConfig):
        super().__init__()
        if cfg.vocab_size is None:
            raise ValueError("BertConfig.vocab_size must be set before building the model")
        if cfg.head in ("classify", "tag") and cfg.num_labels is None:
            raise ValueError("BertConfig.num_labels must be set before building a classifier")
        self.config = cfg
        C = cfg.n_embd
        self.wte = nn.Embedding(cfg.vocab_size, C)  # word pieces
        self.wpe = nn.Embedding(cfg.block_size, C)  # absolute positions
        self.wtt = nn.Embedding(cfg.type_vocab_size, C)  # token types (segments)
        self.emb_norm = nn.LayerNorm(C, eps=cfg.norm_eps)
        self.drop = nn.Dropout(cfg.dropout)
        self.layers = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.n_layer))
        self.mlm = MaskedLMHead(cfg) if cfg.head == "mlm" else None
        self.pooler = nn.Linear(C, C) if cfg.has_pooler else None
        self.classifier = nn.Linear(C, cfg.num_labels) if cfg.head in ("classify", "tag") else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """BERT's init: N(0, 0.02) weights, zero biases, unit LayerNorm gains (``init_std``)."""
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, 0.0, self.config.init_std)
                if getattr(module, "bias", None) is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                module.reset_parameters()
        if self.mlm is not None:
            nn.init.zeros_(self.mlm.bias)

    def num_params(self, non_embedding: bool = False) -> int:
        """Parameter count; ``non_embedding`` drops the three lookup tables."""
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            n -= sum(t.weight.numel() for t in (self.wte, self.wpe, self.wtt))
        return n

    def flops_per_token(self, seq_len: int | None = None) -> float:
        """Training FLOPs per token of the encoder (weights and attention), for MFU. The MLM head
        runs on the ~15% predicted positions only and is left out (a small undercount)."""
        cfg = self.config
        head = sum(p.numel() for m in (self.mlm, self.pooler, self.classifier) if m is not None for p in m.parameters())
        return transformer_flops_per_token(self.num_params(non_embedding=True) - head, cfg.n_layer, cfg.n_embd,
                                           seq_len or cfg.block_size)

    def encode(self, idx: torch.Tensor, attention_mask: torch.Tensor | None = None,
               token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Token ids (B, T) -> hidden states (B, T, C). ``attention_mask`` (B, T): True (or 1) for
        real tokens, False (0) for padding; None = no padding. ``token_type_ids`` default to 0."""
        B, T = idx.shape
        if T > self.config.block_size:
            raise ValueError(f"sequence length {T} exceeds block_size {self.config.block_size}")
        x = self.wte(idx) + self.wpe.weight[:T]  # (B, T, C)
        x = x + (self.wtt(token_type_ids) if token_type_ids is not None else self.wtt.weight[0])
        x = self.emb_norm(x)
        if self.training and self.config.dropout:
            x = self.drop(x)
        mask = None
        if attention_mask is not None:
            real = attention_mask.bool()
            if not bool(real.all()):  # some padding: mask those keys (an unpadded batch takes SDPA's fast path)
                if not bool(real.any(1).all()):
                    raise ValueError("a sequence in the batch has no real token (its attention mask is all False)")
                mask = key_padding_mask(real)  # (B, 1, 1, T)
        for layer in self.layers:
            x = layer(x, mask)
        return x

    def pool(self, h: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """One vector per sequence (B, C) by ``config.pooling``: [CLS] (through the tanh pooler when
        the model has one), or the mean / max over real tokens."""
        pooling = self.config.pooling
        if pooling == "cls":
            first = h[:, 0]  # the [CLS] position
            return torch.tanh(self.pooler(first)) if self.pooler is not None else first
        return masked_mean(h, attention_mask) if pooling == "mean" else masked_max(h, attention_mask)

    def forward(self, idx: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, predict: torch.Tensor | None = None) -> torch.Tensor:
        """head mlm: logits (B, T, V), or (N, V) for the N positions where ``predict`` (B, T) is True
        (in row-major order); head classify: logits (B, num_labels); head tag: logits (B, T,
        num_labels); head none: hidden (B, T, C)."""
        h = self.encode(idx, attention_mask, token_type_ids)
        if self.mlm is not None:
            return self.mlm(h if predict is None else h[predict], self.wte.weight)
        if self.config.head == "tag":
            return self.classifier(self.drop(h) if self.training and self.config.dropout else h)
        if self.classifier is not None:
            pooled = self.pool(h, attention_mask)
            if self.training and self.config.dropout:
                pooled = self.drop(pooled)
            return self.classifier(pooled)
        return h


@torch.no_grad()
def sentence_embeddings(model: Bert, tokenizer, texts: list[str], batch_size: int = 32, max_length: int | None = None,
                        normalize: bool = True) -> torch.Tensor:
    """Sentence embeddings (len(texts), C) as sentence-transformers computes them for models such
    as all-MiniLM-L6-v2: [CLS] text [SEP], the mean of the last hidden states over real tokens
    (padding excluded), then L2-normalised (``normalize``). Texts longer than ``max_length``
    tokens (default: block_size), [CLS] and [SEP] included, are cut, as sentence-transformers cuts
    them at its max_seq_length."""
    from axon.data.bert_tokens import BertTokens, pad_batch

    tokens = BertTokens(tokenizer)
    limit = min(max_length or model.config.block_size, model.config.block_size)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out = []
    for start in range(0, len(texts), batch_size):
        seqs = [tokens.wrap(tokens.encode(t)[: limit - 2]) for t in texts[start : start + batch_size]]
        ids, mask = pad_batch(seqs, tokens.pad_id)
        ids, mask = ids.to(device), mask.to(device)
        emb = masked_mean(model.encode(ids, mask), mask)  # (b, C)
        out.append(F.normalize(emb, dim=-1) if normalize else emb)
    model.train(was_training)
    return torch.cat(out) if out else torch.empty(0, model.config.n_embd)
