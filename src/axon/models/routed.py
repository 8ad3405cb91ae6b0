"""A sequence-level Switch router over whole language models: each input goes to one of E experts.

Switch Transformers (Fedus et al. 2021) route each TOKEN to one FFN; here the router sends each
whole SEQUENCE to one of E complete causal language models -- of any families, e.g. a decoder,
a DPO-tuned decoder loaded from its run, and a Mamba -- which share the vocabulary and context.
Trained end to end: top-1, the expert's output scaled by its router probability (Switch eq. 2),
so the router learns from the language-model loss, plus Switch's balance loss and ST-MoE's z-loss.

    tokens (B, T)
        |
     router: bag of the first r = route_tokens tokens
        s_t = mean_{u <= min(t, r-1)} emb(x_u)          (B, r, d)   a running mean: causal
        logits_t = W s_t -> softmax p_t (B, r, E), top-1 e_t, gate g_t = p_t[e_t]
        |
     main route e = e_{r-1}, gate g = g_{r-1}: one per sequence (every position t >= r-1 uses it)
        |
     dispatch   expert i runs on the rows routed to it, whole (B_i, T) -> logits (B_i, T, V);
        |       a loop over the E experts, none over rows; no capacity, nothing dropped
     early      position t < r-1 whose own route e_t differs from e: expert e_t runs on those
        |       rows' first r-1 tokens and gives that position's logits
     gate       logits (B, T, V) * g_t                  (switch; straight_through: * g_t / sg(g_t))
        |
    logits (B, T, V)

What a position sees. Position t is predicted by the expert the router picks from tokens
0..min(t, r-1) -- for t >= r-1 the sequence's one route, for an earlier t the route of its own
prefix -- and every expert is causal, so the logits at t depend on tokens 0..t only (a test
changes token j and compares every logit before j). The early positions cost extra work only
while their prefix routes elsewhere than the whole sequence (at most (E-1)(r-1) positions a row);
an early position's route is still ONE expert, so the active FLOPs are one expert's. Generation
recomputes (``axon.generate.recompute``): the route of a position never changes as the sequence
grows, so it is made once, on the prompt's first r tokens (or, with a shorter prompt, as the
first r tokens arrive), and the decode is exact.

Balance (Switch eq. 4-6, ``axon.nn.moe.balance_loss``) over the B sequences of a batch: E *
sum_i f_i P_i with f_i the share of sequences whose main route is i and P_i their mean router
probability of i; ``metrics()`` reports the loads (``routed_expert{i}_frac``) since the last call.

Counting (``flops_per_token``, ``active_params``): the router, plus the LARGEST expert. A row visits
one expert; the mean over experts weighted by the load would be the average cost, but it changes
as the router learns and is unknown before training, where the lab sets budgets; the maximum is a
fixed bound that no row exceeds. Equal-sized experts (the comparison in configs/routed/) make the
two the same. The early positions' extra passes are not counted (see above).

Vision: ``axon.models.routed_vision`` routes whole images among whole image models (classifiers or
detectors). Experts started from runs (``expert_runs``) must share the run's tokenizer; a source
without the run's extra token ids (a rag reader's pad/BOS/EOS) is extended (``axon.train.run.init_submodule``).
"""

from __future__ import annotations

import torch
from torch import nn

from axon.model_configs.routed import PRESETS, RoutedConfig  # noqa: F401 (re-exported: the family's config and sizes)
from axon.models.base import Model
from axon.nn.moe import balance_loss, router_z_loss
from axon.nn.precision import at_least_fp32


class SwitchRouted(Model):
    """What every router over whole models shares (this module's ``Routed`` and
    ``axon.models.routed_vision.RoutedVision``): the experts built from the config's
    ``expert_configs()``, the record of the last forward (scaled balance and z-losses, the routes,
    the loads since ``metrics()``), and the contract methods that read it. A subclass builds its
    router, defines ``routes(x) -> (B,)`` and ``router_params()``, and calls ``_record`` once per
    forward."""

    def _build_experts(self, cfg) -> None:
        from axon.models import build_model  # the experts' families (axon.models imports this module)

        self.config = cfg
        self.experts = nn.ModuleList(build_model(c) for c in cfg.expert_configs())
        self.last_aux: dict[str, torch.Tensor] = {}
        self.last_route: torch.Tensor | None = None  # (B,) the last forward's main route per input
        self._loads = torch.zeros(cfg.n_experts)  # inputs per expert (main route), training forwards since metrics()

    def routes(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def router_params(self) -> int:
        raise NotImplementedError

    def routing_table(self, inputs: dict[str, torch.Tensor]) -> dict[str, list[float]]:
        """Which inputs go where: for each named batch of inputs, the share routed to each expert (a
        row of the table per input type)."""
        E = self.config.n_experts
        with torch.no_grad():
            return {name: (torch.bincount(self.routes(x), minlength=E).float() / x.size(0)).tolist()
                    for name, x in inputs.items()}

    def _record(self, logits: torch.Tensor, main: torch.Tensor, expert_aux: dict[str, torch.Tensor] | None = None) -> None:
        """The last forward's auxiliary losses (the router's, scaled, and the experts' own) and, in
        training, the loads; logits (B, E), main (B,) the route of each input."""
        cfg, E = self.config, self.config.n_experts
        counts = torch.bincount(main, minlength=E)  # (E,) inputs per expert
        aux: dict[str, torch.Tensor] = {}
        if cfg.balance_loss > 0:
            aux["routed_balance"] = cfg.balance_loss * balance_loss(logits, counts)
        if cfg.z_loss > 0:
            aux["routed_z"] = cfg.z_loss * router_z_loss(logits)
        self.last_aux = {**aux, **(expert_aux or {})}
        self.last_route = main.detach()
        if self.training:
            self._loads = self._loads.to(counts.device) + counts.to(self._loads.dtype)

    # -- the model contract --------------------------------------------------------------------

    def aux_losses(self) -> dict[str, torch.Tensor]:
        """The router's balance and z-losses of the last forward, scaled, and the experts' own
        (an MoE decoder's, as ``expert{i}_moe_balance``: of the rows routed to it)."""
        return dict(self.last_aux)

    def metrics(self) -> dict[str, float]:
        """Since the last call (training forwards): ``routed_expert{i}_frac``, the share of inputs
        routed to expert i; ``routed_max_load``, the busiest one's share times E (1 = balanced, E =
        collapsed); the last forward's scaled router losses; each expert's own metrics as
        ``expert{i}_...``. Empty when no training forward ran since the last call."""
        total = float(self._loads.sum())
        if total == 0:
            return {}
        E = self.config.n_experts
        shares = (self._loads / total).cpu()
        out = {f"routed_expert{i}_frac": float(shares[i]) for i in range(E)}
        out["routed_max_load"] = float(shares.max()) * E
        out.update({k: float(v.detach()) for k, v in self.last_aux.items() if k.startswith("routed_")})
        for i, expert in enumerate(self.experts):
            out.update({f"expert{i}_{k}": v for k, v in expert.metrics().items()})
        self._loads = torch.zeros_like(self._loads)
        return out

    def init_sources(self) -> dict[str, tuple[str, str]]:
        """experts.{i} -> the run directory of ``model.expert_runs[i]`` (loaded at a run's start)."""
        runs = self.config.expert_runs or []
        return {f"experts.{i}": (run, f"model.expert_runs[{i}]") for i, run in enumerate(runs) if run}

    def active_params(self) -> int:
        """The router and the largest expert's active parameters (module doc: a fixed bound)."""
        return self.router_params() + max(expert.active_params() for expert in self.experts)


class Routed(SwitchRouted):
    def __init__(self, cfg: RoutedConfig):
        super().__init__()
        if cfg.vocab_size is None:
            raise ValueError("RoutedConfig.vocab_size must be set before building the model")
        self._build_experts(cfg)
        self.router_emb = nn.Embedding(cfg.vocab_size, cfg.router_embd)
        self.router = nn.Linear(cfg.router_embd, cfg.n_experts, bias=False)  # Switch: no bias
        nn.init.normal_(self.router_emb.weight, 0.0, cfg.init_std)
        nn.init.normal_(self.router.weight, 0.0, cfg.init_std)

    # -- routing -------------------------------------------------------------------------------

    def route(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """idx (B, T) -> router logits (B, r', E), r' = min(route_tokens, T): position t's logits
        read tokens 0..t (a running mean of their embeddings), and the probabilities (B, r', E)."""
        r = min(self.config.route_tokens, idx.size(1))
        e = self.router_emb(idx[:, :r])  # (B, r, d)
        count = torch.arange(1, r + 1, device=idx.device, dtype=e.dtype).view(1, r, 1)
        s = e.cumsum(dim=1) / count  # (B, r, d): s_t = mean of tokens 0..t
        logits = at_least_fp32(self.router(s))  # (B, r, E); routing in fp32 even under autocast
        return logits, logits.softmax(dim=-1)

    def routes(self, idx: torch.Tensor) -> torch.Tensor:
        """The expert each sequence goes to, (B,): its route from tokens 0..r-1."""
        return self.route(idx)[1][:, -1].argmax(dim=-1)

    # -- forward -------------------------------------------------------------------------------

    def make_cache(self, batch_size: int, max_len: int | None = None):
        """A recompute cache (``axon.generate.recompute``) of up to block_size tokens: each step
        re-runs the causal forward, the route fixed by the first route_tokens tokens."""
        from axon.generate.recompute import RecomputeCache

        size = self.config.block_size
        return RecomputeCache(batch_size, min(max_len or size, size), self.router.weight.device)

    def forward(self, idx: torch.Tensor, cache=None, pad_mask: torch.Tensor | None = None, last_only: bool = False) -> torch.Tensor:
        """idx (B, T) -> logits (B, T, vocab_size), or (B, 1, vocab_size) with ``last_only``."""
        if cache is not None:
            return cache.forward(self, idx, pad_mask, last_only)  # calls self(ids) without a cache
        B, T = idx.shape
        if T > self.config.block_size:
            raise ValueError(f"sequence length {T} exceeds block_size {self.config.block_size}")
        E = self.config.n_experts
        logits_r, probs = self.route(idx)  # (B, r, E) each
        r = probs.size(1)
        gate, choice = probs.max(dim=-1)  # (B, r) each: top-1 of each prefix
        main = choice[:, -1]  # (B,) the sequence's route
        expert_aux: dict[str, torch.Tensor] = {}
        out, idle = None, []
        for i in range(E):  # dispatch: each expert on its rows
            rows = (main == i).nonzero().squeeze(1)  # (B_i,)
            if rows.numel() == 0:
                idle.append(i)
                continue
            y = self.experts[i](idx.index_select(0, rows))  # (B_i, T, V)
            # an MoE expert's own losses, of its rows (the early passes below re-run prefixes: not added)
            expert_aux.update({f"expert{i}_{k}": v for k, v in self.experts[i].aux_losses().items()})
            out = y.new_zeros(B, T, y.size(-1)) if out is None else out
            out = out.index_copy(0, rows, y)
        if r > 1:  # early positions t < r-1 routed (on their own prefix) elsewhere than their row
            early = choice[:, :-1]  # (B, r-1)
            for i in range(E):
                where = (early == i) & (main != i).unsqueeze(1)  # (B, r-1)
                rows = where.any(dim=1).nonzero().squeeze(1)
                if rows.numel() == 0:
                    continue
                y = self.experts[i](idx[:, : r - 1].index_select(0, rows))  # (n, r-1, V)
                head = out[:, : r - 1].index_select(0, rows)  # (n, r-1, V)
                head = torch.where(where.index_select(0, rows).unsqueeze(-1), y, head)
                out = torch.cat([out[:, : r - 1].index_copy(0, rows, head), out[:, r - 1 :]], dim=1)
        # Gate each position by its route's probability: position t >= r-1 by the sequence's.
        g = torch.cat([gate[:, :-1], gate[:, -1:].expand(B, T - r + 1)], dim=1)  # (B, T)
        if self.config.gate == "straight_through":
            g = g / g.detach()  # the value 1: the expert's own logits; Switch's gradient to the router
        out = out * g.unsqueeze(-1).to(out.dtype)  # (B, T, V)
        if self.training:  # an expert no row visited still joins the graph, with zero gradients: DDP
            # expects a gradient for every parameter on every rank, and the optimizer then treats an
            # idle expert as nn.moe's stacked experts are treated (momentum and decay go on)
            params = [p for i in idle for p in self.experts[i].parameters()]
            if params:
                out = out + 0.0 * sum(p.reshape(-1)[0] for p in params)

        self._record(logits_r[:, -1], main, expert_aux)
        return out[:, -1:] if last_only else out

    # -- the model contract (the rest: SwitchRouted) ----------------------------------------

    def router_params(self) -> int:
        return self.router_emb.weight.numel() + self.router.weight.numel()

    def flops_per_token(self, seq_len: int | None = None) -> float | None:
        """Training FLOPs per token at context ``seq_len`` (default block_size): the router's matmul
        on its r positions, spread over the sequence, plus the most expensive expert's (module doc)."""
        T = seq_len or self.config.block_size
        per_expert = [expert.flops_per_token(T) for expert in self.experts]
        if any(f is None for f in per_expert):
            return None
        r = min(self.config.route_tokens, T)
        router = 6.0 * self.router.weight.numel() * r / T  # an embedding lookup is no matmul
        return router + max(per_expert)


__all__ = ["PRESETS", "Routed", "RoutedConfig", "SwitchRouted"]
