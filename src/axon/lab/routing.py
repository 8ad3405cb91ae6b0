"""Which inputs go where: a routed run's routing table by input type (issue 23).

Labelled texts -- JSONL rows ``{"text": ..., "label": ...}``, by default the bundled speakers'
validation passages (``bundled:speakers/val.jsonl``: the label is who speaks) -- are encoded with the
run's tokenizer and routed by its router (``axon.models.routed``: a sequence's route reads its first
``route_tokens`` tokens, so only those are fed); the table has one row per label, the share of its
texts sent to each expert, and the label's count:

    python -m axon.lab.routing runs/routed [--file bundled:speakers/val.jsonl] [--top 10]

A routed vision run's (``axon.models.routed_vision``) table reads the run's own validation images:
one row per class for a classifier (the digits, or the folder's classes), one row per set of
object classes present for a detector (e.g. ``circle+square``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import torch

from axon.errors import ConfigError


def routing_table(run_dir: str | Path, file: str | None = None, top: int | None = 10) -> tuple[list[str], list[tuple[str, int, list[float]]]]:
    """(expert names, rows (label, texts or images, share per expert)) for the ``top`` most frequent
    labels (None: all), most frequent first. Texts shorter than the route (route_tokens tokens) are
    skipped; ``file`` (default: the bundled speakers) is for text runs only."""
    from axon.models.routed import Routed
    from axon.models.routed_vision import RoutedVision
    from axon.train.run import load_run

    cfg, model, tokenizer = load_run(run_dir, device="cpu")
    if isinstance(model, RoutedVision):
        if file is not None:
            raise ConfigError("--file: a routed vision run is tabled on its own validation images; --file is for text runs")
        return _image_rows(cfg, model, top)
    if not isinstance(model, Routed):
        raise ConfigError(f"{run_dir}: a {cfg.model.family} run; the routing table is a routed run's "
                          "(model.family=routed or routed_vision)")
    return _text_rows(model, tokenizer, cfg, file or "bundled:speakers/val.jsonl", top)


def _text_rows(model, tokenizer, cfg, file: str, top: int | None):
    from axon.data.files import resolve_file

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


def _image_rows(cfg, model, top: int | None):
    """The validation images of the run's task, labelled by class (classifier) or by the set of
    object classes they hold (detector), routed in eval mode."""
    if model.config.detects:
        from axon.tasks.detect import load_detection

        _, _, images, targets, names, _ = load_detection(cfg)
        labels = ["+".join(names[c] for c in sorted(set(t[0].tolist()))) or "(empty)" for t in targets]
    else:
        from axon.tasks.image_classify import load_images

        _, _, images, y, names, _ = load_images(cfg)
        labels = [names[c] for c in y.tolist()]
    by_label: dict[str, list[int]] = defaultdict(list)
    for i, label in enumerate(labels):
        by_label[label].append(i)
    keep = sorted(by_label, key=lambda k: (-len(by_label[k]), k))[:top]
    model.eval()
    table = model.routing_table({k: images[torch.tensor(by_label[k])] for k in keep})
    names = [spec.split()[0] for spec in model.config.experts]
    return names, [(k, len(by_label[k]), table[k]) for k in keep]


def format_table(names: list[str], rows: list[tuple[str, int, list[float]]]) -> str:
    """A Markdown table: label, count (texts or images), then one column per expert (the share of
    the label's inputs routed to it)."""
    head = ["input", "count", *(f"{i}: {n}" for i, n in enumerate(names))]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, n, shares in rows:
        lines.append("| " + " | ".join([label, str(n), *(f"{s:.2f}" for s in shares)]) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m axon.lab.routing", description=__doc__.splitlines()[0])
    p.add_argument("run_dir")
    p.add_argument("--file", default=None, help="JSONL rows {text, label} (text runs; default: bundled:speakers/val.jsonl)")
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
