"""World Models' three families (Ha & Schmidhuber 2018; the modules: ``axon.models.wm``).

Torch-free (see ``axon.model_configs``). ``wm_vae`` is V, ``wm_mdnrnn`` is M, ``wm_controller`` is C;
each trains with its own task (``wm_vae``, ``wm_mdn``, ``wm_controller``: ``axon.agents.worldmodels.tasks``).
The sizes M and C read off V (``z_dim``) and M (``hidden``) are null until their task fills them
from the runs named in ``world_model.vae_run`` / ``world_model.mdn_run``. ``block_size``: one frame
is one "token" for V and C; M trains on windows of ``block_size`` steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from axon.errors import check
from axon.model_configs.fields import check_fields


@dataclass
class WMVAEConfig:
    family: Literal["wm_vae"] = "wm_vae"
    preset: str | None = None
    frame_size: int = 32  # height = width of the frames; 3 stride-2 convolutions: a multiple of 8
    channels: int = 16  # the first convolution's channels (then 2x, 4x), as the paper's 32-64-128-256 scaled down
    z_dim: int = 16  # the latent z (the paper: 32 for CarRacing)
    block_size: int = 1

    def __post_init__(self):
        check_fields(self, "model.")
        check(self.frame_size >= 8 and self.frame_size % 8 == 0, "model.frame_size",
              f"must be a positive multiple of 8 (three halvings), got {self.frame_size}")
        for name in ("channels", "z_dim"):
            check(getattr(self, name) > 0, f"model.{name}", f"must be positive, got {getattr(self, name)}")


@dataclass
class MDNRNNConfig:
    family: Literal["wm_mdnrnn"] = "wm_mdnrnn"
    preset: str | None = None
    z_dim: int | None = None  # null: V's z_dim (the task fills it from world_model.vae_run)
    action_dim: int = 1
    hidden: int = 64  # the LSTM's h (the paper: 256)
    mixtures: int = 5  # Gaussians per latent dimension (the paper: 5)
    cell: Literal["lstm", "gru"] = "lstm"
    block_size: int = 32  # steps per training window

    def __post_init__(self):
        check_fields(self, "model.")
        for name in ("action_dim", "hidden", "mixtures", "block_size"):
            check(getattr(self, name) > 0, f"model.{name}", f"must be positive, got {getattr(self, name)}")
        check(self.z_dim is None or self.z_dim > 0, "model.z_dim", f"must be positive (or null: V's), got {self.z_dim}")


@dataclass
class ControllerConfig:
    family: Literal["wm_controller"] = "wm_controller"
    preset: str | None = None
    z_dim: int | None = None  # null: V's (filled by the wm_controller task)
    hidden: int | None = None  # null: M's h size (filled by the task)
    action_dim: int = 1
    use_hidden: bool = True  # False: C sees z alone (the paper's "V model only" ablation)
    sigma0: float = 0.5  # CMA-ES's initial step size (the search starts at W = 0, b = 0)
    block_size: int = 1

    def __post_init__(self):
        check_fields(self, "model.")
        check(self.action_dim > 0, "model.action_dim", f"must be positive, got {self.action_dim}")
        check(self.sigma0 > 0, "model.sigma0", f"must be > 0, got {self.sigma0}")
        for name in ("z_dim", "hidden"):
            v = getattr(self, name)
            check(v is None or v > 0, f"model.{name}", f"must be positive (or null: from the runs), got {v}")


VAE_PRESETS: dict[str, dict] = {
    "tiny": dict(params="34,147", source="for tests", config=dict(frame_size=32, channels=8, z_dim=8)),
    "chase": dict(params="133,827", source="ours: 32x32 Chase frames", config=dict(frame_size=32, channels=16, z_dim=16)),
    "carracing": dict(params="480,995", source="ours: 64x64 CarRacing frames (the paper: 32-256 channels, z 32)",
                      config=dict(frame_size=64, channels=16, z_dim=32)),
}
MDNRNN_PRESETS: dict[str, dict] = {
    "tiny": dict(params="7,913", source="for tests", config=dict(z_dim=8, hidden=32, mixtures=3, block_size=16)),
    "chase": dict(params="36,913", source="ours", config=dict(z_dim=16, hidden=64, mixtures=5, block_size=32)),
    "carracing": dict(params="146,529", source="ours (the paper: 256 LSTM units)",
                      config=dict(z_dim=32, action_dim=3, hidden=128, mixtures=5, block_size=32)),
}
CONTROLLER_PRESETS: dict[str, dict] = {
    "tiny": dict(params="41", source="for tests", config=dict(z_dim=8, hidden=32)),
    "chase": dict(params="81", source="the paper's linear C", config=dict(z_dim=16, hidden=64)),
    "carracing": dict(params="483", source="the paper's linear C (867 at z 32, h 256)",
                      config=dict(z_dim=32, hidden=128, action_dim=3)),
}
