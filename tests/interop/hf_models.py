"""Hugging Face models built from local configs with random weights: nothing is downloaded."""

import pytest
import torch

transformers = pytest.importorskip("transformers")


def gpt2(vocab=97, positions=40, n_embd=48, n_layer=2, n_head=4, n_inner=None, tie=True, seed=0):
    torch.manual_seed(seed)
    cfg = transformers.GPT2Config(vocab_size=vocab, n_positions=positions, n_embd=n_embd, n_layer=n_layer,
                                  n_head=n_head, n_inner=n_inner, tie_word_embeddings=tie,
                                  bos_token_id=None, eos_token_id=None)
    model = transformers.GPT2LMHeadModel(cfg)
    _randomise_biases_and_norms(model)
    return model.eval()


def llama(vocab=101, hidden=64, inter=96, layers=2, heads=4, kv_heads=2, positions=64, tie=False, bias=False,
          theta=10000.0, scaling=None, eps=1e-5, seed=0):
    torch.manual_seed(seed)
    rope = {"rope_type": "default", "rope_theta": theta} if scaling is None else {"rope_theta": theta, **scaling}
    cfg = transformers.LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=inter,
                                   num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv_heads,
                                   max_position_embeddings=positions, tie_word_embeddings=tie, attention_bias=bias,
                                   mlp_bias=bias, rms_norm_eps=eps, rope_parameters=rope,
                                   bos_token_id=None, eos_token_id=None, pad_token_id=None)
    model = transformers.LlamaForCausalLM(cfg)
    _randomise_biases_and_norms(model)
    return model.eval()


def reductions(cfg, T: int, head_layers: int = 0) -> dict:
    """``n`` and ``depth`` for ``numerics.assert_close_orders`` on the output of a transformers model
    with config ``cfg`` (GPT-2, Llama, Mixtral, BERT, Mamba) run on T tokens.

    n is the longest reduction on the path: the hidden width, the MLP width (``intermediate_size``;
    GPT-2's ``n_inner``, 4 x width when unset; Mamba's expanded width), or the T keys attended over
    (for Mamba, the T steps of its linear recurrence, which add up like a length-T sum). depth is
    one per layer (the convention of tests/numerics.py: the ``tiny`` decoder's 2 layers give ~2e-5),
    the final projection to the compared output included in the last; ``head_layers`` adds the
    dense layers a head puts before its output projection (BERT's MLM transform, its pooler under a
    classifier)."""
    width = cfg.hidden_size  # GPT2Config maps hidden_size / num_hidden_layers to n_embd / n_layer
    inner = getattr(cfg, "intermediate_size", None) or getattr(cfg, "n_inner", None) or 4 * width
    return dict(n=max(width, inner, T), depth=cfg.num_hidden_layers + head_layers)


def _randomise_biases_and_norms(model):
    """HF initialises biases to 0 and norm gains to 1: random values make a wrong map visible."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1:
                p.copy_(torch.randn_like(p) * 0.1 + (1.0 if "norm" in name or "ln_" in name else 0.0))
