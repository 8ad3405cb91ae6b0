"""Building blocks shared by two or more model families."""

from axon.nn.attention import CausalSelfAttention, reference_attention
from axon.nn.mlp import GeluMLP, SwiGLU, build_mlp
from axon.nn.norms import RMSNorm, build_norm
from axon.nn.positional import RotaryEmbedding, apply_rotary

__all__ = [
    "CausalSelfAttention",
    "reference_attention",
    "GeluMLP",
    "SwiGLU",
    "build_mlp",
    "RMSNorm",
    "build_norm",
    "RotaryEmbedding",
    "apply_rotary",
]
