"""BERT's config and named sizes (the model: ``axon.models.bert``).

Torch-free, apart from the model, so that ``axon.config`` builds and validates a run's ``model``
section without importing torch or ``axon.models`` (see ``axon.model_configs``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from axon.errors import check
from axon.model_configs.fields import check_fields


@dataclass
class BertConfig:
    family: Literal["bert"] = "bert"
    preset: str | None = None  # the named size this config started from, for the record
    vocab_size: int | None = None  # null: taken from the tokenizer (special tokens included)
    block_size: int = 128  # most positions (the learned position table); the training length
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    mlp_hidden: int | None = None  # null: 4 * n_embd
    type_vocab_size: int = 2  # token types (BERT's sentence A / B segments)
    norm_eps: float = 1e-12
    dropout: float = 0.1  # embeddings, attention weights, residual branches, classifier input (BERT: 0.1)
    head: Literal["mlm", "classify", "tag", "none"] = "mlm"  # what forward returns (see the module docstring)
    num_labels: int | None = None  # classify, tag: null = the task fills it from the label / tag set
    pooling: Literal["cls", "mean", "max"] = "cls"  # how classify (and pool()) summarise a sequence
    attn_impl: Literal["sdpa", "reference"] = "sdpa"
    init_std: float = 0.02

    def __post_init__(self):
        check_fields(self, "model.")  # types, and no NaN or infinity (axon.model_configs.fields)
        check(self.vocab_size is None or self.vocab_size > 0, "model.vocab_size", "must be positive")
        for name in ("block_size", "n_layer", "n_head", "n_embd", "type_vocab_size"):
            check(getattr(self, name) > 0, f"model.{name}", "must be positive")
        check(self.n_embd % self.n_head == 0, "model.n_embd",
              f"{self.n_embd} is not divisible by n_head={self.n_head}; pick n_embd = n_head * head_dim")
        check(self.mlp_hidden is None or self.mlp_hidden > 0, "model.mlp_hidden", "must be positive")
        check(0.0 <= self.dropout < 1.0, "model.dropout", "must be in [0, 1)")
        check(self.norm_eps > 0, "model.norm_eps", "must be positive")
        check(self.init_std > 0, "model.init_std", f"must be positive (equal weights learn alike), got {self.init_std}")
        check(self.num_labels is None or self.num_labels >= 2, "model.num_labels",
              f"a classifier needs at least 2 labels, got {self.num_labels}")

    @property
    def hidden(self) -> int:
        return self.mlp_hidden if self.mlp_hidden is not None else 4 * self.n_embd

    @property
    def has_pooler(self) -> bool:
        """BERT's tanh pooler exists for [CLS] pooling in a model that pools (not an MLM model,
        which matches transformers' BertForMaskedLM: no pooler; not a tagger, which scores every
        token and pools nothing, as BertForTokenClassification)."""
        return self.pooling == "cls" and self.head not in ("mlm", "tag")


# Named sizes. Parameter counts are what axon.models.bert builds with the preset's default head "mlm"
# (= transformers' BertForMaskedLM) and with head "none" + [CLS] pooling (= BertModel, pooler
# included); tests/models/test_bert.py checks both against transformers.
PRESETS: dict[str, dict] = {
    "tiny": dict(
        params="0.1M + vocab * 64", source="for tests",
        config=dict(block_size=64, n_layer=2, n_head=4, n_embd=64),
    ),
    "bert-base": dict(
        params="109,514,298 (mlm) / 109,482,240 (none, BertModel)",
        source="Devlin et al. 2019, BERT-Base uncased (Hugging Face config)",
        config=dict(vocab_size=30522, block_size=512, n_layer=12, n_head=12, n_embd=768, mlp_hidden=3072),
    ),
    "minilm-l6": dict(
        params="22,744,506 (mlm) / 22,713,216 (none, BertModel)",
        source="sentence-transformers/all-MiniLM-L6-v2 (Wang et al. 2020, MiniLM; 6 layers, 384 wide)",
        config=dict(vocab_size=30522, block_size=512, n_layer=6, n_head=12, n_embd=384, mlp_hidden=1536),
    ),
}
