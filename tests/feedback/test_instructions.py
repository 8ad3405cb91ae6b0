"""Instructions: each judge on hand-written responses, references score 1, the generator, parsing."""

import collections
import sys

import pytest

from axon.errors import ConfigError, DataError
from axon.feedback import instructions as ins
from axon.feedback import sentiment
from axon.feedback.instructions import (
    TYPES,
    candidates,
    generate_instructions,
    instruction_gold,
    make_instruction,
    near_miss,
    parse_instruction,
)
from axon.feedback.source import foreign_chars, vocabulary

PLAIN = [t for t in TYPES if not TYPES[t].needs_vader]  # judged without VADER


# (type, word, response, score): right, partly right and wrong answers written by hand
HAND = [
    ("three_words", "rose", "Sweet red rose.", 1.0),
    ("three_words", "rose", "I'll love roses", 1.0),  # a contraction is one word
    ("three_words", "rose", "The rose is red.", 2 / 3),
    ("three_words", "rose", "Rose.", 1 / 3),
    ("three_words", "rose", "", 0.0),
    ("three_words", "rose", "a b c d e f g", 0.0),
    ("end_with", "crown", "Give me the crown.", 1.0),
    ("end_with", "crown", "crown", 1.0),
    ("end_with", "crown", "The crown is mine.", 0.5),
    ("end_with", "crown", "Give me the crowns.", 0.0),
    ("end_with", "crown", "", 0.0),
    ("count_letters", "crown", "five", 1.0),
    ("count_letters", "crown", "Crown has five letters.", 1.0),
    ("count_letters", "crown", "It has 5 letters.", 1.0),
    ("count_letters", "crown", "Crown has four letters.", 0.0),
    ("count_letters", "crown", "four or five", 0.0),
    ("count_letters", "crown", "many letters", 0.0),
    ("repeat", "king", "king king", 1.0),
    ("repeat", "king", "King, king!", 1.0),
    ("repeat", "king", "king, I say, king", 0.5),
    ("repeat", "king", "king", 0.0),
    ("repeat", "king", "king king king", 0.0),
    ("capitals", "king", "KING", 1.0),
    ("capitals", "king", " KING!\n", 1.0),
    ("capitals", "king", "the KING", 0.5),
    ("capitals", "king", "King", 0.0),
    ("capitals", "king", "KINGS", 0.0),
]


@pytest.mark.parametrize("type, word, response, score", HAND)
def test_judges_on_hand_written_responses(type, word, response, score):
    x = make_instruction(type, word)
    assert x.judge(response) == pytest.approx(score, abs=1e-12)  # exact fractions: k/3 and k/2


def test_sentiment_judges_on_hand_written_responses():
    pytest.importorskip("vaderSentiment")
    cheer, sad = make_instruction("cheerful", "king"), make_instruction("sad", "king")
    assert cheer.judge("Long live the king, so good and glad!") == 1.0
    assert cheer.judge("I love this sweet day, so glad!") == 0.5  # cheerful but not about the king
    assert cheer.judge("The king is dead; woe and grief.") == 0.5  # about the king, but sad
    assert cheer.judge("The cat sat.") == 0.0
    assert sad.judge("The king is dead; woe and grief.") == 1.0
    assert sad.judge("Long live the king, so good and glad!") == 0.5
    assert sad.judge("The king sat.") == 0.5  # neutral is not sad


def test_sentiment_judges_need_vader_only_to_judge(monkeypatch):
    monkeypatch.setitem(sys.modules, "vaderSentiment", None)  # as if not installed: import raises
    monkeypatch.setitem(sys.modules, "vaderSentiment.vaderSentiment", None)
    sentiment._analyzer.cache_clear()
    try:
        x = make_instruction("cheerful", "king")
        assert "king" in x.reference()  # generating needs no VADER
        with pytest.raises(ConfigError, match=r"pip install axon-lab\[rlhf\]") as e:
            x.judge("good king")
        assert "\n" not in str(e.value)
    finally:
        sentiment._analyzer.cache_clear()


@pytest.mark.parametrize("type", PLAIN)
def test_every_reference_scores_one(type):
    xs = generate_instructions(300, seed=3, types=[type])
    for seed in (0, 1):
        assert all(x.judge(x.reference(seed)) == 1.0 for x in xs)


def test_every_sentiment_reference_scores_one_for_every_word():
    # the frames must outweigh any word of the vocabulary, the most negative ("kill", "murder")
    # in a cheerful frame and the most positive ("love") in a sad one
    pytest.importorskip("vaderSentiment")
    for type in ("cheerful", "sad"):
        for w in vocabulary():
            x = make_instruction(type, w)
            assert x.judge(x.reference(seed=len(w))) == 1.0, (type, w, x.reference(seed=len(w)))
            frames = ins.CHEERFUL_FRAMES if type == "cheerful" else ins.SAD_FRAMES
            for frame in frames[:: 1 if w in ("kill", "love", "murder", "hearts") else 3]:
                assert x.judge(frame.format(w=w)) == 1.0, (frame, w)


def test_near_misses_score_below_one():
    for x in generate_instructions(200, seed=5, types=PLAIN):
        assert x.judge(near_miss(x)) < 1.0, (x.prompt, near_miss(x))


def test_the_generator_is_deterministic_and_varied():
    a, b = generate_instructions(400, seed=11), generate_instructions(400, seed=11)
    assert [x.to_dict() for x in a] == [x.to_dict() for x in b]
    assert [x.reference(2) for x in a] == [x.reference(2) for x in b]
    other = generate_instructions(400, seed=12)
    assert len({x.prompt for x in a} & {x.prompt for x in other}) < 20  # another seed, other instructions
    assert generate_instructions(50, seed=11) == a[:50]  # a prefix does not depend on n
    counts = collections.Counter(x.type for x in a)
    assert set(counts) == set(TYPES) and min(counts.values()) > 400 / len(TYPES) / 2
    assert len({x.prompt for x in a}) == 400 and len({(x.type, x.params["word"]) for x in a}) == 400
    phrasings = collections.Counter((x.type, x.prompt.split()[0]) for x in a)
    assert len(phrasings) >= 2 * len(TYPES)  # several wordings per type
    assert len({x.params["word"] for x in a}) > 300


def test_prompts_and_references_are_short_and_in_the_corpus_charset():
    for w in ("abc", "abcdefgh"):  # the shortest and longest vocabulary words
        for t, spec in TYPES.items():
            for k in range(len(spec.phrasings)):
                x = make_instruction(t, w, k)
                assert len(x.prompt) <= ins.MAX_PROMPT_CHARS and foreign_chars(x.prompt) == ""
                for seed in range(8):
                    r = x.reference(seed)
                    assert len(r) <= ins.MAX_RESPONSE_CHARS and foreign_chars(r) == "", r


def test_parse_recovers_every_phrasing():
    for t, spec in TYPES.items():
        for k in range(len(spec.phrasings)):
            x = make_instruction(t, "crown", k)
            assert parse_instruction(x.prompt) == x
    assert instruction_gold("Repeat the word crown twice.", "crown crown") == 1.0
    with pytest.raises(DataError, match="none of the instruction phrasings"):
        parse_instruction("Tell me a story.")


def test_bad_instruction_arguments_are_one_line_errors():
    with pytest.raises(ConfigError, match="type: 'poem'"):
        make_instruction("poem", "rose")
    with pytest.raises(ConfigError, match="word: 'Rose'"):
        make_instruction("repeat", "Rose")
    with pytest.raises(ConfigError, match="types: 'poem'"):
        generate_instructions(3, types=["poem"])


def test_candidates_start_with_the_reference_and_vary_in_quality():
    xs = generate_instructions(200, seed=9, types=PLAIN)
    scores = [[x.judge(c) for c in candidates(x)] for x in xs]
    assert all(s[0] == 1.0 for s in scores)
    mean = [sum(col) / len(xs) for col in zip(*scores)]
    assert mean[0] > mean[2] > mean[3] and mean[0] > mean[1]  # reference > corrupted > random
    assert all(foreign_chars(c) == "" for x in xs for c in candidates(x))
