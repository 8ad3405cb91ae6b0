"""The progressive decoder's config and named sizes (the model: ``axon.models.progressive``).

Torch-free, apart from the model, so that ``axon.config`` builds and validates a run's ``model``
section without importing torch or ``axon.models`` (see ``axon.model_configs``).
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import Literal

from axon.errors import check
from axon.model_configs.decoder import DecoderConfig


def block_linears(cfg: DecoderConfig) -> list[str]:
    """The names of the ``nn.Linear`` layers inside one dense block of ``axon.models.decoder``
    (attention, then the GELU or SwiGLU MLP), in module order: what lora_targets may match.
    Written out so that validating a config builds no block; tests/test_layering.py checks it
    against the modules of a built block."""
    mlp = ["mlp.gate_up", "mlp.proj"] if cfg.mlp in ("swiglu", "reglu", "geglu") else ["mlp.fc", "mlp.proj"]
    return ["attn.qkv", "attn.proj", *mlp]


@dataclass
class ProgressiveConfig(DecoderConfig):
    family: Literal["progressive"] = "progressive"
    # n_layer (inherited) is the STARTING depth; it doubles at each step of grow_at.
    grow_at: list[int] = field(default_factory=list)  # optimizer steps completed when the depth doubles
    diverge: Literal["lora", "unfreeze"] = "lora"
    lora_rank: int = 8
    lora_alpha: float = 16.0
    # Linear layers of a block (names inside the block, fnmatch patterns) that get adapters in lora mode.
    lora_targets: list[str] = field(default_factory=lambda: ["attn.qkv", "attn.proj", "mlp.*"])
    gate_gain: float = 10.0  # a copy's residual gate is gate_gain * theta, theta = 0 at birth (axon.models.progressive)

    def __post_init__(self):
        super().__post_init__()
        for i, s in enumerate(self.grow_at):
            check(s > 0, f"model.grow_at[{i}]", f"must be a positive step (optimizer steps completed), got {s}")
        check(all(a < b for a, b in zip(self.grow_at, self.grow_at[1:])), "model.grow_at",
              f"growth steps must be strictly increasing, got {self.grow_at}")
        check(self.lora_rank >= 1, "model.lora_rank", f"must be >= 1, got {self.lora_rank}")
        check(self.lora_alpha > 0, "model.lora_alpha", f"must be > 0, got {self.lora_alpha}")
        check(self.gate_gain > 0, "model.gate_gain", f"must be > 0, got {self.gate_gain}")
        check(getattr(self, "moe_experts", 0) == 0, "model.moe_experts",
              "the progressive model grows dense blocks only; set moe_experts=0")
        # A sliding model's ring-buffer cache and per-layer pattern lists (attn_layers) assume a fixed depth.
        check(getattr(self, "attention", "dense") == "dense", "model.attention",
              "the progressive model grows dense-attention blocks only; set attention=dense")
        if self.diverge == "lora":
            check(len(self.lora_targets) > 0, "model.lora_targets",
                  "give at least one linear of a block, e.g. [attn.qkv, attn.proj, 'mlp.*']")
            names = block_linears(self)
            for pattern in self.lora_targets:
                check(any(fnmatch.fnmatchcase(n, pattern) for n in names), "model.lora_targets",
                      f"{pattern!r} matches no linear layer of a block; the block's linears: {', '.join(names)}")

    @property
    def final_layers(self) -> int:
        """Depth after every growth step."""
        return self.n_layer * 2 ** len(self.grow_at)


# n_layer is the starting depth. The recipe (configs/progressive_tiny.yaml) spells its shape out.
PRESETS: dict[str, dict] = {
    "tiny": dict(params="57,600 at start; 66,306 (lora) or 110,978 (unfreeze) grown (vocab 65)", source="for tests",
                 config=dict(block_size=64, n_layer=1, n_head=4, n_embd=64, grow_at=[10])),
}
