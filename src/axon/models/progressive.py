"""Progressive diverging decoder: start shallow, double the depth on a schedule by duplicating
every layer, and let each copy diverge from its original (a seed model of our own lineage).

Relatives: progressive stacking (Gong et al. 2019, "Efficient Training of BERT by Progressively
Stacking": copy the trained layers on top of themselves), function-preserving growth operators
(Shen et al. 2022, "Staged Training for Transformer Language Models", MSG), ALBERT's shared layers
(Lan et al. 2020) and relaxed recursive transformers (Bae et al. 2024: layers that share weights
and differ by per-position LoRA adapters).

    stage 0 (n_layer = 2)          stage 1 (4 layers)                 stage 2 (8 layers)
    b0 -> b1                       b0 -> b0' -> b1 -> b1'             b0 b0'' b0' b0''' b1 ...

Growth step (``grow_at``): every block b is followed by a copy b'. The decoder is the plain
decoder of ``axon.models.decoder`` (embeddings, Block, norms, init, head) otherwise.

Function preservation. A pre-norm residual block maps x -> x + f(x). Stacking a plain copy gives
x + f(x) + f(x + f(x)) != x + f(x), so a copy is wrapped in two residual gates that start at zero
(ReZero, Bachlechner et al. 2020):

    h = x + g_attn * attn(norm1(x))          g = gate_gain * theta, theta: a scalar parameter, 0 at birth
    y = h + g_mlp  * mlp(norm2(h))

With both gates 0 the copy is exactly the identity in floating point (x + 0 * f = x for finite f),
so the network computes bit for bit the same logits, hence the same loss, before and after the
growth step. The optimizer opens the gates: their gradient at birth, dL/dg = <dL/dy, f(x)>, is not
zero (no weight decay: they are 0-dim). Adam moves theta by about lr per step whatever the
gradient's scale, so a plain gate (gain 1) at the recipe's lr (2e-3, decaying) could open to ~0.2
at most in 300 steps; ``gate_gain`` (default 10) multiplies the gate's speed, as a muP-style
multiplier does, without changing the exactness at birth.

How a copy diverges (``diverge``):

  lora      the copy shares its original's parameters (the same Parameter objects, so one
            storage, counted once) and owns LoRA adapters (Hu et al. 2021; axon.nn.lora) on the
            ``lora_targets`` linears: W x + (alpha/r) B A x, B = 0 at birth. The shared base STAYS
            TRAINABLE: it receives the gradient of both positions (as in ALBERT). Freezing it would
            freeze the whole stack, since the originals are the base. A copy's own parameters are
            its adapters and its two gates. At a second growth the copy of a copy shares the same
            base and starts from a clone of its parent's adapter values (it starts as its parent's
            function; it is gated off anyway).
  unfreeze  the copy is an independent clone of its original's weights (deep copy), trained on its
            own: the depth and parameter count of a dense model of the grown size.

Parameter counts (shared tensors once; ``num_params``) for configs/progressive_tiny.yaml
(C = 128, SwiGLU hidden 352, vocab 65, tied head): a block holds 200,960 parameters; a LoRA copy
at rank 8 on qkv, attn.proj, mlp.gate_up, mlp.proj adds 16,640 (adapters) + 2 (gates).
  stage 0, 2 layers:                     410,368
  stage 1, 4 layers, diverge=lora:       443,652  (+8%)
  stage 1, 4 layers, diverge=unfreeze:   812,292  (the dense 4-layer model's 812,288 + 4 gates)

FLOPs: ``flops_per_token`` counts every use of a weight (a shared matrix is multiplied twice, once
per position) plus the adapters' matmuls, at the current depth; MFU and FLOPs figures logged by
the trainer are for the depth at the time of the record.

Growth and training (axon.train.trainer): before optimizer step ``s`` (s steps completed) the
trainer calls ``grow_for_step(s)``; when the model grows it rebuilds the optimizers, existing
parameters keeping their state (Adam moments, Muon momentum) and new ones starting fresh; the lr
schedule simply continues. A checkpoint written after growth holds more tensors, so a resumed run
or ``load_run`` first calls ``grow_to_step(checkpoint step)`` on the fresh model, then loads.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from axon.model_configs.progressive import PRESETS, ProgressiveConfig  # noqa: F401 (re-exported: the family's config and sizes)
from axon.errors import ConfigError
from axon.models.base import TrainerCallback
from axon.models.decoder import Decoder
from axon.models.flops import transformer_flops_per_token
from axon.nn.lora import apply_lora, is_lora_param


class GrownBlock(nn.Module):
    """A copy made by a growth step: ``block``'s two sublayers behind residual gates that start at
    zero, so at birth the copy is the identity (see the module docstring)."""

    def __init__(self, block: nn.Module, gain: float = 1.0):
        super().__init__()
        self.block, self.gain = block, gain
        ref = block.norm1.weight
        self.gate_attn = nn.Parameter(torch.zeros((), device=ref.device, dtype=ref.dtype))
        self.gate_mlp = nn.Parameter(torch.zeros((), device=ref.device, dtype=ref.dtype))

    def forward(self, x: torch.Tensor, rope=None, cache=None, layer: int = 0, mask=None) -> torch.Tensor:
        b, k = self.block, self.gain  # Block.forward with the gates: x (B, T, C) -> (B, T, C)
        x = x + (k * self.gate_attn) * b.attn(b.norm1(x), rope, cache, layer, mask)
        return x + (k * self.gate_mlp) * b.mlp(b.norm2(x))


class Growth(TrainerCallback):
    """The trainer's hook into a progressive model: grow before the scheduled steps (the trainer
    then rebuilds its optimizers), and on resume reach the checkpoint's depth first."""

    changes_parameters = True

    def __init__(self, model: ProgressiveDecoder):
        self.model = model

    def check(self, max_steps: int) -> None:
        late = [s for s in self.model.growth_steps if s >= max_steps]
        if late:  # the run would silently never reach that depth
            raise ConfigError(f"model.grow_at: step {late[0]} is not before the run's last step {max_steps}; "
                              f"grow earlier or train longer")

    def before_step(self, step: int) -> bool:
        return self.model.grow_for_step(step)

    def at_resume(self, step: int) -> bool:
        return self.model.grow_to_step(step)

    def final_shape(self) -> None:
        if self.model.growth_steps:
            self.model.grow_for_step(max(self.model.growth_steps))


class ProgressiveDecoder(Decoder):
    def __init__(self, cfg: ProgressiveConfig):
        super().__init__(cfg)  # n_layer plain blocks, GPT-2 init
        self.stage = 0  # growth steps applied so far; depth = n_layer * 2**stage

    def callbacks(self) -> list[TrainerCallback]:
        return [Growth(self)]

    @property
    def growth_steps(self) -> list[int]:
        return list(self.config.grow_at)

    @property
    def depth(self) -> int:
        return len(self.blocks)

    # -- growth ------------------------------------------------------------------------------

    def grow_for_step(self, step: int) -> bool:
        """Called before optimizer step ``step`` (= steps completed): apply the growth steps due by
        now. True when the model changed (the caller must then rebuild its optimizers)."""
        grown = False
        while self.stage < len(self.config.grow_at) and self.config.grow_at[self.stage] <= step:
            self.grow()
            grown = True
        return grown

    def grow_to_step(self, step: int) -> bool:
        """The shape the model has in a checkpoint written after ``step`` steps: growth at step s
        happens before step s + 1, so a checkpoint at s itself is still the smaller model."""
        return self.grow_for_step(step - 1)

    @torch.no_grad()
    def grow(self) -> None:
        """Double the depth: each block is followed by a gated copy of itself (function-preserving)."""
        blocks = []
        for blk in self.blocks:
            blocks += [blk, GrownBlock(self._twin(blk), self.config.gate_gain)]
        self.blocks = nn.ModuleList(blocks)
        self.stage += 1

    def _twin(self, blk: nn.Module) -> nn.Module:
        """The inner block of a copy of ``blk``: shared base + adapters (lora) or a clone (unfreeze)."""
        cfg = self.config
        parent = blk.block if isinstance(blk, GrownBlock) else blk
        twin = copy.deepcopy(parent)
        if cfg.diverge == "lora":
            # Re-point every base parameter at the parent's Parameter object (which, for a copy,
            # is already the original's): one storage, counted once, trained by both positions.
            shared = dict(parent.named_parameters())
            for name, _ in list(twin.named_parameters()):
                if not is_lora_param(name):
                    owner, _, attr = name.rpartition(".")
                    setattr(twin.get_submodule(owner) if owner else twin, attr, shared[name])
            if not isinstance(blk, GrownBlock):  # a copy of a copy keeps (clones of) its parent's adapters
                apply_lora(twin, cfg.lora_targets, cfg.lora_rank, cfg.lora_alpha)
        old = {id(p) for p in parent.parameters()}
        for p in twin.parameters():
            if id(p) not in old:
                p.grad = None  # deepcopy copies .grad; a new parameter starts without one
        return twin

    # -- costs and caches at the current depth ----------------------------------------------

    def flops_per_token(self, seq_len: int | None = None) -> float:
        """Training FLOPs per token at the CURRENT depth: every block's weights count once per use
        (a matrix shared by a block and its copy is multiplied twice), adapters included."""
        cfg = self.config
        per_use = sum(p.numel() for blk in self.blocks for p in blk.parameters())
        matmul = per_use + sum(p.numel() for p in self.norm_f.parameters()) + cfg.vocab_size * cfg.n_embd
        return transformer_flops_per_token(matmul, self.depth, cfg.n_embd, seq_len or cfg.block_size)

    def make_cache(self, batch_size: int, max_len: int | None = None):
        """A KV cache with one slot per CURRENT layer (copies attend with their own keys/values)."""
        from axon.generate.cache import KVCache

        cfg, p = self.config, self.lm_head.weight
        max_len = min(max_len or cfg.block_size, cfg.block_size)
        return KVCache(self.depth, batch_size, cfg.kv_heads, cfg.head_dim, max_len, p.dtype, p.device)
