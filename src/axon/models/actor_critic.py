"""Actor-critic: a decoder policy with a value function, the model PPO trains (Schulman et al.
2017; for language models Ziegler et al. 2019 and Ouyang et al. 2022, InstructGPT).

``value_head: shared`` (the default) -- one body for both:

     tokens (B, T): prompt + response, right-padded
        |
     Decoder body (wte, blocks, norm_f)  -- a decoder run's parameter names: an SFT run's
        |                                   checkpoint loads into it, the value head aside
     hidden_states (B, T, C)
        |                 \\
     lm_head (C -> V)    value_head (C -> 1)
        |                   |
     logits (B, T, V)    values (B, T): V_t, the expected return after reading tokens 0..t
                         (the value of the state in which token t + 1 is chosen)

``value_head: separate`` -- InstructGPT's value function, a network of its own:

     tokens (B, T) --> Decoder body --> lm_head --> logits (B, T, V)        the policy
            \\
             +------> critic: Decoder body (critic.wte, critic.blocks, critic.norm_f; its shape:
                      model.critic_*, default the policy's) --> critic.value_head (C' -> 1)
                      --> values (B, T)

so the policy loss and the value loss train disjoint parameters (with ``shared`` the value loss,
weighted by ``ppo.value_coef``, also moves the policy's body). The critic's body has a decoder's
parameter names under ``critic.``, so it starts from an SFT run's body or from a reward run
(``axon.models.reward``: its body and ``reward_head`` -> ``critic.value_head``), which the task
loads (``ppo.value_init``).

``value_head: none`` -- the policy alone (GRPO, RLOO: ``axon.tasks.grpo``, whose baseline is the
other answers to the same prompt): the decoder and its rollout state, no value function, so
``forward(idx, values=True)`` is an error.

``forward(idx)`` is the decoder's (logits; the cache and padding arguments of generation work
unchanged, and the critic is not run), so sampling, ``axon sample`` and evaluation treat the
policy as a language model; ``forward(idx, values=True)`` also returns the values (shared: from
the same pass). :meth:`ActorCritic.policy` is the policy alone as a plain decoder (the export).

A value head built here starts at zero (weight and bias): V = 0 everywhere, so explained variance
starts at 0 rather than at a random head's negative figure, and the value loss sends no gradient
into the body until the head has learnt something (dV/dh = w = 0). It trains at
``value_lr_scale`` times the lr (``axon.train.optim.lr_scale``; a head, so AdamW even under Muon):
at a fine-tuning lr a zero-initialised head explained almost none of the returns after 20
rollouts. A separate critic's body trains at the lr, as the policy's does.

What PPO must carry across a checkpoint besides the weights lives here too, as persistent
buffers (``rollout``): the last rollout (tokens, old log-probabilities, values, advantages,
returns), its index and statistics, and the KL coefficient. The trainer checkpoints the model, so
a run stopped anywhere -- at a rollout boundary or in the middle of a rollout's epochs -- resumes
exactly (axon.tasks.ppo). With ``value_head: none`` the store holds GRPO's state instead
(:data:`GROUP_BUFFERS`, :data:`GROUP_STATS`: no values, returns or beta; the reference's
log-probabilities and one advantage per answer). Their shapes follow the rollout, so a checkpoint's shapes replace the
fresh (empty) buffers on load. The frozen reference policy and the reward are not here: they are
rebuilt from their sources, and only what trains (and this state) is saved.

The model returns logits and values; the losses live in ``axon.objectives.ppo``.
"""

from __future__ import annotations

import torch
from torch import nn

from axon.model_configs.actor_critic import PRESETS, ActorCriticConfig  # noqa: F401 (re-exported: the family's config and sizes)
from axon.models.decoder import Decoder

#: The statistics of a rollout kept with it (``RolloutStore.stats``, float64, in this order) and
#: reported by :meth:`ActorCritic.metrics` while the rollout is trained on.
ROLLOUT_STATS = ("score", "gold", "kl", "beta", "entropy", "length", "ended", "explained_variance")
#: The same for GRPO and RLOO (axon.tasks.grpo): the mean within-group standard deviation of the
#: scores and the share of groups whose scores are all equal (zero advantage) besides PPO's figures.
GROUP_STATS = ("score", "gold", "kl", "entropy", "length", "ended", "group_std", "frac_zero_std")
#: The buffers of a GRPO rollout: the reference's log-probabilities (its KL term) and one advantage per answer (N,).
GROUP_BUFFERS = ("index", "tokens", "prompt_len", "mask", "logp", "ref_logp", "advantages", "stats")


class RolloutStore(nn.Module):
    """The state of PPO between two optimizer steps, as persistent buffers (module docstring); with
    ``names`` and ``stats`` another task's (GRPO's: GROUP_BUFFERS, GROUP_STATS).

        index              ()   int64    the rollout these tensors hold; -1: none yet
        beta               ()   float64  the KL coefficient for the next rollout; empty: not set yet
        tokens             (N, L) int64  prompt + response of each rollout row, right-padded with 0
        prompt_len         (N,) int64    prompt tokens of each row
        mask               (N, R)        1 on each row's response tokens (R: the longest response)
        logp, values, advantages, returns  (N, R)  per response token, as computed at the rollout
        stats              (len(ROLLOUT_STATS),) float64
    """

    NAMES = ("index", "beta", "tokens", "prompt_len", "mask", "logp", "values", "advantages", "returns", "stats")
    INTEGER = ("index", "tokens", "prompt_len")

    def __init__(self, names: tuple[str, ...] | None = None, stats: tuple[str, ...] = ROLLOUT_STATS):
        super().__init__()
        self.NAMES, self.STATS = names or type(self).NAMES, stats
        for name in self.NAMES:
            self.register_buffer(name, torch.zeros(0, dtype=torch.int64 if name in self.INTEGER else torch.float64))
        self.index = torch.full((), -1, dtype=torch.int64)

    def store(self, **tensors: torch.Tensor) -> None:
        """Replace buffers (any shape) with ``tensors``, on this store's device."""
        device = self.index.device
        for name, t in tensors.items():
            if name not in self.NAMES:
                raise KeyError(f"RolloutStore has no buffer {name!r}")
            self._buffers[name] = t.detach().to(device)

    @property
    def held(self) -> int:
        """The index of the rollout held (-1: none)."""
        return int(self.index)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs):
        # The buffers take the checkpoint's shapes (a rollout's length is known only once sampled).
        for name in self.NAMES:
            saved = state_dict.get(prefix + name)
            if saved is not None:
                self._buffers[name] = torch.empty(saved.shape, dtype=saved.dtype, device=self.index.device)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs)


def value_head(width: int, lr_scale: float) -> nn.Linear:
    """A scalar head (C -> 1) at zero, trained at ``lr_scale`` x the lr (module docstring)."""
    head = nn.Linear(width, 1)
    nn.init.zeros_(head.weight)
    nn.init.zeros_(head.bias)
    for p in head.parameters():
        p._lr_scale = lr_scale  # axon.train.optim.lr_scale
    return head


class Critic(Decoder):
    """The separate value network: a decoder body (no LM head) and a scalar head on every
    position's final normed hidden state: idx (B, T) -> values (B, T)."""

    def __init__(self, cfg, lr_scale: float):
        super().__init__(cfg, lm_head=False)
        self.value_head = value_head(cfg.n_embd, lr_scale)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.value_head(self.hidden_states(idx)).squeeze(-1)  # (B, T)


class ActorCritic(Decoder):
    def __init__(self, cfg: ActorCriticConfig):
        super().__init__(cfg)
        self.value_head = value_head(cfg.n_embd, cfg.value_lr_scale) if cfg.value_head == "shared" else None
        self.critic = Critic(cfg.critic_config(), cfg.value_lr_scale) if cfg.value_head == "separate" else None
        self.rollout = RolloutStore(GROUP_BUFFERS, GROUP_STATS) if cfg.value_head == "none" else RolloutStore()
        self._sums: dict[str, float] = {}
        self._counts: dict[str, int] = {}

    def forward(self, idx: torch.Tensor, cache=None, pad_mask: torch.Tensor | None = None, last_only: bool = False,
                values: bool = False):
        """The decoder's forward (logits (B, T, V)); with ``values``: (logits, values (B, T))."""
        h = self.hidden_states(idx, cache, pad_mask, last_only)  # (B, T, C)
        logits = self.lm_head(h)  # (B, T, V)
        if not values:
            return logits
        if self.critic is not None:
            return logits, self.critic(idx)  # (B, T), from the critic's own body
        if self.value_head is None:
            raise ValueError("model.value_head=none: this policy has no value function")
        return logits, self.value_head(h).squeeze(-1)  # (B, T)

    def flops_per_token(self, seq_len: int | None = None) -> float:
        """The decoder's training FLOPs per token, plus a separate critic's (its own body)."""
        total = super().flops_per_token(seq_len)
        if self.critic is None:
            return total
        # the decoder's count took every critic parameter as a matmul weight of the policy's
        return total - 6.0 * self.critic.num_params() + self.critic.flops_per_token(seq_len or self.config.block_size)

    # -- what the trainer logs -------------------------------------------------------------------

    def record(self, figures: dict[str, float]) -> None:
        """Add one minibatch's figures (policy loss, clip fraction, ...); :meth:`metrics` reports
        their means since its last call."""
        for k, v in figures.items():
            self._sums[k] = self._sums.get(k, 0.0) + float(v)
            self._counts[k] = self._counts.get(k, 0) + 1

    def metrics(self) -> dict[str, float]:
        """The held rollout's statistics (ROLLOUT_STATS or GROUP_STATS; ``gold`` only when a gold judge scored it)
        and its index, and the means of the recorded minibatch figures since the last call; with
        the MoE decoder's routing figures when the body has experts."""
        out = dict(super().metrics())
        if self.rollout.held >= 0 and self.rollout.stats.numel() == len(self.rollout.STATS):
            stats = dict(zip(self.rollout.STATS, self.rollout.stats.tolist()))
            out.update({k: v for k, v in stats.items() if v == v})  # NaN: not measured (no gold judge)
            out["rollout"] = float(self.rollout.held)
        out.update({k: self._sums[k] / self._counts[k] for k in self._sums})
        self._sums, self._counts = {}, {}
        return out

    # -- the policy alone --------------------------------------------------------------------------

    def policy(self) -> Decoder:
        """A plain decoder with the policy's weights (copies): what ``axon convert --to-hf`` exports."""
        body = Decoder(self.config.decoder_config()).to(self.wte.weight.device, self.wte.weight.dtype)
        own = self.state_dict()
        body.load_state_dict({k: own[k] for k in body.state_dict()})
        return body.train(self.training)


__all__ = ["PRESETS", "ActorCritic", "ActorCriticConfig", "Critic", "RolloutStore", "ROLLOUT_STATS", "GROUP_STATS",
           "GROUP_BUFFERS"]
