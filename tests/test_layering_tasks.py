"""Which parts of the package may import which, checked statically (every import statement,
function-local ones included, read with ``ast``; nothing is imported).

* ``axon.data`` (tokenizers, shards, files, the cache, datasets of batches) sits below what
  trains and scores: it imports no task, trainer, lab, objective, model or evaluation.
* ``axon.eval`` scores models; the tasks call it, not the other way round.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "axon"


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import in the file, anywhere in it. ``from a import b`` counts as
    importing ``a.b`` too (b may be a module); relative imports are made absolute."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            out.append((node.lineno, module))
            out += [(node.lineno, f"{module}.{alias.name}") for alias in node.names if alias.name != "*"]
    return out


def modules_of(package: str) -> list[Path]:
    return sorted((PACKAGE / package.removeprefix("axon.").replace(".", "/")).rglob("*.py"))


def within(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def violations(package: str, forbidden: tuple[str, ...]) -> list[str]:
    return [f"{path.relative_to(SRC)}:{line} imports {module}"
            for path in modules_of(package)
            for line, module in imported_modules(path)
            if within(module, forbidden)]


def test_the_checker_sees_local_relative_and_from_imports(tmp_path, monkeypatch):
    pkg = tmp_path / "axon" / "data"
    pkg.mkdir(parents=True)
    (pkg / "x.py").write_text("def f():\n    from axon.train.run import load_run\n"
                              "from .. import models\nimport axon.eval\nfrom axon import lab\n")
    monkeypatch.setattr(sys.modules[__name__], "SRC", tmp_path)
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", tmp_path / "axon")
    found = violations("axon.data", ("axon.train", "axon.models", "axon.eval", "axon.lab"))
    assert sorted(v.split(" imports ")[1] for v in found) == ["axon.eval", "axon.lab", "axon.models",
                                                               "axon.train.run", "axon.train.run.load_run"], found


@pytest.mark.parametrize("package, forbidden", [
    ("axon.data", ("axon.train", "axon.tasks", "axon.lab", "axon.objectives", "axon.models", "axon.eval")),
    ("axon.eval", ("axon.tasks", "axon.data.classify", "axon.data.mlm", "axon.data.seq2seq", "axon.data.word2vec")),
])
def test_layers(package, forbidden):
    assert modules_of(package), f"no modules found for {package}"
    assert violations(package, forbidden) == []
