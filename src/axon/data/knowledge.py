"""A generated knowledge base of invented entities, for retrieval-augmented generation (issue 23).

No model can know these facts in advance: the people, their towns and their years are drawn from a
seeded generator. Each entity has four facts; each fact is one passage; each fact is asked by several
paraphrased questions, most of which share no content word with the passage but the name (so a
lexical retriever must find the entity by name and then guess the fact, where a dense one can learn
that "hometown" asks for "born in"):

    entity    Vorani Teldak
    passages  "Vorani Teldak was born in Qelmora."             (relation born_in)
              "Vorani Teldak worked as a cartographer."        (occupation)
              "Vorani Teldak was born in the year 1843."       (birth_year)
              "Vorani Teldak played the viola."                (instrument)
    questions "Where was Vorani Teldak born?"  "What is the hometown of Vorani Teldak?" ... -> "Qelmora"

The entities are split into train and test (``test_fraction``): the questions of a test entity are
never trained on, though its passages are in the collection every retriever searches, so a test
question is answered by retrieving, not by memory.

    kb = knowledge_base(entities=200, seed=0)
    kb.passages   [Passage(id, text, entity, relation), ...]      (every entity's, one per fact)
    kb.questions  [Question(text, answer, passage_id, entity, split), ...]
    kb.write(folder)  -> passages.jsonl, questions.jsonl          (axon's JSONL formats)
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

ONSETS = ("b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "th", "br", "kr", "st", "qu", "")
VOWELS = ("a", "e", "i", "o", "u", "ai", "ei", "ou")
CODAS = ("", "", "n", "r", "l", "k", "s", "th", "m", "nd")
OCCUPATIONS = ("a cartographer", "a glassblower", "a beekeeper", "an astronomer", "a bookbinder", "a ferryman",
               "a clockmaker", "a herbalist", "a stonemason", "a weaver", "a lighthouse keeper", "a cooper",
               "a falconer", "a surveyor", "a tanner", "a chandler")
INSTRUMENTS = ("the viola", "the oboe", "the harp", "the lute", "the cello", "the bassoon", "the zither",
               "the flute", "the dulcimer", "the horn", "the fiddle", "the harpsichord")

# relation -> (the passage, the questions that ask it); {e} is the entity, {a} the answer
RELATIONS = {
    "born_in": ("{e} was born in {a}.",
                ("Where was {e} born?", "What is the hometown of {e}?", "Which town does {e} come from?",
                 "Name the birthplace of {e}.")),
    "occupation": ("{e} worked as {a}.",
                   ("What did {e} do for a living?", "What was the trade of {e}?", "What job did {e} have?",
                    "How did {e} earn a wage?")),
    "birth_year": ("{e} was born in the year {a}.",
                   ("When was {e} born?", "In what year did {e} come into the world?",
                    "What year is the birth of {e}?", "How long ago, in which year, was {e} born?")),
    "instrument": ("{e} played {a}.",
                   ("What instrument did {e} play?", "Which instrument was {e} known for?",
                    "On what did {e} make music?", "What was the instrument of {e}?")),
}


@dataclass(frozen=True)
class Passage:
    id: int
    text: str
    entity: str
    relation: str


@dataclass(frozen=True)
class Question:
    text: str
    answer: str
    passage_id: int  # the passage that holds the answer
    entity: str
    split: str  # "train" or "test": by entity


@dataclass
class KnowledgeBase:
    passages: list[Passage]
    questions: list[Question]

    def split(self, name: str) -> list[Question]:
        return [q for q in self.questions if q.split == name]

    def write(self, folder) -> tuple[Path, Path]:
        """``passages.jsonl`` ({"id", "text", "entity", "relation"}) and ``questions.jsonl`` ({"question",
        "answer", "passage_id", "entity", "split"}) in ``folder``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        p, q = folder / "passages.jsonl", folder / "questions.jsonl"
        p.write_text("".join(json.dumps(asdict(x)) + "\n" for x in self.passages))
        q.write_text("".join(json.dumps({"question": x.text, **{k: v for k, v in asdict(x).items() if k != "text"}})
                             + "\n" for x in self.questions))
        return p, q


def _word(rng: np.random.Generator, syllables: int) -> str:
    return "".join(ONSETS[rng.integers(len(ONSETS))] + VOWELS[rng.integers(len(VOWELS))] + CODAS[rng.integers(len(CODAS))]
                   for _ in range(syllables)).capitalize()


def _unique(rng: np.random.Generator, n: int, make) -> list[str]:
    out: list[str] = []
    seen: set[str] = set()
    while len(out) < n:
        w = make()
        if w not in seen and len(w) > 3:
            seen.add(w)
            out.append(w)
    return out


def _friends(names: list[str]) -> str:
    return "a friend of " + (names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1])


def knowledge_base(entities: int = 200, seed: int = 0, test_fraction: float = 0.25, towns: int = 40,
                   mentions: int = 0) -> KnowledgeBase:
    """``entities`` invented people with four facts each (see the module docstring), the same for the same
    arguments; the last ``test_fraction`` of them (in a seeded order) are the test entities.

    ``mentions`` > 0 names that many other people (drawn at random) in every passage -- "Vorani Teldak, a friend
    of Bel Kasru and Odo Stim, was born in Qelmora." -- so a name is no longer a key to its own four passages:
    it occurs in about 4 * (1 + mentions) of them, the others about someone else, and a retriever must tell the
    subject from a friend (lexical matching cannot: the words are the same)."""
    if entities < 2 or not 0 < test_fraction < 1:
        raise ValueError(f"need >= 2 entities and a test fraction in (0, 1), got {entities}, {test_fraction}")
    if not 0 <= mentions < entities:
        raise ValueError(f"mentions must be in [0, entities), got {mentions}")
    rng = np.random.default_rng(seed)
    town_names = _unique(rng, towns, lambda: _word(rng, 2 + int(rng.integers(2))))
    names = _unique(rng, entities, lambda: f"{_word(rng, 2)} {_word(rng, 2 + int(rng.integers(2)))}")
    n_test = max(1, int(round(entities * test_fraction)))
    test = set(rng.permutation(entities)[:n_test].tolist())
    passages: list[Passage] = []
    questions: list[Question] = []
    for i, name in enumerate(names):
        answers = {"born_in": town_names[rng.integers(towns)], "occupation": OCCUPATIONS[rng.integers(len(OCCUPATIONS))],
                   "birth_year": str(int(rng.integers(1650, 2000))), "instrument": INSTRUMENTS[rng.integers(len(INSTRUMENTS))]}
        split = "test" if i in test else "train"
        for relation, (passage, asks) in RELATIONS.items():
            pid = len(passages)
            text = passage.format(e=name, a=answers[relation])
            if mentions:
                picks = rng.choice(entities - 1, size=mentions, replace=False)
                others = [names[j + (j >= i)] for j in picks.tolist()]  # anyone but the subject
                text = f"{name}, {_friends(others)}," + text[len(name):]
            passages.append(Passage(pid, text, name, relation))
            for ask in asks:
                questions.append(Question(ask.format(e=name), answers[relation], pid, name, split))
    return KnowledgeBase(passages, questions)


__all__ = ["KnowledgeBase", "Passage", "Question", "RELATIONS", "knowledge_base"]
