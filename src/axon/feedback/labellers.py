"""Simulated labellers: noisy, and some adversarial, comparisons of responses under a gold judge.

InstructGPT's reward model is trained on comparisons by about 40 contractors who agree with each
other ~73% of the time (Ouyang et al. 2022, sec. 5.1). A simulated labeller stands in for one:
it sees two responses to a prompt, and prefers the one the gold judge scores higher -- except
that with probability ``flip`` it reports the opposite:

    P(labeller prefers a over b) = 1 - flip    if gold(a) > gold(b)
                                 = flip        if gold(a) < gold(b)
                                 = 1/2         if gold(a) = gold(b)   (no right answer)

We chose flips over a Boltzmann (Bradley-Terry) labeller, P(a) = sigmoid((gold(a) - gold(b)) / T),
because a flip rate is the quantity a model of labeller reliability estimates (Dawid & Skene
1979: each annotator's confusion matrix, here a single error rate), so an estimate can be checked
against the truth directly; and because it does not depend on the scale of the gold scores, which
differs between setups (VADER's [-1, 1], the instruction judges' [0, 1]). A labeller with
``flip > 0.5`` is adversarial: it prefers the worse response more often than not.

Two forms, both JSON lines:

    comparison   {"prompt", "chosen", "rejected", "labeller"}          (the reward-model task reads it)
    ranking      {"prompt", "responses": [...], "ranking": [...], "labeller"}
                 ranking = indices into responses, best first (InstructGPT's K-way form, sec. 3.5)

A labeller ranks K responses by insertion with its own noisy comparisons, so a ``flip = 0``
labeller gives the gold order and a ``flip = 1`` one exactly its reverse; ``ranking_pairs``
expands a ranking into its K(K-1)/2 comparisons, as InstructGPT trains on them.

Every draw comes from a stream seeded by ``(seed, prompt index, pair)`` (``axon.feedback.rand``),
so a set of comparisons is a pure function of its arguments.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import combinations

from axon.errors import check
from axon.feedback.rand import Draw

#: gold(prompt, response) -> score; higher is better
Gold = Callable[[str, str], float]


@dataclass(frozen=True)
class Labeller:
    id: str
    flip: float  # probability of reporting the opposite of the gold preference

    def __post_init__(self):
        check(isinstance(self.id, str) and self.id.strip() != "", "labeller.id", f"must be a non-empty string, got {self.id!r}")
        check(isinstance(self.flip, (int, float)) and not isinstance(self.flip, bool) and 0 <= self.flip <= 1,
              f"labeller {self.id}: flip", f"must be a probability in [0, 1], got {self.flip!r}")

    @property
    def adversarial(self) -> bool:
        return self.flip > 0.5

    def prefers_first(self, gold_a: float, gold_b: float, draw: Draw) -> bool:
        """Whether this labeller prefers the response scored ``gold_a`` (module docstring)."""
        if gold_a == gold_b:
            return draw.bernoulli(0.5)
        return (gold_a > gold_b) != draw.bernoulli(self.flip)

    def compare(self, prompt: str, a: str, b: str, gold: Gold, draw: Draw) -> dict:
        """``{"prompt", "chosen", "rejected", "labeller"}`` for responses ``a`` and ``b``."""
        first = self.prefers_first(gold(prompt, a), gold(prompt, b), draw)
        chosen, rejected = (a, b) if first else (b, a)
        return {"prompt": prompt, "chosen": chosen, "rejected": rejected, "labeller": self.id}

    def rank(self, prompt: str, responses: Sequence[str], gold: Gold, draw: Draw) -> dict:
        """``{"prompt", "responses", "ranking", "labeller"}``: ranking holds the indices of
        ``responses``, best first, by insertion with this labeller's comparisons."""
        scores = [gold(prompt, r) for r in responses]
        order: list[int] = []
        for i in range(len(responses)):
            pos = 0
            while pos < len(order) and not self.prefers_first(scores[i], scores[order[pos]], draw):
                pos += 1
            order.insert(pos, i)
        return {"prompt": prompt, "responses": list(responses), "ranking": order, "labeller": self.id}


#: InstructGPT-like mix: four honest labellers of growing noise and one adversary
DEFAULT_LABELLERS = (Labeller("l0", 0.05), Labeller("l1", 0.1), Labeller("l2", 0.2), Labeller("l3", 0.3),
                     Labeller("l4", 0.85))


def _check_inputs(prompts: Sequence[str], candidates: Sequence[Sequence[str]], labellers: Sequence[Labeller]):
    check(len(prompts) == len(candidates), "candidates",
          f"one list of responses per prompt: {len(prompts)} prompts, {len(candidates)} lists")
    check(len(labellers) > 0, "labellers", "need at least one labeller")
    check(len({lab.id for lab in labellers}) == len(labellers), "labellers", "ids must be distinct")


def make_comparisons(prompts: Sequence[str], candidates: Sequence[Sequence[str]], gold: Gold,
                     labellers: Sequence[Labeller] = DEFAULT_LABELLERS, seed: int = 0,
                     max_pairs: int | None = None, keep_ties: bool = False) -> list[dict]:
    """Comparisons of the candidate responses of each prompt, each by a labeller drawn uniformly.

    Every pair of a prompt's candidates is compared (InstructGPT's K choose 2), or ``max_pairs``
    of them drawn at random. A pair the gold judge ties carries no right answer and is skipped
    unless ``keep_ties``; a pair of identical strings is always skipped."""
    _check_inputs(prompts, candidates, labellers)
    out = []
    for i, (prompt, cands) in enumerate(zip(prompts, candidates)):
        scores = [gold(prompt, c) for c in cands]
        pairs = [(j, k) for j, k in combinations(range(len(cands)), 2)
                 if cands[j] != cands[k] and (keep_ties or scores[j] != scores[k])]
        if max_pairs is not None and len(pairs) > max_pairs:
            pairs = sorted(Draw(seed, "pairs", i).sample(pairs, max_pairs))
        for j, k in pairs:
            d = Draw(seed, "compare", i, j, k)
            labeller = d.choice(labellers)
            if d.bernoulli(0.5):  # which response is shown first: no side is favoured
                j, k = k, j
            first = labeller.prefers_first(scores[j], scores[k], d)
            chosen, rejected = (cands[j], cands[k]) if first else (cands[k], cands[j])
            out.append({"prompt": prompt, "chosen": chosen, "rejected": rejected, "labeller": labeller.id})
    return out


def make_rankings(prompts: Sequence[str], candidates: Sequence[Sequence[str]], gold: Gold,
                  labellers: Sequence[Labeller] = DEFAULT_LABELLERS, seed: int = 0) -> list[dict]:
    """One ranking per prompt of its candidates, by a labeller drawn uniformly."""
    _check_inputs(prompts, candidates, labellers)
    out = []
    for i, (prompt, cands) in enumerate(zip(prompts, candidates)):
        d = Draw(seed, "rank", i)
        out.append(d.choice(labellers).rank(prompt, cands, gold, d))
    return out


def ranking_pairs(ranked: dict) -> list[dict]:
    """The K(K-1)/2 comparisons a ranking implies: each response chosen over every one below it."""
    r, order = ranked["responses"], ranked["ranking"]
    return [{"prompt": ranked["prompt"], "chosen": r[a], "rejected": r[b], "labeller": ranked["labeller"]}
            for n, a in enumerate(order) for b in order[n + 1:]]


def observed_flips(comparisons: Sequence[dict], gold: Gold) -> dict[str, tuple[int, int]]:
    """labeller id -> (comparisons against the gold judge, comparisons the judge does not tie):
    the truth an estimate of each labeller's reliability is checked against."""
    out: dict[str, list[int]] = {}
    for c in comparisons:
        g_chosen, g_rejected = gold(c["prompt"], c["chosen"]), gold(c["prompt"], c["rejected"])
        if g_chosen != g_rejected:
            counts = out.setdefault(c["labeller"], [0, 0])
            counts[0] += g_chosen < g_rejected
            counts[1] += 1
    return {k: (v[0], v[1]) for k, v in out.items()}
