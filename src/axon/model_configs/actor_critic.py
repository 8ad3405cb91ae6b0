"""The actor-critic's config and named sizes: a decoder policy with a value head, the model PPO
trains (the model: ``axon.models.actor_critic``; the task: ``axon.tasks.ppo``).

The config is the decoder's with the family renamed and the value head's fields added, so a
decoder run (pretrained or SFT) named by ``train.init_from`` loads into the policy unchanged:
give the PPO run that run's shape (``axon finetune RUN --task=ppo`` does).

Torch-free, apart from the model, so that ``axon.config`` builds and validates a run's ``model``
section without importing torch or ``axon.models`` (see ``axon.model_configs``).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Literal

from axon.errors import check
from axon.model_configs.decoder import PRESETS as DECODER_PRESETS
from axon.model_configs.decoder import DecoderConfig

#: The fields this family adds to the decoder's: what the policy's source run does not have.
VALUE_FIELDS = ("value_head", "value_lr_scale")


@dataclass
class ActorCriticConfig(DecoderConfig):
    family: Literal["actor_critic"] = "actor_critic"
    # shared: V(s) = a linear map of the policy's own final hidden state (one body for both; the
    # value loss trains the body too, weighted by ppo.value_coef). InstructGPT initialises a
    # separate value network from the reward model; a second body is not implemented here.
    value_head: Literal["shared"] = "shared"
    # the value head's lr is value_lr_scale x optim.lr (axon.train.optim.lr_scale): it starts at zero and
    # must track returns that move with the policy, while the policy itself moves at a fine-tuning lr
    value_lr_scale: float = 10.0

    def __post_init__(self):
        super().__post_init__()
        check(self.value_lr_scale > 0, "model.value_lr_scale", f"must be > 0, got {self.value_lr_scale}")

    def decoder_config(self) -> DecoderConfig:
        """The policy's shape as a plain decoder config (the reference model's, the export's)."""
        keep = [f.name for f in fields(DecoderConfig) if f.name != "family"]
        return DecoderConfig(**{k: getattr(self, k) for k in keep})


# The decoder's sizes, each with a value head (n_embd + 1 more parameters).
PRESETS: dict[str, dict] = {
    name: dict(params=f"{p['params']} + value head", source=f"{p['source']}; the decoder's shape", config=p["config"])
    for name, p in DECODER_PRESETS.items()
}
