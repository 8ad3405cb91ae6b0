"""DETR (Carion et al. 2020, "End-to-End Object Detection with Transformers"): detection as set
prediction. N learned object queries each decode into one class (or "no object") and one box;
training matches the N predictions to the image's objects one to one (``axon.objectives.detr``),
so there are no anchors and no non-maximum suppression.

    images (B, C_in, H, W), in [-1, 1]
        |
    ResNet.forward_features (axon.models.resnet, no head)          (B, C', H', W')
      or ViT / VisionMamba .forward_patches on the patch grid       (B, C', h, w)  (config.backbone)
        |
    1x1 conv C' -> d ("input_proj"), flattened row-major           (B, S = H' W', d)
        |                                 pos: 2-D sine positions   (1, S, d)   (axon.nn.positional.sincos_2d)
    +---+------------------------------------------+
    |  self-attention: q = k = x + pos, v = x       |
    |  x = LN(x + attn);  x = LN(x + FFN(x))        |  x enc_layers      (post-LN, as the paper)
    +---+------------------------------------------+
        |
     memory (B, S, d)                 object queries: learned (N, d) "query_pos", targets y start at 0
        |                                   |
        |       +---------------------------+------------------------------------+
        |       |  self-attention: q = k = y + query_pos, v = y                  |
        +------>|  cross-attention: q = y + query_pos, k = memory + pos, v = memory |  x dec_layers
                |  y = LN(y + attn) after each, then y = LN(y + FFN(y))          |
                +---+-------------------------------------------------------------+
                    |  every layer's output, through the shared final LayerNorm  (L, B, N, d)
                    |
         class head Linear d -> num_labels + 1     box head MLP d -> d -> d -> 4, sigmoid
                    |                                       |
            logits (L, B, N, K + 1)                 boxes (L, B, N, 4): (cx, cy, w, h) in [0, 1]

The last index of the class head is "no object". Every decoder layer's output goes through the
heads (the heads are shared), because the paper's auxiliary losses train each layer to predict
the set; ``forward`` returns all L layers and the predictions are ``[-1]``. Positions are added
to queries and keys at every layer, never to values (``axon.nn.CrossAttention``'s ``query_pos``
and ``key_pos``): the encoder's self-attention, the decoder's self-attention (over the queries)
and its cross-attention are all that one block. The decoder's self-attention is not causal: the
queries see each other, which is how two of them learn not to predict the same object.

Initialisation as the paper's code: Xavier-uniform for the transformer's matrices, the backbone's
own (He normal), the object queries N(0, 1). The backbone keeps its batch norms, so ``train()``
and ``eval()`` outputs differ.

Other backbones (``config.backbone`` "vit[:preset] ..." or "vision_mamba[:preset] ...", no head):
the feature map is the backbone's per-patch outputs after its final norm, the class token dropped
(ViT's first, Vision Mamba's middle one), laid out on the (h, w) patch grid: (B, C', h, w). The
class token stays an input: the patches attend to it (ViT) or the scans carry it to them (Vim), so
every backbone parameter is trained by the set loss. Patch size 8 on 64x64 images gives the 8x8
map of the ``shapes`` ResNet.
"""

from __future__ import annotations

import torch
from torch import nn

from axon.model_configs.detr import PRESETS, DETRConfig  # noqa: F401 (re-exported: the family's config and sizes)
from axon.models.base import Model
from axon.models.resnet import ResNet
from axon.models.vision_mamba import VisionMamba
from axon.models.vit import ViT
from axon.nn import CrossAttention, FeedForward
from axon.nn.positional import sincos_2d


class EncoderLayer(nn.Module):
    """Post-LN self-attention with positions on queries and keys, then the FFN: (B, S, d) -> (B, S, d)."""

    def __init__(self, cfg: DETRConfig):
        super().__init__()
        self.attn = CrossAttention(cfg.n_embd, cfg.n_head, bias=True, dropout=cfg.dropout, impl=cfg.attn_impl)
        self.norm1 = nn.LayerNorm(cfg.n_embd, eps=cfg.norm_eps)
        self.mlp = FeedForward(cfg.n_embd, cfg.hidden, "relu", cfg.dropout)
        self.norm2 = nn.LayerNorm(cfg.n_embd, eps=cfg.norm_eps)

    def forward(self, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        x = self.norm1(x + self.attn(x, x, query_pos=pos, key_pos=pos))  # q = k = x + pos, v = x
        return self.norm2(x + self.mlp(x))


class DecoderLayer(nn.Module):
    """Self-attention among the queries, cross-attention over the memory, the FFN, each post-LN:
    y (B, N, d), memory (B, S, d) -> (B, N, d)."""

    def __init__(self, cfg: DETRConfig):
        super().__init__()
        C = cfg.n_embd
        self.self_attn = CrossAttention(C, cfg.n_head, bias=True, dropout=cfg.dropout, impl=cfg.attn_impl)
        self.norm1 = nn.LayerNorm(C, eps=cfg.norm_eps)
        self.cross_attn = CrossAttention(C, cfg.n_head, bias=True, dropout=cfg.dropout, impl=cfg.attn_impl)
        self.norm2 = nn.LayerNorm(C, eps=cfg.norm_eps)
        self.mlp = FeedForward(C, cfg.hidden, "relu", cfg.dropout)
        self.norm3 = nn.LayerNorm(C, eps=cfg.norm_eps)

    def forward(self, y: torch.Tensor, memory: torch.Tensor, pos: torch.Tensor, query_pos: torch.Tensor) -> torch.Tensor:
        y = self.norm1(y + self.self_attn(y, y, query_pos=query_pos, key_pos=query_pos))  # not causal
        y = self.norm2(y + self.cross_attn(y, memory, query_pos=query_pos, key_pos=pos))
        return self.norm3(y + self.mlp(y))


class BoxHead(nn.Module):
    """The paper's 3-layer perceptron d -> d -> d -> 4 with ReLUs, then a sigmoid: (cx, cy, w, h) in [0, 1]."""

    def __init__(self, dim: int):
        super().__init__()
        self.layers = nn.ModuleList([nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, 4)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x) if i == len(self.layers) - 1 else torch.relu(layer(x))
        return x.sigmoid()


class DETR(Model):
    def __init__(self, cfg: DETRConfig):
        super().__init__()
        if cfg.num_labels is None:
            raise ValueError("DETRConfig.num_labels must be set before building the model (the detection task sets it)")
        self.config = cfg
        C = cfg.n_embd
        backbone = cfg.backbone_config()  # without a head
        self.backbone = {"resnet": ResNet, "vit": ViT, "vision_mamba": VisionMamba}[cfg.backbone_family](backbone)
        channels = self.backbone.feature_channels if cfg.backbone_family == "resnet" else backbone.n_embd
        self.input_proj = nn.Conv2d(channels, C, kernel_size=1)
        self.encoder = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.enc_layers))
        self.decoder = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.dec_layers))
        self.decoder_norm = nn.LayerNorm(C, eps=cfg.norm_eps)  # shared by every layer's output (aux losses)
        self.query_pos = nn.Embedding(cfg.num_queries, C)  # the N learned object queries
        self.class_head = nn.Linear(C, cfg.num_labels + 1)  # + "no object", the last index
        self.box_head = BoxHead(C)
        for module in (self.encoder, self.decoder):  # DETR's _reset_parameters: Xavier for the transformer
            for p in module.parameters():
                if p.dim() > 1:
                    nn.init.xavier_uniform_(p)

    def positions(self, height: int, width: int, like: torch.Tensor) -> torch.Tensor:
        """The fixed 2-D sine positions of an (H', W') feature map: (1, H' W', d), row-major."""
        return sincos_2d(self.config.n_embd, height, width).to(like.device, like.dtype)[None]

    @property
    def feature_size(self) -> int:
        """H' = W' of the feature map at ``config.image_size``: the ResNet's, or the patch grid's side."""
        if self.config.backbone_family == "resnet":
            return self.backbone.feature_size
        return self.backbone.config.grid

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        """The backbone's last feature map: (B, C_in, H, W) -> (B, C', H', W'): the ResNet's, or a ViT's /
        Vision Mamba's per-patch outputs (class token dropped) on the patch grid."""
        if self.config.backbone_family == "resnet":
            return self.backbone.forward_features(images)
        x, (h, w) = self.backbone.forward_patches(images)  # (B, h w, C'), row-major
        return x.transpose(1, 2).reshape(x.size(0), x.size(2), h, w)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """images (B, C_in, H, W) in [-1, 1] -> (logits (L, B, N, num_labels + 1), boxes (L, B, N, 4)
        as (cx, cy, w, h) in [0, 1] of the image), one row per decoder layer; the last is the prediction."""
        B = images.size(0)
        f = self.input_proj(self.forward_features(images))  # (B, d, H', W')
        pos = self.positions(f.size(2), f.size(3), f)  # (1, S, d)
        x = f.flatten(2).transpose(1, 2)  # (B, S, d), S = H' W'
        for layer in self.encoder:
            x = layer(x, pos)
        query_pos = self.query_pos.weight[None]  # (1, N, d)
        y = torch.zeros(B, *query_pos.shape[1:], dtype=x.dtype, device=x.device)  # (B, N, d): the targets start at 0
        outputs = []
        for layer in self.decoder:
            y = layer(y, x, pos, query_pos)
            outputs.append(self.decoder_norm(y))
        h = torch.stack(outputs)  # (L, B, N, d)
        return self.class_head(h), self.box_head(h)

    def flops_per_token(self, seq_len: int | None = None) -> float:
        """Training FLOPs per image (block_size is 1) at ``config.image_size``: the backbone's own
        ``flops_per_token`` (ResNet: 6 x conv weights x output pixels; ViT, Vision Mamba: theirs,
        built without a head), 6 x the 1x1 projection at every pixel, 6 x each encoder
        layer's matrices x S tokens, 6 x each decoder layer's x N queries (its cross-attention's
        key/value projection x S), the heads x N queries at every decoder layer (the auxiliary
        outputs are trained), and 12 x keys x d per attention layer and query: S keys for the S
        encoder tokens, N for the decoder's self-attention and S for its cross-attention, per
        query. ``seq_len`` is ignored."""
        cfg = self.config
        C, N = cfg.n_embd, cfg.num_queries
        S = self.feature_size ** 2

        def matrices(*modules) -> int:
            return sum(p.numel() for m in modules for p in m.parameters() if p.dim() > 1)

        macs = self.backbone.flops_per_token() / 6 + self.input_proj.weight.numel() * S
        macs += sum(matrices(layer) for layer in self.encoder) * S
        for layer in self.decoder:
            macs += (matrices(layer) - layer.cross_attn.kv.weight.numel()) * N + layer.cross_attn.kv.weight.numel() * S
        macs += matrices(self.class_head, self.box_head) * N * cfg.dec_layers
        attention = cfg.enc_layers * S * S * C + cfg.dec_layers * N * (N + S) * C  # keys x d, summed over queries
        return 6.0 * macs + 12.0 * attention


__all__ = ["PRESETS", "DETR", "DETRConfig"]
