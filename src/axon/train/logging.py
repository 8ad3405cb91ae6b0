"""Run logging: metrics as JSONL (always), TensorBoard and Weights & Biases (by config)."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

from axon.atomic import atomic_write_text
from axon.errors import ConfigError, reading, writing


def resume_hint(run_dir: Path) -> str:
    """What a run stopped by a failed write says after the error: nothing is lost, go on later."""
    return f"; the checkpoints are intact: make room, then continue with axon train --resume {run_dir}"


class MetricsLogger:
    """Appends one JSON object per record to ``metrics.jsonl`` and mirrors numbers to TB / W&B."""

    def __init__(self, run_dir: Path, log_cfg, config_dict: dict | None = None, resume_step: int | None = None):
        self.path = run_dir / "metrics.jsonl"
        self.then = resume_hint(run_dir)
        with writing(self.path, "the metrics file", self.then):
            if resume_step is not None:
                truncate_metrics(self.path, resume_step)
            self.file = open(self.path, "a", buffering=1)
        self.tb = self.wandb_run = None
        if log_cfg.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise ConfigError("log.tensorboard: the tensorboard package is not installed (pip install tensorboard)") from None
            self.tb = SummaryWriter(str(run_dir / "tensorboard"))
        if log_cfg.wandb:
            try:
                import wandb
            except ImportError:
                raise ConfigError("log.wandb: the wandb package is not installed (pip install wandb)") from None
            self.wandb_run = wandb.init(
                project=log_cfg.wandb_project, mode=log_cfg.wandb_mode, dir=str(run_dir),
                name=run_dir.name, config=config_dict, resume="allow",
            )

    def log(self, record: dict) -> None:
        with writing(self.path, "the metrics file", self.then):
            self.file.write(json.dumps(record) + "\n")
        step = record["step"]
        numbers = {k: v for k, v in record.items() if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "step"}
        if self.tb is not None:
            for k, v in numbers.items():
                self.tb.add_scalar(k, v, step)
        if self.wandb_run is not None:
            self.wandb_run.log(numbers, step=step)

    def close(self) -> None:
        with writing(self.path, "the metrics file", self.then):
            self.file.close()
        if self.tb is not None:
            self.tb.close()
        if self.wandb_run is not None:
            self.wandb_run.finish()


def read_metrics(path: Path) -> list[dict]:
    """The records of a metrics.jsonl: one JSON object with an integer ``step`` per line.

    A torn last line (a kill or a full disk mid-write) is dropped silently; any other line that is
    not such a record (edited by hand, damaged) is skipped with one warning naming the file and
    line, so a resumed run or a report still reads the rest.
    """
    if not path.exists():
        return []
    with reading(path, "metrics file"):
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    out, bad = [], []
    for i, line in enumerate(lines, 1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            record = None
        if isinstance(record, dict) and isinstance(record.get("step"), int) and not isinstance(record["step"], bool):
            out.append(record)
        elif line.strip() and i < len(lines):
            bad.append(i)
    if bad:
        where = f"line {bad[0]}" + (f" and {len(bad) - 1} more" if len(bad) > 1 else "")
        warnings.warn(f"{path}: skipped {where}: not a metrics record (a JSON object with a step)", stacklevel=2)
    return out


def truncate_metrics(path: Path, step: int) -> None:
    """Drop records after ``step``: a resumed run logs those steps again."""
    if path.exists():
        kept = [r for r in read_metrics(path) if r["step"] <= step]
        atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in kept))  # a failed write keeps the old file


def plot_losses(run_dir: Path) -> Path | None:
    """loss.png: training and validation loss against tokens seen."""
    records = read_metrics(run_dir / "metrics.jsonl")
    train = [(r["tokens"], r["train_loss"]) for r in records if "train_loss" in r and math.isfinite(r["train_loss"])]
    val = [(r["tokens"], r["val_loss"]) for r in records if "val_loss" in r]
    if not train and not val:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    if train:
        ax.plot(*zip(*train), label="train", alpha=0.7, linewidth=1)
    if val:
        ax.plot(*zip(*val), "o-", label="validation", linewidth=1.5)
    ax.set_xlabel("tokens")
    ax.set_ylabel("loss (nats / token)")
    ax.set_title(run_dir.name)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    out = run_dir / "loss.png"
    fig.savefig(out)
    plt.close(fig)
    return out
