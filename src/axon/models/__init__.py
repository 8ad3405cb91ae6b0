"""Model families. Each family is a config dataclass, a module, and a table of presets."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from axon.models.decoder import PRESETS as DECODER_PRESETS
from axon.models.decoder import Decoder, DecoderConfig


@dataclass(frozen=True)
class Family:
    config: type
    model: type
    presets: dict
    task: str = "lm"  # the task a run of this family trains on unless the config names one (axon.train.tasks)


FAMILIES: dict[str, Family] = {
    "decoder": Family(DecoderConfig, Decoder, DECODER_PRESETS),
}


def build_model(cfg) -> nn.Module:
    """Instantiate the module of the family whose config ``cfg`` is."""
    return FAMILIES[cfg.family].model(cfg)


__all__ = ["FAMILIES", "Family", "build_model", "Decoder", "DecoderConfig"]
