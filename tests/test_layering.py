"""Which layer may import which: axon.config depends on nothing above it, nn/ knows no model family.

The rules are read statically: every ``import`` statement of src/axon, function-local ones
included, so a forbidden import fails here even where no test happens to execute it. Values
that a lower layer keeps as a copy so as not to import upwards (the optimizer names, ...) are
checked against their originals at the end.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

from axon.config import OPTIMIZER_NAMES

SRC = Path(__file__).resolve().parents[1] / "src"


@dataclass(frozen=True)
class Rule:
    """What the modules of ``covers`` (a module, or a package and everything under it) may import.

    ``forbidden``: axon modules or packages they must not import. ``only``: when set, the only
    axon modules or packages they may import. ``outside``: when set, the only imports from
    outside axon allowed besides the standard library."""

    covers: str
    why: str
    forbidden: tuple[str, ...] = ()
    only: tuple[str, ...] | None = None
    outside: tuple[str, ...] | None = None


RULES = [
    Rule("axon.errors", "every layer raises its errors and runs check(): it must sit below them all",
         only=(), outside=()),
    Rule("axon.nn", "building blocks take their options as arguments; they read no run or model-family config",
         forbidden=("axon.train", "axon.lab", "axon.data", "axon.config", "axon.models", "axon.objectives")),
]


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def imports() -> dict[str, set[str]]:
    """Module -> every module it imports anywhere in its file. ``from a.b import c`` counts a.b and
    a.b.c (c may be a submodule); relative imports are resolved."""
    out: dict[str, set[str]] = {}
    for path in sorted((SRC / "axon").rglob("*.py")):
        name = _module_name(path)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                found.add(base)
                found.update(f"{base}.{a.name}" for a in node.names if a.name != "*")
        out[name] = found
    return out


def _third_party(name: str) -> bool:
    top = name.partition(".")[0]
    return top != "axon" and top not in sys.stdlib_module_names and top != "__future__"


def _breaks(rule: Rule, name: str) -> bool:
    if _within(name, "axon"):
        if name == "axon" or _within(name, rule.covers):
            return False  # its own package; `from axon import X` is judged as axon.X
        if any(_within(name, f) for f in rule.forbidden):
            return True
        return rule.only is not None and not any(_within(name, o) for o in rule.only)
    return rule.outside is not None and _third_party(name) and name.partition(".")[0] not in rule.outside


def violations(rule: Rule) -> list[str]:
    """'module imports name' for each import that breaks ``rule`` (a.b, not also a.b.c)."""
    found = []
    for module, names in imports().items():
        if _within(module, rule.covers):
            bad = {n for n in names if _breaks(rule, n)}
            found += [f"{module} imports {n}" for n in sorted(bad) if not any(_within(n, b) and n != b for b in bad)]
    return found


def test_the_scanner_sees_function_local_and_relative_imports():
    # cli.py imports axon.config inside a function only: a scanner that missed it would pass every rule.
    assert "axon.config" in imports()["axon.cli"]
    assert "axon.errors" in imports()["axon.cli"]  # at the top
    assert "axon.nn.masks" in imports()["axon.models.decoder"]


@pytest.mark.parametrize("rule", RULES, ids=[r.covers for r in RULES])
def test_layering(rule):
    assert rule.covers in imports(), f"{rule.covers} does not exist: the rule checks nothing"
    bad = violations(rule)
    assert not bad, f"{rule.covers}: {rule.why}; but\n  " + "\n  ".join(bad)


def test_nn_takes_no_config_object():
    # A layer that takes `cfg` reads some family's field names (nn/moe.py's build_moe once read
    # DecoderConfig.moe_*): building blocks take their options as arguments instead.
    for path in sorted((SRC / "axon" / "nn").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                args = node.args
                names = {a.arg for a in [*args.posonlyargs, *args.args, *args.kwonlyargs]}
                assert not names & {"cfg", "config"}, f"{path.name}: {node.name}() takes a config object"


# --------------------------------------------------------------------------------------------
# Copies kept below the layers they describe agree with their originals


def test_optimizer_names_are_the_trainers():
    from axon.train.optim import OPTIMIZERS

    assert set(OPTIMIZER_NAMES) == set(OPTIMIZERS)
    assert OPTIMIZER_NAMES == tuple(OPTIMIZERS)  # same order: the error message lists them
