"""Sentiment control: the DPO paper's IMDb setup, rebuilt offline on the bundled corpus.

Rafailov et al. 2023 (DPO, sec. 6.1) give a policy the prefix of a movie review and ask for a
positive continuation; the gold reward is a sentiment classifier's score of what the policy wrote,
and a method is judged by the reward it reaches against its KL divergence from the reference
model. Here, with nothing downloaded:

    prompt      a few words that open a line of the corpus         "Come, my lord,"
    response    the policy's continuation of it                   "I love thee well."
    gold        VADER's compound score of the response alone      +0.64 in [-1, 1]

VADER (Hutto & Gilbert 2014, the ``vaderSentiment`` package) is a rule-based scorer over a
lexicon it ships: no weights, deterministic, fast on a CPU. Its compound score is the sum of
the valences of the words it knows (with its rules for negation, "but", boosters, capitals and
"!"), squashed by x / sqrt(x^2 + 15) into (-1, 1). It reads Early Modern English tolerably:
"love", "sweet", "fair", "good" score high, "hate", "woe", "wretched", "death" low, and "thee",
"hath" nothing.

Prompts are the first 2-5 words of lines of speech (speaker lines like "ROMEO:" are skipped),
drawn with a seed: ``"train"`` prompts from the train part of the corpus, ``"heldout"`` prompts
from the validation part and never equal to any prefix of a train line. The demonstrations for
an SFT model are the corpus's own continuations of the train prompts: ``prompt + " " + response``
is the line as Shakespeare wrote it (cut at a word boundary).

VADER is an optional dependency (``pip install axon-lab[rlhf]``); everything here but the score
works without it.
"""

from __future__ import annotations

from functools import cache

from axon.errors import ConfigError
from axon.feedback.rand import Draw
from axon.feedback.source import corpus_parts

#: words a prompt takes from the start of its line
MIN_PROMPT_WORDS, MAX_PROMPT_WORDS = 2, 5
#: a demonstration's continuation is cut (at a word boundary) to at most this many characters
MAX_CONTINUATION_CHARS = 80
SPLITS = ("train", "heldout")


@cache
def _analyzer():
    try:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer
    except ImportError:
        raise ConfigError("the sentiment judge needs the vaderSentiment package: pip install axon-lab[rlhf]") from None
    return SentimentIntensityAnalyzer()


def vader_available() -> bool:
    try:
        _analyzer()
    except ConfigError:
        return False
    return True


def sentiment_score(text: str) -> float:
    """VADER's compound sentiment of ``text``, in [-1, 1] (0 for text it finds neutral)."""
    return float(_analyzer().polarity_scores(text)["compound"])


def sentiment_gold(prompt: str, response: str) -> float:
    """The gold reward of the sentiment setup: the sentiment of the continuation alone (the
    prompt is the corpus's, not the policy's)."""
    return sentiment_score(response)


# --------------------------------------------------------------------------------------------
# Prompts and demonstrations


def _speech_lines(text: str) -> list[str]:
    """Lines of speech, whitespace-normalised: not empty, not a speaker's name ("KING RICHARD III:"),
    long enough to leave a continuation after the longest prefix."""
    out = []
    for line in text.split("\n"):
        words = line.split()
        if len(words) > MAX_PROMPT_WORDS + 1 and not line.rstrip().endswith(":"):
            out.append(" ".join(words))
    return out


def _cut(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, at a word boundary."""
    if len(text) <= limit:
        return text
    head = text[: limit + 1]
    return head[: head.rfind(" ")] if " " in head else text[:limit]


@cache
def _train_prefixes() -> frozenset[str]:
    """Every prefix a train prompt could be: held-out prompts avoid them all."""
    out = set()
    for line in _speech_lines(corpus_parts()[0]):
        words = line.split(" ")
        out.update(" ".join(words[:k]) for k in range(MIN_PROMPT_WORDS, MAX_PROMPT_WORDS + 1))
    return frozenset(out)


def sentiment_items(split: str, n: int, seed: int = 0) -> list[tuple[str, str]]:
    """``n`` distinct (prompt, corpus continuation) pairs of ``split`` ("train" or "heldout"),
    drawn with ``seed``: lines in a seeded order, each cut after a seeded 2-5 words."""
    if split not in SPLITS:
        raise ConfigError(f"split: {split!r} is not one of {', '.join(SPLITS)}")
    lines = _speech_lines(corpus_parts()[SPLITS.index(split)])
    avoid = _train_prefixes() if split == "heldout" else frozenset()
    out, seen = [], set()
    for i in Draw(seed, "sentiment", split, "order").shuffled(range(len(lines))):
        if len(out) == n:
            break
        words = lines[i].split(" ")
        k = MIN_PROMPT_WORDS + Draw(seed, "sentiment", split, i).below(MAX_PROMPT_WORDS - MIN_PROMPT_WORDS + 1)
        prompt = " ".join(words[:k])
        if prompt in seen or prompt in avoid:
            continue
        seen.add(prompt)
        out.append((prompt, _cut(" ".join(words[k:]), MAX_CONTINUATION_CHARS)))
    if len(out) < n:
        raise ConfigError(f"n: the {split} part of the corpus gives {len(out)} distinct prompts, asked for {n}")
    return out


def sentiment_prompts(split: str, n: int, seed: int = 0) -> list[str]:
    """``n`` distinct prompts of ``split`` (module docstring)."""
    return [p for p, _ in sentiment_items(split, n, seed)]


def sentiment_demonstrations(n: int, seed: int = 0) -> list[dict]:
    """``n`` SFT rows ``{"prompt", "response"}``: train prompts and the corpus's continuations."""
    return [{"prompt": p, "response": r} for p, r in sentiment_items("train", n, seed)]
