"""Win rate of one model's outputs over another's, by a gold judge, with a binomial interval.

InstructGPT's headline figure is how often labellers prefer a model's output to the 175B SFT
model's; DPO reports win rates judged by GPT-4. Here the judge is a gold function, and on the
same n prompts

    rate = (wins + ties / 2) / n

with a ``level`` confidence interval for a binomial proportion:

* ``wilson`` (Wilson 1927), the score interval: the set of p whose z-test accepts the observed
  proportion; it stays inside [0, 1] and is close to nominal coverage even for small n;
* ``exact`` (Clopper & Pearson 1934): inverts two one-sided binomial tests through beta quantiles,
  ``Beta(alpha/2; x, n - x + 1)`` and ``Beta(1 - alpha/2; x + 1, n - x)``; it covers at least
  ``level`` always, so it is wider.

A tie counts as half a win, so x may be a half-integer; both formulas are continuous in x and
take it as it is. (A tie has less variance than a coin flip, so the interval is slightly
conservative when there are many ties.) ``axon.lab.compare`` has Welch's t-test for means over
seeds; a proportion over prompts needs this instead, and it lives here because ``axon.lab`` sits
above the trainer (it launches and reads runs) while the feedback package sits below the tasks
and stays free of torch (tests/test_layering.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from statistics import NormalDist

from axon.errors import ConfigError, check

METHODS = ("wilson", "exact")


def binomial_interval(successes: float, n: int, level: float = 0.95, method: str = "wilson") -> tuple[float, float]:
    """The ``level`` confidence interval of a proportion ``successes / n`` (module docstring)."""
    check(isinstance(n, int) and n > 0, "n", f"need at least one trial, got {n!r}")
    check(0 <= successes <= n, "successes", f"must be in [0, n={n}], got {successes!r}")
    check(0 < level < 1, "level", f"must be in (0, 1), got {level!r}")
    alpha = 1 - level
    if method == "wilson":
        z = NormalDist().inv_cdf(1 - alpha / 2)
        p, z2 = successes / n, z * z
        denom = 1 + z2 / n
        centre = (p + z2 / (2 * n)) / denom
        half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denom
        return max(0.0, centre - half), min(1.0, centre + half)
    if method == "exact":
        from scipy.stats import beta

        low = 0.0 if successes == 0 else float(beta.ppf(alpha / 2, successes, n - successes + 1))
        high = 1.0 if successes == n else float(beta.ppf(1 - alpha / 2, successes + 1, n - successes))
        return low, high
    raise ConfigError(f"method: {method!r} is not one of {', '.join(METHODS)}")


@dataclass(frozen=True)
class WinRate:
    wins: int
    ties: int
    losses: int
    rate: float      # (wins + ties / 2) / n
    low: float
    high: float
    level: float
    method: str

    @property
    def n(self) -> int:
        return self.wins + self.ties + self.losses

    def __str__(self) -> str:
        return (f"{self.rate:.3f} [{self.low:.3f}, {self.high:.3f}] ({self.level:.0%} {self.method}; "
                f"{self.wins} wins, {self.ties} ties, {self.losses} losses)")


def win_rate(scores_a: Sequence[float], scores_b: Sequence[float], level: float = 0.95,
             method: str = "wilson") -> WinRate:
    """How often A's score beats B's on the same prompts, ties as half, with its interval."""
    check(len(scores_a) == len(scores_b), "scores_b", f"one score per prompt of A: {len(scores_a)} vs {len(scores_b)}")
    wins = sum(a > b for a, b in zip(scores_a, scores_b))
    ties = sum(a == b for a, b in zip(scores_a, scores_b))
    n = len(scores_a)
    low, high = binomial_interval(wins + ties / 2, n, level, method)
    return WinRate(wins, ties, n - wins - ties, (wins + ties / 2) / n if n else math.nan, low, high, level, method)


def judge_win_rate(gold: Callable[[str, str], float], prompts: Sequence[str], responses_a: Sequence[str],
                   responses_b: Sequence[str], level: float = 0.95, method: str = "wilson") -> WinRate:
    """``win_rate`` of A's responses over B's, each scored by ``gold(prompt, response)``."""
    check(len(prompts) == len(responses_a) == len(responses_b), "responses",
          f"one response of each model per prompt: {len(prompts)} prompts, {len(responses_a)} and {len(responses_b)}")
    return win_rate([gold(p, r) for p, r in zip(prompts, responses_a)],
                    [gold(p, r) for p, r in zip(prompts, responses_b)], level, method)
