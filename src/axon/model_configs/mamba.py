"""Mamba's config and named sizes (the model: ``axon.models.mamba``).

Torch-free, apart from the model, so that ``axon.config`` builds and validates a run's ``model``
section without importing torch or ``axon.models`` (see ``axon.model_configs``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from axon.errors import check
from axon.model_configs.fields import check_fields


@dataclass
class MambaConfig:
    family: Literal["mamba"] = "mamba"
    preset: str | None = None  # the named size this config started from, for the record
    vocab_size: int | None = None  # null: taken from the tokenizer of the training data
    block_size: int = 128  # training window; generation has no context limit
    n_embd: int = 128  # the residual width (the paper's d_model)
    n_layer: int = 4
    d_state: int = 16  # N, states per channel
    d_conv: int = 4  # taps of the causal depthwise convolution
    expand: int = 2  # D = expand * n_embd channels inside the mixer
    dt_rank: int | None = None  # R, rank of the dt projection; null = ceil(n_embd / 16) (the paper's "auto")
    conv_bias: bool = True
    bias: bool = False  # in_proj and out_proj biases
    norm_eps: float = 1e-5
    tie_embeddings: bool = True
    residual_in_fp32: bool = True  # keep the residual stream in fp32 when the model runs in bf16/fp16
    # dt init (sec. 3.6 / reference code): softplus(dt_proj.bias) log-uniform in [dt_min, dt_max], at least dt_init_floor
    dt_min: float = 0.001
    dt_max: float = 0.1
    dt_init_floor: float = 1e-4
    init_std: float = 0.02  # token embedding
    # The training scan (axon.nn.ssm): "sequential" = the step-by-step recurrence (the reference, and the
    # fastest on a CPU: 2.5x the chunked scan at T = 256, where memory traffic, not Python steps, is the
    # cost), "chunked" = the blocked scan (L + T/L Python steps instead of T: for accelerators, where
    # each step is a kernel launch), "auto" = sequential on a CPU, chunked on any other device.
    scan_impl: Literal["auto", "chunked", "sequential"] = "auto"
    scan_chunk: int = 16  # chunk length L of the chunked scan

    def __post_init__(self):
        check_fields(self, "model.")  # types, and no NaN or infinity (axon.model_configs.fields)
        check(self.vocab_size is None or self.vocab_size > 0, "model.vocab_size", "must be positive")
        for name in ("block_size", "n_embd", "n_layer", "scan_chunk"):
            check(getattr(self, name) > 0, f"model.{name}", "must be positive")
        check(self.d_state >= 1, "model.d_state", f"must be at least 1 (states per channel), got {self.d_state}")
        check(self.d_conv >= 1, "model.d_conv", f"must be at least 1 (convolution taps), got {self.d_conv}")
        check(self.expand > 0, "model.expand", f"must be positive (D = expand * n_embd), got {self.expand}")
        check(self.dt_rank is None or self.dt_rank > 0, "model.dt_rank", "must be positive, or null for ceil(n_embd / 16)")
        check(self.norm_eps > 0, "model.norm_eps", "must be positive")
        check(0 < self.dt_min <= self.dt_max, "model.dt_min",
              f"need 0 < dt_min <= dt_max (got dt_min={self.dt_min}, dt_max={self.dt_max})")
        check(self.dt_init_floor > 0, "model.dt_init_floor", "must be positive")
        check(self.init_std > 0, "model.init_std", "must be positive")

    @property
    def d_inner(self) -> int:
        return self.expand * self.n_embd

    @property
    def rank(self) -> int:
        return self.dt_rank if self.dt_rank is not None else math.ceil(self.n_embd / 16)

    @property
    def context_limit(self) -> None:
        """No context limit for generation (``axon.generate.cache.context_limit``)."""
        return None


# Named sizes. The released checkpoints (state-spaces/mamba-*-hf; Gu & Dao 2023, Table 12 shapes)
# have vocabulary 50280 (GPT-NeoX's, padded to a multiple of 8); parameter counts are checked
# against transformers' MambaForCausalLM of the same config (tests/models/test_mamba.py).
PRESETS: dict[str, dict] = {
    "tiny": dict(
        params="18,944 (vocab 65)", source="for tests",
        config=dict(block_size=32, n_embd=32, n_layer=2, d_state=8),
    ),
    "char": dict(
        params="474,880 (vocab 65)", source="configs/mamba_tiny.yaml: near the default transformer job's 0.8M",
        config=dict(block_size=128, n_embd=128, n_layer=4, d_state=16),
    ),
    **{
        name: dict(
            params=params, source="Gu & Dao 2023 (state-spaces/" + name + "-hf)",
            config=dict(vocab_size=50280, block_size=2048, n_embd=ne, n_layer=nl, d_state=16),
        )
        for name, ne, nl, params in [
            ("mamba-130m", 768, 24, "129,135,360"),
            ("mamba-370m", 1024, 48, "371,516,416"),
            ("mamba-790m", 1536, 48, "793,204,224"),
            ("mamba-1.4b", 2048, 48, "1,372,178,432"),
            ("mamba-2.8b", 2560, 64, "2,768,345,600"),
        ]
    },
}
