"""The MLP denoiser's config and named sizes (the model: ``axon.models.mlp_denoiser``).

Torch-free, apart from the model, so that ``axon.config`` builds and validates a run's ``model``
section without importing torch or ``axon.models`` (see ``axon.model_configs``). Like the U-Net's,
it describes the network only: the diffusion schedule is the process's, never the model's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from axon.errors import check
from axon.model_configs.fields import check_fields


@dataclass
class MLPDenoiserConfig:
    family: Literal["mlp_denoiser"] = "mlp_denoiser"
    preset: str | None = None  # the named size this config started from, for the record
    data_dim: int = 2  # the points' dimension (2 for the toy sets: swiss roll, moons, mixtures)
    n_embd: int = 128  # width of the residual stream and of the timestep embedding
    n_layer: int = 3  # residual MLP blocks
    dropout: float = 0.0  # inside each block, before its second Linear
    num_classes: int | None = None  # null: unconditional; else a class embedding of num_classes + 1 rows
    learn_sigma: bool = False  # twice the output dimension: the noise and the variance's interpolation
    # an EMA of the weights (axon.nn.ema; Ho et al.: 0.9999), with which evaluation and sampling run; null: none
    ema_decay: float | None = None

    def __post_init__(self):
        check_fields(self, "model.")  # types, and no NaN or infinity (axon.model_configs.fields)
        for name in ("data_dim", "n_layer"):
            check(getattr(self, name) > 0, f"model.{name}", f"must be positive, got {getattr(self, name)}")
        check(self.n_embd >= 4, "model.n_embd",
              f"must be at least 4 (the timestep embedding's width), got {self.n_embd}")
        check(0.0 <= self.dropout < 1.0, "model.dropout", f"must be in [0, 1), got {self.dropout}")
        check(self.ema_decay is None or 0.0 < self.ema_decay < 1.0, "model.ema_decay",
              f"must be in (0, 1) or null (no EMA), got {self.ema_decay}")
        check(self.num_classes is None or self.num_classes > 0, "model.num_classes",
              f"must be positive or null (unconditional), got {self.num_classes}")

    @property
    def out_dim(self) -> int:
        return self.data_dim * (2 if self.learn_sigma else 1)

    @property
    def block_size(self) -> int:
        """The trainer counts batch_size * block_size "tokens" per micro-batch; for a denoiser one
        token is one point, so MFU and the lab's budgets count points (``flops_per_token``: per point)."""
        return 1


# Named sizes; tests/models/test_mlp_denoiser.py checks the counts (unconditional, learn_sigma false).
PRESETS: dict[str, dict] = {
    "tiny": dict(params="2,354", source="for tests", config=dict(data_dim=2, n_embd=16, n_layer=2)),
    "toy": dict(
        params="183,298",
        source="for 2-D toy sets (swiss roll, moons, Gaussian mixtures): a width-128 residual MLP of three "
               "blocks, the size the common 2-D diffusion demos use; trains on a CPU in a minute",
        config=dict(data_dim=2, n_embd=128, n_layer=3),
    ),
}
