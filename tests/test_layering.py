"""Which layer may import which: axon.config depends on nothing above it, nn/ knows no model family.

The rules are read statically: every ``import`` statement of src/axon, function-local ones
included, so a forbidden import fails here even where no test happens to execute it; a
subprocess then checks what importing axon.config and building the default recipe's config
really load. Values that a lower layer keeps as a copy so as not to import upwards (the
optimizer names, the blocks progressive LoRA may target, ...) are checked against their originals at the end.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import typing
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

from axon.config import CORPUS_NAMES, OPTIMIZER_NAMES, TASK_NAMES

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"


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
    Rule("axon.config", "reading and validating a config must not load models, trainer, data or torch",
         only=("axon.errors", "axon.model_configs"), outside=("yaml",)),
    Rule("axon.model_configs", "the families' configs are part of the config layer (torch-free, no models)",
         only=("axon.errors", "axon.rope_scaling"), outside=()),
    Rule("axon.rope_scaling", "shared by the config layer and nn/: standard library only", only=(), outside=()),
    Rule("axon.nn", "building blocks take their options as arguments; they read no run or model-family config",
         forbidden=("axon.train", "axon.lab", "axon.data", "axon.config", "axon.model_configs", "axon.models",
                    "axon.objectives")),
    Rule("axon.data", "tokenizers, shards, files and the cache sit below what composes a run (tasks, trainer, lab)",
         forbidden=("axon.train", "axon.tasks", "axon.lab", "axon.objectives", "axon.models", "axon.eval")),
    Rule("axon.eval", "evaluation scores models; tasks call it, not the other way round", forbidden=("axon.tasks",)),
    Rule("axon.eval.prompting", "prompted evaluation scores any causal LM through its forward and the generation "
         "interface: it knows no task, objective, lab or trainer loop (a run is loaded through axon.train.run)",
         forbidden=("axon.tasks", "axon.objectives", "axon.lab", "axon.train.trainer", "axon.cli")),
    Rule("axon.models", "a model knows no trainer, task or lab: parallelism and optimizers are applied from outside",
         forbidden=("axon.train", "axon.tasks", "axon.lab", "axon.cli")),
    Rule("axon.feedback", "gold judges and labellers make and score the data the RLHF tasks train on: they sit below "
         "the tasks, know no model or trainer, and stay torch-free (axon.data's __init__ loads torch)",
         forbidden=("axon.train", "axon.models", "axon.tasks", "axon.lab", "axon.objectives", "axon.nn",
                    "axon.generate", "axon.eval", "axon.interop", "axon.data", "axon.cli"),
         outside=("vaderSentiment", "scipy")),
    Rule("axon.retrieval", "retrievers index and rank passages: they know no trainer, task, lab or CLI",
         forbidden=("axon.train", "axon.tasks", "axon.lab", "axon.cli")),
    Rule("axon.diffusion", "the diffusion process is tensor math that takes the denoiser as a callable: it knows no "
         "model family, task, trainer or data, so every task and sampler can use it",
         only=("axon.errors",), outside=("torch", "numpy")),
]

# Never loaded by `import axon.config`, nor by building and validating a run's config.
ABOVE_CONFIG = ("axon.models", "axon.train", "axon.nn", "axon.data", "axon.lab", "axon.tasks", "axon.generate",
                "axon.eval", "axon.interop", "axon.objectives", "axon.cli", "axon.diffusion", "axon.retrieval")


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


def test_lm_eval_is_imported_by_its_adapter_only():
    # lm-evaluation-harness is optional (axon-lab[eval]): `import axon`, every module and `axon eval
    # --tasks` must work without it, so no module but the adapter may import it, even function-locally
    # (axon lm-eval reaches it through the adapter; tests/eval/test_lm_eval_adapter.py runs both
    # commands with lm_eval made unimportable).
    adapter = "axon.eval.prompting.lm_eval_adapter"
    assert any(n.partition(".")[0] == "lm_eval" for n in imports()[adapter])  # the scan sees it
    users = sorted(m for m, names in imports().items() if any(n.partition(".")[0] == "lm_eval" for n in names))
    assert users == [adapter]
    assert adapter not in imports()["axon.eval.prompting"]  # the package's __init__ does not pull it in


def test_nn_takes_no_config_object():
    # A layer that takes `cfg` reads some family's field names (nn/moe.py's build_moe once read
    # DecoderConfig.moe_*): building blocks take their options as arguments instead.
    for path in sorted((SRC / "axon" / "nn").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                args = node.args
                names = {a.arg for a in [*args.posonlyargs, *args.args, *args.kwonlyargs]}
                assert not names & {"cfg", "config"}, f"{path.name}: {node.name}() takes a config object"


def _loaded_by(code: str) -> list[str]:
    """The axon modules (and torch, if so) loaded in a fresh interpreter by ``code``."""
    probe = code + "\nimport sys\nprint(*sorted(m for m in sys.modules if m.startswith(('axon', 'torch'))))"
    path = os.pathsep.join([str(SRC), *filter(None, [os.environ.get("PYTHONPATH")])])  # this checkout's axon first
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=120,
                         env={**os.environ, "PYTHONPATH": path})
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


@pytest.mark.parametrize("code", [
    "import axon.config",
    # the default recipe: model family, optimizer and every section built and validated
    "from axon.config import load_config\n"
    "cfg = load_config('configs/shakespeare_char.yaml', ['--optim.name=adamw', '--model.preset=tiny'])\n"
    "assert cfg.model.family == 'decoder' and cfg.optim.name == 'adamw'",
    # every family, from every preset
    "from axon.config import build_model_config\n"
    "from axon.model_configs import FAMILY_CONFIGS\n"
    "for name, f in FAMILY_CONFIGS.items():\n"
    "    for preset in f.presets: build_model_config({'family': name, 'preset': preset})",
], ids=["import", "default-recipe", "every-preset"])
def test_config_loads_nothing_above_it(code):
    loaded = _loaded_by(code)
    above = [m for m in loaded if m.startswith("torch") or any(_within(m, a) for a in ABOVE_CONFIG)]
    assert not above, f"{code!r} loads {above}"
    assert "axon.config" in loaded


# --------------------------------------------------------------------------------------------
# Copies kept below the layers they describe agree with their originals


def test_optimizer_names_are_the_trainers():
    from axon.train.optim import OPTIMIZERS

    assert set(OPTIMIZER_NAMES) == set(OPTIMIZERS)
    assert OPTIMIZER_NAMES == tuple(OPTIMIZERS)  # same order: the error message lists them


def test_the_config_knows_every_task():
    from axon.tasks import TASKS

    assert TASK_NAMES == tuple(TASKS)


def test_the_config_knows_every_dpo_loss():
    from axon.config import DPO_LOSSES
    from axon.objectives.dpo import LOSSES

    assert DPO_LOSSES == LOSSES


def test_the_config_knows_every_grpo_choice():
    from axon.config import GRPO_ADVANTAGES, GRPO_LOSS_TYPES, GRPO_SCALES
    from axon.objectives.grpo import ADVANTAGES, LOSS_TYPES, SCALES

    assert (GRPO_ADVANTAGES, GRPO_LOSS_TYPES, GRPO_SCALES) == (ADVANTAGES, LOSS_TYPES, SCALES)


def test_the_config_knows_every_diffusion_choice():
    from axon.config import (DIFFUSION_SAMPLERS, DIFFUSION_SCHEDULES, DIFFUSION_TARGETS, DIFFUSION_VARIANCES,
                             DIFFUSION_WEIGHTINGS, TOY_SETS)
    from axon.data.images import TOY_SETS as DATA_TOY_SETS
    from axon.diffusion import SAMPLERS, SCHEDULES, TARGETS, VARIANCES, WEIGHTINGS

    assert (DIFFUSION_SCHEDULES, DIFFUSION_TARGETS, DIFFUSION_VARIANCES, DIFFUSION_SAMPLERS, DIFFUSION_WEIGHTINGS) == (
        SCHEDULES, TARGETS, VARIANCES, SAMPLERS, WEIGHTINGS)
    assert TOY_SETS == DATA_TOY_SETS


def test_the_config_knows_every_gold_judge():
    from axon.config import GOLD_JUDGES
    from axon.feedback import GOLDS

    assert GOLD_JUDGES == tuple(GOLDS)  # the one registry of ppo.reward, ppo.gold, grpo.reward, grpo.gold


def test_the_config_knows_every_bundled_corpus():
    from axon.data.corpus import CORPORA

    assert CORPUS_NAMES == tuple(CORPORA)


def test_family_configs_are_the_models():
    from axon.model_configs import FAMILY_CONFIGS
    from axon.models import FAMILIES

    assert list(FAMILY_CONFIGS) == list(FAMILIES)  # same order: the error message lists them
    for name, family in FAMILIES.items():
        assert family.config is FAMILY_CONFIGS[name].config, name
        assert family.presets is FAMILY_CONFIGS[name].presets, name
        assert typing.get_args(typing.get_type_hints(family.config)["family"]) == (name,)


def test_attention_patterns_are_the_masks():
    from axon.model_configs.decoder import DecoderConfig
    from axon.nn.masks import PATTERNS

    assert typing.get_args(typing.get_type_hints(DecoderConfig)["attention"]) == PATTERNS


@pytest.mark.parametrize("options", [
    dict(mlp="swiglu"), dict(mlp="gelu"), dict(mlp="gelu", bias=True, qk_norm=True, norm="layernorm"),
    dict(mlp="swiglu", n_kv_head=1, qk_norm=True, pos="learned"),
])
def test_block_linears_are_a_built_blocks(options):
    # ProgressiveConfig checks lora_targets against these names without building a block.
    import torch
    from torch import nn

    from axon.model_configs.decoder import DecoderConfig
    from axon.model_configs.progressive import block_linears
    from axon.models.decoder import Block

    cfg = DecoderConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=16, **options)
    with torch.device("meta"):
        built = [n for n, m in Block(cfg).named_modules() if isinstance(m, nn.Linear)]
    assert block_linears(cfg) == built


# The trainer, the objectives, the run wiring and the lab ask a model only through its contract
# (axon.models.base.Model): no probing it for methods, which once dropped an MoE's losses under
# DDP (the wrapper has none of the model's methods, so the probe said "no such method").
CONTRACT_CALLERS = ("axon/train", "axon/objectives", "axon/lab", "axon/tasks")


def _is_model(expr: str) -> bool:
    """A module, not its config: ``model``, ``self.model``, ``forward_model``; not ``cfg.model``."""
    return expr.split(".")[-1].endswith("model") and "cfg" not in expr and "config" not in expr


def test_callers_use_the_model_contract_not_hasattr():
    offenders = []
    for folder in CONTRACT_CALLERS:
        for path in sorted((SRC / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("hasattr", "getattr")
                        and node.args and _is_model(ast.unparse(node.args[0]))):
                    offenders.append(f"{path.relative_to(SRC)}:{node.lineno}: {ast.unparse(node)}")
    assert not offenders, "probe of a model instead of its contract:\n" + "\n".join(offenders)
