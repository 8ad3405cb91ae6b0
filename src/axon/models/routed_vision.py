"""A sequence-level Switch router over whole image models: each image goes to one of E experts.

The vision side of ``axon.models.routed`` (the seeds' "multi_vision_model"): the router sends each
IMAGE, whole, to one of E complete image models -- classifiers (a ViT, a Vision Mamba, a ResNet)
or detectors (DETR on a ResNet, a ViT or a Vision Mamba backbone) -- trained end to end with the
task's loss through the gate, Switch's balance loss and ST-MoE's z-loss.

    images (B, C, H, W)
        |
     router: the image average-pooled to g x g = route_grid^2 cells, flattened   (B, C g g)
        h = GELU(W1 x);  logits = W2 h  -> softmax p (B, E), top-1 e, gate p_e   (in fp32)
        |
     dispatch   expert i runs on the images routed to it, (B_i, C, H, W) ->
        |         classifiers: logits (B_i, K)
        |         detectors:   (class logits (L, B_i, N, K + 1), boxes (L, B_i, N, 4))
        |       a loop over the E experts, none over images; no capacity, nothing dropped
     gate       class logits * p_e    (switch; straight_through: * p_e / sg(p_e))
        |       boxes are not scaled: a probability has no meaning as a scale on coordinates
    logits (B, K)   or   (logits (L, B, N, K + 1), boxes (L, B, N, 4))

The gate scales only what is a distribution's logits, as Switch scales an expert's output: for a
classifier, the loss's gradient through ``logits * p`` tells the router whether sharpening that
expert's answer helped. For a detector the same holds for the class logits that the set loss
reads after matching (and the matching cost reads too), so the router learns from
classification of the matched objects; the boxes of the chosen expert pass through unchanged.
The router sees a cheap summary, not the experts' features: routing first, then one expert's
compute per image.

Balance (Switch eq. 4-6, ``axon.nn.moe.balance_loss``) over the B images of a batch; ``metrics()``
reports the loads (``routed_expert{i}_frac``) since the last call, as ``routed`` does.

Counting (``flops_per_token``, per image since block_size is 1; ``active_params``): the router
plus the LARGEST expert (the bound no image exceeds; ``axon.models.routed`` explains why not the
load-weighted mean).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from axon.model_configs.routed_vision import PRESETS, RoutedVisionConfig  # noqa: F401 (re-exported)
from axon.models.routed import SwitchRouted
from axon.nn.precision import at_least_fp32


class RoutedVision(SwitchRouted):
    def __init__(self, cfg: RoutedVisionConfig):
        super().__init__()
        if cfg.num_labels is None:
            raise ValueError("RoutedVisionConfig.num_labels must be set before building the model (the task sets it)")
        self._build_experts(cfg)
        E = cfg.n_experts
        g = cfg.route_grid or cfg.image_size
        self.router_in = nn.Linear(cfg.in_channels * g * g, cfg.router_embd)
        self.router = nn.Linear(cfg.router_embd, E, bias=False)  # Switch: no bias on the logits
        for w in (self.router_in.weight, self.router.weight):
            nn.init.normal_(w, 0.0, cfg.init_std)
        nn.init.zeros_(self.router_in.bias)

    # -- routing -------------------------------------------------------------------------------

    def route(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """images (B, C, H, W) -> router logits (B, E) and probabilities (B, E), in fp32."""
        g = self.config.route_grid or self.config.image_size
        x = F.adaptive_avg_pool2d(images, g).flatten(1)  # (B, C g g)
        logits = at_least_fp32(self.router(F.gelu(self.router_in(x))))  # (B, E)
        return logits, logits.softmax(dim=-1)

    def routes(self, images: torch.Tensor) -> torch.Tensor:
        """The expert each image goes to, (B,)."""
        return self.route(images)[1].argmax(dim=-1)

    # -- forward -------------------------------------------------------------------------------

    def forward(self, images: torch.Tensor):
        """images (B, C, H, W) in [-1, 1] -> classifiers: logits (B, num_labels); detectors:
        (logits (L, B, N, num_labels + 1), boxes (L, B, N, 4)), as the experts' own."""
        B, E = images.size(0), self.config.n_experts
        logits_r, probs = self.route(images)
        gate, main = probs.max(dim=-1)  # (B,) each
        if self.config.gate == "straight_through":
            gate = gate / gate.detach()  # the value 1: the expert's own logits; Switch's gradient to the router
        dim = 1 if self.config.detects else 0  # where the batch is in an expert's outputs
        outs: list[torch.Tensor] | None = None
        idle = []
        for i in range(E):
            rows = (main == i).nonzero().squeeze(1)  # (B_i,)
            if rows.numel() == 0:
                idle.append(i)
                continue
            y = self.experts[i](images.index_select(0, rows))
            ys = list(y) if isinstance(y, tuple) else [y]
            if outs is None:
                outs = [t.new_zeros(*t.shape[:dim], B, *t.shape[dim + 1:]) for t in ys]
            outs = [o.index_copy(dim, rows, t) for o, t in zip(outs, ys)]
        assert outs is not None  # every image has a route
        shape = [1] * outs[0].dim()
        shape[dim] = B
        outs[0] = outs[0] * gate.view(shape).to(outs[0].dtype)  # the class logits; boxes (outs[1]) unscaled
        if self.training:  # an idle expert joins the graph with zero gradients (DDP; axon.models.routed)
            params = [p for i in idle for p in self.experts[i].parameters()]
            if params:
                outs[0] = outs[0] + 0.0 * sum(p.reshape(-1)[0] for p in params)
        self._record(logits_r, main)
        return tuple(outs) if self.config.detects else outs[0]

    # -- the model contract (the rest: axon.models.routed.SwitchRouted) ---------------------

    def router_params(self) -> int:
        return sum(p.numel() for m in (self.router_in, self.router) for p in m.parameters())

    def flops_per_token(self, seq_len: int | None = None) -> float | None:
        """Training FLOPs per image: the router's two matrices (6 x weights) plus the most
        expensive expert's. ``seq_len`` is ignored."""
        per_expert = [expert.flops_per_token() for expert in self.experts]
        if any(f is None for f in per_expert):
            return None
        router = 6.0 * (self.router_in.weight.numel() + self.router.weight.numel())
        return router + max(per_expert)


__all__ = ["PRESETS", "RoutedVision", "RoutedVisionConfig"]
