"""The task files shipped with Axon (``axon/eval/prompting/tasks/``), found by name.

    bundled_tasks() -> {name: path of its YAML file}      the name is the file's ``task`` key

``axon eval RUN --tasks NAME`` looks a name up here first, then reads it as a path.
"""

from __future__ import annotations

from pathlib import Path

TASKS_DIR = Path(__file__).resolve().parent / "tasks"


def bundled_tasks() -> dict[str, Path]:
    """Every bundled task: name -> YAML path ({} when none is shipped)."""
    import yaml

    out = {}
    for path in sorted(TASKS_DIR.glob("*.yaml")) if TASKS_DIR.is_dir() else []:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        name = raw.get("task") if isinstance(raw, dict) else None
        out[name if isinstance(name, str) else path.stem] = path
    return out


__all__ = ["bundled_tasks", "TASKS_DIR"]
