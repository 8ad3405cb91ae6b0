"""DPR's config and named sizes (the model: ``axon.models.dpr``): two BERT encoders, one for questions and
one for passages (Karpukhin et al. 2020), each sized by the BERT fields below.

Torch-free, like every family config (see ``axon.model_configs``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from axon.errors import check
from axon.model_configs.bert import BertConfig
from axon.model_configs.fields import check_fields


@dataclass
class DPRConfig:
    family: Literal["dpr"] = "dpr"
    preset: str | None = None  # the named size this config started from, for the record
    vocab_size: int | None = None  # null: taken from the tokenizer (special tokens included)
    block_size: int = 128  # longest question or passage, [CLS] and [SEP] included
    n_layer: int = 2  # each encoder's
    n_head: int = 4
    n_embd: int = 128  # the width, and the size of the question and passage vectors
    mlp_hidden: int | None = None  # null: 4 * n_embd
    dropout: float = 0.1  # DPR: BERT's 0.1
    pooling: Literal["cls", "mean"] = "cls"  # the vector: the [CLS] position's hidden state (DPR) or the mean
    shared: bool = False  # one encoder for questions and passages (DPR: two; a shared one halves the parameters)
    norm_eps: float = 1e-12
    attn_impl: Literal["sdpa", "reference"] = "sdpa"
    init_std: float = 0.02

    def __post_init__(self):
        check_fields(self, "model.")
        check(self.vocab_size is None or self.vocab_size > 0, "model.vocab_size", "must be positive")
        for name in ("block_size", "n_layer", "n_head", "n_embd"):
            check(getattr(self, name) > 0, f"model.{name}", "must be positive")
        check(self.n_embd % self.n_head == 0, "model.n_embd",
              f"{self.n_embd} is not divisible by n_head={self.n_head}; pick n_embd = n_head * head_dim")
        check(self.mlp_hidden is None or self.mlp_hidden > 0, "model.mlp_hidden", "must be positive")
        check(0.0 <= self.dropout < 1.0, "model.dropout", "must be in [0, 1)")
        check(self.norm_eps > 0, "model.norm_eps", "must be positive")
        check(self.init_std > 0, "model.init_std", f"must be positive, got {self.init_std}")

    def encoder_config(self) -> BertConfig:
        """Each encoder's BERT config: no head (hidden states out), no pooler (DPR reads [CLS] as it is)."""
        return BertConfig(vocab_size=self.vocab_size, block_size=self.block_size, n_layer=self.n_layer,
                          n_head=self.n_head, n_embd=self.n_embd, mlp_hidden=self.mlp_hidden, dropout=self.dropout,
                          head="none", pooling="mean", norm_eps=self.norm_eps, attn_impl=self.attn_impl,
                          init_std=self.init_std)


# Parameter counts are of both encoders (axon.models.dpr; tests/models/test_dpr.py counts them).
PRESETS: dict[str, dict] = {
    "tiny": dict(params="2 x (25K + vocab * 32)", source="for tests",
                 config=dict(block_size=64, n_layer=1, n_head=2, n_embd=32)),
    "small": dict(params="2 x (0.40M + vocab * 128)", source="ours: the knowledge-base retriever (docs/rag.md)",
                  config=dict(block_size=128, n_layer=2, n_head=4, n_embd=128)),
    "bert-base": dict(params="2 x 109,482,240 (vocab 30522)", source="Karpukhin et al. 2020: two BERT-Base encoders",
                      config=dict(vocab_size=30522, block_size=512, n_layer=12, n_head=12, n_embd=768, mlp_hidden=3072)),
}
