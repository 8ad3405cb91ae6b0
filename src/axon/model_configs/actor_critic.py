"""The actor-critic's config and named sizes: a decoder policy with a value function, the model
PPO trains (the model: ``axon.models.actor_critic``; the task: ``axon.tasks.ppo``).

The config is the decoder's with the family renamed and the value function's fields added, so a
decoder run (pretrained or SFT) named by ``train.init_from`` loads into the policy unchanged:
give the PPO run that run's shape (``axon finetune RUN --task=ppo`` does).

The value function is a head on the policy's own body (``value_head: shared``, the default) or a
critic of its own (``separate``): a decoder body with a scalar head, of the policy's shape unless
``critic_n_layer`` / ``critic_n_head`` / ``critic_n_embd`` say otherwise (its other settings --
vocabulary, context, norm, positions, MLP kind -- are the policy's; it is always dense, no MoE).
``none``: no value function at all, the policy and its rollout state only -- the model of GRPO and
RLOO (``axon.tasks.grpo``), whose baseline is the other answers to the same prompt.

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
VALUE_FIELDS = ("value_head", "value_lr_scale", "critic_n_layer", "critic_n_head", "critic_n_embd")
#: The separate critic's own shape fields, and the decoder field each sets.
CRITIC_FIELDS = {"critic_n_layer": "n_layer", "critic_n_head": "n_head", "critic_n_embd": "n_embd"}


@dataclass
class ActorCriticConfig(DecoderConfig):
    family: Literal["actor_critic"] = "actor_critic"
    # shared: V(s) = a linear map of the policy's own final hidden state (one body for both; the
    # value loss trains the body too, weighted by ppo.value_coef). separate: a critic with its own
    # decoder body and scalar head (InstructGPT's value function, which it initialises from the
    # reward model: ppo.value_init), so the policy and value losses train disjoint parameters. none: no value
    # function (the grpo task's policy: its baseline is the group's other answers).
    value_head: Literal["shared", "separate", "none"] = "shared"
    # the separate critic's shape (null: the policy's); e.g. a smaller critic than the policy
    critic_n_layer: int | None = None
    critic_n_head: int | None = None
    critic_n_embd: int | None = None
    # the value head's lr is value_lr_scale x optim.lr (axon.train.optim.lr_scale): it starts at zero and
    # must track returns that move with the policy, while the policy itself moves at a fine-tuning lr
    value_lr_scale: float = 10.0

    def __post_init__(self):
        super().__post_init__()
        check(self.value_lr_scale > 0, "model.value_lr_scale", f"must be > 0, got {self.value_lr_scale}")
        for name in CRITIC_FIELDS:
            value = getattr(self, name)
            check(value is None or self.value_head == "separate", f"model.{name}",
                  "sets the shape of a separate critic; set model.value_head=separate (or remove it)")
            check(value is None or value > 0, f"model.{name}", f"must be positive, got {value}")
        if self.value_head == "separate":
            C, H = self.critic_shape("n_embd"), self.critic_shape("n_head")
            check(C % H == 0, "model.critic_n_embd", f"{C} is not divisible by the critic's n_head={H}; "
                  "pick critic_n_embd = critic_n_head * head_dim")
            check(self.pos != "rope" or (C // H) % 2 == 0, "model.critic_n_embd",
                  f"RoPE rotates channel pairs, so the critic's head_dim = {C} / {H} must be even")

    def critic_shape(self, field: str) -> int:
        """The separate critic's ``n_layer`` / ``n_head`` / ``n_embd``: its own field, else the policy's."""
        own = getattr(self, f"critic_{field}")
        return getattr(self, field) if own is None else own

    def decoder_config(self) -> DecoderConfig:
        """The policy's shape as a plain decoder config (the reference model's, the export's)."""
        keep = [f.name for f in fields(DecoderConfig) if f.name != "family"]
        return DecoderConfig(**{k: getattr(self, k) for k in keep})

    def critic_config(self) -> DecoderConfig:
        """The separate critic's body as a decoder config: the policy's, with the critic's
        shape, dense, and (when its width or heads differ) its own MLP width and MHA."""
        base = {k: getattr(self, k) for k in (f.name for f in fields(DecoderConfig)) if k not in ("family", "preset")}
        own = {field: self.critic_shape(field) for field in CRITIC_FIELDS.values()}
        if own["n_embd"] != self.n_embd:
            base["mlp_hidden"] = None  # the default for the critic's width
        if own["n_head"] != self.n_head or own["n_embd"] != self.n_embd:
            base["n_kv_head"] = None
        base.update(moe_experts=0, moe_shared_experts=0, moe_hidden=None, **own)
        if base["attn_layers"] is not None:
            base["attn_layers"] = [i for i in base["attn_layers"] if i < own["n_layer"]] or None
            if base["attn_layers"] is None:
                base.update(attention="dense", attn_window=None, attn_block=None, attn_summary=None)
        return DecoderConfig(**base)


# The decoder's sizes, each with a value head (n_embd + 1 more parameters).
PRESETS: dict[str, dict] = {
    name: dict(params=f"{p['params']} + value head", source=f"{p['source']}; the decoder's shape", config=p["config"])
    for name, p in DECODER_PRESETS.items()
}
