"""Evaluation by prompting, the way the papers measure it (lm-evaluation-harness's requests and
task files): zero- and few-shot prompts, multiple choice, generation with stop strings, rolling
perplexity of whole documents.

    task YAML + JSONL --tasks_spec.load_task--> TaskSpec --harness.evaluate_tasks--> table / JSON
                                                             |
                                  scorer.LMScorer (loglikelihood, loglikelihood_rolling, generate_until)

This package imports torch, ``axon.generate`` and ``axon.errors`` (loading a run: ``axon.train.run``
inside ``LMScorer.from_run``); never a task module or the trainer.
"""

from axon.eval.prompting.harness import evaluate_tasks, resolve_tasks, results_table
from axon.eval.prompting.scorer import LMScorer
from axon.eval.prompting.tasks_spec import TaskSpec, build_example, load_task

__all__ = ["LMScorer", "TaskSpec", "build_example", "evaluate_tasks", "load_task", "resolve_tasks", "results_table"]
