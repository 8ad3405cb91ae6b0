"""Mixture-of-experts feed-forward layer: a router sends each token to k of E expert MLPs.

    x (B, T, C) -> N = B*T tokens
        |
     router  logits (N, E) -> softmax p (N, E) -> top-k experts e (N, k), gates g (N, k)
        |
     dispatch   sort the N*k assignments by expert, copy tokens into a buffer (E, capacity, C)
        |
     experts    two batched matmuls over the E stacked weight matrices (torch.bmm): one for all
        |       experts at once, no Python loop over tokens or experts
     combine    y[n] = sum_j g[n, j] * expert_{e[n, j]}(x[n])   (index_add back to (N, C))
        |
     + shared experts (DeepSeekMoE): a dense MLP every token passes through
        |
    y (B, T, C)

Routing (gates g):
  - ``normalize=True`` (Mixtral, Jiang et al. 2024; GLaM, Du et al. 2022): softmax over all E
    experts, keep the top k, renormalise the k kept probabilities to sum to 1. Hugging Face's
    MixtralTopKRouter does exactly this (softmax in fp32, topk, divide by the sum).
  - ``normalize=False`` (Switch, Fedus et al. 2021, eq. 2): the gate is the softmax probability
    itself, so for top-1 the expert output is scaled by p_e(x) and the router gets a gradient
    from the language-model loss. (Renormalised top-1 has gate 1: the router would then learn
    only from the auxiliary loss; the decoder config therefore defaults to normalise for k > 1
    and not for k = 1.)

Capacity (Switch sec. 2.2): each expert takes at most
    capacity = ceil(capacity_factor * N * k / E)
assignments per forward. Assignments are served in priority order: every token's first choice
in token order, then every second choice, ... (GShard, Lepikhin et al. 2021, Algorithm 1: a
second choice only takes space the first choices left). An assignment beyond capacity is
dropped: it adds nothing, so for a token whose every choice overflowed the layer is the
identity through the residual connection (x + 0). ``capacity_factor=None`` (or 0) drops nothing
(Mixtral; the buffer is then padded to the busiest expert's load). Dropping happens only in
training mode: in eval and generation the layer drops nothing, so a token's output never
depends on the other tokens of the batch and a KV-cached decode equals a full forward. (Switch
also evaluates with a capacity factor; we prefer outputs that do not depend on batch
composition.)

Auxiliary losses (returned scaled by their coefficients in ``last_aux``):
  - load balance (Switch eq. 4-6): E * sum_i f_i * P_i, f_i = share of the N*k assignments
    routed to expert i (counted before dropping, a constant for the gradient), P_i = mean over
    tokens of p_i(x). Uniform routing (f_i = P_i = 1/E) gives 1; when f follows P the loss is
    E * sum_i P_i^2 >= 1 (Cauchy-Schwarz), so balance minimises it; a collapse onto one expert
    gives E. Only P carries the gradient: it pushes probability away from overloaded experts.
    (transformers' load_balancing_loss_func divides the counts by N rather than N*k: its value
    is k times this one.)
  - router z-loss (ST-MoE, Zoph et al. 2022, eq. 5): mean over tokens of
    (logsumexp_i logits_i)^2, which keeps router logits small and the softmax stable.

Why a padded buffer and ``torch.bmm`` rather than a loop over experts: one bmm runs all experts
in a single kernel (no per-expert launch and no host sync on the per-expert counts, except the
one ``max`` that sizes the buffer in no-drop mode), and the same code serves capacity dropping,
which needs the (E, capacity, C) layout anyway. The price is padding: an expert with fewer
tokens than the buffer computes on zero rows. With dropping the buffer is capacity_factor times
the mean load (1.25: at least 20% padding); in no-drop mode with a badly balanced router it can
be up to E times the useful work. A
grouped GEMM over ragged groups (``torch._grouped_mm`` on recent GPUs) would avoid the padding;
on CPU bmm is what is available.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from axon.nn.mlp import build_mlp
from axon.nn.precision import at_least_fp32


class MoE(nn.Module):
    """Top-k routed experts (SwiGLU or GELU, like the dense MLP) plus optional shared experts.

    Parameters, stacked over the E experts, in ``nn.Linear`` layout (out_features, in_features):
      swiglu: ``gate_up`` (E, 2H, C), rows [gate; up] as in ``axon.nn.SwiGLU``; ``proj`` (E, C, H)
      gelu:   ``fc`` (E, H, C); ``proj`` (E, C, H); with ``bias``: ``fc_bias`` (E, H), ``proj_bias`` (E, C)
    ``router`` is an ``nn.Linear(C, E)`` without bias (Switch, Mixtral).
    """

    def __init__(self, dim: int, hidden: int, n_experts: int, top_k: int, mlp: str = "swiglu",
                 capacity_factor: float | None = None, normalize: bool = True, n_shared: int = 0,
                 aux_loss: float = 0.01, z_loss: float = 0.001, bias: bool = False, dropout: float = 0.0):
        super().__init__()
        if not 1 <= top_k <= n_experts:
            raise ValueError(f"top_k={top_k} must be in [1, n_experts={n_experts}]")
        if mlp not in ("gelu", "swiglu"):
            raise ValueError(f"unknown mlp {mlp!r}")
        self.dim, self.hidden, self.n_experts, self.top_k, self.mlp = dim, hidden, n_experts, top_k, mlp
        self.capacity_factor = capacity_factor or None  # 0 and None: no dropping
        self.normalize = normalize
        self.aux_coef, self.z_coef = aux_loss, z_loss
        self.router = nn.Linear(dim, n_experts, bias=False)
        E, H, C = n_experts, hidden, dim
        if mlp == "swiglu":
            self.gate_up = nn.Parameter(torch.empty(E, 2 * H, C))
        else:
            self.fc = nn.Parameter(torch.empty(E, H, C))
        self.proj = nn.Parameter(torch.empty(E, C, H))
        self.fc_bias = nn.Parameter(torch.zeros(E, 2 * H if mlp == "swiglu" else H)) if bias else None
        self.proj_bias = nn.Parameter(torch.zeros(E, C)) if bias else None
        self.shared = build_mlp(mlp, dim, n_shared * hidden, bias, 0.0) if n_shared > 0 else None
        self.dropout = nn.Dropout(dropout)
        self.last_aux: dict[str, torch.Tensor] = {}
        self.reset_statistics()
        self.reset_parameters()

    def reset_parameters(self, std: float = 0.02, proj_scale: float = 1.0) -> None:
        """N(0, std) expert weights, the output projections divided by ``proj_scale`` (the decoder
        passes sqrt(2 * n_layer), GPT-2's residual scaling), zero biases. The router and shared
        MLP are ``nn.Linear``s, initialised by the owning model (or by their defaults)."""
        w_in = self.gate_up if self.mlp == "swiglu" else self.fc
        nn.init.normal_(w_in, 0.0, std)
        nn.init.normal_(self.proj, 0.0, std / proj_scale)
        for b in (self.fc_bias, self.proj_bias):
            if b is not None:
                nn.init.zeros_(b)

    # -- bookkeeping -----------------------------------------------------------------------

    def expert_params(self) -> int:
        """Parameters of one routed expert."""
        n = sum(p.numel() for p in (self.gate_up if self.mlp == "swiglu" else self.fc, self.proj)) // self.n_experts
        n += sum(b.numel() for b in (self.fc_bias, self.proj_bias) if b is not None) // self.n_experts
        return n

    def inactive_params(self) -> int:
        """Parameters a token does not use: the E - k experts it is not routed to."""
        return (self.n_experts - self.top_k) * self.expert_params()

    def reset_statistics(self) -> None:
        """Zero the routing counters (accumulated over training-mode forwards)."""
        self._assigned = torch.zeros(self.n_experts)  # assignments per expert, before dropping
        self._dropped = torch.zeros(())  # assignments dropped for capacity

    def statistics(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(assignments per expert (E,), dropped assignments ()) since the last reset."""
        return self._assigned, self._dropped

    def capacity(self, n_tokens: int) -> int | None:
        """Buffer rows per expert in training mode, or None (no dropping)."""
        if self.capacity_factor is None:
            return None
        return math.ceil(self.capacity_factor * n_tokens * self.top_k / self.n_experts)

    # -- forward ---------------------------------------------------------------------------

    def route(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x (N, C) -> router logits (N, E), gates (N, k) and experts (N, k), the top-k by probability."""
        logits = at_least_fp32(self.router(x))  # (N, E); routing statistics in fp32 even under autocast
        probs = logits.softmax(dim=-1)  # (N, E)
        gates, experts = probs.topk(self.top_k, dim=-1)  # (N, k) each, best first
        if self.normalize:
            gates = gates / gates.sum(dim=-1, keepdim=True)
        return logits, gates, experts

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x = x.reshape(-1, self.dim)  # (N, C)
        N, E, k = x.size(0), self.n_experts, self.top_k
        logits, gates, experts = self.route(x)

        # Assignments in priority order: a = j * N + n is token n's j-th choice (GShard's order).
        flat_e = experts.t().reshape(-1)  # (N*k,) expert of each assignment
        flat_g = gates.t().reshape(-1)  # (N*k,) its gate
        flat_n = torch.arange(N, device=x.device).repeat(k)  # (N*k,) its token
        counts = torch.bincount(flat_e, minlength=E)  # (E,) assignments per expert
        # Stable sort by expert keeps priority order inside each expert's group, so the position
        # of an assignment in its group is its rank among that expert's assignments.
        order = torch.argsort(flat_e, stable=True)  # (N*k,)
        sorted_e = flat_e[order]
        starts = torch.cumsum(counts, 0) - counts  # (E,) first sorted index of each group
        rank = torch.arange(N * k, device=x.device) - starts[sorted_e]  # (N*k,) position in group
        cap = self.capacity(N) if self.training else None
        if cap is None:
            cap = int(counts.max())  # no dropping: pad every expert to the busiest one's load
            keep = None
        else:
            keep = rank < cap  # the overflow of each expert, in priority order, is dropped
            order, sorted_e, rank = order[keep], sorted_e[keep], rank[keep]
        tok = flat_n[order]  # (M,) token of each kept assignment, M <= N*k
        slot = sorted_e * cap + rank  # (M,) its row in the flattened (E * cap) buffer

        # Dispatch: buffer (E, cap, C), zeros where an expert has fewer than cap assignments.
        buf = x.new_zeros(E * cap, self.dim).index_copy(0, slot, x.index_select(0, tok)).view(E, cap, self.dim)
        h = self._experts(buf)  # (E, cap, C)
        # Combine: weight each kept assignment's output by its gate and sum per token.
        y = h.reshape(E * cap, self.dim).index_select(0, slot) * flat_g[order].to(h.dtype).unsqueeze(-1)  # (M, C)
        out = x.new_zeros(N, self.dim).index_add(0, tok, y.to(x.dtype))  # (N, C)
        if self.shared is not None:
            out = out + self.shared(x)

        self._record(logits, counts, N * k - tok.numel())
        out = out.view(shape)
        return self.dropout(out) if self.training and self.dropout.p else out

    def _experts(self, h: torch.Tensor) -> torch.Tensor:
        """All experts on their buffers at once: h (E, cap, C) -> (E, cap, C), two bmm's."""
        if self.mlp == "swiglu":
            a = torch.bmm(h, self.gate_up.transpose(1, 2))  # (E, cap, 2H)
            if self.fc_bias is not None:
                a = a + self.fc_bias.unsqueeze(1)
            gate, up = a.chunk(2, dim=-1)
            a = F.silu(gate) * up  # (E, cap, H)   Shazeer 2020, eq. 6
        else:
            a = torch.bmm(h, self.fc.transpose(1, 2))  # (E, cap, H)
            if self.fc_bias is not None:
                a = a + self.fc_bias.unsqueeze(1)
            a = F.gelu(a, approximate="tanh")
        out = torch.bmm(a, self.proj.transpose(1, 2))  # (E, cap, C)
        if self.proj_bias is not None:
            out = out + self.proj_bias.unsqueeze(1)
        return out

    def _record(self, logits: torch.Tensor, counts: torch.Tensor, dropped: int | torch.Tensor) -> None:
        """Auxiliary losses of this forward (scaled) and, in training, the routing counters."""
        aux: dict[str, torch.Tensor] = {}
        if self.aux_coef > 0:
            aux["moe_balance"] = self.aux_coef * balance_loss(logits, counts, self.top_k)
        if self.z_coef > 0:
            aux["moe_z"] = self.z_coef * router_z_loss(logits)
        self.last_aux = aux
        if self.training:
            if self._assigned.device != counts.device:
                self._assigned, self._dropped = self._assigned.to(counts.device), self._dropped.to(counts.device)
            self._assigned += counts.detach().to(self._assigned.dtype)
            self._dropped += dropped


def balance_loss(logits: torch.Tensor, counts: torch.Tensor, top_k: int = 1) -> torch.Tensor:
    """Switch's load-balancing loss (eq. 4-6), unscaled: E * sum_i f_i P_i over N routed items
    (tokens here; whole sequences in ``axon.models.routed``). logits (N, E); counts (E,) the
    assignments per expert (a constant for the gradient); f_i = counts_i / (N * top_k), P_i the
    mean router probability. 1 when balanced, E when collapsed onto one expert."""
    N, E = logits.shape
    f = counts.detach().to(logits.dtype) / (N * top_k)  # (E,) share of assignments, no gradient
    P = logits.softmax(dim=-1).mean(dim=0)  # (E,) mean router probability
    return E * (f * P).sum()


def router_z_loss(logits: torch.Tensor) -> torch.Tensor:
    """ST-MoE's router z-loss (Zoph et al. 2022, eq. 5), unscaled: mean (logsumexp logits)^2; logits (N, E)."""
    return torch.logsumexp(logits, dim=-1).pow(2).mean()


def moe_layers(model: nn.Module) -> list[MoE]:
    return [m for m in model.modules() if isinstance(m, MoE)]


def aux_losses(model: nn.Module) -> dict[str, torch.Tensor]:
    """The scaled auxiliary losses of the last forward, summed over the MoE layers of ``model``."""
    out: dict[str, torch.Tensor] = {}
    for layer in moe_layers(model):
        for k, v in layer.last_aux.items():
            out[k] = out[k] + v if k in out else v
    return out


def routing_metrics(model: nn.Module) -> dict[str, float]:
    """Routing statistics since the previous call (training-mode forwards), then reset:
    ``moe_expert{i}_frac`` the share of assignments routed to expert i (mean over MoE layers;
    1/E each when balanced), ``moe_max_load`` the busiest expert's share times E over all layers
    (1 = balanced, E = collapsed onto one expert), ``moe_dropped_frac`` the share of assignments
    dropped for capacity; ``moe_balance`` and ``moe_z``, the last forward's scaled auxiliary
    losses. Empty when no training forward ran since the last call."""
    layers = moe_layers(model)
    stats = [layer.statistics() for layer in layers]
    total = sum(float(a.sum()) for a, _ in stats)
    if not layers or total == 0:
        return {}
    E = layers[0].n_experts
    shares = torch.stack([a.cpu() / a.sum().clamp(min=1).cpu() for a, _ in stats])  # (L, E)
    out = {f"moe_expert{i}_frac": float(shares[:, i].mean()) for i in range(E)}
    out["moe_max_load"] = float(shares.max()) * E
    out["moe_dropped_frac"] = sum(float(d) for _, d in stats) / total
    out.update({k: float(v.detach()) for k, v in aux_losses(model).items()})  # the last forward's scaled aux losses
    for layer in layers:
        layer.reset_statistics()
    return out
