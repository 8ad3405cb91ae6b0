"""axon.eval.tagging: entity-level P/R/F1 through seqeval on planted predictions, and token accuracy."""

import builtins

import pytest

from axon.errors import ConfigError
from axon.eval.tagging import tagging_scores, token_accuracy

GOLD = [["B-PER", "I-PER", "O", "B-LOC", "O", "B-ORG", "I-ORG"]]
# PER right; LOC with a wrong right boundary; ORG missed
PRED = [["B-PER", "I-PER", "O", "B-LOC", "I-LOC", "O", "O"]]


def test_planted_predictions_score_the_hand_computed_figures():
    s = tagging_scores(GOLD, PRED)
    assert s["precision"] == pytest.approx(1 / 2)  # 1 right of 2 predicted entities
    assert s["recall"] == pytest.approx(1 / 3)  # 1 right of 3 gold entities
    assert s["f1"] == pytest.approx(2 * (1 / 2) * (1 / 3) / (1 / 2 + 1 / 3))  # = 0.4
    assert s["f1"] == pytest.approx(0.4)
    assert s["token_accuracy"] == pytest.approx(4 / 7)


def test_perfect_and_empty_predictions():
    gold = GOLD + [["O", "B-MISC"]]
    assert tagging_scores(gold, gold) == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "token_accuracy": 1.0}
    nothing = [["O"] * len(g) for g in gold]
    s = tagging_scores(gold, nothing)
    assert s["precision"] == s["recall"] == s["f1"] == 0.0
    assert s["token_accuracy"] == pytest.approx(3 / 9)  # the three gold O tokens


def test_wrong_type_counts_as_wrong_and_scores_pool_across_sentences():
    gold = [["B-PER", "O"], ["B-LOC", "I-LOC"]]
    pred = [["B-ORG", "O"], ["B-LOC", "I-LOC"]]  # right span, wrong type: not an entity match
    s = tagging_scores(gold, pred)
    assert (s["precision"], s["recall"], s["f1"]) == pytest.approx((1 / 2, 1 / 2, 1 / 2))
    assert token_accuracy(gold, pred) == pytest.approx(3 / 4)


def test_length_mismatch_is_refused():
    with pytest.raises(ValueError, match="sentence 0"):
        tagging_scores(GOLD, [PRED[0][:-1]])
    with pytest.raises(ValueError, match="1 gold sentences but 2"):
        token_accuracy(GOLD, PRED * 2)


def test_without_seqeval_it_is_one_config_error_line(monkeypatch):
    real = builtins.__import__

    def no_seqeval(name, *a, **k):
        if name.startswith("seqeval"):
            raise ImportError(name)
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_seqeval)
    with pytest.raises(ConfigError, match=r"axon-lab\[nlp\]"):
        tagging_scores(GOLD, PRED)
    assert token_accuracy(GOLD, PRED) == pytest.approx(4 / 7)  # needs no seqeval
