"""axon.models.flops: training FLOPs per token of every family, against hand counts written out as
arithmetic on the config numbers (6N + 12 * keys * d_attn)."""

import math

import pytest
import torch

from axon.config import build_model_config
from axon.errors import ConfigError
from axon.models.flops import count_params, flops_per_token
from axon.models import build_model


def cfg(**kw):
    return build_model_config(kw)


def test_gpt2_style_decoder_hand_count():
    V, T, L, C = 11, 16, 2, 8
    c = cfg(family="decoder", vocab_size=V, block_size=T, n_layer=L, n_head=2, n_embd=C, mlp="gelu",
            norm="layernorm", norm_bias=True, pos="learned", bias=True, tie_embeddings=True)
    per_layer = (2 * C) + (C * 3 * C + 3 * C) + (C * C + C) + (2 * C) + (C * 4 * C + 4 * C) + (4 * C * C + C)
    non_embedding = L * per_layer + 2 * C  # + final LayerNorm; token and position tables excluded
    assert count_params(c, non_embedding=True) == non_embedding
    assert count_params(c) == non_embedding + V * C + T * C  # tied head counted once
    head = V * C  # the tied head's matmul is work
    assert flops_per_token(c) == 6 * (non_embedding + head) + 12 * L * T * C
    assert flops_per_token(c, seq_len=4) == 6 * (non_embedding + head) + 12 * L * 4 * C


def test_llama_style_gqa_decoder_hand_count():
    V, T, L, C, H, KV = 13, 16, 2, 16, 4, 1
    hd, F = C // H, 64  # SwiGLU hidden: 32 * ceil(8 * 16 / 3 / 32) = 64
    c = cfg(family="decoder", vocab_size=V, block_size=T, n_layer=L, n_head=H, n_kv_head=KV, n_embd=C,
            tie_embeddings=False)
    per_layer = C + (C * C + 2 * C * KV * hd + C * C) + C + 3 * C * F  # norms have no bias; no linear bias
    non_embedding = L * per_layer + C + V * C  # final RMSNorm + the untied head
    assert count_params(c, non_embedding=True) == non_embedding
    assert flops_per_token(c) == 6 * non_embedding + 12 * L * T * (H * hd)


def test_sliding_window_counts_min_of_context_and_window():
    base = dict(family="decoder", vocab_size=13, block_size=16, n_layer=2, n_head=4, n_embd=16)
    dense = flops_per_token(cfg(**base))
    one = flops_per_token(cfg(**base, attention="sliding", attn_window=4, attn_layers=[0]))
    both = flops_per_token(cfg(**base, attention="sliding", attn_window=4))
    assert dense - one == 12 * (16 - 4) * 16  # layer 0 sees 4 keys instead of 16
    assert dense - both == 2 * 12 * (16 - 4) * 16
    assert flops_per_token(cfg(**base, attention="sliding", attn_window=16)) == dense  # window = context


def test_moe_counts_active_experts_only():
    base = dict(family="decoder", vocab_size=13, block_size=16, n_layer=2, n_head=4, n_embd=16, mlp_hidden=24)
    C, E, F, L = 16, 4, 24, 2
    dense = flops_per_token(cfg(**base))
    top1 = flops_per_token(cfg(**base, moe_experts=E, moe_top_k=1))
    top2 = flops_per_token(cfg(**base, moe_experts=E, moe_top_k=2))
    assert top1 - dense == 6 * L * (C * E)  # one expert = the dense MLP, plus the router C x E
    assert top2 - top1 == 6 * L * (3 * C * F)  # a second SwiGLU expert per token
    assert count_params(cfg(**base, moe_experts=E, moe_top_k=1)) > count_params(cfg(**base))  # all experts exist


def test_gpt2_small_matches_published_count_and_kaplan():
    c = cfg(family="decoder", preset="gpt2")
    assert count_params(c) == 124_439_808  # built on the meta device: instant, no memory
    n = count_params(c, non_embedding=True)
    assert n == 124_439_808 - 50257 * 768 - 1024 * 768  # Kaplan's N for GPT-2 small (85M)
    assert flops_per_token(c) == 6 * (n + 50257 * 768) + 12 * 12 * 1024 * 768


def test_lstm_language_model_hand_count():
    V, E, Hd, L = 11, 8, 12, 2
    c = cfg(family="rnn", vocab_size=V, n_embd=E, n_hidden=Hd, n_layer=L, cell="lstm")
    recurrent = 4 * Hd * (E + Hd) + 4 * Hd * (Hd + Hd)  # W_ih and W_hh of each layer, 4 gates
    assert flops_per_token(c) == 6 * (recurrent + V * Hd)
    assert flops_per_token(c, seq_len=1000) == flops_per_token(c)  # nothing grows with the context


def test_seq2seq_hand_count():
    V, T, C, F = 17, 8, 8, 20
    c = cfg(family="seq2seq", vocab_size=V, block_size=T, n_layer=1, n_head=2, n_embd=C, mlp_hidden=F)
    attn = 4 * C * C + 4 * C  # q, k, v, out with biases
    ff = C * F + F + F * C + C
    enc = attn + 2 * C + ff + 2 * C
    dec = attn + 2 * C + attn + 2 * C + ff + 2 * C  # self, cross, feed-forward, three post-LNs
    keys = T + (T + T)  # encoder self over the source; decoder self over the target + cross over the source
    assert flops_per_token(c) == 6 * (enc + dec + V * C) + 12 * keys * C


def test_word2vec_hand_count():
    D, K, W = 10, 3, 2
    assert flops_per_token(cfg(family="word2vec", vocab_size=50, n_embd=D, negatives=K, window=W)) == 6 * D * (1 + K) * (2 * W)
    assert flops_per_token(cfg(family="word2vec", vocab_size=50, n_embd=D, negatives=K, window=W, mode="cbow")) == 6 * D * (1 + K + 2 * W)


def test_glove_hand_count():
    assert flops_per_token(cfg(family="glove", vocab_size=50, n_embd=10)) == 6 * 10  # one dot product per entry


def test_fasttext_hand_count():  # skip-gram's count; the sum of the n-gram rows is a lookup
    assert flops_per_token(cfg(family="fasttext", vocab_size=50, n_embd=10, negatives=3, window=2, buckets=100)) == 6 * 10 * 4 * 4


def test_mamba_hand_count():
    V, C, L, N, K = 11, 16, 2, 4, 4
    D, R = 2 * C, math.ceil(C / 16)
    c = cfg(family="mamba", vocab_size=V, n_embd=C, n_layer=L, d_state=N, d_conv=K)
    matmul = L * (C * 2 * D + D * (R + 2 * N) + R * D + D * C) + V * C  # in, x, dt, out projections; head
    scan = L * (2 * D * K + 8 * D * N)
    assert flops_per_token(c) == 3 * (2 * matmul + scan)


def test_conv_attention_inner_blocks_run_once_per_k_tokens():
    base = dict(family="conv_attention", preset="tiny", vocab_size=11)
    c = cfg(**base)
    k, T, D = c.shorten, c.block_size, c.inner_embd
    more = cfg(**base, n_inner_layer=c.n_inner_layer + 1)
    model = build_model(more)
    inner_block = sum(p.numel() for p in model.inner[0].parameters())
    assert flops_per_token(more) - flops_per_token(c) == pytest.approx(6 * inner_block / k + 12 * (T / k) * D / k)


def test_progressive_counts_its_final_depth():
    c = cfg(family="progressive", vocab_size=11, block_size=16, n_layer=1, n_head=2, n_embd=8, grow_at=[3])
    model = build_model(c)
    start = model.flops_per_token()
    model.grow_to_step(4)
    assert model.depth == 2
    assert flops_per_token(c) == model.flops_per_token() > start


def test_bert_counts_encoder_without_mlm_head():
    c = cfg(family="bert", preset="tiny", vocab_size=30)
    model = build_model(c)
    head = sum(p.numel() for m in (model.mlm, model.pooler, model.classifier) if m is not None for p in m.parameters())
    encoder = count_params(c, non_embedding=True) - head
    assert flops_per_token(c) == 6 * encoder + 12 * c.n_layer * c.block_size * c.n_embd


def test_every_family_has_a_count_and_null_vocab_is_refused():
    from axon.models import FAMILIES

    no_vocabulary = []
    for family in FAMILIES:
        c = cfg(family=family, preset="tiny")
        if hasattr(c, "vocab_size"):
            with pytest.raises(ConfigError, match="vocab_size"):
                flops_per_token(c)
            c.vocab_size = 64
        else:
            no_vocabulary.append(family)
        if hasattr(c, "num_labels") and c.num_labels is None:
            if family == "rnn_classifier":  # its head is part of the model: refused until the task sets it
                with pytest.raises(ConfigError, match="num_labels"):
                    flops_per_token(c)
            c.num_labels = 3
        if getattr(c, "obs_dim", 0) is None:  # marl: the mappo task sets its sizes from the environment
            with pytest.raises(ConfigError, match="obs_dim"):
                flops_per_token(c)
            c.obs_dim, c.n_agents, c.n_actions = 12, 2, 5
        assert flops_per_token(c) > 0 and count_params(c) > 0
    assert no_vocabulary == ["unet", "mlp_denoiser", "resnet", "vit", "vision_mamba", "vit_hybrid", "detr", "vqvae",
                             "routed_vision", "wm_vae", "wm_mdnrnn", "wm_controller", "marl"]  # images, points, latents, observations: not tokens
    assert not torch.empty(0).is_meta  # the meta device did not leak out
