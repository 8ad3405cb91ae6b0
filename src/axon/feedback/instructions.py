"""Following an instruction: seeded instructions, each with a programmatic gold judge and a reference.

InstructGPT's point (Ouyang et al. 2022) is that a model fine-tuned on demonstrations and then on
human comparisons follows instructions better than one ten times its size that was only
pre-trained. To measure that offline, every instruction here is checkable by a program:

    type            a prompt (one of three phrasings)              judge(response) in [0, 1]
    cheerful        Write a cheerful line about rose.              mentions "rose" (1/2) + VADER >= 0.5 (1/2)
    sad             Write a sad line about rose.                   mentions "rose" (1/2) + VADER <= -0.5 (1/2)
    three_words     Answer in three words: what is rose?           1 - |words - 3| / 3, at least 0
    end_with        Write a line that ends with the word rose.     last word is "rose": 1; "rose" elsewhere: 1/2
    count_letters   How many letters are in the word rose?         every number it states is four: 1, else 0
    repeat          Repeat the word rose twice.                    exactly "rose rose": 1; "rose" twice among others: 1/2
    capitals        Write the word rose in capitals.               exactly "ROSE": 1; "ROSE" among others: 1/2

The word is drawn from the corpus's vocabulary (``source.vocabulary()``: lowercase, 3-8 letters),
so a character tokenizer trained on the corpus encodes every prompt and response; numbers are
written in words (the corpus has no digit but 3). Prompts are at most ``MAX_PROMPT_CHARS`` and
references at most ``MAX_RESPONSE_CHARS`` characters, so a pair fits a block of 128 characters
with a chat template of up to 28.

Each ``Instruction`` has its prompt, its type and parameters (``{"word": ...}``), ``judge``, and
``reference(seed)``: a demonstration that scores 1 (for SFT data). ``parse_instruction`` recovers
the instruction from its prompt text alone, so a file of bare prompts, or a comparison's prompt,
is enough to judge a response (``instruction_gold``). The two sentiment types need VADER
(``pip install axon-lab[rlhf]``) to be judged, not to be generated.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache

from axon.errors import ConfigError, DataError
from axon.feedback.rand import Draw
from axon.feedback.sentiment import sentiment_score
from axon.feedback.source import NUMBER_WORDS, vocabulary

MAX_PROMPT_CHARS = 48
MAX_RESPONSE_CHARS = 52
#: VADER compound a cheerful line must reach (a sad one: its negative)
SENTIMENT_THRESHOLD = 0.5

_WORD = re.compile(r"[a-z]+")


def _tokens(text: str) -> list[str]:
    """The lowercase alphabetic runs of ``text``: "Rose, rose!" -> ["rose", "rose"]."""
    return _WORD.findall(text.lower())


# --------------------------------------------------------------------------------------------
# The judges: (word, response) -> score in [0, 1]


def _sentiment_judge(sign: int) -> Callable[[str, str], float]:
    def judge(word: str, response: str) -> float:
        mentions = word in _tokens(response)
        felt = sign * sentiment_score(response) >= SENTIMENT_THRESHOLD
        return 0.5 * mentions + 0.5 * felt
    return judge


def _judge_three_words(word: str, response: str) -> float:
    # a contraction ("I'll") is one word
    n = len(re.findall(r"[a-z]+(?:'[a-z]+)*", response.lower()))
    return max(0.0, 1 - abs(n - 3) / 3)


def _judge_end_with(word: str, response: str) -> float:
    tokens = _tokens(response)
    if tokens and tokens[-1] == word:
        return 1.0
    return 0.5 if word in tokens else 0.0


def _judge_count_letters(word: str, response: str) -> float:
    stated = [NUMBER_WORDS.index(t) for t in _tokens(response) if t in NUMBER_WORDS]
    stated += [int(d) for d in re.findall(r"\d+", response)]
    return 1.0 if stated and all(n == len(word) for n in stated) else 0.0


def _judge_repeat(word: str, response: str) -> float:
    tokens = _tokens(response)
    if tokens == [word, word]:
        return 1.0
    return 0.5 if tokens.count(word) == 2 else 0.0


def _judge_capitals(word: str, response: str) -> float:
    if response.strip(" \n.,;:!?'-") == word.upper():
        return 1.0
    return 0.5 if word.upper() in re.findall(r"[A-Za-z]+", response) else 0.0


# --------------------------------------------------------------------------------------------
# The references: (word, draw) -> a response that scores 1

# Each frame scores VADER >= 0.5 (<= -0.5) with any vocabulary word in it (tests/feedback checks
# every word): the sentiment words outweigh the most negative (positive) word the corpus offers.
CHEERFUL_FRAMES = ("O happy {w}, I love thee, sweet and good!", "I love the {w}, so merry and fair!",
                   "Sweet {w}, my joy, so fair and glad!")
SAD_FRAMES = ("O cruel {w}, I hate thee, sad and wretched!", "Alas, the {w}! Such grief and woe and pain.",
              "Wretched {w}, my sorrow, grief and death.")
ADJECTIVES = ("fair", "sweet", "noble", "good", "gentle", "true", "dear", "strange", "cold", "old", "great",
              "proud", "poor", "young", "rich", "brave", "sad", "bright", "dark", "wise")
ENDING_FRAMES = ("My heart is full of {w}.", "Then let us speak of {w}.", "I would hear more of {w}.",
                 "And so I think of {w}.")


def _frames(frames: Sequence[str]) -> Callable[[str, Draw], str]:
    return lambda w, d: d.choice(frames).format(w=w)


def _reference_three_words(w: str, d: Draw) -> str:
    return f"{w.capitalize()} is {d.choice(ADJECTIVES)}."


def _reference_count_letters(w: str, d: Draw) -> str:
    return f"{w.capitalize()} has {NUMBER_WORDS[len(w)]} letters."


# --------------------------------------------------------------------------------------------
# The types


@dataclass(frozen=True)
class InstructionType:
    name: str
    phrasings: tuple[str, ...]                # prompts, with {w} for the word
    judge: Callable[[str, str], float]        # (word, response) -> [0, 1]
    reference: Callable[[str, Draw], str]     # (word, draw) -> a response that scores 1
    needs_vader: bool = False


TYPES: dict[str, InstructionType] = {t.name: t for t in [
    InstructionType("cheerful", ("Write a cheerful line about {w}.", "Say something happy about {w}.",
                                 "Give me a joyful line on {w}."),
                    _sentiment_judge(+1), _frames(CHEERFUL_FRAMES), needs_vader=True),
    InstructionType("sad", ("Write a sad line about {w}.", "Say something gloomy about {w}.",
                            "Give me a mournful line on {w}."),
                    _sentiment_judge(-1), _frames(SAD_FRAMES), needs_vader=True),
    InstructionType("three_words", ("Answer in three words: what is {w}?", "In three words, tell me of {w}.",
                                    "Describe {w} in three words."),
                    _judge_three_words, _reference_three_words),
    InstructionType("end_with", ("Write a line that ends with the word {w}.", "End your line with {w}.",
                                 "Give a line whose last word is {w}."),
                    _judge_end_with, _frames(ENDING_FRAMES)),
    InstructionType("count_letters", ("How many letters are in the word {w}?", "Count the letters of {w}.",
                                      "How many letters has {w}?"),
                    _judge_count_letters, _reference_count_letters),
    InstructionType("repeat", ("Repeat the word {w} twice.", "Say {w} two times.", "Write {w} twice, nothing else."),
                    _judge_repeat, lambda w, d: f"{w} {w}"),
    InstructionType("capitals", ("Write the word {w} in capitals.", "Give {w} in capital letters.",
                                 "Write {w} in upper case."),
                    _judge_capitals, lambda w, d: w.upper()),
]}


@dataclass(frozen=True)
class Instruction:
    """One instruction: ``prompt`` says what to do, ``judge(response)`` scores a response in [0, 1]
    (1: fully followed), ``reference(seed)`` is a response that scores 1."""

    type: str
    params: dict = field(hash=False)
    prompt: str

    def judge(self, response: str) -> float:
        return TYPES[self.type].judge(self.params["word"], response)

    def reference(self, seed: int = 0) -> str:
        return TYPES[self.type].reference(self.params["word"], Draw(seed, "reference", self.prompt))

    def to_dict(self) -> dict:
        return {"prompt": self.prompt, "type": self.type, "params": dict(self.params)}


def make_instruction(type: str, word: str, phrasing: int = 0) -> Instruction:
    """The instruction of ``type`` about ``word``, in the ``phrasing``-th wording."""
    if type not in TYPES:
        raise ConfigError(f"type: {type!r} is not an instruction type; choose one of {', '.join(TYPES)}")
    if not re.fullmatch(r"[a-z]+", word):
        raise ConfigError(f"word: {word!r} must be lowercase letters")
    return Instruction(type, {"word": word}, TYPES[type].phrasings[phrasing].format(w=word))


def generate_instructions(n: int, seed: int = 0, types: Sequence[str] | None = None) -> list[Instruction]:
    """``n`` instructions drawn with ``seed``: instruction i takes its type, phrasing and word from
    its own stream; no two share a (type, word), so no instruction is a paraphrase of another
    (``bundled_splits`` cuts one such list into train, val and held-out)."""
    types = tuple(TYPES) if types is None else tuple(types)
    for t in types:
        if t not in TYPES:
            raise ConfigError(f"types: {t!r} is not an instruction type; choose one of {', '.join(TYPES)}")
    words = vocabulary()
    if n > len(types) * len(words):
        raise ConfigError(f"n: at most {len(types) * len(words)} distinct instructions of these types, asked for {n}")
    out, seen, i = [], set(), 0
    while len(out) < n:
        d = Draw(seed, "instruction", i)
        i += 1
        t, w = d.choice(types), d.choice(words)
        if (t, w) in seen:
            continue
        seen.add((t, w))
        out.append(make_instruction(t, w, d.below(len(TYPES[t].phrasings))))
    return out


@cache
def _patterns() -> list[tuple[re.Pattern, str, int]]:
    return [(re.compile(re.escape(p).replace(re.escape("{w}"), "([a-z]+)")), name, k)
            for name, t in TYPES.items() for k, p in enumerate(t.phrasings)]


def parse_instruction(prompt: str) -> Instruction:
    """The instruction whose prompt is ``prompt``; DataError when no phrasing matches it."""
    for pattern, name, k in _patterns():
        m = pattern.fullmatch(prompt)
        if m:
            return make_instruction(name, m.group(1), k)
    raise DataError(f"prompt {prompt[:60]!r} is none of the instruction phrasings (axon.feedback.instructions.TYPES)")


def instruction_gold(prompt: str, response: str) -> float:
    """The gold judge of the instruction setup as a function of (prompt, response)."""
    return parse_instruction(prompt).judge(response)


def instruction_demonstrations(instructions: Sequence[Instruction], seed: int = 0) -> list[dict]:
    """SFT rows ``{"prompt", "response"}``: each instruction with its reference."""
    return [{"prompt": x.prompt, "response": x.reference(seed)} for x in instructions]


# --------------------------------------------------------------------------------------------
# Candidates for comparisons, until an SFT model samples them


def near_miss(x: Instruction, seed: int = 0) -> str:
    """A response that almost follows ``x`` and scores below 1: the mistake a weak model makes."""
    w, d = x.params["word"], Draw(seed, "near_miss", x.prompt)
    if x.type == "cheerful":
        return TYPES["sad"].reference(w, d)
    if x.type == "sad":
        return TYPES["cheerful"].reference(w, d)
    if x.type == "three_words":
        return f"{w.capitalize()} is {d.choice(ADJECTIVES)} and {d.choice(ADJECTIVES)}."
    if x.type == "end_with":
        return f"{w.capitalize()} is {d.choice(ADJECTIVES)}, my lord."
    if x.type == "count_letters":
        wrong = [k for k in range(1, 11) if k != len(w)]
        return f"{w.capitalize()} has {NUMBER_WORDS[d.choice(wrong)]} letters."
    if x.type == "repeat":
        return d.choice([w, f"{w} {w} {w}", f"{w}, I say, {w}"])
    return d.choice([w, w.capitalize(), f"{w.upper()} I say"])  # capitals


def corrupt(text: str, seed: int = 0) -> str:
    """``text`` with one random edit: a word dropped, a word doubled, the words reversed, or the
    case flipped."""
    d = Draw(seed, "corrupt", text)
    words = text.split()
    edit = d.below(4)
    if edit == 0 and len(words) > 1:
        del words[d.below(len(words))]
    elif edit == 1:
        k = d.below(len(words))
        words.insert(k, words[k])
    elif edit == 2 and len(words) > 1:
        words.reverse()
    else:
        return text.lower() if text != text.lower() else text.upper()
    return " ".join(words)


def random_response(seed: int = 0, *keys) -> str:
    """One to six random vocabulary words: a response that ignores the instruction."""
    d, words = Draw(seed, "random_response", *keys), vocabulary()
    return " ".join(d.choice(words) for _ in range(1 + d.below(6)))


def candidates(x: Instruction, seed: int = 0) -> list[str]:
    """Four responses: the reference (scores 1), a near miss (below 1), the reference with one
    random edit (often still right: a cheerful line reversed is still cheerful) and random words
    (about 0). Some tie under the judge; comparisons skip ties. Over 2,000 instructions of every
    type they score 1.0, 0.31, 0.72 and 0.07 on average."""
    ref = x.reference(seed)
    return [ref, near_miss(x, seed), corrupt(ref, seed), random_response(seed, x.prompt)]
