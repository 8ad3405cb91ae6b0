"""Fine-tuning a pretrained run: ``axon finetune``'s config and the checkpoint surgery behind it.

``finetune_config`` composes the config of ``axon finetune PRETRAINED_RUN``: the pretrained run's
model with a classification head, its tokenizer, ``task: classify`` and ``train.init_from`` (with
``--task=tag``, a token-classification head, ``head: tag``); or,
with ``--task=sft``, ``--task=dpo`` or ``--task=online_dpo``, the pretrained run's model unchanged
(``axon.tasks.sft``, ``axon.tasks.dpo``, ``axon.tasks.online_dpo``); with
``--task=reward`` or ``--task=ppo``, that model with a scalar head or a value head; with
``--task=grpo``, that model as a policy without a value function (``value_head: none``).

``check_pretrained_model`` refuses, naming the fields, a run whose model is not the one of the
``train.init_from`` run it loads strictly (the sft task).

``load_pretrained_body`` (the classify task's ``init_weights``) copies every tensor of the
``train.init_from`` checkpoint that the classifier has, leaves the classifier's own head
(``HEAD_PREFIXES``) at its initialisation, drops the pretraining head, and prints what it did;
anything else that does not match is an error.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

from axon.errors import CheckpointError, ConfigError

#: Parameter-name prefixes of heads: a fine-tuning model may leave its own at their initialisation,
#: and a pretraining checkpoint's are dropped (BERT's MLM head, pooler and classifier).
HEAD_PREFIXES = ("mlm.", "pooler.", "classifier.")


def init_run_dir(source: str | Path) -> Path:
    """The run directory of ``train.init_from`` (a run, or one of its ``step_*`` checkpoints)."""
    path = Path(source)
    return path.parent.parent if (path / "state.json").is_file() and path.parent.name == "checkpoints" else path


def read_checkpoint_state(source: str | Path, what: str = "train.init_from") -> tuple[Path, dict[str, torch.Tensor]]:
    """(checkpoint directory, {name: tensor}) of the newest valid checkpoint of ``source`` (a run
    directory or a ``step_*`` directory); a tensor tied to another, stored once, is given under each
    of its names. ``what``: the setting that named ``source``, for the error."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    from axon.train.checkpoint import list_checkpoints, verify_checkpoint

    path = Path(source)
    candidates = list_checkpoints(path / "checkpoints") if (path / "checkpoints").is_dir() else [path]
    ckpt, problems = None, []
    for c in candidates:
        try:
            verify_checkpoint(c)
            ckpt = c
            break
        except CheckpointError as e:
            problems.append(str(e))
    if ckpt is None:
        why = f" ({problems[0]})" if problems else ""
        raise ConfigError(f"{what}: no valid checkpoint in {path}{why}")
    state = load_file(str(ckpt / "model.safetensors"))
    with safe_open(str(ckpt / "model.safetensors"), "pt") as f:  # tied names -> the name stored (a decoder's wte)
        tied = {k: v for k, v in (f.metadata() or {}).items() if v in state and k not in state}
    state.update({k: state[v] for k, v in tied.items()})
    return ckpt, state


def load_pretrained_body(model: torch.nn.Module, source: str | Path, heads: tuple[str, ...] = HEAD_PREFIXES) -> dict:
    """Initialise ``model`` from the newest valid checkpoint of ``source`` (a run directory or a
    ``step_*`` directory), keeping the model's own head where the checkpoint has none (or one of
    another shape). ``heads``: the parameter-name prefixes of heads (the model's own, left at
    their initialisation, and the checkpoint's, dropped). A tensor tied to another is stored once
    (``axon.train.checkpoint``); it loads under each of its names. Returns {"checkpoint",
    "loaded", "initialised", "dropped"} and prints it."""
    ckpt, state = read_checkpoint_state(source)
    own = model.state_dict()
    is_head = lambda k: k.startswith(heads)  # noqa: E731
    loaded, fresh = {}, []
    for k, t in own.items():
        if k in state and state[k].shape == t.shape:
            loaded[k] = state[k]
        elif is_head(k):
            fresh.append(k)
        elif k in state:
            raise CheckpointError(f"{ckpt}: {k} has shape {tuple(state[k].shape)}, the model needs {tuple(t.shape)}; "
                                  "fine-tuning keeps the pretrained architecture")
        else:
            raise CheckpointError(f"{ckpt}: no tensor {k}; is it a run of this architecture?")
    dropped = sorted(k for k in state if k not in loaded)
    stray = [k for k in dropped if not is_head(k)]
    if stray:
        raise CheckpointError(f"{ckpt}: tensor {stray[0]} has no place in this model; is it a run of this architecture?")
    model.load_state_dict({**own, **loaded})
    report = {"checkpoint": str(ckpt), "loaded": len(loaded), "initialised": fresh, "dropped": dropped}
    groups = lambda names: ", ".join(sorted({n.split(".")[0] for n in names})) or "none"  # noqa: E731
    print(f"init_from {ckpt}: loaded {len(loaded)} tensors; new (initialised here): {groups(fresh)}; "
          f"dropped from the checkpoint: {groups(dropped)}", file=sys.stderr)
    return report


#: Model fields a fine-tuning run may set; the rest of the architecture is the pretrained run's.
FINETUNE_FIELDS = ("head", "num_labels", "pooling", "dropout", "attn_impl")
#: The same for a task that keeps the pretrained model whole (sft): settings that change how its
#: weights compute, not which weights there are (axon.train.run.SHAPE_FREE).
KEEP_MODEL_FIELDS = ("dropout", "attn_impl", "scan_impl")
#: The reward task's own model fields (axon.model_configs.reward): the labeller model.
LABELLER_FIELDS = ("labeller_noise", "labellers", "labeller_eps_init", "labeller_lr_scale")


def check_pretrained_model(cfg, source: str | Path) -> None:
    """Refuse a run whose model is not the ``train.init_from`` run's (the fields that differ,
    ``preset`` and ``KEEP_MODEL_FIELDS`` aside), before any weight is loaded: a strict load would
    fail on the first tensor of another shape, and a setting that changes no shape (``rope_theta``,
    ``norm_eps``) would load silently into a model that computes something else."""
    from axon.config import load_config, to_dict

    file = init_run_dir(source) / "config.yaml"
    if not file.is_file():  # a checkpoint directory on its own: the strict load checks the shapes
        return
    was, now = to_dict(load_config(file).model), to_dict(cfg.model)
    skip = {"preset", *KEEP_MODEL_FIELDS}
    changed = [f"model.{k}={now.get(k)!r} (the run has {was.get(k)!r})" for k in sorted(set(was) | set(now))
               if k not in skip and was.get(k) != now.get(k)]
    if changed:
        more = f" and {len(changed) - 3} more" if len(changed) > 3 else ""
        raise ConfigError(f"train.init_from: the model is not {init_run_dir(source)}'s: {'; '.join(changed[:3])}{more}; "
                          f"axon finetune {init_run_dir(source)} --task={cfg.task} ... takes the run's model")


def finetune_config(pretrained: str | Path, recipe: str | Path | None = None, overrides: list[str] | None = None):
    """The config of ``axon finetune PRETRAINED_RUN``: the pretrained run's model with a
    classification head (``model.head=classify``), its tokenizer, ``task: classify`` and
    ``train.init_from`` = the run; the recipe and ``--section.key=value`` overrides give the rest
    (data files, optim, schedule, train). From the recipe's model section only
    ``FINETUNE_FIELDS`` are read (a recipe also used from scratch names an architecture that
    must not replace the pretrained one); a command-line model override of another field that
    differs from the pretrained value is an error. With ``task: sft``, ``dpo`` or ``online_dpo`` (recipe or
    ``--task=``) the model is the pretrained one without a head, and only ``KEEP_MODEL_FIELDS`` may change;
    with ``task: ppo`` it is that model as ``family: actor_critic`` (a value head added), with
    ``task: grpo`` the same with ``value_head: none`` (no value function); with
    ``task: reward`` it is that model as ``family: reward`` (its LM head replaced by a scalar
    one), and the labeller fields may be set too."""
    from axon.config import build_config, load_yaml, merge, parse_overrides, run_config_file

    run = Path(pretrained)
    run_config_file(run)
    if not (run / "tokenizer.json").is_file():
        raise ConfigError(f"{run} has no tokenizer.json; fine-tuning encodes text with the pretrained run's tokenizer")
    pre = load_yaml(run / "config.yaml").get("model") or {}
    data = load_yaml(recipe) if recipe else {}
    over = parse_overrides(overrides or [])
    task = over.get("task") or data.get("task")
    if task in ("sft", "dpo", "online_dpo"):  # a causal LM trained on answers or comparisons: the model as it is
        model, settable = dict(pre), KEEP_MODEL_FIELDS
    elif task == "ppo":  # the decoder as the policy of an actor-critic (axon.tasks.ppo)
        if pre.get("family", "decoder") != "decoder":
            raise ConfigError(f"{run} is a {pre.get('family')} run; PPO starts from a decoder run (an sft run)")
        from axon.model_configs.actor_critic import VALUE_FIELDS

        model, settable = {**pre, "family": "actor_critic"}, (*KEEP_MODEL_FIELDS, *VALUE_FIELDS)
    elif task == "grpo":  # the decoder as a policy without a value function (axon.tasks.grpo)
        if pre.get("family", "decoder") != "decoder":
            raise ConfigError(f"{run} is a {pre.get('family')} run; GRPO starts from a decoder run (an sft run)")
        model, settable = {**pre, "family": "actor_critic", "value_head": "none"}, KEEP_MODEL_FIELDS
    elif task == "reward":  # the decoder's body with a scalar head (axon.tasks.reward)
        if pre.get("family", "decoder") not in ("decoder", "reward"):
            raise ConfigError(f"{run} is a {pre.get('family')} run; a reward model starts from a decoder run (an sft run)")
        model, settable = {**pre, "family": "reward"}, (*KEEP_MODEL_FIELDS, *LABELLER_FIELDS)
    else:
        head = "tag" if task == "tag" else "classify"  # a token or a sequence classifier (axon.tasks.tag / classify)
        model, settable = {**pre, "head": head, "num_labels": None}, FINETUNE_FIELDS
    model.update({k: v for k, v in (data.get("model") or {}).items() if k in settable})
    for k, v in (over.pop("model", None) or {}).items():
        if k not in settable and v != model.get(k):
            raise ConfigError(f"--model.{k}: fine-tuning keeps the pretrained run's architecture ({k}={model.get(k)!r}); "
                              f"the model fields it can set are {', '.join(settable)}")
        model[k] = v
    for key in ("train.init_from", "data.tokenizer"):
        section, name = key.split(".")
        if name in (over.get(section) or {}):
            raise ConfigError(f"--{key}: axon finetune sets it to the pretrained run ({run})")
    data = merge(data, over)
    data["model"] = model
    data["task"] = data.get("task") or "classify"
    # recorded absolute: the run's config must still find them from another directory (axon eval, --resume)
    where = Path(os.path.abspath(run))
    data = merge(data, {"train": {"init_from": str(where)}, "data": {"tokenizer": str(where / "tokenizer.json")}})
    return build_config(data)


def frozen_reference(build, source, device, dtype=None):
    """The frozen reference model of a preference or RL task (PPO, DPO): ``build()``'s model
    with the weights of run ``source`` (loaded strictly), no gradients, in eval mode, on
    ``device`` (in ``dtype`` when given). Built under a forked RNG: making it must not move the
    run's RNG, or a resumed run would initialise differently."""
    import torch

    from axon.train.run import init_weights

    with torch.random.fork_rng(devices=[]):
        reference = build()
    init_weights(reference, source)
    for param in reference.parameters():
        param.requires_grad_(False)
    return reference.to(device, dtype=dtype).eval()
