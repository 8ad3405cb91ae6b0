"""Sentiment control: prompts from the corpus, held out properly, and VADER as the gold reward."""

import pytest

from axon.errors import ConfigError
from axon.feedback import sentiment
from axon.feedback.sentiment import sentiment_demonstrations, sentiment_gold, sentiment_items, sentiment_prompts
from axon.feedback.source import corpus_parts, foreign_chars


def test_prompts_are_seeded_distinct_line_openings_of_their_part():
    train, val = corpus_parts()
    a = sentiment_items("train", 300, seed=4)
    assert a == sentiment_items("train", 300, seed=4)
    assert sentiment_prompts("train", 300, seed=5) != [p for p, _ in a]
    assert len({p for p, _ in a}) == 300
    speech = "\n" + "\n".join(" ".join(line.split()) for line in train.split("\n") if not line.endswith(":"))
    for p, cont in a:
        n = len(p.split())
        assert sentiment.MIN_PROMPT_WORDS <= n <= sentiment.MAX_PROMPT_WORDS
        assert 0 < len(cont) <= sentiment.MAX_CONTINUATION_CHARS
        assert foreign_chars(p + cont) == ""
        # prompt + " " + continuation opens a line of speech of the train part (not "KING HENRY VI:")
        assert f"\n{p} {cont}" in speech
    counts = {k: sum(len(p.split()) == k for p, _ in a) for k in range(2, 6)}
    assert min(counts.values()) > 30  # every prefix length is drawn


def test_heldout_prompts_come_from_the_val_part_and_never_open_a_train_line():
    train, val = corpus_parts()
    held = sentiment_prompts("heldout", 200, seed=0)
    train_openings = sentiment._train_prefixes()
    assert len(set(held)) == 200 and not set(held) & train_openings
    assert not set(held) & set(sentiment_prompts("train", 2000, seed=0))
    assert all(p in " ".join(val.split()) for p in held)


def test_demonstrations_are_the_corpus_continuations():
    rows = sentiment_demonstrations(50, seed=1)
    assert [(r["prompt"], r["response"]) for r in rows] == sentiment_items("train", 50, seed=1)


def test_bad_arguments_are_one_line_errors():
    with pytest.raises(ConfigError, match="split: 'test'"):
        sentiment_prompts("test", 3)
    with pytest.raises(ConfigError, match="n: the heldout part"):
        sentiment_prompts("heldout", 10**6)


def test_vader_gold_on_obvious_lines():
    pytest.importorskip("vaderSentiment")
    assert sentiment_gold("My lord,", "I love thee, sweet and fair and good!") > 0.8
    assert sentiment_gold("My lord,", "O wretched, hateful, cursed day of death!") < -0.8
    assert sentiment_gold("My lord,", "the horse is in the yard") == 0.0
    # the prompt is not scored: only the continuation the policy wrote
    assert sentiment_gold("O happy, happy day!", "the horse is in the yard") == 0.0
    assert -1 <= sentiment.sentiment_score("good " * 50) <= 1


def test_corpus_continuations_span_both_signs():
    pytest.importorskip("vaderSentiment")
    scores = [sentiment_gold(p, r) for p, r in sentiment_items("train", 300, seed=0)]
    assert min(scores) < -0.5 and max(scores) > 0.5  # room to steer either way
    assert sum(s == 0 for s in scores) > 50  # much of Shakespeare is neutral to VADER
