"""The recurrent tagger (rnn_tagger) and BERT's token-classification head (head: tag)."""

import pytest
import torch

from axon.config import build_model_config
from axon.errors import ConfigError
from axon.models import FAMILIES, build_model
from axon.models.flops import flops_per_token
from axon.models.rnn_tagger import RNNTagger, RNNTaggerConfig


def test_emissions_per_word_and_padding_never_leaks():
    torch.manual_seed(0)
    model = RNNTagger(RNNTaggerConfig(vocab_size=20, num_labels=5, n_embd=8, n_layer=2)).eval()
    ids = torch.tensor([[3, 4, 5, 6, 7], [8, 9, 10, 0, 0]])
    mask = ids != 0
    out = model(ids, mask)
    assert out.shape == (2, 5, 5)
    alone = model(ids[1:, :3], mask[1:, :3])  # the short row on its own, unpadded
    torch.testing.assert_close(out[1, :3], alone[0], rtol=0, atol=1e-6)
    other = ids.clone()
    other[1, 3:] = 11  # what the padding holds changes nothing
    torch.testing.assert_close(model(other, mask)[1, :3], out[1, :3], rtol=0, atol=0)
    # bidirectional: the first word's scores depend on the last word
    changed = ids.clone()
    changed[0, 4] = 12
    assert not torch.allclose(model(changed, mask)[0, 0], out[0, 0])


def test_crf_is_part_of_the_model_contract():
    plain = RNNTagger(RNNTaggerConfig(vocab_size=20, num_labels=3, n_embd=8))
    crf = RNNTagger(RNNTaggerConfig(vocab_size=20, num_labels=3, n_embd=8, crf=True))
    assert plain.tag_crf() is None and crf.tag_crf().num_tags == 3
    assert {k for k, _ in crf.named_parameters()} - {k for k, _ in plain.named_parameters()} == {
        "crf.transitions", "crf.start", "crf.end"}
    assert FAMILIES["rnn_tagger"].task == "tag" and "tag" in FAMILIES["bert"].other_tasks


def test_config_refusals_and_flops():
    with pytest.raises(ConfigError, match="model.num_labels"):
        build_model_config({"family": "rnn_tagger", "num_labels": 1})
    c = build_model_config({"family": "rnn_tagger", "preset": "tiny", "vocab_size": 30, "num_labels": 4})
    model = build_model(c)
    rnn = sum(p.numel() for n, p in model.rnn.named_parameters() if n.startswith("weight_"))
    assert flops_per_token(c) == 6 * (rnn + 4 * 2 * 32)  # cell matrices + the per-word head (2 directions x 32)


def test_bert_tag_head_scores_every_token_without_a_pooler():
    c = build_model_config({"family": "bert", "preset": "tiny", "vocab_size": 30, "head": "tag", "num_labels": 5})
    model = build_model(c).eval()
    assert model.pooler is None and model.mlm is None and model.tag_crf() is None
    ids = torch.randint(5, 30, (2, 7))
    mask = torch.ones(2, 7, dtype=torch.bool)
    mask[1, 5:] = False
    out = model(ids, mask)
    assert out.shape == (2, 7, 5)
    torch.testing.assert_close(out, model.classifier(model.encode(ids, mask)))
    with pytest.raises(ValueError, match="num_labels must be set"):
        build_model(build_model_config({"family": "bert", "preset": "tiny", "vocab_size": 30, "head": "tag"}))
