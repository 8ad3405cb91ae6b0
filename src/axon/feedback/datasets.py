"""Writers of the RLHF data files, for both setups, and the instruction dataset shipped in the package.

A setup is a way to make prompts and a gold judge of responses to them:

    setup          prompts                               gold(prompt, response)
    sentiment      the first words of corpus lines       VADER compound of the response, [-1, 1]
    instructions   seeded instructions of seven types     the instruction's judge, [0, 1]
    arithmetic     "What is 478+56?" (+ - *, 2-3 digits)  exact final answer: 1, else 0

and each writes three kinds of JSON-lines file, one object a line:

    SFT demonstrations   {"prompt", "response"}                           the SFT task reads them
    comparisons          {"prompt", "chosen", "rejected", "labeller"}     the reward-model task
    rankings             {"prompt", "responses", "ranking", "labeller"}   InstructGPT's K-way form
    held-out prompts     {"prompt"} (instructions also: "type", "params")  for sampling and win rates

Comparisons and rankings are made from candidate responses given per prompt: samples of an SFT
model once it exists, programmatic ones (``instructions.candidates``) until then.

The bundled datasets are shipped in ``axon/feedback/data/``:

* ``instructions_{train,val,heldout}.jsonl`` (``bundled:instructions/...``), ``write_bundled()``
  with its fixed seed and sizes: one list of ``generate_instructions`` cut in three, so no
  held-out instruction shares a type and word with a train one;
* ``arithmetic_{train,val,heldout}.jsonl`` (``bundled:arithmetic/...``),
  ``write_bundled_arithmetic()``: one list of ``arithmetic.generate_problems`` cut in three, so
  no problem is in two splits (47+38 and 38+47 count as one). Every split is SFT rows, the
  held-out one too: its prompts are the RL tasks' (a prompts file ignores the responses), and an
  SFT run given it as ``data.val_file`` reports its exact-match accuracy there.

Their bytes are a pure function of the code and the corpus: tests/feedback regenerates them and
compares. After changing a generator, regenerate them with ``python -m axon.feedback.make_data``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

from axon.atomic import AtomicFile
from axon.errors import ConfigError, DataError, reading, writing
from axon.feedback.arithmetic import arithmetic_demonstrations, arithmetic_gold, generate_problems, parse_problem
from axon.feedback.instructions import (
    generate_instructions, instruction_demonstrations, instruction_gold, parse_instruction,
)
from axon.feedback.labellers import DEFAULT_LABELLERS, Labeller, make_comparisons, make_rankings
from axon.feedback.sentiment import sentiment_gold

#: setup name -> gold(prompt, response)
GOLDS: dict[str, Callable[[str, str], float]] = {"sentiment": sentiment_gold, "instructions": instruction_gold,
                                                 "arithmetic": arithmetic_gold}
#: the setups whose judge reads its task from the prompt: setup -> parse(prompt), DataError when it is not one
PARSERS: dict[str, Callable[[str], object]] = {"instructions": parse_instruction, "arithmetic": parse_problem}

BUNDLED_DIR = Path(__file__).resolve().parent / "data"
BUNDLED_SEED = 0
BUNDLED_SIZES = {"train": 2000, "val": 200, "heldout": 200}
ARITHMETIC_SEED = 0
ARITHMETIC_SIZES = {"train": 5000, "val": 500, "heldout": 500}


def gold_for(setup: str) -> Callable[[str, str], float]:
    if setup not in GOLDS:
        raise ConfigError(f"setup: {setup!r} is not one of {', '.join(GOLDS)}")
    return GOLDS[setup]


def prompt_setup(prompts: Sequence[str]) -> str | None:
    """The setup of ``PARSERS`` whose parser reads every one of ``prompts`` (so its gold judge
    scores answers to them), else None; None for no prompts."""
    for setup, parse in PARSERS.items():
        try:
            for p in prompts:
                parse(p)
        except DataError:
            continue
        return setup if prompts else None
    return None


def write_jsonl(path: str | Path, rows: Sequence[dict], what: str = "JSONL file") -> Path:
    """``rows`` as JSON lines (UTF-8, "\\n"), written aside and renamed into place."""
    path = Path(path)
    with writing(path, what):
        path.parent.mkdir(parents=True, exist_ok=True)
        with AtomicFile(path, newline="\n") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


def read_jsonl(path: str | Path, keys: Sequence[str] = (), what: str = "JSONL file") -> list[dict]:
    """The objects of a JSON-lines file, each checked to hold ``keys``; DataError naming the line."""
    path = Path(path)
    with reading(path, what):
        lines = path.read_text(encoding="utf-8").split("\n")
    out = []
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{what} {path}:{n}: not valid JSON ({e.msg})") from None
        missing = [k for k in keys if not isinstance(obj, dict) or k not in obj]
        if missing:
            raise DataError(f"{what} {path}:{n}: expected an object with keys {', '.join(map(repr, keys))}; "
                            f"missing {', '.join(map(repr, missing))}")
        out.append(obj)
    return out


def write_sft(path: str | Path, rows: Sequence[dict]) -> Path:
    """SFT demonstrations ``{"prompt", "response"}``, both strings."""
    for i, r in enumerate(rows):
        if not (isinstance(r.get("prompt"), str) and isinstance(r.get("response"), str)):
            raise DataError(f"SFT row {i}: needs string 'prompt' and 'response', got {sorted(r)}")
    return write_jsonl(path, [{"prompt": r["prompt"], "response": r["response"]} for r in rows], "SFT file")


def write_comparisons(path: str | Path, setup: str, prompts: Sequence[str], candidates: Sequence[Sequence[str]],
                      labellers: Sequence[Labeller] = DEFAULT_LABELLERS, seed: int = 0,
                      max_pairs: int | None = None) -> Path:
    """Comparisons of each prompt's candidates by simulated labellers under ``setup``'s gold
    judge (``labellers.make_comparisons``)."""
    rows = make_comparisons(prompts, candidates, gold_for(setup), labellers, seed, max_pairs)
    return write_jsonl(path, rows, "comparisons file")


def write_rankings(path: str | Path, setup: str, prompts: Sequence[str], candidates: Sequence[Sequence[str]],
                   labellers: Sequence[Labeller] = DEFAULT_LABELLERS, seed: int = 0) -> Path:
    """One ranking of each prompt's candidates by a simulated labeller (``labellers.make_rankings``)."""
    return write_jsonl(path, make_rankings(prompts, candidates, gold_for(setup), labellers, seed), "rankings file")


def write_prompts(path: str | Path, prompts: Sequence[str | dict]) -> Path:
    """Held-out prompts: ``{"prompt"}`` per string, or the given objects (``Instruction.to_dict()``)."""
    return write_jsonl(path, [{"prompt": p} if isinstance(p, str) else p for p in prompts], "prompts file")


# --------------------------------------------------------------------------------------------
# The bundled instruction dataset


def bundled_path(split: str) -> Path:
    """``axon/feedback/data/instructions_{split}.jsonl``: train and val are SFT rows, heldout
    is prompts with their type and parameters."""
    if split not in BUNDLED_SIZES:
        raise ConfigError(f"split: {split!r} is not one of {', '.join(BUNDLED_SIZES)}")
    return BUNDLED_DIR / f"instructions_{split}.jsonl"


def bundled_instructions(seed: int = BUNDLED_SEED, sizes: dict[str, int] = BUNDLED_SIZES) -> dict[str, list]:
    """split -> its instructions: one generated list cut in order into ``sizes``."""
    xs = generate_instructions(sum(sizes.values()), seed)
    out, start = {}, 0
    for split, n in sizes.items():
        out[split], start = xs[start:start + n], start + n
    return out


def write_bundled(out_dir: str | Path = BUNDLED_DIR, seed: int = BUNDLED_SEED) -> list[Path]:
    """Write the bundled dataset into ``out_dir`` (the package's data folder by default)."""
    out_dir, splits = Path(out_dir), bundled_instructions(seed)
    return [write_sft(out_dir / "instructions_train.jsonl", instruction_demonstrations(splits["train"], seed)),
            write_sft(out_dir / "instructions_val.jsonl", instruction_demonstrations(splits["val"], seed)),
            write_prompts(out_dir / "instructions_heldout.jsonl", [x.to_dict() for x in splits["heldout"]])]



# --------------------------------------------------------------------------------------------
# The bundled arithmetic dataset


def arithmetic_path(split: str) -> Path:
    """``axon/feedback/data/arithmetic_{split}.jsonl``: SFT rows, every split."""
    if split not in ARITHMETIC_SIZES:
        raise ConfigError(f"split: {split!r} is not one of {', '.join(ARITHMETIC_SIZES)}")
    return BUNDLED_DIR / f"arithmetic_{split}.jsonl"


def write_bundled_arithmetic(out_dir: str | Path = BUNDLED_DIR, seed: int = ARITHMETIC_SEED,
                             sizes: dict[str, int] = ARITHMETIC_SIZES) -> list[Path]:
    """Write the bundled arithmetic dataset into ``out_dir``: one list of ``generate_problems``
    cut in order into ``sizes``, each piece's worked answers."""
    problems, out, start = generate_problems(sum(sizes.values()), seed), [], 0
    for split, n in sizes.items():
        rows = arithmetic_demonstrations(problems[start:start + n])
        out.append(write_sft(Path(out_dir) / f"arithmetic_{split}.jsonl", rows))
        start += n
    return out
