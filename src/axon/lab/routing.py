"""Which inputs go where: a routed run's routing table by input type (issue 23).

Labelled texts -- JSONL rows ``{"text": ..., "label": ...}``, by default the bundled speakers'
validation passages (``bundled:speakers/val.jsonl``: the label is who speaks) -- are encoded with the
run's tokenizer and routed by its router (``axon.models.routed``: a sequence's route reads its first
``route_tokens`` tokens, so only those are fed); the table has one row per label, the share of its
texts sent to each expert, and the label's count:

    python -m axon.lab.routing runs/routed [--file bundled:speakers/val.jsonl] [--top 10]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import torch

from axon.errors import ConfigError


def routing_table(run_dir: str | Path, file: str = "bundled:speakers/val.jsonl", top: int | None = 10) -> tuple[list[str], list[tuple[str, int, list[float]]]]:
    """(expert names, rows (label, texts, share per expert)) for the ``top`` most frequent labels
    (None: all), most frequent first. Texts shorter than the route (route_tokens tokens) are skipped."""
    from axon.data.files import resolve_file
    from axon.models.routed import Routed
    from axon.train.run import load_run

    cfg, model, tokenizer = load_run(run_dir, device="cpu")
    if not isinstance(model, Routed):
        raise ConfigError(f"{run_dir}: a {cfg.model.family} run; the routing table is a routed run's (model.family=routed)")
    r = model.config.route_tokens
    by_label: dict[str, list[list[int]]] = defaultdict(list)
    path = resolve_file(file, "--file", cfg.data)
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path}:{i}: not valid JSON ({e.msg})") from None
        if not isinstance(row, dict) or "text" not in row or "label" not in row:
            raise ConfigError(f"{path}:{i}: expected an object with 'text' and 'label'")
        ids = tokenizer.encode(row["text"])
        if len(ids) >= r:
            by_label[str(row["label"])].append(ids[:r])
    labels = sorted(by_label, key=lambda k: (-len(by_label[k]), k))[:top]
    table = model.routing_table({k: torch.tensor(by_label[k]) for k in labels})
    names = [spec.split()[0] for spec in model.config.experts]
    return names, [(k, len(by_label[k]), table[k]) for k in labels]


def format_table(names: list[str], rows: list[tuple[str, int, list[float]]]) -> str:
    """A Markdown table: label, texts, then one column per expert (share of the label's texts)."""
    head = ["input", "texts", *(f"{i}: {n}" for i, n in enumerate(names))]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, n, shares in rows:
        lines.append("| " + " | ".join([label, str(n), *(f"{s:.2f}" for s in shares)]) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m axon.lab.routing", description=__doc__.splitlines()[0])
    p.add_argument("run_dir")
    p.add_argument("--file", default="bundled:speakers/val.jsonl", help="JSONL rows {text, label}")
    p.add_argument("--top", type=int, default=10, help="the most frequent labels (0: all)")
    args = p.parse_args(argv)
    try:
        print(format_table(*routing_table(args.run_dir, args.file, args.top or None)))
    except ConfigError as e:
        print(f"python -m axon.lab.routing: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
