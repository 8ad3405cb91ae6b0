"""RoPE context-extension scalings: which kinds exist, the numbers each needs, and the check of a
``rope_scaling`` dict. Standard library only, so the config layer (``axon.model_configs.decoder``)
validates a config with the very check ``axon.nn.positional`` and Hugging Face interop use,
without importing torch."""

from __future__ import annotations

import math

ROPE_SCALINGS = {
    "linear": ("factor",),
    "llama3": ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"),
}


def check_rope_scaling(scaling: dict | None) -> str | None:
    """None when ``scaling`` is usable, else what is wrong with it (one line)."""
    if scaling is None:
        return None
    kind = scaling.get("rope_type")
    if kind not in ROPE_SCALINGS:
        return f"rope_type {kind!r} is not supported; choose one of {', '.join(ROPE_SCALINGS)} (or no scaling)"
    missing = [k for k in ROPE_SCALINGS[kind] if not isinstance(scaling.get(k), (int, float))]
    extra = sorted(set(scaling) - {"rope_type", *ROPE_SCALINGS[kind]})
    if missing or extra:
        return f"{kind} scaling needs exactly the numbers {', '.join(ROPE_SCALINGS[kind])} (missing {missing}, unknown {extra})"
    if not all(math.isfinite(scaling[k]) for k in ROPE_SCALINGS[kind]):
        return f"{kind} scaling needs finite numbers, got {', '.join(f'{k}={scaling[k]}' for k in ROPE_SCALINGS[kind])}"
    if scaling["factor"] <= 0:
        return "factor must be positive"
    if kind == "llama3" and not 0 < scaling["low_freq_factor"] < scaling["high_freq_factor"]:
        return "llama3 scaling needs 0 < low_freq_factor < high_freq_factor"
    return None
