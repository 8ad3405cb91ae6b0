"""The trainer, its optimizers and schedules, checkpoints, and the wiring of a run."""

from axon.train.run import load_run, train
from axon.train.trainer import Trainer

__all__ = ["train", "load_run", "Trainer"]
