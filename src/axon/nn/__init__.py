"""Building blocks shared by two or more model families."""

from axon.nn.attention import CausalSelfAttention, reference_attention
from axon.nn.cross_attention import CrossAttention, key_padding_mask
from axon.nn.mlp import FeedForward, GeluMLP, SwiGLU, build_mlp
from axon.nn.norms import RMSNorm, build_norm
from axon.nn.positional import RotaryEmbedding, SinusoidalPositions, apply_rotary

__all__ = [
    "CausalSelfAttention",
    "reference_attention",
    "CrossAttention",
    "key_padding_mask",
    "FeedForward",
    "GeluMLP",
    "SwiGLU",
    "build_mlp",
    "RMSNorm",
    "build_norm",
    "RotaryEmbedding",
    "SinusoidalPositions",
    "apply_rotary",
]
