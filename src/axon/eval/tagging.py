"""Scores of a BIO tagger: entity-level precision, recall and F1 (seqeval), and token accuracy.

    gold [B-PER I-PER O B-LOC O     B-ORG I-ORG]    entities: PER[0:2] LOC[3:4] ORG[5:7]
    pred [B-PER I-PER O B-LOC I-LOC O     O    ]    entities: PER[0:2] LOC[3:5]
                                                    right: PER only (LOC's boundary is wrong)
    precision = right / predicted = 1/2    recall = right / gold = 1/3    F1 = 2PR/(P+R) = 0.4
    token accuracy = equal tags / tokens = 4/7

An entity counts only when its type and both boundaries match (CoNLL-2000/2003's rule). The entity
scores are ``seqeval``'s (Nakayama 2018, the conlleval port the field quotes), micro-averaged over
entity types, in its default mode: an ``I-X`` after ``O`` or another type opens an X entity, as
conlleval does (axon.data.conll accepts such tags). seqeval is optional (``axon-lab[nlp]``) and
imported inside :func:`tagging_scores`, so importing this module never needs it.
"""

from __future__ import annotations

from collections.abc import Sequence

from axon.errors import ConfigError


def _seqeval():
    try:
        from seqeval import metrics
    except ImportError:
        raise ConfigError("entity-level tagging scores need seqeval: pip install 'axon-lab[nlp]'") from None
    return metrics


def token_accuracy(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]) -> float:
    """The share of tokens whose predicted tag equals the gold tag (O tokens included)."""
    _check(gold, pred)
    total = sum(len(g) for g in gold)
    right = sum(a == b for g, p in zip(gold, pred) for a, b in zip(g, p))
    return right / total if total else 0.0


def tagging_scores(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]) -> dict[str, float]:
    """{"precision", "recall", "f1", "token_accuracy"} of predicted against gold tag sequences (0-1)."""
    _check(gold, pred)
    m = _seqeval()
    gold, pred = [list(g) for g in gold], [list(p) for p in pred]
    return {
        "precision": float(m.precision_score(gold, pred, zero_division=0)),
        "recall": float(m.recall_score(gold, pred, zero_division=0)),
        "f1": float(m.f1_score(gold, pred, zero_division=0)),
        "token_accuracy": token_accuracy(gold, pred),
    }


def _check(gold, pred) -> None:
    if len(gold) != len(pred):
        raise ValueError(f"{len(gold)} gold sentences but {len(pred)} predicted")
    for i, (g, p) in enumerate(zip(gold, pred)):
        if len(g) != len(p):
            raise ValueError(f"sentence {i}: {len(g)} gold tags but {len(p)} predicted")
