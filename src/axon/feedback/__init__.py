"""Feedback: the offline gold judges, simulated labellers and bundled data of the RLHF experiments.

InstructGPT (Ouyang et al. 2022) and DPO (Rafailov et al. 2023) learn from people's preferences
and are judged by people (or GPT-4). Offline on a CPU, programs play both parts: a gold judge
scores a response, simulated labellers turn gold scores into noisy comparisons, and a win rate
against the gold judge says which model follows prompts better.

    source.py        the bundled corpus as the source: its train/val split, characters, vocabulary
    rand.py          seeded draws that are the same on every Python (the bundled data is checked byte for byte)
    sentiment.py     DPO's IMDb setup on Shakespeare: line prefixes as prompts, VADER as the gold reward
    instructions.py  seven instruction types with a programmatic judge and a reference response each
    arithmetic.py    column arithmetic with exact answers: worked demonstrations and a 0/1 judge of the final answer
    labellers.py     labellers that flip the gold preference with a probability; comparisons, rankings
    stats.py         win rate of A over B by a gold judge, ties as half, with a Wilson or exact interval
    datasets.py      JSONL writers (SFT rows, comparisons, rankings, held-out prompts); the bundled data;
                     the gold judges by setup name (gold_for) and which one reads a set of prompts (prompt_setup)

Nothing here imports torch, a model or the trainer (tests/test_layering.py): the tasks that train
on these files import this package, never the other way round. VADER (``vaderSentiment``) is the
one optional dependency, needed only to score sentiment: ``pip install axon-lab[rlhf]``.
"""

from axon.feedback.arithmetic import Problem, arithmetic_gold, final_answer, generate_problems, parse_problem
from axon.feedback.datasets import GOLDS, bundled_path, gold_for, prompt_setup, read_jsonl, write_bundled
from axon.feedback.instructions import TYPES, Instruction, generate_instructions, instruction_gold, parse_instruction
from axon.feedback.labellers import DEFAULT_LABELLERS, Labeller, make_comparisons, make_rankings, ranking_pairs
from axon.feedback.sentiment import sentiment_gold, sentiment_prompts, sentiment_score
from axon.feedback.stats import WinRate, binomial_interval, judge_win_rate, win_rate

__all__ = ["Problem", "arithmetic_gold", "final_answer", "generate_problems", "parse_problem",
           "GOLDS", "bundled_path", "gold_for", "prompt_setup", "read_jsonl", "write_bundled", "TYPES", "Instruction",
           "generate_instructions", "instruction_gold", "parse_instruction", "DEFAULT_LABELLERS", "Labeller",
           "make_comparisons", "make_rankings", "ranking_pairs", "sentiment_gold", "sentiment_prompts",
           "sentiment_score", "WinRate", "binomial_interval", "judge_win_rate", "win_rate"]
