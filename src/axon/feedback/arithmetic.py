"""Arithmetic: a verifiable task, with exact answers, chain-of-thought demonstrations and a 0/1 judge.

GRPO was introduced on mathematics (DeepSeekMath, Shao et al. 2024) with a reward that checks
the final answer and nothing else. Offline, the smallest such task is column arithmetic:

    op   prompt            response (the demonstration: one column a step, ones first)      answer
    +    What is 478+56?   8+6=14, 7+5+1=13, 4+0+1=5. Answer: 534                            534
    -    What is 432-178?  12-8=4, 12-7=5, 3-1=2. Answer: 254                                254
    *    What is 7*486?    7*6=42, 7*8+4=60, 7*4+6=34. Answer: 3402                          3402

One step per column of the longer operand, from the ones digit up; a missing digit is 0.

    +   the column's digits, then "+c" when a carry c came in; the sum's ones digit is the
        answer's digit there and its tens digit the carry out
    -   the top digit less the borrow that came in, plus 10 when it is below the bottom digit
        (that column then lends 1 to the next); the difference is the answer's digit there
    *   the one-digit factor times the column's digit, then "+c" for the carry in; ones digit
        kept, tens carried

The answer is the last step's result followed by the ones digits of the steps before it, last
to first, without leading zeros (432-428: "12-8=4, 2-2=0, 4-4=0. Answer: 4"). Every step is local:
a digit copied from the prompt, a one-digit fact, a carry read off the step before; the answer
reads the steps back in reverse. A character model of a few hundred thousand parameters learns
part of it in minutes (docs/rlhf.md), which leaves a reward room to improve on.

Problems (``generate_problems``): the operators in turn; for + and - two operands uniform on
10..999 (so nine in ten have 3 digits; subtraction takes the larger first, so no answer is
negative); for * a factor 2-9 times a number on 10..999. Prompts are at most 16 characters and
demonstrations at most 40 (``MAX_RESPONSE_CHARS``), so a pair in the chat template (18 more
characters and the end marker) fits a block of 80.

The judge (``arithmetic_gold``) reads the problem from the prompt alone (``parse_problem``) and
the final answer from the response (``final_answer``): exactly one ``Answer:``, followed by an
integer written plainly (``-``, digits, no leading zero) and at most a full stop. It scores 1.0
when that integer is the exact answer and 0.0 otherwise -- a missing answer, two answers, a
leading zero, anything after the number. The chain of thought is not checked: a right answer
after a wrong step scores 1, the outcome reward of DeepSeekMath and of GSM8K-style tasks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from axon.errors import ConfigError, DataError
from axon.feedback.rand import Draw

OPS = ("+", "-", "*")
#: the operands of + and -, and the long factor of *, are uniform on LOW..HIGH (2 or 3 digits)
LOW, HIGH = 10, 999
MAX_PROMPT_CHARS = 16  # "What is 999+999?"
MAX_RESPONSE_CHARS = 40  # "9*9=81, 9*9+8=89, 9*9+8=89. Answer: 8991"

_PROMPT = re.compile(r"What is (\d+)([-+*])(\d+)\?")
_MARK = "Answer:"
_NUMBER = re.compile(r"\s*(-?(?:0|[1-9]\d*))\s*\.?\s*")  # what may follow the one "Answer:"


@dataclass(frozen=True)
class Problem:
    """``a op b`` with non-negative integers: ``prompt``, exact ``answer``, ``demonstration``."""

    a: int
    op: str
    b: int

    def __post_init__(self):
        if self.op not in OPS:
            raise ConfigError(f"op: {self.op!r} is not one of {' '.join(OPS)}")
        if self.a < 0 or self.b < 0:
            raise ConfigError(f"operands must be non-negative, got {self.a} and {self.b}")

    @property
    def prompt(self) -> str:
        return f"What is {self.a}{self.op}{self.b}?"

    @property
    def answer(self) -> int:
        return self.a + self.b if self.op == "+" else self.a - self.b if self.op == "-" else self.a * self.b

    @property
    def key(self) -> tuple[str, int, int]:
        """The problem up to commutation: 47+38 and 38+47 are one problem (splits are disjoint in keys)."""
        return (self.op, *sorted((self.a, self.b))) if self.op != "-" else (self.op, self.a, self.b)

    def steps(self) -> list[str]:
        """The column steps of the demonstration (module docstring), ones first."""
        if self.op == "-" and self.a < self.b:
            raise ConfigError(f"{self.prompt}: the demonstration of a subtraction needs a >= b")
        if self.op == "*":
            if not 0 <= self.a <= 9:
                raise ConfigError(f"{self.prompt}: the demonstration of a product needs a one-digit first factor")
            out, carry = [], 0
            for d in map(int, reversed(str(self.b))):
                v = self.a * d + carry
                out.append(f"{self.a}*{d}" + (f"+{carry}" if carry else "") + f"={v}")
                carry = v // 10
            return out
        xs, ys = str(self.a)[::-1], str(self.b)[::-1]
        width = max(len(xs), len(ys))
        xs, ys = xs.ljust(width, "0"), ys.ljust(width, "0")
        out, carry = [], 0
        for x, y in zip(map(int, xs), map(int, ys)):
            if self.op == "+":
                v = x + y + carry
                out.append(f"{x}+{y}" + (f"+{carry}" if carry else "") + f"={v}")
                carry = v // 10
            else:
                top = x - carry
                carry = int(top < y)
                top += 10 * carry
                out.append(f"{top}-{y}={top - y}")
        return out

    def demonstration(self) -> str:
        """The chain of thought and the final answer: ``"8+6=14, 7+5+1=13, 4+0+1=5. Answer: 534"``."""
        steps = self.steps()
        digits = steps[-1].rpartition("=")[2] + "".join(s[-1] for s in reversed(steps[:-1]))
        assert int(digits) == self.answer, (self, steps)  # the steps are the answer, by construction
        return f"{', '.join(steps)}. {_MARK} {int(digits)}"

    def to_dict(self) -> dict:
        return {"prompt": self.prompt, "answer": self.answer}


def draw_problem(seed: int, i: int, attempt: int = 0) -> Problem:
    """Problem i of ``seed``'s stream (module docstring): operator ``OPS[i % 3]``, operands from
    the item's own draws, whatever came before it (``attempt`` redraws it)."""
    d = Draw(seed, "arithmetic", i, attempt)
    op = OPS[i % len(OPS)]
    if op == "*":
        return Problem(2 + d.below(8), op, LOW + d.below(HIGH - LOW + 1))
    a, b = LOW + d.below(HIGH - LOW + 1), LOW + d.below(HIGH - LOW + 1)
    return Problem(max(a, b), op, min(a, b)) if op == "-" else Problem(a, op, b)


def generate_problems(n: int, seed: int = 0) -> list[Problem]:
    """``n`` problems drawn with ``seed``, the operators in turn, no two the same up to
    commutation (``Problem.key``; a repeat is drawn again), so a list cut in pieces gives
    disjoint splits. Each operator's problems are uniform over its distinct problems, with or
    without the repeats, so every piece of the list has the same distribution."""
    if n < 0:
        raise ConfigError(f"n: must be >= 0, got {n}")
    out, seen = [], set()
    for i in range(n):
        attempt, p = 0, draw_problem(seed, i)
        while p.key in seen:
            attempt += 1
            p = draw_problem(seed, i, attempt)
        seen.add(p.key)
        out.append(p)
    return out


def parse_problem(prompt: str) -> Problem:
    """The problem whose prompt is ``prompt`` ("What is 47+38?"); DataError when it is none."""
    m = _PROMPT.fullmatch(prompt)
    if m is None:
        raise DataError(f"prompt {prompt[:60]!r} is not an arithmetic problem (\"What is A+B?\", with + - or *)")
    return Problem(int(m.group(1)), m.group(2), int(m.group(3)))


def final_answer(response: str) -> int | None:
    """The integer after the one ``Answer:`` of ``response`` (module docstring), else None."""
    if response.count(_MARK) != 1:
        return None
    m = _NUMBER.fullmatch(response.partition(_MARK)[2])
    return None if m is None else int(m.group(1))


def arithmetic_gold(prompt: str, response: str) -> float:
    """1.0 when the response's final answer is the exact answer to the prompt's problem, else 0.0."""
    return float(final_answer(response) == parse_problem(prompt).answer)


def arithmetic_demonstrations(problems: list[Problem]) -> list[dict]:
    """SFT rows ``{"prompt", "response"}``: each problem with its worked answer."""
    return [{"prompt": p.prompt, "response": p.demonstration()} for p in problems]
