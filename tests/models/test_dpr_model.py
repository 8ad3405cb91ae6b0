"""DPR's two encoders (axon.models.dpr): vectors per text, padding-blind, a shared encoder counted once."""

from __future__ import annotations

import torch

from axon.model_configs.dpr import DPRConfig
from axon.models import build_model
from axon.models.bert import Bert


def model(**kw):
    torch.manual_seed(0)
    return build_model(DPRConfig(vocab_size=40, block_size=16, n_layer=1, n_head=2, n_embd=16, dropout=0.0, **kw)).eval()


def test_two_encoders_give_one_vector_per_text_and_differ():
    m = model()
    q, p = m(torch.randint(5, 40, (3, 7)), None, torch.randint(5, 40, (5, 9)), None)
    assert q.shape == (3, 16) and p.shape == (5, 16)
    ids = torch.randint(5, 40, (2, 6))
    assert not torch.allclose(m.encode_questions(ids), m.encode_passages(ids))  # two independent BERTs
    h = m.question_encoder.encode(ids)
    assert torch.equal(m.encode_questions(ids), h[:, 0])  # DPR reads the [CLS] position as it is
    assert isinstance(m.question_encoder, Bert) and m.question_encoder.pooler is None


def test_a_shared_encoder_is_one_module_counted_once():
    two, one = model(), model(shared=True)
    assert one.passage_encoder is one.question_encoder
    assert 2 * one.num_params() == two.num_params()
    ids = torch.randint(5, 40, (2, 6))
    assert torch.equal(one.encode_questions(ids), one.encode_passages(ids))


def test_padding_changes_no_vector_for_either_pooling():
    for pooling in ("cls", "mean"):
        m = model(pooling=pooling)
        ids = torch.randint(5, 40, (1, 6))
        padded = torch.cat([ids, torch.zeros(1, 4, dtype=torch.long)], 1)
        mask = torch.tensor([[True] * 6 + [False] * 4])
        torch.testing.assert_close(m.encode_passages(padded, mask), m.encode_passages(ids), rtol=1e-5, atol=1e-5)


def test_flops_are_both_encoders():
    m = model()
    assert m.flops_per_token(16) == 2 * m.question_encoder.flops_per_token(16) > 0
