"""The ``reward`` task: a reward model from human comparisons (InstructGPT's step 2, Ouyang et al. 2022).

    data.train_file / data.val_file   JSONL comparisons or rankings (axon.data.preferences);
                                      without val_file every 10th prompt (with all its
                                      comparisons) is held out
    model                             family ``reward`` (axon.models.reward): a decoder body, a
                                      scalar head on the last real token
    objective                         Bradley-Terry, or with model.labeller_noise one flip rate
                                      per labeller learnt with it (axon.objectives.reward)
    metrics                           pairwise accuracy (the share of pairs the reward orders as
                                      labelled) at each evaluation and in result.json; with
                                      labeller_noise each labeller's estimated flip rate,
                                      ``eps/<id>`` (in metrics.jsonl, result.json, ``axon eval``)

Tokenizer: with ``train.init_from`` (a language-model, SFT or reward run) that run's own
``tokenizer.json``, and its weights load into the body (``init_weights``: the decoder's LM head
is dropped; the reward head and the flip rates start fresh; the report names them). Otherwise
``data.tokenizer``: ``char`` (the characters of the training and validation texts), ``bpe``
(trained on them, ``data.vocab_size`` ids) or a path to a ``tokenizer.json``.

Labellers: the sorted distinct ``labeller`` ids of the training file are ``model.labellers`` when
labeller_noise is on (an explicit list must hold them all). A validation comparison by a labeller
the training file does not have is scored at face value.
"""

from __future__ import annotations

import functools
import sys

import torch

from axon.data.files import read_splits
from axon.data.preferences import PreferencePairs, encode_groups, labeller_ids, read_preferences
from axon.errors import ConfigError, DataError
from axon.tasks.base import TaskSetup, set_vocab_size
from axon.tasks.finetune import init_run_dir, load_pretrained_body

#: Parameters a reward model has and a decoder checkpoint lacks (left at their initialisation),
#: and the decoder's LM head, which a reward model drops.
REWARD_HEADS = ("reward_head.", "labeller_theta", "lm_head.")
EXAMPLE = 'a .jsonl file of {"prompt", "chosen", "rejected"} or {"prompt", "responses", "ranking"} lines'


def reward_tokenizer(cfg, texts: list[str]):
    """The init_from run's tokenizer, else data.tokenizer built from ``texts`` (module docstring)."""
    from axon.data.tokenizers import KINDS, build_tokenizer, check_tokenizer_choice, load_tokenizer

    if cfg.train.init_from:
        file = init_run_dir(cfg.train.init_from) / "tokenizer.json"
        if not file.is_file():
            raise ConfigError(f"train.init_from: {file} not found; a reward model reads text with its body's tokenizer")
        return load_tokenizer(file)
    check_tokenizer_choice(cfg.data.tokenizer, KINDS)
    return build_tokenizer(cfg.data.tokenizer, texts, cfg.data.vocab_size)


def _fill_labellers(mcfg, found: list[str], train_file) -> list[str]:
    """model.labellers from the training file's ids (labeller_noise), checked when given."""
    if not mcfg.labeller_noise:
        return found  # indices in the batches still say who labelled; the model ignores them
    if not found:
        raise DataError(f"{train_file}: model.labeller_noise needs comparisons with a \"labeller\" id, and no line has one")
    if mcfg.labellers is None:
        mcfg.labellers = found
    missing = [lab for lab in found if lab not in mcfg.labellers]
    if missing:
        raise ConfigError(f"model.labellers does not list {missing[0]!r}, a labeller of {train_file}; "
                          "leave model.labellers null to take them from the file")
    return list(mcfg.labellers)


def reward_task(cfg, device: torch.device) -> TaskSetup:
    from axon.models.base import unwrap
    from axon.objectives.reward import PairwiseReward

    data, mcfg = cfg.data, cfg.model
    # without a val_file every 10th prompt is held out, each with all its comparisons
    train_groups, train_file, val_groups, val_file = read_splits(data, read_preferences, example=EXAMPLE, what="prompts")
    labellers = _fill_labellers(mcfg, labeller_ids(train_groups), train_file)
    texts = [g.prompt + r for groups in (train_groups, val_groups) for g in groups for r in g.responses]
    tokenizer = reward_tokenizer(cfg, texts)
    set_vocab_size(cfg, tokenizer.vocab_size)
    encode = functools.partial(encode_groups, tokenizer=tokenizer, labellers=labellers,
                               block_size=mcfg.block_size, truncate=data.truncate)
    train_enc, cut_train = encode(train_groups, source=str(train_file))
    val_enc, cut_val = encode(val_groups, source=str(val_file))
    if cut_train or cut_val:
        print(f"reward: kept the last {mcfg.block_size} tokens of {cut_train} training and {cut_val} validation "
              "texts (data.truncate)", file=sys.stderr)

    def model_metrics(model, split: str) -> dict:  # the learnt flip rates, whatever the split
        return {f"eps/{name}": eps for name, eps in unwrap(model).labeller_eps().items()}

    return TaskSetup(
        train_data=PreferencePairs(train_enc), val_data=PreferencePairs(val_enc), objective=PairwiseReward(),
        tokenizer=tokenizer, model_metrics=model_metrics if mcfg.labeller_noise else None,
        init_weights=functools.partial(load_pretrained_body, heads=REWARD_HEADS),
    )
