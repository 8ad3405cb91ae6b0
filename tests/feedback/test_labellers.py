"""Simulated labellers: flip rates as configured, the adversary, rankings best first, determinism."""

import itertools

import pytest
from scipy import stats

from axon.errors import ConfigError
from axon.feedback.instructions import TYPES, candidates, generate_instructions, instruction_gold
from axon.feedback.labellers import (
    DEFAULT_LABELLERS,
    Labeller,
    make_comparisons,
    make_rankings,
    observed_flips,
    ranking_pairs,
)
from axon.feedback.rand import Draw

# a gold judge with no ties among distinct lengths, and fast: the longer response is better
LENGTH = lambda prompt, response: float(len(response))  # noqa: E731
P_FALSE_ALARM = 1e-6  # per check: the probability a correct labeller falls outside its bound


def binomial_bounds(n: int, p: float) -> tuple[int, int]:
    """Counts of flips a labeller of flip rate p leaves only with probability P_FALSE_ALARM."""
    return int(stats.binom.ppf(P_FALSE_ALARM / 2, n, p)), int(stats.binom.isf(P_FALSE_ALARM / 2, n, p))


def length_data(n_prompts: int, k: int = 6):
    prompts = [f"prompt {i}" for i in range(n_prompts)]
    return prompts, [["x" * (j + 1) for j in range(k)] for _ in prompts]


def test_empirical_flip_rates_match_each_labellers_noise():
    prompts, cands = length_data(1500)  # 15 pairs each: ~4,500 comparisons per labeller
    comps = make_comparisons(prompts, cands, LENGTH, DEFAULT_LABELLERS, seed=0)
    assert len(comps) == 1500 * 15
    flips = observed_flips(comps, LENGTH)
    for lab in DEFAULT_LABELLERS:
        k, n = flips[lab.id]
        low, high = binomial_bounds(n, lab.flip)
        assert low <= k <= high, f"{lab.id}: {k}/{n} flips, expected {lab.flip} (bounds {low}..{high})"
        assert abs(n - len(comps) / 5) < 6 * (len(comps) * 0.2 * 0.8) ** 0.5  # labellers drawn uniformly


def test_the_adversary_flips_more_often_than_not():
    assert [lab.adversarial for lab in DEFAULT_LABELLERS] == [False] * 4 + [True]
    prompts, cands = length_data(300)
    adversary = Labeller("adv", 0.85)
    k, n = observed_flips(make_comparisons(prompts, cands, LENGTH, [adversary], seed=1), LENGTH)["adv"]
    assert k > binomial_bounds(n, 0.5)[1]  # beyond what a coin would do
    assert binomial_bounds(n, 0.85)[0] <= k


def test_compare_gives_the_jsonl_form_and_orients_by_gold():
    honest, liar = Labeller("h", 0.0), Labeller("l", 1.0)
    c = honest.compare("Say hi.", "hi", "hello there", LENGTH, Draw(0, "c"))
    assert c == {"prompt": "Say hi.", "chosen": "hello there", "rejected": "hi", "labeller": "h"}
    assert liar.compare("Say hi.", "hi", "hello there", LENGTH, Draw(0, "c"))["chosen"] == "hi"
    # a tie has no right answer: a fair coin, whatever the noise
    firsts = [liar.prefers_first(1.0, 1.0, Draw(0, "tie", i)) for i in range(2000)]
    low, high = binomial_bounds(2000, 0.5)
    assert low <= sum(firsts) <= high


def test_ties_and_identical_responses_are_skipped_unless_kept():
    cands = [["aa", "bb", "aa", "ccc"]]  # aa/bb tie on length; aa/aa identical
    skipped = make_comparisons(["p"], cands, LENGTH, seed=0)
    assert len(skipped) == 3 and all(len(c["chosen"]) != len(c["rejected"]) for c in skipped)
    kept = make_comparisons(["p"], cands, LENGTH, seed=0, keep_ties=True)
    assert len(kept) == 5  # 6 pairs less the identical one
    assert len(make_comparisons(["p"], [["x" * i for i in range(1, 9)]], LENGTH, max_pairs=5)) == 5


def test_comparisons_are_a_pure_function_of_their_arguments():
    prompts, cands = length_data(50)
    a = make_comparisons(prompts, cands, LENGTH, seed=3)
    assert a == make_comparisons(prompts, cands, LENGTH, seed=3)
    assert a != make_comparisons(prompts, cands, LENGTH, seed=4)
    # a prompt's comparisons do not depend on the prompts after it
    assert make_comparisons(prompts[:10], cands[:10], LENGTH, seed=3) == a[: 10 * 15]
    assert all(set(c) == {"prompt", "chosen", "rejected", "labeller"} for c in a)


def test_rankings_are_best_first():
    responses = ["bb", "a", "dddd", "ccc"]  # gold order: 2, 3, 0, 1
    best_first = Labeller("h", 0.0).rank("p", responses, LENGTH, Draw(0, "r"))
    assert best_first == {"prompt": "p", "responses": responses, "ranking": [2, 3, 0, 1], "labeller": "h"}
    assert Labeller("l", 1.0).rank("p", responses, LENGTH, Draw(0, "r"))["ranking"] == [1, 0, 3, 2]
    pairs = ranking_pairs(best_first)
    assert len(pairs) == 6 and all(len(c["chosen"]) > len(c["rejected"]) for c in pairs)
    assert all(c["labeller"] == "h" for c in pairs)


def test_a_noisy_rankers_pairs_mostly_agree_with_gold():
    prompts, cands = length_data(400, k=4)
    ranked = make_rankings(prompts, cands, LENGTH, [Labeller("n", 0.2)], seed=0)
    assert all(sorted(r["ranking"]) == [0, 1, 2, 3] for r in ranked)
    k, n = observed_flips([c for r in ranked for c in ranking_pairs(r)], LENGTH)["n"]
    assert n == 400 * 6
    assert 0.05 < k / n < 0.4  # noisy, yet far better than chance (insertion compounds single flips)
    assert sum(r["ranking"] == [3, 2, 1, 0] for r in ranked) > 100


def test_labellers_on_instruction_candidates():
    plain = [t for t in TYPES if not TYPES[t].needs_vader]
    xs = generate_instructions(300, seed=2, types=plain)
    comps = make_comparisons([x.prompt for x in xs], [candidates(x) for x in xs], instruction_gold, seed=0)
    flips = observed_flips(comps, instruction_gold)
    assert set(flips) == {lab.id for lab in DEFAULT_LABELLERS}
    for lab in DEFAULT_LABELLERS:
        k, n = flips[lab.id]
        low, high = binomial_bounds(n, lab.flip)
        assert low <= k <= high, lab


def test_labeller_checks_its_fields():
    with pytest.raises(ConfigError, match="labeller x: flip: must be a probability"):
        Labeller("x", 1.5)
    with pytest.raises(ConfigError, match="labeller.id"):
        Labeller("", 0.1)
    with pytest.raises(ConfigError, match="labellers: ids must be distinct"):
        make_comparisons(["p"], [["a", "bb"]], LENGTH, [Labeller("a", 0.1), Labeller("a", 0.2)])
    with pytest.raises(ConfigError, match="candidates: one list of responses per prompt"):
        make_comparisons(["p", "q"], [["a", "bb"]], LENGTH)


def test_all_pairs_of_k_candidates():
    prompts, cands = length_data(1, k=5)
    comps = make_comparisons(prompts, cands, LENGTH, seed=0)
    assert {frozenset((c["chosen"], c["rejected"])) for c in comps} == {
        frozenset(p) for p in itertools.combinations(cands[0], 2)}
