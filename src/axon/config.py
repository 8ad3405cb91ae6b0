"""Typed configuration: dataclass defaults < YAML recipe < ``--section.key=value`` overrides.

Every section is a dataclass whose ``__post_init__`` validates its values, so a bad config fails
before any tensor is allocated, with a message that names the field (DESIGN.md, rule 2). Unknown
keys and wrong types are :class:`~axon.errors.ConfigError`s that list the valid choices. The
``model`` section is the config dataclass of the family named by ``model.family``; ``model.preset``
starts it from a named size (``gpt2``, ``llama-1b``, ``tiny``, ...).

Types and finiteness are checked in one place, ``axon.model_configs.fields``: on what a recipe or
a flag says (:func:`from_dict`) and again by each dataclass on what it is given, so building a
config in Python refuses what the command line refuses, in the same words (``optim.lr: ...``).

This module imports nothing from axon but ``axon.errors`` and the families' configs
(``axon.model_configs``), none of which imports torch: reading and validating a config loads no
model, trainer or data code (tests/test_layering.py).
"""

from __future__ import annotations

import dataclasses
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from axon.errors import ConfigError, check, reading
from axon.model_configs import FAMILY_CONFIGS
from axon.model_configs.fields import check_fields, coerce


# --------------------------------------------------------------------------------------------
# Generic dataclass <-> dict machinery


def from_dict(cls: type, data: dict[str, Any], prefix: str) -> Any:
    """Build dataclass ``cls`` from ``data``; unknown keys and wrong types are ConfigErrors."""
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix}: expected a mapping of keys, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    unknown = sorted(set(data) - set(names), key=str)  # a YAML key may be a number
    if unknown:
        raise ConfigError(f"unknown key {prefix}.{unknown[0]}; valid keys in {prefix}: {', '.join(names)}")
    kwargs = {k: coerce(v, hints[k], f"{prefix}.{k}") for k, v in data.items()}
    return cls(**kwargs)  # its checks name the field in full (optim.lr), as a Python caller sees them


def to_dict(obj: Any) -> dict[str, Any]:
    """A dataclass as plain YAML-safe data (tuples become lists)."""

    def plain(v):
        if dataclasses.is_dataclass(v):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        return v

    return plain(obj)


# --------------------------------------------------------------------------------------------
# The run config. Defaults are the default job: a character-level model of tiny Shakespeare
# that trains on a 2-core CPU in under three minutes (see docs/default-job.md).


@dataclass
class DataConfig:
    corpus: str = "shakespeare"  # bundled corpus, prepared on first use, when `dir` is null
    dir: str | None = None  # a directory written by `axon prepare` (train*.bin, val*.bin, tokenizer.json)
    tokenizer: str = "char"  # for the bundled corpus: char, bpe, or a path to a tokenizer.json
    vocab_size: int | None = None  # BPE vocabulary size when the bundled corpus is tokenised with bpe
    cache_dir: str | None = None  # where the bundled corpus is prepared (default ~/.cache/axon)
    # Files of a task (axon.tasks.classify, axon.tasks.mlm): classify reads JSONL ({"text": ..., "label": ...})
    # or TSV (text<TAB>label); mlm reads plain text. "bundled:speakers/train.jsonl" names a bundled file (axon.data.files).
    # The BERT tasks build char, wordpiece and bpe tokenizers with [PAD] [UNK] [CLS] [SEP] [MASK] (axon.data.bert_tokens).
    train_file: str | None = None
    # sft reads JSONL ({"prompt": ..., "response": ...} or {"messages": [...]}; axon.data.chat)
    val_file: str | None = None  # null: classify and sft hold out every 10th example of train_file, mlm the last 10%
    text_field: str = "text"  # JSONL keys read by classify
    label_field: str = "label"
    truncate: bool = False  # classify, sft: cut texts (sft: answers) longer than model.block_size (else: an error naming the line)
    mask_prob: float = 0.15  # mlm: share of tokens to predict (BERT: 15%; of them 80% [MASK], 10% random, 10% kept)
    # image tasks (axon.tasks.image_classify): a bundled set of images (digits: scikit-learn's 8x8 digits), or
    # null with `dir` a folder of images, one sub-folder per class (read with Pillow, resized to model.image_size)
    # detect (axon.tasks.detect): shapes (generated circles, squares, triangles), or null with train_file a
    # COCO-format JSON (val_file: another; null: detect.val_fraction held out) and dir its images (null: its folder)
    # mixed_modal (axon.tasks.mixed_modal): digits with generated captions, or null with train_file a JSONL of
    # {"image": PATH, "caption": TEXT} (val_file: another; null: every 10th pair held out), dir its images
    dataset: str | None = None

    def __post_init__(self):
        check_fields(self, "data.")
        check(self.corpus in CORPUS_NAMES, "data.corpus", f"unknown bundled corpus {self.corpus!r}; choose one of: "
              f"{', '.join(CORPUS_NAMES)} (your own text: axon prepare, then data.dir)")
        check(self.vocab_size is None or self.vocab_size > 0, "data.vocab_size", f"must be positive, got {self.vocab_size}")
        check(0.0 < self.mask_prob < 1.0, "data.mask_prob", f"must be in (0, 1), got {self.mask_prob}")
        check(self.dataset is None or self.dataset in IMAGE_DATASETS, "data.dataset",
              f"unknown image set {self.dataset!r}; choose one of: {', '.join(IMAGE_DATASETS)} "
              "(your own images: data.dir, a folder with one sub-folder per class)")


# The corpora shipped in the package (axon.data.corpus.CORPORA; tests/test_layering.py checks they agree).
CORPUS_NAMES = ("shakespeare",)
# The tasks a config may name (axon.tasks.TASKS; tests/test_layering.py checks they agree).
TASK_NAMES = ("lm", "mlm", "classify", "seq2seq", "word2vec", "glove", "fasttext", "tag", "sft", "reward", "ppo", "dpo", "grpo", "online_dpo",
              "diffusion", "image_classify", "detect", "vq", "mixed_modal", "dpr", "rag", "wm_vae", "wm_mdn", "wm_controller", "mappo", "gato")
# data.dataset of image_classify (digits: axon.tasks.image_classify) and detect (shapes: axon.tasks.detect)
IMAGE_DATASETS = ("digits", "shapes")
# The names axon.train.optim.OPTIMIZERS builds, in its order. A copy, so that validating a config
# does not import the trainer (and torch); tests/test_layering.py checks that the two agree.
OPTIMIZER_NAMES = ("adamw", "adam", "amsgrad", "adamax", "nadam", "sgd", "gd", "rmsprop", "adagrad", "adadelta", "ftrl",
                   "muon")
# train.device: the names axon.train.distributed.resolve_device turns into a device to train on.
DEVICE_CHOICES = "use auto, cpu, cuda or cuda:N"
SEED_MAX = 2**32 - 1


def is_device_name(name: str) -> bool:
    """Is ``name`` a device a run can train on? (torch knows more, e.g. ``meta``, which holds no data.)"""
    return re.fullmatch(r"auto|cpu|cuda(:[0-9]+)?", name) is not None


@dataclass
class OptimConfig:
    name: str = "muon"  # any torch.optim optimizer by name (adamw, sgd, ...), or muon
    lr: float = 2e-3  # for muon: the lr of the AdamW part (embeddings, head, norms, biases)
    weight_decay: float = 0.1  # applied to matrices only (2-D weights), never to norms/biases
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    momentum: float = 0.9  # sgd, rmsprop
    nesterov: bool = False  # sgd
    amsgrad: bool = False  # adam/adamw
    muon_lr: float = 0.03  # Muon's lr for hidden matrices
    muon_momentum: float = 0.95
    # Newton-Schulz dtype: auto = bf16 where its matrix products are fast (GPU, CPUs with
    # AVX512-BF16/AMX), float32 elsewhere (axon.train.optim.muon_dtype); the run's log says which
    muon_dtype: Literal["auto", "float32", "bfloat16"] = "auto"
    grad_clip: float = 1.0  # max global grad norm; 0 disables clipping (the norm is still logged)
    # FTRL-Proximal (axon.train.optim.FTRL; McMahan et al. 2013): optim.lr is its alpha, the
    # per-coordinate lr is alpha / (ftrl_beta + sqrt(sum of squared gradients))
    ftrl_beta: float = 1.0
    ftrl_l1: float = 0.0  # lambda1: a coordinate whose |z| <= lambda1 is exactly 0 (sparsity)
    ftrl_l2: float = 0.0  # lambda2: FTRL's own L2 (optim.weight_decay does not apply to ftrl)

    def __post_init__(self):
        check_fields(self, "optim.")
        check(self.name.lower() in OPTIMIZER_NAMES, "optim.name",
              f"unknown optimizer {self.name!r}; choose one of: {', '.join(OPTIMIZER_NAMES)}")
        check(self.lr > 0, "optim.lr", f"must be positive, got {self.lr}")
        check(self.muon_lr > 0, "optim.muon_lr", f"must be positive, got {self.muon_lr}")
        check(self.weight_decay >= 0, "optim.weight_decay", f"must be >= 0 (0: no decay), got {self.weight_decay}")
        # Adam's moment averages: a beta of 1 never forgets the first gradient, above 1 they grow without bound
        check(all(0 <= b < 1 for b in self.betas), "optim.betas", f"each must be in [0, 1), got {list(self.betas)}")
        # eps keeps Adam's m / (sqrt(v) + eps) finite where a parameter has had no gradient yet (v = 0)
        check(self.eps > 0, "optim.eps", f"must be positive, got {self.eps}")
        for name in ("momentum", "muon_momentum"):  # a momentum of 1 or more sums past updates without decay
            check(0 <= getattr(self, name) < 1, f"optim.{name}", f"must be in [0, 1), got {getattr(self, name)}")
        check(not (self.nesterov and self.name.lower() == "sgd") or self.momentum > 0, "optim.nesterov",
              "Nesterov's look-ahead needs momentum: set optim.momentum > 0 or optim.nesterov=false")
        check(self.grad_clip >= 0, "optim.grad_clip", f"must be >= 0 (0 disables clipping), got {self.grad_clip}")
        check(self.ftrl_beta >= 0, "optim.ftrl_beta", f"must be >= 0, got {self.ftrl_beta}")
        for name in ("ftrl_l1", "ftrl_l2"):
            check(getattr(self, name) >= 0, f"optim.{name}", f"must be >= 0 (0: no penalty), got {getattr(self, name)}")
        check(not (self.nesterov and self.name.lower() == "gd"), "optim.nesterov",
              "gd is plain gradient descent (no momentum, no look-ahead): use optim.name=sgd for Nesterov")


@dataclass
class ScheduleConfig:
    # inverse_sqrt: the Transformer paper's warmup then 1/sqrt(step) (axon.train.schedule.lr_factor)
    name: Literal["cosine", "wsd", "constant", "inverse_sqrt"] = "cosine"
    warmup_steps: int = 100
    min_lr_ratio: float = 0.1  # final lr / peak lr for cosine and wsd
    decay_fraction: float = 0.2  # wsd: share of training spent decaying

    def __post_init__(self):
        check_fields(self, "schedule.")
        check(self.warmup_steps >= 0, "schedule.warmup_steps", f"must be >= 0, got {self.warmup_steps}")
        check(0 <= self.min_lr_ratio <= 1, "schedule.min_lr_ratio", f"must be in [0, 1], got {self.min_lr_ratio}")
        check(0 < self.decay_fraction <= 1, "schedule.decay_fraction", f"must be in (0, 1], got {self.decay_fraction}")
        check(self.name != "inverse_sqrt" or self.warmup_steps > 0, "schedule.warmup_steps",
              "inverse_sqrt peaks at the end of warmup: set warmup_steps > 0 (the paper: 4000)")


@dataclass
class TrainConfig:
    seed: int = 1337
    batch_size: int = 32  # sequences per micro-batch
    grad_accum: int = 1  # micro-batches per optimizer step
    max_steps: int | None = 600
    max_tokens: int | None = None  # stop after this many training tokens (sets the step count)
    max_seconds: float | None = None  # wall-clock cap; the lr schedule follows whichever budget runs out first
    eval_interval: int = 250
    eval_batches: int = 20
    log_interval: int = 10
    checkpoint_interval: int = 250
    keep_checkpoints: int = 2
    device: str = "auto"  # auto, cpu, cuda, cuda:1, ...
    # auto: bf16 autocast on GPU, fp32 on CPU; fp64: weights and arithmetic in float64, for numerical
    # checks (e.g. that two processes compute what one does, free of float32's rounding)
    dtype: Literal["auto", "fp32", "bf16", "fp64"] = "auto"
    compile: bool = False  # torch.compile: the whole model on one process, each repeated block in a distributed run
    # recompute each repeated block's activations in backward (torch.utils.checkpoint): less memory, ~1/3 more compute
    activation_checkpointing: bool = False
    # under torchrun (axon train --nproc N): ddp replicates the model, fsdp shards parameters, gradients
    # and optimizer states (FSDP2 fully_shard); train.batch_size is per process (axon.train.distributed)
    parallel: Literal["ddp", "fsdp"] = "ddp"
    # torch intra-op threads on CPU; default: one per core, less the cores other processes
    # keep busy at the start (axon.train.run.auto_threads: one busy core made 2 threads 3.3x slower)
    threads: int | None = None
    z_loss: float = 0.0  # output z-loss coefficient (PaLM uses 1e-4)
    label_smoothing: float = 0.0  # seq2seq objective: eps of label-smoothed cross-entropy (the Transformer paper: 0.1)
    on_nonfinite: Literal["stop", "skip"] = "stop"
    sample_tokens: int = 200  # tokens sampled into samples.txt at each eval (0 disables)
    sample_prompt: str = "\n"
    peak_flops: float | None = None  # for MFU; default: measured (CPU) or the GPU's bf16 peak
    init_from: str | None = None  # start from these weights: a run directory (its newest checkpoint) or a step_* directory

    def __post_init__(self):
        check_fields(self, "train.")
        # numpy's SeedSequence takes no negative seed, and rank r seeds torch with seed + 1_000_003 r
        check(0 <= self.seed <= SEED_MAX, "train.seed", f"must be in [0, {SEED_MAX}], got {self.seed}")
        for name in ("batch_size", "grad_accum"):
            check(getattr(self, name) > 0, f"train.{name}", f"must be positive, got {getattr(self, name)}")
        check(
            self.max_steps is not None or self.max_tokens is not None,
            "train.max_steps",
            "set max_steps or max_tokens (max_seconds alone leaves the lr schedule without a length)",
        )
        for name in ("max_steps", "max_tokens", "max_seconds", "peak_flops"):
            value = getattr(self, name)
            check(value is None or value > 0, f"train.{name}", f"must be positive (or null), got {value}")
        for name in ("eval_interval", "log_interval", "checkpoint_interval", "keep_checkpoints", "eval_batches"):
            check(getattr(self, name) > 0, f"train.{name}", f"must be positive, got {getattr(self, name)}")
        check(is_device_name(self.device), "train.device", f"{self.device!r} is not a device to train on; {DEVICE_CHOICES}")
        check(self.threads is None or self.threads >= 1, "train.threads",
              f"must be >= 1 (or null: one per core that other processes leave free), got {self.threads}")
        check(self.z_loss >= 0, "train.z_loss", f"must be >= 0 (0: off), got {self.z_loss}")
        check(0 <= self.label_smoothing < 1, "train.label_smoothing", f"must be in [0, 1), got {self.label_smoothing}")
        check(self.sample_tokens >= 0, "train.sample_tokens", f"must be >= 0 (0: no samples), got {self.sample_tokens}")


@dataclass
class LogConfig:
    progress: bool = True  # progress bar on stderr
    tensorboard: bool = False  # needs the tensorboard package
    wandb: bool = False  # needs the wandb package
    wandb_project: str = "axon"
    wandb_mode: Literal["offline", "online", "disabled"] = "offline"

    def __post_init__(self):
        check_fields(self, "log.")


@dataclass
class LoRAConfig:
    # LoRA fine-tuning (Hu et al. 2021; axon.nn.lora): the nn.Linear layers whose names match `targets`
    # (fnmatch patterns: "*.qkv", "blocks.*.mlp.*", "lm_head") get rank-r adapters; everything else is frozen
    targets: list[str] = field(default_factory=list)  # empty: LoRA off
    rank: int = 8
    alpha: float = 16.0  # the update is scaled by alpha / rank
    dropout: float = 0.0  # on the adapters' input only
    # other parameters left trainable (fnmatch on parameter names, e.g. "head.*"); parameters that
    # train.init_from did not provide (a new classification head) are added here automatically
    train_also: list[str] = field(default_factory=list)

    def __post_init__(self):
        check_fields(self, "lora.")
        check(self.rank >= 1, "lora.rank", f"must be >= 1, got {self.rank}")
        check(self.alpha > 0, "lora.alpha", f"must be > 0, got {self.alpha}")
        check(0.0 <= self.dropout < 1.0, "lora.dropout", f"must be in [0, 1), got {self.dropout}")
        check(not self.train_also or bool(self.targets), "lora.train_also", "needs lora.targets (LoRA is off without them)")


# The programmatic judges of axon.feedback (axon.feedback.GOLDS, in its order; a copy, so that validating
# a config does not import it; tests/tasks/test_ppo_task.py checks that the two agree). Every choice of a
# reward or a gold judge (ppo.reward, ppo.gold, grpo.reward, grpo.gold) is made from this one registry:
# a judge added there and here is a choice of every task that trains on rewards.
GOLD_JUDGES = ("sentiment", "instructions", "arithmetic")
GOLD_REWARDS = tuple(f"gold:{g}" for g in sorted(GOLD_JUDGES))  # ppo.reward, grpo.reward: one of these or a reward run
PPO_GOLDS = ("auto", *GOLD_JUDGES, "none")  # ppo.gold, grpo.gold


def check_reward(value: str, field_name: str) -> None:
    """A reward spec (``ppo.reward``, ``grpo.reward``): a gold judge of GOLD_REWARDS or a reward run's directory."""
    check(value in GOLD_REWARDS or not value.startswith("gold:"), field_name,
          f"unknown judge {value!r}; choose {' or '.join(GOLD_REWARDS)}, or give a reward run's directory")
    check(bool(value.strip()), field_name, f"is empty; choose {' or '.join(GOLD_REWARDS)} or a reward run")


@dataclass
class PPOConfig:
    # PPO on a language model (axon.tasks.ppo; Ouyang et al. 2022, Ziegler et al. 2019). One trainer step
    # is one minibatch update; a rollout of rollout_batch answers is trained on for `epochs` epochs of
    # minibatches of train.batch_size x train.grad_accum answers.
    reward: str = "gold:instructions"  # gold:instructions, gold:sentiment, gold:arithmetic, or a reward run's directory
    prompts: str | None = None  # JSONL of {"prompt"} (or {"prompt", "response"}) rows; null: the bundled instruction train file
    val_prompts: str | None = None  # prompts of the validation answers; null: the bundled instruction val file
    rollout_batch: int = 64  # prompts answered per rollout
    max_new_tokens: int = 48  # longest answer; one that reaches it without the end marker is scored as written
    temperature: float = 1.0  # sampling temperature of the rollouts; log-probabilities are of logits / temperature
    epochs: int = 4  # PPO epochs over each rollout
    clip: float = 0.2  # eps of the clipped ratio
    value_clip: float = 0.2  # the value's move from its rollout estimate is clipped to +-value_clip
    value_coef: float = 0.1  # loss = policy loss + value_coef * value loss (+ ptx_coef * LM loss)
    gamma: float = 1.0  # discount
    lam: float = 0.95  # GAE lambda
    kl_beta: float = 0.05  # KL penalty coefficient (the adaptive controller's start when kl_target is set)
    kl_target: float | None = None  # null: a fixed beta; else the target KL (nats per answer) of Ziegler et al.'s controller
    kl_horizon: int = 10000  # the controller's horizon, in answers
    kl_estimator: Literal["k1", "k2", "k3"] = "k1"  # per-token estimate of KL(pi || pi_ref) in the penalty
    whiten_advantages: bool = True  # normalise each rollout's advantages to mean 0, variance 1
    ptx_coef: float = 0.0  # PPO-ptx: weight of the LM loss on the bundled corpus mixed in (0: off)
    # the gold judge reported beside the reward (gold, val_gold): auto = the reward itself when it is gold,
    # the instruction or arithmetic judge when every prompt is one of its tasks; sentiment (VADER),
    # instructions, arithmetic, or none
    gold: str = "auto"
    # where a separate critic (model.value_head=separate) starts, at the run's start only: sft (the
    # body of train.init_from, head at zero), scratch, reward (the ppo.reward run, as InstructGPT
    # does), or a reward run's directory
    value_init: str = "sft"

    def __post_init__(self):
        check_fields(self, "ppo.")
        check_reward(self.reward, "ppo.reward")
        for name in ("rollout_batch", "max_new_tokens", "epochs", "kl_horizon"):
            check(getattr(self, name) >= 1, f"ppo.{name}", f"must be >= 1, got {getattr(self, name)}")
        check(self.temperature > 0, "ppo.temperature", f"must be > 0 (rollouts are sampled), got {self.temperature}")
        check(0 < self.clip < 1, "ppo.clip", f"must be in (0, 1), got {self.clip}")
        check(self.value_clip > 0, "ppo.value_clip", f"must be > 0, got {self.value_clip}")
        check(self.value_coef >= 0, "ppo.value_coef", f"must be >= 0, got {self.value_coef}")
        check(0 < self.gamma <= 1, "ppo.gamma", f"must be in (0, 1], got {self.gamma}")
        check(0 <= self.lam <= 1, "ppo.lam", f"must be in [0, 1], got {self.lam}")
        check(self.kl_beta >= 0, "ppo.kl_beta", f"must be >= 0 (0: no KL penalty), got {self.kl_beta}")
        check(self.kl_target is None or self.kl_target > 0, "ppo.kl_target", f"must be > 0 (or null: fixed beta), got {self.kl_target}")
        check(self.kl_target is None or self.kl_beta > 0, "ppo.kl_beta",
              "the adaptive controller scales beta, so it cannot start at 0; set kl_beta > 0 or kl_target=null")
        check(self.ptx_coef >= 0, "ppo.ptx_coef", f"must be >= 0 (0: off), got {self.ptx_coef}")
        check(self.gold in PPO_GOLDS, "ppo.gold", f"unknown gold judge {self.gold!r}; choose one of: {', '.join(PPO_GOLDS)}")
        check(bool(self.value_init.strip()), "ppo.value_init", "is empty; choose sft, scratch, reward or a reward run")

    def steps_per_rollout(self, batch_size: int, grad_accum: int) -> int:
        """Optimizer steps spent on one rollout: epochs x minibatches of batch_size x grad_accum answers."""
        return self.epochs * self.rollout_batch // (batch_size * grad_accum)


# dpo.loss: the losses of axon.objectives.dpo.LOSSES (a copy, so that validating a config does not
# import torch; tests/test_layering.py checks that the two agree)
DPO_LOSSES = ("dpo", "cdpo", "robust", "ipo", "simpo", "rpo")


@dataclass
class DPOConfig:
    # Direct preference optimisation and its family (axon.tasks.dpo, axon.objectives.dpo): the policy
    # from train.init_from, a frozen copy of the same weights as the reference (none for simpo)
    loss: str = "dpo"  # dpo, cdpo (label smoothing), robust (rDPO), ipo, simpo (no reference), rpo (dpo + alpha * NLL)
    beta: float = 0.1  # the inverse temperature of the implicit reward beta * log(pi / pi_ref); IPO's tau; SimPO's beta
    label_smoothing: float = 0.0  # cdpo and robust: the probability that a comparison's label is flipped
    gamma: float = 0.5  # simpo: the target margin of the length-normalised rewards
    alpha: float = 1.0  # rpo: the weight of the chosen responses' NLL per token

    def __post_init__(self):
        check_fields(self, "dpo.")
        check(self.loss in DPO_LOSSES, "dpo.loss", f"unknown loss {self.loss!r}; choose one of: {', '.join(DPO_LOSSES)}")
        check(self.beta > 0, "dpo.beta", f"must be > 0, got {self.beta}")
        check(0 <= self.label_smoothing < 0.5, "dpo.label_smoothing",
              f"must be in [0, 0.5) (a flip rate of 0.5 says the labels carry nothing), got {self.label_smoothing}")
        check(self.label_smoothing == 0 or self.loss in ("cdpo", "robust"), "dpo.label_smoothing",
              f"is used by the cdpo and robust losses only, and dpo.loss={self.loss}; set dpo.loss=cdpo or robust")
        check(self.gamma >= 0, "dpo.gamma", f"must be >= 0, got {self.gamma}")
        check(self.alpha >= 0, "dpo.alpha", f"must be >= 0, got {self.alpha}")


# grpo.advantage, grpo.loss_type, grpo.scale_rewards: the choices of axon.objectives.grpo (ADVANTAGES,
# LOSS_TYPES, SCALES; copies, so that validating a config does not import torch; tests/test_layering.py
# checks that they agree)
GRPO_ADVANTAGES = ("grpo", "rloo")
GRPO_LOSS_TYPES = ("dapo", "grpo", "dr_grpo", "bnpo")
GRPO_SCALES = ("group", "batch", "none")


@dataclass
class GRPOConfig:
    # GRPO (Shao et al. 2024, DeepSeekMath) and RLOO (Ahmadian et al. 2024) as TRL 1.16 computes them
    # (axon.tasks.grpo, axon.objectives.grpo): no value function; each rollout answers rollout_prompts prompts
    # group_size times, and an answer's advantage compares its reward with the other answers to its prompt.
    # One trainer step is one minibatch update of train.batch_size x train.grad_accum answers; a rollout is
    # trained on for `epochs` passes.
    advantage: str = "grpo"  # grpo: (r - group mean) / (group std + 1e-4); rloo: r - the mean of the other answers
    reward: str = "gold:instructions"  # gold:instructions, gold:sentiment (GOLD_REWARDS), or a reward run's directory
    prompts: str | None = None  # JSONL of {"prompt"} rows; null: the bundled instruction train file
    val_prompts: str | None = None  # prompts of the validation answers; null: the bundled instruction val file
    rollout_prompts: int = 8  # prompts per rollout, each answered group_size times
    group_size: int = 8  # answers per prompt (TRL's num_generations)
    max_new_tokens: int = 48  # longest answer; one that reaches it without the end marker is scored as written
    temperature: float = 1.0  # sampling temperature; log-probabilities are of logits / temperature
    epochs: int = 1  # passes over each rollout (TRL's num_iterations)
    clip: float = 0.2  # eps of the clipped ratio (TRL's epsilon)
    clip_high: float | None = None  # the upper clip, 1 + clip_high (TRL's epsilon_high; DAPO uses 0.28); null: clip
    # the KL coefficient to the frozen reference; null: TRL's defaults, 0.0 for grpo (GRPOConfig.beta: no KL
    # term) and 0.05 for rloo (RLOOConfig.beta). grpo adds beta x k3 to every token's loss; rloo subtracts
    # beta x the answer's k1 sum from its reward
    beta: float | None = None
    loss_type: str | None = None  # grpo's token-loss normalisation: dapo (null: TRL's default), grpo, dr_grpo, bnpo
    scale_rewards: str | None = None  # grpo: the advantage's divisor, group (null: TRL's default) or batch std, none
    normalize_advantages: bool = False  # rloo: whiten the advantages over the rollout (RLOOConfig.normalize_advantages)
    gold: str = "auto"  # the gold judge reported beside the reward, as ppo.gold
    # with no KL term (beta 0, TRL's grpo default) the frozen reference is run only for the logged kl and
    # token_kl: on every kl_every-th rollout (0: never); with a KL term it is run on every rollout
    kl_every: int = 10

    def __post_init__(self):
        check_fields(self, "grpo.")
        check(self.kl_every >= 0, "grpo.kl_every", f"must be >= 0 (0: never measure the KL at beta 0), "
              f"got {self.kl_every}")
        check(self.advantage in GRPO_ADVANTAGES, "grpo.advantage",
              f"unknown advantage {self.advantage!r}; choose one of: {', '.join(GRPO_ADVANTAGES)}")
        check_reward(self.reward, "grpo.reward")
        for name in ("rollout_prompts", "max_new_tokens", "epochs"):
            check(getattr(self, name) >= 1, f"grpo.{name}", f"must be >= 1, got {getattr(self, name)}")
        check(self.group_size >= 2, "grpo.group_size", f"must be >= 2 (an answer's advantage compares it with the "
              f"other answers to its prompt), got {self.group_size}")
        check(self.temperature > 0, "grpo.temperature", f"must be > 0 (rollouts are sampled), got {self.temperature}")
        check(0 < self.clip < 1, "grpo.clip", f"must be in (0, 1), got {self.clip}")
        check(self.clip_high is None or self.clip_high > 0, "grpo.clip_high", f"must be > 0 (or null: grpo.clip), "
              f"got {self.clip_high}")
        check(self.beta is None or self.beta >= 0, "grpo.beta", f"must be >= 0 (0: no KL term), got {self.beta}")
        check(self.loss_type is None or self.loss_type in GRPO_LOSS_TYPES, "grpo.loss_type",
              f"unknown loss type {self.loss_type!r}; choose one of: {', '.join(GRPO_LOSS_TYPES)}")
        check(self.scale_rewards is None or self.scale_rewards in GRPO_SCALES, "grpo.scale_rewards",
              f"unknown scaling {self.scale_rewards!r}; choose one of: {', '.join(GRPO_SCALES)}")
        for name in ("loss_type", "scale_rewards"):
            check(getattr(self, name) is None or self.advantage == "grpo", f"grpo.{name}",
                  "is read with grpo.advantage=grpo only (rloo's loss is TRL's RLOOTrainer's: one ratio per answer, "
                  "the advantage not scaled); remove it or set grpo.advantage=grpo")
        check(not self.normalize_advantages or self.advantage == "rloo", "grpo.normalize_advantages",
              "is read with grpo.advantage=rloo only (grpo scales its advantages with grpo.scale_rewards)")
        check(self.gold in PPO_GOLDS, "grpo.gold",
              f"unknown gold judge {self.gold!r}; choose one of: {', '.join(PPO_GOLDS)}")

    @property
    def rollout_rows(self) -> int:
        """Answers per rollout: rollout_prompts x group_size."""
        return self.rollout_prompts * self.group_size

    @property
    def kl_coef(self) -> float:
        """beta, or TRL's default for the advantage (0.0 for grpo, 0.05 for rloo)."""
        return self.beta if self.beta is not None else (0.0 if self.advantage == "grpo" else 0.05)

    @property
    def loss(self) -> str:
        """The loss normalisation: loss_type, or TRL's default dapo; ``rloo`` for the RLOO loss."""
        return "rloo" if self.advantage == "rloo" else (self.loss_type or "dapo")

    @property
    def scaling(self) -> str:
        """The advantage's divisor (scale_rewards, or TRL's default group); rloo's is none."""
        return "none" if self.advantage == "rloo" else (self.scale_rewards or "group")


@dataclass
class OnlineDPOConfig:
    # Online DPO (axon.tasks.online_dpo; Guo et al. 2024): each step the current policy answers its
    # prompts twice, the reward labels each pair, and dpo.loss (with dpo.beta, ...) trains on them
    reward: str = "gold:instructions"  # gold:instructions, gold:sentiment, or a reward run's directory (as ppo.reward)
    prompts: str | None = None  # JSONL of {"prompt"} rows (a path or bundled:NAME); null: the bundled instruction train file
    val_prompts: str | None = None  # prompts of the validation answers; null: the bundled instruction val file
    gold: str = "auto"  # the gold judge reported beside the reward, as ppo.gold: auto, sentiment, instructions, none
    max_new_tokens: int = 48  # longest answer; one that reaches it without the end marker is scored as written
    temperature: float = 1.0  # sampling temperature of the pairs (and of the validation answers)

    def __post_init__(self):
        check_fields(self, "online_dpo.")
        check(bool(self.reward.strip()), "online_dpo.reward",
              f"is empty; choose {' or '.join(GOLD_REWARDS)} or a reward run's directory")
        check(self.reward in GOLD_REWARDS or not self.reward.startswith("gold:"), "online_dpo.reward",
              f"unknown judge {self.reward!r}; choose {' or '.join(GOLD_REWARDS)}, or give a reward run's directory")
        check(self.gold in PPO_GOLDS, "online_dpo.gold",
              f"unknown gold judge {self.gold!r}; choose one of: {', '.join(PPO_GOLDS)}")
        check(self.max_new_tokens >= 1, "online_dpo.max_new_tokens", f"must be >= 1, got {self.max_new_tokens}")
        check(self.temperature > 0, "online_dpo.temperature",
              f"must be > 0 (the pairs are sampled), got {self.temperature}")


# axon.diffusion's names (tests/test_layering.py checks that the copies agree)
DIFFUSION_SCHEDULES = ("linear", "cosine")
DIFFUSION_TARGETS = ("eps", "x0", "v")
DIFFUSION_VARIANCES = ("fixed_small", "fixed_large", "learned_range")
DIFFUSION_TIMESTEP_SAMPLING = ("uniform", "importance")
DIFFUSION_SAMPLERS = ("ddpm", "ddim")
DIFFUSION_WEIGHTINGS = ("simple", "vlb", "snr")
TOY_SETS = ("swiss_roll", "moons", "gaussians")


@dataclass
class DiffusionConfig:
    # Denoising diffusion (axon.tasks.diffusion; Ho et al. 2020, DDIM, classifier-free guidance)
    # digits (scikit-learn's 8x8), swiss_roll, moons, gaussians (2-D points), or a folder of images
    # (one sub-folder per class, read with Pillow, resized to the model's image_size)
    data: str = "digits"
    points: int = 10000  # 2-D sets: points drawn, a tenth held out
    schedule: str = "linear"  # betas: linear (Ho et al., 1e-4 -> 0.02 at T = 1000) or cosine (Nichol & Dhariwal)
    timesteps: int = 1000  # T
    target: str = "eps"  # what the network predicts: eps, x0 or v (Salimans & Ho)
    # the reverse step's variance: fixed_small (posterior beta-tilde), fixed_large (beta), or learned_range
    # (Nichol & Dhariwal: the net learns where between the two; needs model.learn_sigma: true)
    variance: str = "fixed_small"
    # the loss: simple (Ho et al.'s L_simple), vlb (the bound's weights) or snr (Min-SNR-5); with a learned
    # variance, simple and snr add hybrid_lambda x T x the bound's term for the variance (L_hybrid)
    weighting: str = "simple"
    hybrid_lambda: float = 0.001  # Nichol & Dhariwal's lambda (learned_range only)
    # which t each example trains at: uniform, or importance (p_t ~ sqrt(E[L_t^2]) over the last 10 losses
    # at each t, the loss divided by T p_t; Nichol & Dhariwal sec. 3.3, for weighting vlb; one process only)
    timestep_sampling: str = "uniform"
    cond_drop: float = 0.1  # share of training examples whose class becomes the null class (guidance; 0: never)
    sampler: str = "ddim"  # the samples of each evaluation and of the final figures: ddpm (all T steps) or ddim
    sample_steps: int = 50  # ddim's steps
    eta: float = 0.0  # ddim's noise (0: deterministic; 1 with all T steps: ddpm)
    guidance: float = 1.0  # classifier-free guidance scale of class-conditional samples (1: plain conditional)
    eval_samples: int = 256  # samples drawn for the quality figures at each evaluation
    bpd_examples: int = 64  # validation examples whose bound in bits/dim the final figures give (0: none)
    clip_x0: bool = True  # clip the predicted x0 to [-1, 1] when sampling (images; 2-D points are never clipped)

    def __post_init__(self):
        check_fields(self, "diffusion.")
        check(bool(self.data.strip()), "diffusion.data", "is empty; choose digits, "
              f"{', '.join(TOY_SETS)} or a folder of images")
        check(self.points >= 20, "diffusion.points", f"must be >= 20, got {self.points}")
        check(self.schedule in DIFFUSION_SCHEDULES, "diffusion.schedule",
              f"unknown schedule {self.schedule!r}; choose one of: {', '.join(DIFFUSION_SCHEDULES)}")
        check(self.timesteps >= 2, "diffusion.timesteps", f"must be >= 2, got {self.timesteps}")
        check(self.target in DIFFUSION_TARGETS, "diffusion.target",
              f"unknown target {self.target!r}; choose one of: {', '.join(DIFFUSION_TARGETS)}")
        check(self.variance in DIFFUSION_VARIANCES, "diffusion.variance",
              f"unknown variance {self.variance!r}; choose one of: {', '.join(DIFFUSION_VARIANCES)}")
        check(0.0 <= self.cond_drop < 1.0, "diffusion.cond_drop", f"must be in [0, 1), got {self.cond_drop}")
        check(self.sampler in DIFFUSION_SAMPLERS, "diffusion.sampler",
              f"unknown sampler {self.sampler!r}; choose one of: {', '.join(DIFFUSION_SAMPLERS)}")
        check(1 <= self.sample_steps <= self.timesteps, "diffusion.sample_steps",
              f"must be in [1, diffusion.timesteps={self.timesteps}], got {self.sample_steps}")
        check(0.0 <= self.eta <= 1.0, "diffusion.eta", f"must be in [0, 1], got {self.eta}")
        check(self.guidance >= 0.0, "diffusion.guidance", f"must be >= 0, got {self.guidance}")
        check(self.eval_samples >= 2, "diffusion.eval_samples", f"must be >= 2, got {self.eval_samples}")
        check(self.bpd_examples >= 0, "diffusion.bpd_examples", f"must be >= 0, got {self.bpd_examples}")
        check(self.weighting in DIFFUSION_WEIGHTINGS, "diffusion.weighting",
              f"unknown weighting {self.weighting!r}; choose one of: {', '.join(DIFFUSION_WEIGHTINGS)}")
        check(self.hybrid_lambda >= 0.0, "diffusion.hybrid_lambda", f"must be >= 0, got {self.hybrid_lambda}")
        check(self.timestep_sampling in DIFFUSION_TIMESTEP_SAMPLING, "diffusion.timestep_sampling",
              f"unknown timestep sampling {self.timestep_sampling!r}; choose one of: "
              f"{', '.join(DIFFUSION_TIMESTEP_SAMPLING)}")


@dataclass
class ImageClassifyConfig:
    # Image classification (axon.tasks.image_classify): augmentation of the training images, metrics, samples
    crop_padding: int = 1  # random crop: pad every side by this many pixels (black, -1), cut image_size back out; 0: off
    # random horizontal flip of half the training images; null: on for a folder of images, off for the digits
    # (a mirrored digit is no longer that digit: flip only where it keeps the labels valid)
    hflip: bool | None = None
    val_fraction: float = 0.1  # a folder of images: share of each class held out for validation (seed 0)
    top_k: int = 5  # the top-k accuracy reported beside the accuracy (top5 in result.json and axon eval)
    samples: int = 8  # validation images whose predictions samples.txt shows at each evaluation

    def __post_init__(self):
        check_fields(self, "image_classify.")
        check(self.crop_padding >= 0, "image_classify.crop_padding", f"must be >= 0, got {self.crop_padding}")
        check(0.0 < self.val_fraction < 1.0, "image_classify.val_fraction", f"must be in (0, 1), got {self.val_fraction}")
        check(self.top_k >= 1, "image_classify.top_k", f"must be >= 1, got {self.top_k}")
        check(self.samples >= 0, "image_classify.samples", f"must be >= 0, got {self.samples}")


@dataclass
class MixedModalConfig:
    # Mixed-modal models (axon.tasks.mixed_modal): captions and images in one decoder (early fusion, image codes in the
    # vocabulary) or images as a prefix from a vision encoder (late fusion, family late_fusion)
    image_tokenizer: str | None = None  # early fusion: a vq run directory (axon.tasks.vq), whose codes become tokens
    # what the sequences teach: caption_to_image (caption <img> codes </img>), image_to_caption (<img> codes </img>
    # caption), or both (each training example picks one at random); late fusion does image_to_caption only
    direction: Literal["both", "caption_to_image", "image_to_caption"] = "both"
    eval_examples: int = 200  # validation examples captioned / drawn for the generation metrics (0: none)
    image_temperature: float = 1.0  # caption -> image: sampling temperature of the image codes (captions are greedy)
    samples: int = 8  # validation examples shown in samples.txt (captions) and in the pictures (images)

    def __post_init__(self):
        check_fields(self, "mixed_modal.")
        check(self.eval_examples >= 0, "mixed_modal.eval_examples", f"must be >= 0, got {self.eval_examples}")
        check(self.image_temperature >= 0, "mixed_modal.image_temperature",
              f"must be >= 0 (0: greedy), got {self.image_temperature}")
        check(self.samples >= 0, "mixed_modal.samples", f"must be >= 0, got {self.samples}")


@dataclass
class RagConfig:
    # Retrieval and retrieval-augmented answering (axon.tasks.dpr; docs/rag.md): the passages and questions
    passages: str | None = None  # JSONL of {"id", "text"} rows (axon.data.passages); null: the generated knowledge base
    questions: str | None = None  # JSONL of {"question", "answer", "passage_id", "split"} rows; with passages
    kb_entities: int = 200  # the generated knowledge base: invented people, four facts (passages) each
    kb_seed: int = 0  # the base is a function of this seed, not train.seed
    kb_mentions: int = 0  # other people each passage names ("X, a friend of Y and Z, ..."): lexical distractors
    hard_negatives: bool = True  # dpr: one BM25 negative per question beside the in-batch ones (DPR's best recipe)
    eval_questions: int = 0  # held-out questions scored at each evaluation (0: all of them)
    # rag (axon.tasks.rag): the passages a reader reads -- none (closed-book), oracle (the gold one among
    # read_passages), bm25, or a dpr run directory (its encoders)
    retriever: str = "bm25"
    read_passages: int = 1  # k: passages per question (concatenated, or fused in the decoder by seq2seq)
    max_answer_tokens: int = 24  # the longest greedy answer scored

    def __post_init__(self):
        check_fields(self, "rag.")
        check(self.kb_entities >= 2, "rag.kb_entities", f"must be >= 2, got {self.kb_entities}")
        check(0 <= self.kb_seed <= SEED_MAX, "rag.kb_seed", f"must be in [0, {SEED_MAX}], got {self.kb_seed}")
        check(0 <= self.kb_mentions < self.kb_entities, "rag.kb_mentions",
              f"must be in [0, kb_entities={self.kb_entities}), got {self.kb_mentions}")
        check(self.eval_questions >= 0, "rag.eval_questions", f"must be >= 0 (0: all), got {self.eval_questions}")
        check(self.read_passages >= 1, "rag.read_passages",
              f"must be >= 1, got {self.read_passages} (closed-book: rag.retriever=none)")
        check(self.max_answer_tokens >= 1, "rag.max_answer_tokens", f"must be >= 1, got {self.max_answer_tokens}")
        check(bool(self.retriever.strip()), "rag.retriever", "none, oracle, bm25 or a dpr run directory")


@dataclass
class DetectConfig:
    # Object detection (axon.tasks.detect, axon.objectives.detr): DETR's matching and set loss, the data, the pictures
    cost_class: float = 1.0  # matching cost of the class: - cost_class * p(class)  (Carion et al. 2020: 1)
    cost_bbox: float = 5.0  # of the boxes' L1 distance (cx, cy, w, h in [0, 1])  (5)
    cost_giou: float = 2.0  # of their generalized IoU: - cost_giou * GIoU  (2)
    loss_ce: float = 1.0  # weight of the cross-entropy in the loss  (1)
    loss_bbox: float = 5.0  # of the matched boxes' L1 loss  (5)
    loss_giou: float = 2.0  # of their 1 - GIoU  (2)
    eos_coef: float = 0.1  # weight of the "no object" class in the cross-entropy  (0.1)
    aux_loss: bool = True  # the same loss on every decoder layer's predictions, not only the last
    hflip: bool = True  # mirror half the training images left-right, their boxes with them
    train_images: int = 4000  # data.dataset shapes: generated training images (detect.data_seed)
    val_images: int = 500  # data.dataset shapes: generated validation images (another stream of the same seed)
    data_seed: int = 0  # data.dataset shapes: the images are a function of this seed, not train.seed
    val_fraction: float = 0.1  # a COCO file without data.val_file: share of its images held out (seed 0)
    samples: int = 8  # validation images in samples.txt and in the picture of axon sample / axon eval
    score_threshold: float = 0.5  # the pictures draw predicted boxes at least this confident

    def __post_init__(self):
        check_fields(self, "detect.")
        for name in ("cost_class", "cost_bbox", "cost_giou", "loss_ce", "loss_bbox", "loss_giou"):
            check(getattr(self, name) >= 0, f"detect.{name}", f"must be >= 0, got {getattr(self, name)}")
        check(self.cost_class + self.cost_bbox + self.cost_giou > 0, "detect.cost_class",
              "the matching costs cost_class, cost_bbox and cost_giou cannot all be 0")
        check(self.loss_ce + self.loss_bbox + self.loss_giou > 0, "detect.loss_ce",
              "the loss weights loss_ce, loss_bbox and loss_giou cannot all be 0")
        check(0.0 < self.eos_coef <= 1.0, "detect.eos_coef", f"must be in (0, 1], got {self.eos_coef}")
        check(self.train_images >= 1, "detect.train_images", f"must be >= 1, got {self.train_images}")
        check(self.val_images >= 1, "detect.val_images", f"must be >= 1, got {self.val_images}")
        check(0 <= self.data_seed <= SEED_MAX, "detect.data_seed", f"must be in [0, {SEED_MAX}], got {self.data_seed}")
        check(0.0 < self.val_fraction < 1.0, "detect.val_fraction", f"must be in (0, 1), got {self.val_fraction}")
        check(self.samples >= 0, "detect.samples", f"must be >= 0, got {self.samples}")
        check(0.0 <= self.score_threshold <= 1.0, "detect.score_threshold", f"must be in [0, 1], got {self.score_threshold}")


MAPPO_ENVS = ("cover", "simple_spread")  # mappo.env (axon.agents.marl.envs.ENVS; tests/agents/test_marl_mappo.py checks)


@dataclass
class MAPPOConfig:
    # Cooperative multi-agent PPO (axon.tasks.mappo; Yu et al. 2022). One trainer step is one minibatch
    # update of train.batch_size x train.grad_accum environment steps (each with every agent's data); a
    # rollout is `envs` episodes of `horizon` steps, trained on for `epochs` epochs.
    env: str = "cover"  # cover (our N-agent grid, numpy) or simple_spread (mpe2's, pettingzoo's parallel API)
    n_agents: int = 2  # agents (and landmarks)
    size: int = 5  # cover: the grid's side G
    view: int | None = None  # cover: cells an agent sees around it (Chebyshev); null: the whole grid
    horizon: int = 16  # steps per episode (simple_spread: its max_cycles, 25 in the benchmark)
    envs: int = 32  # episodes per rollout, stepped together
    epochs: int = 4  # passes over each rollout (MAPPO's ppo_epoch: 10 on MPE, 15 with fewer minibatches)
    clip: float = 0.2  # the surrogate's epsilon
    value_clip: float | None = None  # the value's clip around the rollout's (null: unclipped; PPO's 0.2 suits returns near 1)
    value_coef: float = 0.5  # weight of the value loss (one optimizer for actor and critic)
    entropy_coef: float = 0.01  # weight of the entropy bonus (MAPPO: 0.01)
    gamma: float = 0.99
    lam: float = 0.95  # GAE's lambda
    whiten_advantages: bool = True  # normalise the advantages over the rollout (MAPPO does)
    eval_episodes: int = 32  # validation episodes (fixed seeds), sampled as in training
    frames: int = 1  # episodes drawn into rollout.gif and rollout.png at each evaluation (0: none)

    def __post_init__(self):
        check_fields(self, "mappo.")
        check(self.env in MAPPO_ENVS, "mappo.env", f"unknown environment {self.env!r}; choose one of: {', '.join(MAPPO_ENVS)}")
        check(self.n_agents >= 2, "mappo.n_agents", f"must be >= 2 (one agent is single-agent PPO), got {self.n_agents}")
        check(self.size >= 2, "mappo.size", f"must be >= 2, got {self.size}")
        check(self.env != "cover" or 2 * self.n_agents <= self.size**2, "mappo.size",
              f"a {self.size}x{self.size} grid has no room for {self.n_agents} agents and {self.n_agents} landmarks")
        check(self.view is None or self.view >= 0, "mappo.view", f"must be >= 0 (or null: everything), got {self.view}")
        for name in ("horizon", "envs", "epochs", "eval_episodes"):
            check(getattr(self, name) >= 1, f"mappo.{name}", f"must be >= 1, got {getattr(self, name)}")
        check(0 < self.clip < 1, "mappo.clip", f"must be in (0, 1), got {self.clip}")
        check(self.value_clip is None or self.value_clip > 0, "mappo.value_clip", f"must be > 0 or null, got {self.value_clip}")
        for name in ("value_coef", "entropy_coef", "frames"):
            check(getattr(self, name) >= 0, f"mappo.{name}", f"must be >= 0, got {getattr(self, name)}")
        check(0 < self.gamma <= 1, "mappo.gamma", f"must be in (0, 1], got {self.gamma}")
        check(0 <= self.lam <= 1, "mappo.lam", f"must be in [0, 1], got {self.lam}")


@dataclass
class WorldModelConfig:
    # World Models (axon.agents.worldmodels.tasks): V (task wm_vae), M (wm_mdn), C (wm_controller) on
    # the Chase pixel environment (axon.agents.worldmodels.env) or gymnasium's CarRacing-v3
    # (axon.agents.worldmodels.carracing; needs Box2D)
    env: Literal["chase", "carracing"] = "chase"
    frame_size: int = 32  # pixels a side of the frames (CarRacing's 96x96 are area-averaged to this)
    horizon: int = 64  # steps per episode (CarRacing: after its 50 zoom-in steps; episodes are cut here)
    episodes: int = 200  # random-policy episodes the wm_vae run collects (frames for V, rollouts for M)
    val_episodes: int = 20  # more, held out
    data_seed: int = 0
    kl_tolerance: float = 0.5  # V: the KL term is floored at this many nats per latent dim (the paper's 0.5)
    vae_run: str | None = None  # wm_mdn, wm_controller: the wm_vae run whose V and rollouts they use
    mdn_run: str | None = None  # wm_controller: the wm_mdn run (M)
    fitness: Literal["dream", "real"] = "dream"  # C's fitness: returns inside M, or in the real environment
    temperature: float = 1.15  # dream rollouts sample M at this temperature (the paper's tau)
    rollouts: int = 4  # episodes per candidate per generation
    eval_episodes: int = 32  # episodes (fixed seeds) an evaluation averages, real and dream

    def __post_init__(self):
        check_fields(self, "world_model.")
        check(self.frame_size >= 8 and self.frame_size % 8 == 0, "world_model.frame_size",
              f"must be a positive multiple of 8, got {self.frame_size}")
        for name in ("horizon", "episodes", "val_episodes", "rollouts", "eval_episodes"):
            check(getattr(self, name) >= 1, f"world_model.{name}", f"must be >= 1, got {getattr(self, name)}")
        check(0 <= self.data_seed <= SEED_MAX, "world_model.data_seed", f"must be in [0, {SEED_MAX}], got {self.data_seed}")
        check(self.kl_tolerance >= 0, "world_model.kl_tolerance", f"must be >= 0, got {self.kl_tolerance}")
        check(self.temperature > 0, "world_model.temperature", f"must be > 0, got {self.temperature}")


GATO_ENVS = ("cartpole", "mountaincar", "gridmaze")  # axon.agents.gato.envs.SPECS (a copy: the config layer is torch-free)


@dataclass
class GatoConfig:
    # A Gato-style generalist (axon.tasks.gato; Reed et al. 2022): one decoder over tokenised expert
    # episodes of several tasks and text, the loss on action and text tokens only
    envs: list[str] = field(default_factory=lambda: list(GATO_ENVS))  # the tasks trained on (one: a specialist)
    episodes: int = 20  # expert episodes collected per task for training (seeded: data_seed)
    val_episodes: int = 4  # held-out expert episodes per task: the validation windows and the prompts
    data_seed: int = 0
    text_share: float = 0.1  # share of batch rows that are windows of the bundled corpus (0: no text)
    eval_episodes: int = 4  # episodes per task at each evaluation (fixed env seeds), prompted with a held-out episode
    gif_frames: int = 120  # frames of the first evaluation episode written to rollout_<task>.gif (0: none)
    mu: float = 100.0  # mu-law: F(x) = sgn(x) log(|x| mu + 1) / log(M mu + 1)
    m: float = 256.0  # M
    bins: int = 1024  # uniform bins of the clipped F(x) in [-1, 1]; discrete values share them

    def __post_init__(self):
        check_fields(self, "gato.")
        check(len(self.envs) >= 1, "gato.envs", "is empty; name one or more of: " + ", ".join(GATO_ENVS))
        for e in self.envs:
            check(e in GATO_ENVS, "gato.envs", f"unknown environment {e!r}; choose from: {', '.join(GATO_ENVS)}")
        check(len(set(self.envs)) == len(self.envs), "gato.envs", f"names a task twice: {self.envs}")
        check(self.episodes >= 1, "gato.episodes", f"must be >= 1, got {self.episodes}")
        check(self.val_episodes >= 1, "gato.val_episodes", f"must be >= 1 (the prompts are held-out episodes), got {self.val_episodes}")
        check(0 <= self.data_seed <= SEED_MAX, "gato.data_seed", f"must be in [0, {SEED_MAX}], got {self.data_seed}")
        check(0.0 <= self.text_share < 1.0, "gato.text_share", f"must be in [0, 1), got {self.text_share}")
        check(self.eval_episodes >= 0, "gato.eval_episodes", f"must be >= 0, got {self.eval_episodes}")
        check(self.gif_frames >= 0, "gato.gif_frames", f"must be >= 0, got {self.gif_frames}")
        check(self.mu > 0 and self.m > 0, "gato.mu", f"mu and m must be > 0, got {self.mu}, {self.m}")
        check(self.bins >= 16, "gato.bins", f"must be >= 16 (the maze's cells and the actions are integers below it), got {self.bins}")


@dataclass
class RunConfig:
    out_dir: str = "runs"
    name: str | None = None  # run directory name; default: <date>-<time>
    task: str | None = None  # what the run trains on (lm, ...; see axon.tasks); null: the model family's own
    model: Any = None  # the family's config dataclass, e.g. axon.model_configs.decoder.DecoderConfig
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    log: LogConfig = field(default_factory=LogConfig)
    lora: LoRAConfig = field(default_factory=LoRAConfig)
    ppo: PPOConfig = field(default_factory=PPOConfig)
    dpo: DPOConfig = field(default_factory=DPOConfig)
    grpo: GRPOConfig = field(default_factory=GRPOConfig)
    online_dpo: OnlineDPOConfig = field(default_factory=OnlineDPOConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    image_classify: ImageClassifyConfig = field(default_factory=ImageClassifyConfig)
    detect: DetectConfig = field(default_factory=DetectConfig)
    mixed_modal: MixedModalConfig = field(default_factory=MixedModalConfig)
    rag: RagConfig = field(default_factory=RagConfig)
    world_model: WorldModelConfig = field(default_factory=WorldModelConfig)
    mappo: MAPPOConfig = field(default_factory=MAPPOConfig)
    gato: GatoConfig = field(default_factory=GatoConfig)

    def __post_init__(self):
        if self.model is None:
            self.model = build_model_config({})
        check_fields(self, "")  # out_dir, name, task, and each section of its own class
        check(type(self.model) in MODEL_CONFIGS, "model",
              f"expected a family's config (axon.model_configs: {', '.join(c.__name__ for c in MODEL_CONFIGS)}), "
              f"got {self.model!r}")
        # The run goes to out_dir/name: a name with a separator or "." / ".." would put it elsewhere.
        check(self.name is None or (self.name not in ("", ".", "..") and "/" not in self.name and "\\" not in self.name
                                    and "\0" not in self.name), "name",
              f"{self.name!r} is not a directory name; a run name is one path component (no '/', not '.' or '..'); "
              "choose where runs go with out_dir")
        check(self.task is None or self.task in TASK_NAMES, "task",
              f"unknown task {self.task!r}; choose one of: {', '.join(TASK_NAMES)}")


MODEL_CONFIGS = tuple(f.config for f in FAMILY_CONFIGS.values())
SECTIONS = {"data": DataConfig, "optim": OptimConfig, "schedule": ScheduleConfig, "train": TrainConfig, "log": LogConfig,
            "lora": LoRAConfig, "ppo": PPOConfig, "dpo": DPOConfig, "grpo": GRPOConfig,
            "online_dpo": OnlineDPOConfig, "diffusion": DiffusionConfig,
            "image_classify": ImageClassifyConfig, "detect": DetectConfig,
            "mixed_modal": MixedModalConfig, "rag": RagConfig, "world_model": WorldModelConfig, "mappo": MAPPOConfig, "gato": GatoConfig}
TOP_LEVEL = ("out_dir", "name", "task")


def build_model_config(data: dict[str, Any]) -> Any:
    """The ``model`` section: family config dataclass, started from ``preset`` when given."""
    if not isinstance(data, dict):  # `--model=foo`
        raise ConfigError(f"model: expected a mapping of keys (model.family, model.preset, model.n_layer, ...), got {data!r}")
    data = dict(data)
    family = coerce(data.pop("family", "decoder"), str, "model.family")
    if family not in FAMILY_CONFIGS:
        raise ConfigError(f"model.family: unknown family {family!r}; choose one of: {', '.join(FAMILY_CONFIGS)}")
    cls = FAMILY_CONFIGS[family].config
    preset = coerce(data.get("preset"), str | None, "model.preset")
    if preset is not None:
        presets = FAMILY_CONFIGS[family].presets
        if preset not in presets:
            raise ConfigError(f"model.preset: unknown preset {preset!r}; choose one of: {', '.join(presets)}")
        data = {**presets[preset]["config"], **data}
    return from_dict(cls, data, "model")


def parse_overrides(args: list[str]) -> dict[str, Any]:
    """``--section.key=value`` (or ``--section.key value``) strings -> nested dict.

    Values are read as YAML scalars or lists, so ``1e-3``, ``true``, ``null`` and ``[0.9, 0.95]``
    mean what they say; the field's type then checks them.
    """
    pairs: list[tuple[str, str]] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--") or len(arg) == 2:
            raise ConfigError(f"cannot read {arg!r}; write overrides as --section.key=value (e.g. --train.max_steps=100)")
        if "=" in arg:
            pairs.append(tuple(arg[2:].split("=", 1)))
        elif i + 1 < len(args) and not args[i + 1].startswith("--"):
            pairs.append((arg[2:], args[i + 1]))
            i += 1
        else:
            raise ConfigError(f"{arg} needs a value: write {arg}=VALUE")
        i += 1
    tree: dict[str, Any] = {}
    for key, raw in pairs:
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError:
            value = raw
        if isinstance(value, dict) or not isinstance(value, (str, int, float, bool, list, type(None))):
            value = raw  # e.g. "a: b" or a date: keep the text and let the field's type decide
        node = tree
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--{key} conflicts with --{part}")
        node[parts[-1]] = value
    return tree


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_yaml(path: str | Path) -> dict[str, Any]:
    """A recipe's sections; a file that is missing, not UTF-8, not YAML or empty is one line naming it."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    with reading(path, "config file"):
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if data is None:  # nothing but blanks and comments: a mistake, not a request for every default
        raise ConfigError(f"{path}: the file is empty; a recipe names at least one section (leave --config out "
                          "for the default job)")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    return data


def build_config(data: dict[str, Any]) -> RunConfig:
    """A RunConfig from nested plain data (a parsed recipe merged with overrides)."""
    valid = [*TOP_LEVEL, "model", *SECTIONS]
    unknown = sorted(set(data) - set(valid), key=str)  # a YAML key may be a number
    if unknown:
        raise ConfigError(f"unknown key {unknown[0]}; valid top-level keys: {', '.join(valid)}")
    kwargs: dict[str, Any] = {k: coerce(data[k], typing.get_type_hints(RunConfig)[k], k) for k in TOP_LEVEL if k in data}

    def section(name: str) -> Any:  # an empty section (`optim:` in YAML) is null; `--optim=0` is no section
        return {} if data.get(name) is None else data[name]

    kwargs["model"] = build_model_config(section("model"))
    for name, cls in SECTIONS.items():
        kwargs[name] = from_dict(cls, section(name), name)
    return RunConfig(**kwargs)


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> RunConfig:
    """Defaults < YAML recipe at ``path`` < ``--section.key=value`` overrides."""
    data = load_yaml(path) if path else {}
    return build_config(merge(data, parse_overrides(overrides or [])))


def run_config_file(run_dir: str | Path, what: str = "") -> Path:
    """``run_dir``'s config.yaml, or a ConfigError that says why ``run_dir`` is no run directory
    (missing, a file, or a directory without config.yaml), prefixed by ``what`` (a flag) if given."""
    run_dir = Path(run_dir)
    file = run_dir / "config.yaml"
    if file.is_file():
        return file
    why = ("no such directory" if not run_dir.exists() else "it is a file" if not run_dir.is_dir()
           else "no config.yaml")
    raise ConfigError(f"{what + ': ' if what else ''}{run_dir} is not a run directory ({why})")


def dump_config(cfg: RunConfig) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)
