"""Optimizers by name, with weight decay on matrices only, Muon for hidden matrices, and FTRL-Proximal.

Any of ``torch.optim``'s classic optimizers is one name away (``gd``: plain gradient descent,
torch's SGD with no momentum; full-batch or mini-batch is ``train.batch_size``, not the optimizer);
``ftrl`` is McMahan et al.'s FTRL-Proximal (:class:`FTRL`), which torch lacks; ``muon`` pairs PyTorch's Muon
(Jordan et al. 2024: momentum, then Newton-Schulz orthogonalisation of the update) for the hidden
weight matrices with AdamW for everything Muon is not meant for (embeddings, the output head,
norm gains and biases).
"""

from __future__ import annotations

import functools

import torch
from torch import nn

from axon.errors import ConfigError

# name -> (torch.optim class name, fixed keyword arguments). axon.config.OPTIMIZER_NAMES lists the
# names for config validation without importing this module: add a name there too (tests/test_layering.py).
OPTIMIZERS: dict[str, tuple[str, dict]] = {
    "adamw": ("AdamW", {}),
    "adam": ("Adam", {}),
    "amsgrad": ("AdamW", {"amsgrad": True}),
    "adamax": ("Adamax", {}),
    "nadam": ("NAdam", {}),
    "sgd": ("SGD", {}),
    "gd": ("SGD", {"momentum": 0.0, "nesterov": False}),  # plain gradient descent: w -= lr * g
    "rmsprop": ("RMSprop", {}),
    "adagrad": ("Adagrad", {}),
    "adadelta": ("Adadelta", {}),
    "ftrl": ("FTRL", {}),
    "muon": ("Muon", {}),
}


def _hyperparams(cls_name: str, cfg) -> dict:
    """The config values each torch.optim class accepts."""
    if cls_name in ("AdamW", "Adam", "Adamax", "NAdam"):
        kw = {"betas": tuple(cfg.betas), "eps": cfg.eps}
        if cls_name in ("AdamW", "Adam"):
            kw["amsgrad"] = cfg.amsgrad
        return kw
    if cls_name == "SGD":
        return {"momentum": cfg.momentum, "nesterov": cfg.nesterov}
    if cls_name == "RMSprop":
        return {"momentum": cfg.momentum, "eps": cfg.eps}
    if cls_name == "FTRL":
        return {"beta": cfg.ftrl_beta, "l1": cfg.ftrl_l1, "l2": cfg.ftrl_l2}
    if cls_name in ("Adagrad", "Adadelta"):
        return {}  # their eps plays another role (Adadelta's sets the first steps' size): torch's defaults
    raise AssertionError(cls_name)


def _is_head_or_embedding(module_name: str, module: nn.Module) -> bool:
    """Embeddings and output heads: ``lm_head``, ``head`` and any ``*_head`` (a reward model's
    ``reward_head``, a value head), which Muon leaves to AdamW."""
    last = module_name.rsplit(".", 1)[-1]
    return isinstance(module, nn.Embedding) or last == "head" or last.endswith("_head")


def decays(p: torch.Tensor) -> bool:
    """Weight decay applies to weight matrices, not to vectors (norm gains, biases) nor to
    parameters a model marks ``p._no_weight_decay = True`` (e.g. Mamba's A_log and D, which
    parametrise the dynamics rather than map features; as in the reference implementation)."""
    return p.dim() >= 2 and not getattr(p, "_no_weight_decay", False)


def lr_scale(p: torch.Tensor) -> float:
    """The factor on the configured lr a model asks for on a parameter, ``p._lr_scale`` (default 1):
    a reward model's labeller flip rates, a handful of scalars each fitted from all of the data,
    must move much faster than the network's weights (axon.models.reward)."""
    return float(getattr(p, "_lr_scale", 1.0))


def _groups(params: list[torch.Tensor], weight_decay: float, lr: float) -> list[dict]:
    """Matrices (decayed), then vectors (not decayed), then a group for each other lr scale."""
    groups: dict[tuple[float, bool], list[torch.Tensor]] = {(1.0, True): [], (1.0, False): []}
    for p in params:
        groups.setdefault((lr_scale(p), decays(p)), []).append(p)
    return [{"params": ps, "weight_decay": weight_decay if decay else 0.0, "lr": lr * scale}
            for (scale, decay), ps in groups.items() if ps]


def param_groups(model: nn.Module, weight_decay: float, lr: float) -> list[dict]:
    """Two groups: matrices (decayed) and vectors such as norm gains and biases (not decayed); and
    one more for each :func:`lr_scale` other than 1, whose lr is ``lr`` times the scale."""
    params = [p for p in model.parameters() if p.requires_grad]  # parameters() yields tied tensors once
    return _groups(params, weight_decay, lr)


def _fused(cls_name: str, params: list[torch.Tensor]) -> dict:
    """Adam/AdamW's fused kernel (one pass over all tensors; ~4x faster steps on CPU here) when
    every parameter is a float tensor on CPU or CUDA."""
    ok = cls_name in ("Adam", "AdamW") and all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
    return {"fused": True} if ok else {}


def newton_schulz(g: torch.Tensor, coefficients=(3.4445, -4.7750, 2.0315), steps: int = 5, eps: float = 1e-7,
                  dtype: torch.dtype = torch.bfloat16) -> torch.Tensor:
    """Muon's orthogonalisation (Jordan et al. 2024): ``steps`` quintic Newton-Schulz iterations
    that take G = U S V^T towards U V^T, computed in ``dtype``::

        X = G / ||G||_F                         (transposed first if tall: X X^T is the small Gram)
        repeat: A = X X^T;  X = a X + (b A + c A A) X

    The coefficients (a, b, c) drive singular values into ~[0.7, 1.2] fast rather than to exactly 1.
    In bfloat16 this is torch.optim.Muon's own function bit for bit (tested); float32 serves CPUs
    whose bf16 matrix products are ~100x slower than fp32 ones (no AVX512-BF16 / AMX).
    """
    a, b, c = coefficients
    tall = g.size(0) > g.size(1)
    x = g.to(dtype)
    if tall:
        x = x.T
    x = x / x.norm().clamp(min=eps)
    for _ in range(steps):
        gram = x @ x.T  # (m, m), m = min(rows, cols)
        update = torch.addmm(gram, gram, gram, beta=b, alpha=c)  # b A + c A A
        x = torch.addmm(x, update, x, beta=a)  # a X + (b A + c A A) X
    return x.T if tall else x


@functools.lru_cache(maxsize=None)
def bf16_speed_ratio(device_type: str) -> float:
    """How many times longer a bf16 matrix product takes than an fp32 one on this device (best of
    5, 192 x 192; ~10 ms where bf16 is slow). CUDA: 0 (tensor cores; not measured)."""
    if device_type != "cpu":
        return 0.0
    import time

    n = 192
    gen = torch.Generator().manual_seed(0)
    a32, b32 = torch.randn(n, n, generator=gen), torch.randn(n, n, generator=gen)
    a16, b16 = a32.bfloat16(), b32.bfloat16()

    def best(x, y):
        x @ y  # warm-up: first-call dispatch and oneDNN's kernel choice
        times = []
        for _ in range(5):
            t = time.perf_counter()
            x @ y
            times.append(time.perf_counter() - t)
        return min(times)

    return best(a16, b16) / max(best(a32, b32), 1e-9)


def muon_dtype(setting: str, device: torch.device) -> tuple[torch.dtype, str]:
    """``optim.muon_dtype`` made concrete: (dtype, why), once per process for ``auto``.

    auto: bf16 where its matrix products are fast (CUDA; CPUs with AVX512-BF16 or AMX, where a bf16
    product takes at most 2x an fp32 one), float32 elsewhere -- an AVX2 CPU multiplies bf16 ~100x
    slower, which made Newton-Schulz most of a CPU training step.
    """
    if setting == "float32":
        return torch.float32, "optim.muon_dtype=float32"
    if setting == "bfloat16":
        return torch.bfloat16, "optim.muon_dtype=bfloat16"
    if device.type == "cuda":
        return torch.bfloat16, "auto: bf16 on a GPU"
    ratio = bf16_speed_ratio(device.type)
    if ratio <= 2.0:
        return torch.bfloat16, f"auto: a bf16 matrix product takes {ratio:.1f}x an fp32 one on this CPU (native bf16)"
    return torch.float32, f"auto: a bf16 matrix product takes {ratio:.0f}x an fp32 one on this CPU (no native bf16)"


class Muon(torch.optim.Muon):
    """torch's Muon with the orthogonalisation's dtype chosen (``ns_dtype``), for whole or
    FSDP-sharded matrices.

    The step is torch's (momentum, Nesterov, decoupled weight decay, the shape-adjusted lr) with
    :func:`newton_schulz` in ``ns_dtype``; in bf16 it equals torch.optim.Muon bit for bit. Matrices
    sharded by FSDP (``DTensor``s split along dim 0): momentum, weight decay and the update's
    application are elementwise and stay on each rank's shard; the orthogonalisation needs the
    whole matrix, so each rank gathers the momentum-mixed update, orthogonalises it and keeps its
    own rows -- the unsharded update, bit for bit, at the cost of one gather per matrix and every
    rank repeating the (small) Newton-Schulz products. The state (``momentum_buffer``) is torch's,
    so checkpoints move freely between the two and between dtypes.
    """

    def __init__(self, params, *, ns_dtype: torch.dtype = torch.bfloat16, **kwargs):
        super().__init__(params, **kwargs)
        self.ns_dtype = ns_dtype

    @torch.no_grad()
    def step(self, closure=None):
        from torch.optim._muon import _adjust_lr

        from axon.train.distributed import is_sharded, shard_like

        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p.grad, memory_format=torch.preserve_format)
                buf = state["momentum_buffer"]
                buf.lerp_(p.grad, 1 - group["momentum"])
                update = p.grad.lerp(buf, group["momentum"]) if group["nesterov"] else buf
                ns = (group["ns_coefficients"], group["ns_steps"], group["eps"], self.ns_dtype)
                if is_sharded(update):
                    update = shard_like(newton_schulz(update.full_tensor(), *ns), p)
                else:
                    update = newton_schulz(update, *ns)
                p.mul_(1 - group["lr"] * group["weight_decay"])
                p.add_(update, alpha=-_adjust_lr(group["lr"], group["adjust_lr_fn"], p.shape))
        return loss


class FTRL(torch.optim.Optimizer):
    """FTRL-Proximal (McMahan et al. 2013, "Ad Click Prediction: a View from the Trenches",
    Algorithm 1), per coordinate i, with alpha = the group's ``lr``::

        g = grad                                  z, n: accumulators (state "z", "n"), 0 at start
        sigma = (sqrt(n + g^2) - sqrt(n)) / alpha  (1/eta_t - 1/eta_{t-1}: the lr's change)
        z += g - sigma * w
        n += g^2
        w  = 0                                                        if |z| <= lambda1
             -(z - sign(z) lambda1) / ((beta + sqrt(n)) / alpha + lambda2)   otherwise

    so coordinate i's learning rate is alpha / (beta + sqrt(n_i)) (AdaGrad's), lambda1 makes
    weights exactly zero, lambda2 is FTRL's own L2 (the group's ``weight_decay`` is not used).

    The weights are a closed form of (z, n), not a running sum: a step replaces the initial values
    (as TensorFlow's Ftrl does); a coordinate whose gradient has been 0 so far (z = 0) is 0. The
    method is made for linear, sparse models (logistic regression on hashed features) started at
    zero; a deep net trains, but loses its initialisation on the first step. A schedule that scales
    ``lr`` scales alpha in both sigma and the closed form (a constant schedule is the paper's).
    Parameters with no gradient (``grad is None``) are left alone.
    """

    def __init__(self, params, lr: float = 0.1, beta: float = 1.0, l1: float = 0.0, l2: float = 0.0,
                 weight_decay: float = 0.0):
        if lr <= 0 or beta < 0 or l1 < 0 or l2 < 0:
            raise ConfigError(f"ftrl: needs lr > 0 and beta, l1, l2 >= 0, got lr={lr}, beta={beta}, l1={l1}, l2={l2}")
        super().__init__(params, {"lr": lr, "beta": beta, "l1": l1, "l2": l2, "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            alpha, beta, l1, l2 = group["lr"], group["beta"], group["l1"], group["l2"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                state = self.state[p]
                if not state:
                    state["z"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["n"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                z, n = state["z"], state["n"]
                sqrt_old = n.sqrt()
                n.addcmul_(g, g)
                sqrt_new = n.sqrt()
                sigma = (sqrt_new - sqrt_old) / alpha
                z.add_(g - sigma * p)
                shrunk = z - z.sign() * l1  # z moved towards 0 by lambda1
                denom = (beta + sqrt_new) / alpha + l2
                w = torch.where(z.abs() <= l1, torch.zeros_like(p), -shrunk / denom.clamp(min=torch.finfo(p.dtype).tiny))
                p.copy_(w)
        return loss


def build_optimizers(model: nn.Module, cfg) -> list[torch.optim.Optimizer]:
    """One optimizer, or two for Muon (Muon for hidden matrices + AdamW for the rest).

    Each param group remembers its peak lr as ``base_lr``; the schedule scales from it.
    """
    name = cfg.name.lower()
    cls_name, fixed = OPTIMIZERS[name]
    if name != "muon":
        cls = FTRL if cls_name == "FTRL" else getattr(torch.optim, cls_name)
        groups = param_groups(model, cfg.weight_decay, cfg.lr)
        params = [p for g in groups for p in g["params"]]
        opts = [cls(groups, lr=cfg.lr, **{**_hyperparams(cls_name, cfg), **fixed, **_fused(cls_name, params)})]
    else:
        # Not for Muon: embeddings and heads (Jordan et al.), parameters that are not feature maps
        # (marked _no_weight_decay), and LoRA's low-rank factors (trained with AdamW, as in Hu et
        # al. 2021). Tensors of other than 2 dimensions (an MoE's stacked (E, out, in) experts) go
        # to AdamW too: torch's Muon orthogonalises matrices only.
        excluded = {
            id(p)
            for mname, module in model.named_modules()
            if _is_head_or_embedding(mname, module)
            for p in module.parameters(recurse=False)
        }
        excluded |= {id(p) for name, p in model.named_parameters() if getattr(p, "_no_weight_decay", False)
                     or name.rsplit(".", 1)[-1] in ("lora_A", "lora_B")}
        trainable = [p for p in model.parameters() if p.requires_grad]
        hidden = [p for p in trainable if p.dim() == 2 and id(p) not in excluded]
        hidden_ids = {id(p) for p in hidden}
        rest = [p for p in trainable if id(p) not in hidden_ids]
        if not hidden:
            raise ConfigError("optim.name: muon needs hidden weight matrices to train and this model has none "
                              "(only embeddings, heads, vectors or LoRA factors, which take AdamW); use adamw")
        dtype, why = muon_dtype(cfg.muon_dtype, hidden[0].device)
        muon = Muon(hidden, lr=cfg.muon_lr, weight_decay=cfg.weight_decay, momentum=cfg.muon_momentum, ns_dtype=dtype)
        muon.ns_dtype_reason = why
        opts = [muon]
        if rest:
            groups = _groups(rest, cfg.weight_decay, cfg.lr)
            opts.append(torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, **_fused("AdamW", rest)))
    for opt in opts:
        for group in opt.param_groups:
            group["base_lr"] = group["lr"]
    return opts
