"""The DETR family (axon.models.detr): shapes, the forward against one written with
torch.nn.MultiheadAttention the way DETR's own code calls it, preset counts, FLOPs by hand, one
small batch overfitted to near-perfect mAP, bad configs named."""

import pytest
import torch
import torch.nn.functional as F
from numerics import assert_close_orders
from torch import nn

from axon.config import build_model_config
from axon.data.detection import pad_targets, shapes
from axon.errors import ConfigError
from axon.models import FAMILIES, build_model
from axon.models.detr import PRESETS, DETR
from axon.nn.positional import sincos_2d


def detr(**kw) -> DETR:
    torch.manual_seed(0)
    return build_model(build_model_config({"family": "detr", "preset": "tiny", "num_labels": 3, **kw}))


def images(n=2, size=16, seed=1, dtype=torch.float32):
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed), dtype=dtype) * 2 - 1


def test_shapes():
    model = detr(dec_layers=2).eval()
    logits, boxes = model(images())
    assert logits.shape == (2, 2, 6, 4) and boxes.shape == (2, 2, 6, 4)  # (layers, B, queries, labels + 1 / box)
    assert ((boxes > 0) & (boxes < 1)).all()  # sigmoid: (cx, cy, w, h) inside the image
    assert model.forward_features(images()).shape == (2, 16, 8, 8)  # the backbone's map, no ResNet head
    assert model.backbone.head is None
    assert model(images(size=32))[0].shape == (2, 2, 6, 4)  # another size: a 16 x 16 map, positions recomputed


def mha(attn) -> nn.MultiheadAttention:
    """torch's MultiheadAttention with the weights of an axon CrossAttention (rows q; k; v)."""
    C = attn.q.weight.size(1)
    m = nn.MultiheadAttention(C, attn.n_head, dtype=attn.q.weight.dtype)
    with torch.no_grad():
        m.in_proj_weight.copy_(torch.cat([attn.q.weight, attn.kv.weight]))
        m.in_proj_bias.copy_(torch.cat([attn.q.bias, attn.kv.bias]))
        m.out_proj.weight.copy_(attn.proj.weight)
        m.out_proj.bias.copy_(attn.proj.bias)
    return m


def reference_forward(model: DETR, x: torch.Tensor):
    """DETR's transformer.py (forward_post of each layer), sequence-first, with nn.MultiheadAttention."""
    def ffn(mlp, h):
        return mlp.proj(F.relu(mlp.fc(h)))

    f = model.input_proj(model.backbone.forward_features(x))  # (B, d, H', W')
    B, d, H, W = f.shape
    pos = sincos_2d(d, H, W).to(x.dtype)[:, None]  # (S, 1, d)
    src = f.flatten(2).permute(2, 0, 1)  # (S, B, d)
    for layer in model.encoder:
        q = k = src + pos
        src = layer.norm1(src + mha(layer.attn)(q, k, value=src)[0])
        src = layer.norm2(src + ffn(layer.mlp, src))
    query_pos = model.query_pos.weight[:, None]  # (N, 1, d)
    tgt, outs = torch.zeros(query_pos.size(0), B, d, dtype=x.dtype), []
    for layer in model.decoder:
        q = k = tgt + query_pos
        tgt = layer.norm1(tgt + mha(layer.self_attn)(q, k, value=tgt)[0])
        tgt = layer.norm2(tgt + mha(layer.cross_attn)(tgt + query_pos, src + pos, value=src)[0])
        tgt = layer.norm3(tgt + ffn(layer.mlp, tgt))
        outs.append(model.decoder_norm(tgt).transpose(0, 1))  # (B, N, d)
    h = torch.stack(outs)
    return model.class_head(h), model.box_head(h)


@pytest.mark.numerics
def test_forward_matches_detrs_own_layers_with_multihead_attention():
    model = detr(enc_layers=2, dec_layers=2).double().eval()
    x = images(dtype=torch.float64)
    with torch.no_grad():
        (logits, boxes), (ref_logits, ref_boxes) = model(x), reference_forward(model, x)
    assert_close_orders(logits, ref_logits, n=64, depth=12)
    assert_close_orders(boxes, ref_boxes, n=64, depth=12)


def test_preset_parameter_counts():
    for name, preset in PRESETS.items():
        labels = int(preset["params"].split("(")[1].split()[0])
        with torch.device("meta"):
            model = build_model(build_model_config({"family": "detr", "preset": name, "num_labels": labels}))
        assert f"{sum(p.numel() for p in model.parameters()):,}" == preset["params"].split(" ")[0], name
    assert FAMILIES["detr"].task == "detect"


def test_flops_hand_count():
    model = detr()
    C, H, N, S, K1 = 32, 64, 6, 64, 4  # width, FFN, queries, 8 x 8 tokens, 3 labels + no object
    backbone = model.backbone.flops_per_token() / 6
    encoder = (4 * C * C + 2 * C * H) * S  # q, kv (2 C x C), proj; fc, proj -- at every token
    decoder = (4 * C * C + 2 * C * C + 2 * C * H) * N + 2 * C * C * S  # self-attn, cross q/proj, FFN; cross kv over S
    heads = (C * K1 + 2 * C * C + 4 * C) * N  # class Linear, the box MLP's three matrices
    attention = S * S * C + N * (N + S) * C  # keys x d per query: encoder; decoder self + cross
    want = 6 * (backbone + 16 * C * S + encoder + decoder + heads) + 12 * attention
    assert model.flops_per_token() == want


def test_overfits_one_small_batch_to_near_perfect_map():
    from axon.objectives.detr import SetCriterion
    from axon.tasks.detect import coco_map, predict

    x, targets = shapes(4, 3, image_size=16, max_objects=2)
    labels, boxes = pad_targets(targets, 2)
    model = detr().train()
    objective = SetCriterion()
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.0)
    before = coco_map(predict(model, x), targets, 16)
    for _ in range(200):
        loss, _ = objective(model, (x, labels, boxes))
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = coco_map(predict(model, x), targets, 16)
    assert before["map50"] < 0.2 and after["map50"] > 0.95 and after["map"] > 0.8, (before, after)


@pytest.mark.parametrize("kw,field", [(dict(n_head=3), "model.n_head"), (dict(n_embd=30, n_head=2), "model.n_embd"),
                                      (dict(num_queries=0), "model.num_queries"), (dict(num_labels=0), "model.num_labels"),
                                      (dict(dropout=1.0), "model.dropout"), (dict(image_size=2, backbone_stem="imagenet"),
                                                                            "model.image_size")])
def test_bad_configs_name_the_field(kw, field):
    with pytest.raises(ConfigError, match=field):
        build_model_config({"family": "detr", "preset": "tiny", **kw})


def test_a_model_without_labels_is_refused():
    with pytest.raises(ValueError, match="num_labels"):
        build_model(build_model_config({"family": "detr", "preset": "tiny"}))
