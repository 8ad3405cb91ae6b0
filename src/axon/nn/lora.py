"""LoRA: low-rank adaptation of linear layers (Hu et al. 2021, "LoRA: Low-Rank Adaptation of
Large Language Models", sec. 4.1).

A frozen pretrained matrix W0 (out, in) is adapted by a trainable rank-r product:

    h = W0 x + b + (alpha / r) * B A dropout(x)          A (r, in), B (out, r), r << min(in, out)

    x (..., in) --+--------------- W0^T, b ------------------+--> y (..., out)
                  |                                          |
                  +-- dropout --> A^T (..., r) --> B^T (..., out) * alpha/r

A is drawn like a Linear weight (Kaiming-uniform with a = sqrt(5), as loralib and peft do; the
paper says "random Gaussian"), B starts at zero, so B A = 0 and the adapted layer is exactly the
base layer at initialisation. Dropout acts on the adapter's input only (loralib, peft), so the
base path is untouched and in eval mode the adapter is deterministic. Scaling by alpha / r keeps
the update's size roughly independent of r, so alpha need not be retuned when r changes (sec. 4.1).

Only A and B train: for a (out, in) matrix that is r (in + out) numbers instead of in * out.

Merging folds the update into the weight, W = W0 + (alpha/r) B A, so inference costs one matmul,
exactly the base model's (sec. 4.1, "No Additional Inference Latency"). In floating point
(W0 + D) - D != W0 in general, so un-merging by subtraction would drift. Instead merging keeps
the base weight's Parameter object aside (unregistered) and installs a *new* Parameter holding
W0 + D; un-merging puts the original object back, bit for bit. The cost: while merged, the layer
holds two (out, in) matrices (the kept W0 and the merged W); after merge_and_unload the kept one
is dropped. A useful side effect: a base weight shared with other modules (a head tied to the
token embedding, or two LoRALinear built from one Linear, as the progressive model does) is never
written to, so merging one layer cannot change another.

Usage:

    names = apply_lora(model, ["blocks.*.attn.qkv", "blocks.*.attn.proj"], rank=8, alpha=16.0)
    mark_only_lora_trainable(model, also=["head.*"])
    ...train...
    save_adapters(model, "adapters.safetensors")       # A, B (and the `also` tensors you pass)
    merge_lora(model)                                  # plain-matmul inference
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from axon.errors import ConfigError, DataError

LORA_KEYS = ("lora_A", "lora_B")


class LoRALinear(nn.Linear):
    """``y = x W^T + b + (alpha/rank) * dropout(x) A^T B^T`` with A (rank, in), B (out, rank).

    Build it around an existing layer with :meth:`from_linear` (shares the base ``weight`` and
    ``bias`` Parameters) or directly as ``LoRALinear(in, out, bias, rank=.., alpha=..)``. Parameter
    names: ``weight``, ``bias`` (the base, as in nn.Linear), ``lora_A``, ``lora_B``.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *, rank: int = 8,
                 alpha: float = 16.0, dropout: float = 0.0, device=None, dtype=None) -> None:
        super().__init__(in_features, out_features, bias=bias, device=device, dtype=dtype)
        self._init_lora(rank, alpha, dropout)

    @classmethod
    def from_linear(cls, linear: nn.Linear, rank: int, alpha: float, dropout: float = 0.0) -> LoRALinear:
        """A LoRALinear whose base is ``linear``: the same ``weight``/``bias`` Parameter objects (no
        copy), fresh ``lora_A``/``lora_B`` (B = 0, so its output equals ``linear``'s). Given a
        LoRALinear, the new layer shares only its base weight and bias, not its adapters (so its
        output is the base layer's, without the other layer's update)."""
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"from_linear expects an nn.Linear, got {type(linear).__name__}")
        if isinstance(linear, LoRALinear) and linear.merged:
            raise ConfigError("cannot build a LoRA layer on a merged LoRA layer; unmerge_lora first")
        obj = cls.__new__(cls)
        nn.Module.__init__(obj)
        obj.in_features, obj.out_features = linear.in_features, linear.out_features
        obj.weight = linear.weight  # the same Parameter: names stay <name>.weight / <name>.bias
        if linear.bias is None:
            obj.register_parameter("bias", None)
        else:
            obj.bias = linear.bias
        obj._init_lora(rank, alpha, dropout)
        obj.train(linear.training)
        return obj

    def _init_lora(self, rank: int, alpha: float, dropout: float) -> None:
        if not (isinstance(rank, int) and rank >= 1):
            raise ConfigError(f"lora.rank: must be an integer >= 1, got {rank!r}")
        if not alpha > 0:
            raise ConfigError(f"lora.alpha: must be > 0, got {alpha!r}")
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"lora.dropout: must be in [0, 1), got {dropout!r}")
        self.rank, self.alpha, self.scaling = rank, float(alpha), float(alpha) / rank
        w = self.weight
        self.lora_A = nn.Parameter(torch.empty(rank, self.in_features, device=w.device, dtype=w.dtype))
        self.lora_B = nn.Parameter(torch.zeros(self.out_features, rank, device=w.device, dtype=w.dtype))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))  # nn.Linear's own init, as loralib/peft
        self.lora_dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.merged = False
        # the original weight while merged; kept in __dict__ so that nn.Module does not register it
        # (it is then invisible to state_dict, parameters() and .to(): merge after moving the model)
        self.__dict__["_base_weight"] = None

    def reset_parameters(self) -> None:  # nn.Linear.__init__ calls this before _init_lora
        super().reset_parameters()
        if hasattr(self, "lora_A"):
            nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
            nn.init.zeros_(self.lora_B)

    def delta_weight(self) -> torch.Tensor:
        """(alpha/r) B A: (out, r) @ (r, in) -> (out, in), the update merging adds to W0."""
        return (self.lora_B @ self.lora_A) * self.scaling

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.linear(x, self.weight, self.bias)  # (..., out)
        if self.merged:  # the update already lives in self.weight
            return y
        a = F.linear(self.lora_dropout(x), self.lora_A)  # (..., r)
        return y + F.linear(a, self.lora_B) * self.scaling  # (..., out)

    @torch.no_grad()
    def merge(self) -> None:
        """W <- W0 + (alpha/r) B A in a new Parameter; the original W0 Parameter is kept aside."""
        if self.merged:
            return
        base = self.weight
        merged = nn.Parameter((base + self.delta_weight()).to(base.dtype), requires_grad=base.requires_grad)
        self.__dict__["_base_weight"] = base
        self.weight = merged
        self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """Put the original W0 Parameter object back: the base weight is restored bit for bit."""
        if not self.merged:
            return
        self.weight = self.__dict__["_base_weight"]
        self.__dict__["_base_weight"] = None
        self.merged = False

    def extra_repr(self) -> str:
        return (f"{super().extra_repr()}, rank={self.rank}, alpha={self.alpha:g}"
                f"{', merged' if self.merged else ''}")


# --------------------------------------------------------------------------------------------
# Model-level helpers


def _matches(name: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def _linear_names(model: nn.Module) -> list[str]:
    return [n for n, m in model.named_modules() if isinstance(m, nn.Linear) and n]


def _few(names: Sequence[str], k: int = 6) -> str:
    shown = ", ".join(names[:k])
    return shown + (f", ... ({len(names)} in all)" if len(names) > k else "")


def apply_lora(model: nn.Module, targets: Sequence[str], rank: int, alpha: float,
               dropout: float = 0.0) -> list[str]:
    """Replace every nn.Linear whose qualified name matches a pattern in ``targets`` (fnmatch:
    ``"*.qkv"``, ``"blocks.*.mlp.*"``, ``"lm_head"``) by a LoRALinear sharing its weights; return
    the replaced names. A pattern that selects no Linear is a ConfigError."""
    if isinstance(targets, str):
        targets = [targets]
    if not targets:
        raise ConfigError("lora.targets: give at least one module name pattern, e.g. '*.qkv'")
    modules = dict(model.named_modules())
    linears = _linear_names(model)
    for pattern in targets:
        hits = [n for n in modules if n and fnmatch.fnmatchcase(n, pattern)]
        if any(isinstance(modules[n], nn.Linear) for n in hits):
            continue
        if not linears:
            raise ConfigError(f"lora.targets: {type(model).__name__} has no nn.Linear layers, so LoRA "
                              f"cannot be applied to it (LoRA adapts Linear layers only)")
        if hits:
            kinds = _few([f"{n} ({type(modules[n]).__name__})" for n in hits], 3)
            raise ConfigError(f"lora.targets: {pattern!r} matches only non-Linear modules: {kinds}; LoRA "
                              f"adapts nn.Linear layers only (e.g. nn.LSTM's gate matrices are not Linear); "
                              f"linear layers: {_few(linears)}")
        raise ConfigError(f"lora.targets: {pattern!r} matches no module; linear layers: {_few(linears)}")
    chosen = [n for n in linears if _matches(n, targets)]
    for name in chosen:
        layer = modules[name]
        if isinstance(layer, LoRALinear):
            raise ConfigError(f"lora.targets: {name} already has LoRA adapters")
        if type(layer).__name__ == "NonDynamicallyQuantizableLinear":
            raise ConfigError(f"lora.targets: {name} is the output projection of nn.MultiheadAttention, which "
                              f"reads its weight directly; LoRA cannot adapt it")
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, LoRALinear.from_linear(layer, rank, alpha, dropout))
    return chosen


def lora_layers(model: nn.Module) -> list[tuple[str, LoRALinear]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, LoRALinear)]


def is_lora_param(name: str) -> bool:
    return name.rsplit(".", 1)[-1] in LORA_KEYS


def mark_only_lora_trainable(model: nn.Module, also: Sequence[str] = ()) -> None:
    """requires_grad=False on every parameter except lora_A/lora_B and those whose name matches
    an ``also`` pattern (e.g. ``"head.*"`` for a new classification head). A shared (tied)
    parameter is trainable when any of its names matches; an ``also`` pattern that matches no
    parameter is a ConfigError."""
    if isinstance(also, str):
        also = [also]
    names: dict[int, list[str]] = {}
    params: dict[int, nn.Parameter] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        names.setdefault(id(p), []).append(name)
        params[id(p)] = p
    for pattern in also:
        if not any(fnmatch.fnmatchcase(n, pattern) for ns in names.values() for n in ns):
            first = [ns[0] for ns in names.values() if not is_lora_param(ns[0])]
            raise ConfigError(f"lora.train_also: {pattern!r} matches no parameter; parameters: {_few(first)}")
    for key, p in params.items():
        p.requires_grad_(any(is_lora_param(n) or _matches(n, also) for n in names[key]))


def merge_lora(model: nn.Module) -> int:
    """Fold every adapter into its weight (see the module docstring for the memory cost);
    returns the number of layers merged."""
    layers = lora_layers(model)
    for _, m in layers:
        m.merge()
    return len(layers)


def unmerge_lora(model: nn.Module) -> int:
    """Undo merge_lora: every base weight is restored bit for bit."""
    layers = lora_layers(model)
    for _, m in layers:
        m.unmerge()
    return len(layers)


def merge_and_unload(model: nn.Module) -> list[str]:
    """Merge the adapters and replace each LoRALinear by a plain nn.Linear holding W0 + (alpha/r) B A
    (peft's name): the model is then the base architecture again. Returns the replaced names."""
    names = []
    for name, m in lora_layers(model):
        m.merge()
        plain = nn.Linear(m.in_features, m.out_features, bias=m.bias is not None,
                          device=m.weight.device, dtype=m.weight.dtype)
        plain.weight, plain.bias = m.weight, m.bias
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, plain)
        names.append(name)
    return names


def lora_state_dict(model: nn.Module, also: Sequence[str] = ()) -> dict[str, torch.Tensor]:
    """The adapter tensors (``<layer>.lora_A`` (r, in), ``<layer>.lora_B`` (out, r)) plus the
    parameters whose names match ``also``, detached."""
    return {k: v.detach() for k, v in model.state_dict(keep_vars=True).items()
            if is_lora_param(k) or _matches(k, also)}


def save_adapters(model: nn.Module, path: str | Path, extra: dict[str, torch.Tensor] | None = None,
                  metadata: dict[str, str] | None = None, also: Sequence[str] = ()) -> Path:
    """Write the adapters alone (lora_state_dict(model, also) + ``extra`` tensors) as safetensors,
    with string ``metadata`` (the run writes the lora config there)."""
    from safetensors.torch import save_file

    tensors = lora_state_dict(model, also)
    if not any(is_lora_param(k) for k in tensors):
        raise ConfigError("save_adapters: the model has no LoRA layers (apply_lora first)")
    tensors.update(extra or {})
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # safetensors refuses shared or non-contiguous storage: give each tensor its own copy
    save_file({k: v.detach().contiguous().clone() for k, v in tensors.items()}, str(path),
              metadata={k: str(v) for k, v in (metadata or {}).items()})
    return path


def read_adapters(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors, metadata) of an adapter file; a missing or corrupt file is a DataError."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise DataError(f"adapter file not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})  # noqa: SIM118 (safe_open is not iterable)
    except (SafetensorError, OSError, ValueError) as e:
        raise DataError(f"{path}: not a readable safetensors adapter file ({e})") from None


@torch.no_grad()
def load_adapters(model: nn.Module, path: str | Path) -> dict[str, str]:
    """Copy the tensors of an adapter file into ``model`` (which must already have the same LoRA
    layers, unmerged); every LoRA tensor of the model must be in the file and every tensor in the
    file must exist in the model with the same shape. Returns the file's metadata."""
    tensors, metadata = read_adapters(path)
    own = model.state_dict(keep_vars=True)
    unknown = [k for k in tensors if k not in own]
    missing = [k for k in own if is_lora_param(k) and k not in tensors]
    if unknown or missing:
        what = (f"unknown tensors {_few(unknown, 3)}" if unknown else "") + \
               ("; " if unknown and missing else "") + (f"missing {_few(missing, 3)}" if missing else "")
        raise ConfigError(f"{path}: adapters do not fit this model: {what}")
    if any(m.merged for _, m in lora_layers(model)):
        raise ConfigError("load_adapters: the model's LoRA layers are merged; unmerge_lora first")
    for k, v in tensors.items():
        if own[k].shape != v.shape:
            raise ConfigError(f"{path}: {k} has shape {tuple(v.shape)}, the model expects {tuple(own[k].shape)}")
        own[k].copy_(v)
    return metadata


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts, shared tensors counted once."""
    params = list(model.parameters())
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)
