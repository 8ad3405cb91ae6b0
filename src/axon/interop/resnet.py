"""ResNet key maps: torchvision's ``resnet18/34/50`` and Hugging Face's ``ResNetForImageClassification``
(``model_type: resnet``, e.g. microsoft/resnet-50) <-> ``axon.models.resnet``.

The layouts are the same network (the bottleneck strides in its 3x3 in all three); only names
differ. Each map takes a state dict (parameters and batch norm's buffers) and returns Axon's,
every key renamed exactly once and nothing left over:

    Axon                              torchvision                 transformers (model_type resnet)
    stem.0 (conv), stem.1 (BN)        conv1, bn1                  resnet.embedder.embedder.convolution / .normalization
    stages.i.j.convK.0 / .1           layer{i+1}.j.convK / bnK    resnet.encoder.stages.i.layers.j.layer.{K-1}.convolution / .normalization
    stages.i.j.shortcut.0 / .1        layer{i+1}.j.downsample.0/1 resnet.encoder.stages.i.layers.j.shortcut.convolution / .normalization
    head                              fc                          classifier.1

``config_from_hf(config.json's dict)`` gives the Axon config of a transformers checkpoint (its
``hidden_sizes`` are each stage's output channels: 4x the 3x3 width for bottlenecks);
``load_hf_resnet(directory)`` builds the model from a local directory (config.json and
model.safetensors; nothing downloads, nothing is unpickled). Parity of the logits:
tests/interop/test_resnet_parity.py.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch

from axon.errors import CheckpointError, ConfigError
from axon.model_configs.resnet import ResNetConfig

MODEL_TYPE = "resnet"


def _rename(state: dict[str, torch.Tensor], rules: list[tuple[str, str]], origin: str) -> dict[str, torch.Tensor]:
    """Apply the first matching (regex, replacement) to every key; a key no rule matches is refused."""
    out = {}
    for key, value in state.items():
        for pattern, repl in rules:
            new, n = re.subn(pattern, repl, key)
            if n:
                out[new] = value
                break
        else:
            raise CheckpointError(f"{origin}: no ResNet key maps {key!r}")
    return out


TORCHVISION_RULES = [
    (r"^conv1\.weight$", "stem.0.weight"),
    (r"^bn1\.(\w+)$", r"stem.1.\1"),
    (r"^layer(\d+)\.(\d+)\.conv(\d)\.weight$", lambda m: f"stages.{int(m[1]) - 1}.{m[2]}.conv{m[3]}.0.weight"),
    (r"^layer(\d+)\.(\d+)\.bn(\d)\.(\w+)$", lambda m: f"stages.{int(m[1]) - 1}.{m[2]}.conv{m[3]}.1.{m[4]}"),
    (r"^layer(\d+)\.(\d+)\.downsample\.([01])\.(\w+)$", lambda m: f"stages.{int(m[1]) - 1}.{m[2]}.shortcut.{m[3]}.{m[4]}"),
    (r"^fc\.(weight|bias)$", r"head.\1"),
]

HF_RULES = [
    (r"^resnet\.embedder\.embedder\.convolution\.weight$", "stem.0.weight"),
    (r"^resnet\.embedder\.embedder\.normalization\.(\w+)$", r"stem.1.\1"),
    (r"^resnet\.encoder\.stages\.(\d+)\.layers\.(\d+)\.layer\.(\d+)\.convolution\.weight$",
     lambda m: f"stages.{m[1]}.{m[2]}.conv{int(m[3]) + 1}.0.weight"),
    (r"^resnet\.encoder\.stages\.(\d+)\.layers\.(\d+)\.layer\.(\d+)\.normalization\.(\w+)$",
     lambda m: f"stages.{m[1]}.{m[2]}.conv{int(m[3]) + 1}.1.{m[4]}"),
    (r"^resnet\.encoder\.stages\.(\d+)\.layers\.(\d+)\.shortcut\.convolution\.weight$",
     lambda m: f"stages.{m[1]}.{m[2]}.shortcut.0.weight"),
    (r"^resnet\.encoder\.stages\.(\d+)\.layers\.(\d+)\.shortcut\.normalization\.(\w+)$",
     lambda m: f"stages.{m[1]}.{m[2]}.shortcut.1.{m[3]}"),
    (r"^classifier\.1\.(weight|bias)$", r"head.\1"),
]


def torchvision_to_axon(state: dict[str, torch.Tensor], origin: str = "torchvision") -> dict[str, torch.Tensor]:
    return _rename(state, TORCHVISION_RULES, origin)


def hf_to_axon(state: dict[str, torch.Tensor], origin: str = "transformers") -> dict[str, torch.Tensor]:
    return _rename(state, HF_RULES, origin)


def config_from_hf(config: dict, image_size: int = 224, origin: str = "config.json") -> ResNetConfig:
    """The Axon config of a transformers ResNet config (``model_type: resnet``)."""
    if config.get("model_type") != MODEL_TYPE:
        raise ConfigError(f"{origin}: model_type {config.get('model_type')!r} is not {MODEL_TYPE!r}")
    block = {"basic": "basic", "bottleneck": "bottleneck"}.get(config.get("layer_type", "bottleneck"))
    if block is None:
        raise ConfigError(f"{origin}: layer_type {config.get('layer_type')!r}: Axon's ResNet has basic and bottleneck")
    for field, want in (("downsample_in_first_stage", False), ("downsample_in_bottleneck", False), ("hidden_act", "relu")):
        if config.get(field, want) != want:
            raise ConfigError(f"{origin}: {field}={config[field]!r} is not supported (Axon's ResNet: {want!r})")
    expansion = 4 if block == "bottleneck" else 1
    sizes = list(config.get("hidden_sizes", [256, 512, 1024, 2048]))
    base = sizes[0] // expansion
    if config.get("embedding_size", 64) != base or sizes != [base * expansion * 2**i for i in range(len(sizes))]:
        raise ConfigError(f"{origin}: embedding_size {config.get('embedding_size')} and hidden_sizes {sizes} are not "
                          "a ResNet whose widths double per stage from the stem's")
    labels = config.get("num_labels", len(config.get("id2label") or {}) or None)
    return ResNetConfig(image_size=image_size, in_channels=config.get("num_channels", 3), num_labels=labels,
                        block=block, layers=tuple(config.get("depths", [3, 4, 6, 3])), base_width=base,
                        stem="imagenet")


def load_hf_resnet(directory, image_size: int = 224):
    """An Axon ResNet with the weights of a local transformers ResNet directory (config.json +
    model.safetensors)."""
    from safetensors.torch import load_file

    from axon.models.resnet import ResNet

    root = Path(directory)
    for name in ("config.json", "model.safetensors"):
        if not (root / name).is_file():
            raise CheckpointError(f"{root}: no {name} (a transformers ResNet directory holds config.json and "
                                  "model.safetensors)")
    config = json.loads((root / "config.json").read_text())
    if config.get("num_labels") is None and config.get("id2label"):
        config["num_labels"] = len(config["id2label"])
    model = ResNet(config_from_hf(config, image_size, str(root / "config.json")))
    state = hf_to_axon(load_file(str(root / "model.safetensors")), str(root / "model.safetensors"))
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]  # not always saved
    if missing or unexpected:
        raise CheckpointError(f"{root}: tensors missing {missing[:3]} or left over {unexpected[:3]}")
    return model


__all__ = ["MODEL_TYPE", "config_from_hf", "hf_to_axon", "load_hf_resnet", "torchvision_to_axon"]
