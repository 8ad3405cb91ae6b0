"""The embedding reader's config and named sizes (the model: ``axon.models.embed_reader``): each of
up to ``max_passages`` retrieved passages, given as its retriever vector (``passage_dim`` wide: a
``dpr`` run's n_embd), becomes ``slots`` embeddings that a decoder reads as a prefix before the
question and answer text (issue 23: "passage embeddings as extra keys/values").

Torch-free. The unprefixed fields are a ``decoder`` config's of the same names
(:meth:`EmbedReaderConfig.decoder_config`), except that ``block_size`` counts the TEXT positions
only: the decoder itself is built for max_passages * slots + block_size positions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from axon.errors import check
from axon.model_configs.decoder import DecoderConfig
from axon.model_configs.fields import check_fields


@dataclass
class EmbedReaderConfig:
    family: Literal["embed_reader"] = "embed_reader"
    preset: str | None = None  # the named size this config started from, for the record
    # the passages: K <= max_passages vectors of passage_dim, each made into `slots` prefix embeddings
    passage_dim: int = 128  # D: the retriever's vector size (a DPR run's n_embd)
    slots: int = 4  # m: embeddings made from each passage vector
    max_passages: int = 3  # K at most
    # the decoder (axon.model_configs.decoder's fields of the same names)
    vocab_size: int | None = None  # null: taken from the tokenizer of the training data
    block_size: int = 128  # TEXT positions; the decoder sees max_passages * slots + block_size
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    mlp: Literal["gelu", "swiglu"] = "swiglu"
    norm: Literal["layernorm", "rmsnorm"] = "rmsnorm"
    pos: Literal["learned", "rope"] = "rope"
    qk_norm: bool = False
    dropout: float = 0.0
    init_std: float = 0.02  # the decoder, the passage MLP and the slot positions
    attn_impl: Literal["sdpa", "reference"] = "sdpa"

    def __post_init__(self):
        check_fields(self, "model.")  # types, and no NaN or infinity (axon.model_configs.fields)
        check(self.passage_dim > 0, "model.passage_dim", f"must be positive (the retriever's vector size), got {self.passage_dim}")
        check(self.slots > 0, "model.slots", f"must be positive (embeddings per passage), got {self.slots}")
        check(self.max_passages > 0, "model.max_passages", f"must be positive (passages read at most), got {self.max_passages}")
        check(self.block_size > 0, "model.block_size", f"must be positive (text positions), got {self.block_size}")
        self.decoder_config()  # the decoder's own checks (its fields keep their names)

    @property
    def prefix_len(self) -> int:
        """P = max_passages * slots: the prefix positions the decoder keeps before the text."""
        return self.max_passages * self.slots

    def decoder_config(self) -> DecoderConfig:
        """The decoder as a ``decoder`` config over max_passages * slots + block_size positions."""
        return DecoderConfig(vocab_size=self.vocab_size, block_size=self.prefix_len + self.block_size,
                             n_layer=self.n_layer, n_head=self.n_head, n_embd=self.n_embd, mlp=self.mlp,
                             norm=self.norm, pos=self.pos, qk_norm=self.qk_norm, dropout=self.dropout,
                             init_std=self.init_std, attn_impl=self.attn_impl)


# Named sizes. The counts are what axon.models.embed_reader builds (tied head: the token table once);
# the vocabulary comes from the task's tokenizer (tests/models/test_embed_reader.py checks the strings).
PRESETS: dict[str, dict] = {
    "tiny": dict(
        params="4,928 + 16 x vocab", source="for tests: vectors of 8, 2 slots x 3 passages, decoder 1 layer of 16",
        config=dict(passage_dim=8, slots=2, max_passages=3, block_size=16, n_layer=1, n_head=2, n_embd=16),
    ),
    "small": dict(
        params="888,064 + 128 x vocab", source="a reader of DPR vectors (128): 4 slots x 3 passages, decoder 4 layers of 128, 128 text positions",
        config=dict(passage_dim=128, slots=4, max_passages=3, block_size=128, n_layer=4, n_head=4, n_embd=128),
    ),
}
