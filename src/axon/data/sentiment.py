"""The sentiment-control data as files (``bundled:sentiment/``): DPO's IMDb setup rebuilt offline
(``axon.feedback.sentiment``), written into the cache on first use like ``bundled:labellers/``.

    train.jsonl     2,000 SFT demonstrations {"prompt", "response"}: the first 2-5 words of a line of
                    the corpus's train part and Shakespeare's continuation (the SFT task reads
                    them; the PPO task reads their prompts, and so does ``axon label``)
    val.jsonl       200 more demonstrations of the train part, other lines (SFT validation; the
                    prompts of the reward model's gold validation comparisons)
    heldout.jsonl   200 prompts {"prompt"} from the validation part of the corpus, none a prefix of a
                    train line (PPO's validation prompts, the figures of docs/rlhf.md)

A prompt is written as the corpus has it, without a separator after it: the reward model reads
``prompt + response`` as written, in training and in PPO alike. Deterministic: the seeds below
and the bundled corpus; ``python -m axon.data.sentiment --out DIR`` writes the same files.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


VERSION = 1
N_TRAIN, N_VAL, N_HELDOUT = 2000, 200, 200
SEED = 0
FILES = ("train.jsonl", "val.jsonl", "heldout.jsonl")


def write_sentiment_files(out_dir: str | Path) -> dict[str, int]:
    """Write the files of the module docstring into ``out_dir``; returns file -> lines."""
    from axon.feedback.sentiment import sentiment_items, sentiment_prompts

    demos = [{"prompt": p, "response": r} for p, r in sentiment_items("train", N_TRAIN + N_VAL, SEED)]
    rows = {"train.jsonl": demos[:N_TRAIN], "val.jsonl": demos[N_TRAIN:],
            "heldout.jsonl": [{"prompt": p} for p in sentiment_prompts("heldout", N_HELDOUT, SEED)]}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name, lines in rows.items():
        (out / name).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in lines), encoding="utf-8")
    return {name: len(lines) for name, lines in rows.items()}


def bundled_file(name: str, cache_dir: Path) -> Path:
    """The file ``sentiment/<file>`` of a ``bundled:`` name, written into ``cache_dir`` on first use."""
    from axon.data.cache import made_on_first_use

    return made_on_first_use(name, FILES, VERSION, cache_dir, write_sentiment_files)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m axon.data.sentiment", description="Write the sentiment-control files.")
    p.add_argument("--out", required=True, help="directory for train.jsonl, val.jsonl, heldout.jsonl")
    counts = write_sentiment_files(p.parse_args(argv).out)
    print(", ".join(f"{name}: {n} lines" for name, n in counts.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
