"""Reward model: a decoder body with a scalar head on the last real token (Ouyang et al. 2022, sec. 3.5).

InstructGPT's reward model is the SFT model "with the final unembedding layer removed": it reads
prompt + response and outputs one number, the reward r(x, y). Here that is ``Decoder`` built
without its LM head, and a linear map of the final normed hidden state of the sequence's last
real token:

     prompt + response tokens (N, T), right-padded; lengths (N,)
        |
     Decoder body (wte, blocks, norm_f)  -- the parameter names of a decoder run, so a language
        |                                   model's or SFT run's checkpoint loads into it
     hidden_states (N, T, C)
        |
     h[n, lengths[n] - 1]  (N, C)        the last real token: causal attention has shown it every
        |                                token of its sequence and none of the padding after it
     reward_head (C -> 1)  -> r (N,)

The head starts at N(0, 1/(C+1)) (Stiennon et al. 2020, appendix) and has no bias: the
pairwise loss sees reward differences only, so a constant offset would never be trained.

Labellers of unequal reliability (``labeller_noise``; Christiano et al. 2017 take feedback from
several trainers): labeller l reverses a comparison with probability eps_l = sigmoid(theta_l),
theta a parameter of this model so that the one optimizer trains it with the reward, at
``labeller_lr_scale`` times the lr (``axon.train.optim.lr_scale``): each theta_l is fitted from all
of its labeller's comparisons and must keep up with a reward trained at a fine-tuning lr.
``forward(..., labeller=)`` also returns each comparison's flip logit theta_l (minus infinity,
i.e. eps = 0, for a comparison without a labeller); the likelihood that uses it is in
``axon.objectives.reward``. The model returns rewards; losses live in ``axon.objectives``.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.distributed.tensor import DTensor

from axon.model_configs.reward import PRESETS, RewardConfig  # noqa: F401 (re-exported: the family's config and sizes)
from axon.models.decoder import Decoder
from axon.models.flops import transformer_flops_per_token


class RewardModel(Decoder):
    def __init__(self, cfg: RewardConfig):
        super().__init__(cfg, lm_head=False)
        if cfg.labeller_noise and not cfg.labellers:
            raise ValueError("RewardConfig.labellers must be set before building a model with labeller_noise")
        self.reward_head = nn.Linear(cfg.n_embd, 1, bias=False)
        nn.init.normal_(self.reward_head.weight, 0.0, 1.0 / math.sqrt(cfg.n_embd + 1))
        if cfg.labeller_noise:
            eps = cfg.labeller_eps_init
            self.labeller_theta = nn.Parameter(torch.full((cfg.n_labellers,), math.log(eps / (1 - eps))))  # logit(eps_l)
            self.labeller_theta._lr_scale = cfg.labeller_lr_scale  # axon.train.optim.lr_scale
        else:
            self.register_parameter("labeller_theta", None)

    def forward(self, idx: torch.Tensor, lengths: torch.Tensor, labeller: torch.Tensor | None = None):
        """idx (N, T) token ids, right-padded; lengths (N,) real tokens in each row (>= 1) ->
        rewards (N,). With ``labeller`` (P,) int64 (indices into ``config.labellers``, or -1):
        (rewards, flip logits (P,)), see :meth:`flip_logits`."""
        h = self.hidden_states(idx)  # (N, T, C)
        last = h[torch.arange(idx.size(0), device=idx.device), lengths - 1]  # (N, C)
        rewards = self.reward_head(last).squeeze(-1)  # (N,)
        if labeller is None:
            return rewards
        return rewards, self.flip_logits(labeller, rewards.dtype)

    def flip_logits(self, labeller: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """logit(eps_l) = theta_l for each entry of ``labeller`` (P,), and -inf (eps = 0) where
        it is -1 (no labeller) or the model has no labeller_noise. Call it through ``forward``
        where the model is wrapped (FSDP gathers theta only inside the forward)."""
        none = torch.full(labeller.shape, -math.inf, dtype=dtype, device=labeller.device)
        if self.labeller_theta is None:
            return none
        a = self.labeller_theta[labeller.clamp(min=0)]  # (P,)
        return torch.where(labeller >= 0, a.to(dtype), none)

    @torch.no_grad()
    def labeller_eps(self) -> dict[str, float]:
        """Each labeller's estimated flip rate eps_l, by id (empty without labeller_noise)."""
        if self.labeller_theta is None:
            return {}
        theta = self.labeller_theta.detach()
        if isinstance(theta, DTensor):  # sharded by FSDP: every rank gathers it (metrics() runs on all)
            theta = theta.full_tensor()
        eps = torch.sigmoid(theta.double()).tolist()
        return dict(zip(self.config.labellers, eps))

    def metrics(self) -> dict[str, float]:
        """``eps/<labeller>`` for each labeller (logged with each training record), and the MoE
        decoder's routing figures when the body has experts."""
        return {**super().metrics(), **{f"eps/{name}": e for name, e in self.labeller_eps().items()}}

    def flops_per_token(self, seq_len: int | None = None) -> float:
        """Training FLOPs per token of the body (axon.models.flops): its weights and attention, no
        LM head; the scalar head runs once per sequence, not per token, and is left out, as are
        the flip rates, which multiply nothing."""
        cfg = self.config
        T = seq_len or cfg.block_size
        matmul_params = self.active_params(non_embedding=True) - cfg.n_embd - cfg.n_labellers
        keys = [min(T, cfg.attn_window) if cfg.attention == "sliding" and cfg.uses_pattern(i) else T for i in range(cfg.n_layer)]
        return transformer_flops_per_token(matmul_params, cfg.n_layer, cfg.n_head * cfg.head_dim, T, layer_keys=keys)


__all__ = ["PRESETS", "RewardConfig", "RewardModel"]
