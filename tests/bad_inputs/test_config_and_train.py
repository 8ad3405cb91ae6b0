"""Bad input to `axon config` and `axon train`: each case ends in one line naming the field or file,
exit 2, no traceback -- and a refused run leaves nothing in runs/ (issue 16).

The config cases check what the config layer refuses (one place: each dataclass's __post_init__;
tests/test_config.py checks the Python API refuses the same); the train cases check that it is
refused before anything trains, and that what only the data can tell (a tokenizer smaller than
the shards, splits shorter than the context) is found at start-up, not at the first step or
evaluation.
"""

from pathlib import Path

import pytest
from harness import Case, assert_user_error, run_all

# As the tiny run trains (conftest.TINY), into the case's own runs/; a case's own flags come after.
TRAIN = ["train", "--model.preset=tiny", "--train.max_steps=4", "--train.checkpoint_interval=2", "--train.batch_size=2",
         "--train.eval_batches=1", "--train.sample_tokens=0", "--log.progress=false", "--train.threads=1",
         "--out_dir={tmp}/runs", "--name=bad"]


def write(name: str, data: bytes):
    def setup(tmp: Path, run: Path) -> None:
        (tmp / name).write_bytes(data)

    return setup


def prepared(text: str, *, val_fraction: float = 0.1, tokenizer_of: str | None = None):
    """A data directory `{tmp}/data` prepared from ``text``; ``tokenizer_of``: then its tokenizer.json
    replaced by the one prepared from this other text."""

    def setup(tmp: Path, run: Path) -> None:
        from axon.data.prepare import prepare

        (tmp / "text.txt").write_text(text)
        prepare(tmp / "text.txt", tmp / "data", val_fraction=val_fraction)
        if tokenizer_of is not None:
            (tmp / "other.txt").write_text(tokenizer_of)
            prepare(tmp / "other.txt", tmp / "other")
            (tmp / "data" / "tokenizer.json").write_bytes((tmp / "other" / "tokenizer.json").read_bytes())

    return setup


TEXT = "To be, or not to be, that is the question. " * 40  # prepared: 1548 train tokens, 172 val

CONFIG = [
    Case("model-not-a-section", ["config", "--model=foo"],
         "model: expected a mapping of keys (model.family, model.preset, model.n_layer, ...), got 'foo'"),
    Case("family-not-a-name", ["config", "--model.family.x=1"], "model.family: expected a string, got {'x': 1}"),
    Case("preset-a-list", ["config", "--model.preset=[tiny]"], "model.preset: expected str or null, got ['tiny']"),
    Case("unknown-task", ["config", "--task=foo"], "task: unknown task 'foo'; choose one of: lm, mlm"),
    Case("section-not-a-mapping", ["config", "--optim=0"], "optim: expected a mapping of keys, got 0"),
    Case("recipe-not-utf8", ["config", "--config", "{tmp}/r.yaml"], "r.yaml: not UTF-8 text (byte 22",
         setup=write("r.yaml", b"train:\n  max_steps: 3 \xff\n")),
    Case("recipe-not-yaml", ["config", "--config", "{tmp}/r.yaml"], "r.yaml: malformed YAML at line 2, column 1",
         setup=write("r.yaml", b"model: [1, 2\n")),
    Case("recipe-empty", ["config", "--config", "{tmp}/r.yaml"],
         "r.yaml: the file is empty; a recipe names at least one section (leave --config out for the default job)",
         setup=write("r.yaml", b"# only a comment\n\n")),
    Case("recipe-number-keys", ["config", "--config", "{tmp}/r.yaml"], "unknown key 1; valid top-level keys",
         setup=write("r.yaml", b"1: a\nzz: b\n")),
    Case("model-nan", ["config", "--model.rope_theta=nan"], "model.rope_theta: must be a finite number, got nan"),
    Case("rope-scaling-inf", ["config", "--config", "{tmp}/r.yaml"],
         "model.rope_scaling: linear scaling needs finite numbers, got factor=inf",
         setup=write("r.yaml", b"model:\n  rope_scaling: {rope_type: linear, factor: .inf}\n")),
]

TRAIN_CASES = [
    Case("seed-negative", [*TRAIN, "--train.seed=-1"], "train.seed: must be in [0, 4294967295], got -1"),
    Case("threads-negative", [*TRAIN, "--train.threads=-1"], "train.threads: must be >= 1 (or null"),
    Case("threads-zero", [*TRAIN, "--train.threads=0"], "train.threads: must be >= 1 (or null"),
    Case("device-meta", [*TRAIN, "--train.device=meta"],
         "train.device: 'meta' is not a device to train on; use auto, cpu, cuda or cuda:N"),
    Case("device-nonsense", [*TRAIN, "--train.device=gpu0"], "train.device: 'gpu0' is not a device to train on"),
    Case("device-bad-index", [*TRAIN, "--train.device=cuda:x"], "train.device: 'cuda:x' is not a device to train on"),
    Case("sgd-momentum", [*TRAIN, "--optim.name=sgd", "--optim.momentum=-1"], "optim.momentum: must be in [0, 1), got -1.0"),
    Case("sgd-nesterov", [*TRAIN, "--optim.name=sgd", "--optim.momentum=0", "--optim.nesterov=true"],
         "optim.nesterov: Nesterov's look-ahead needs momentum"),
    Case("gd-nesterov", [*TRAIN, "--optim.name=gd", "--optim.nesterov=true"],
         "optim.nesterov: gd is plain gradient descent (no momentum, no look-ahead)"),
    Case("ftrl-l1-negative", [*TRAIN, "--optim.name=ftrl", "--optim.ftrl_l1=-1"], "optim.ftrl_l1: must be >= 0 (0: no penalty), got -1.0"),
    Case("betas", [*TRAIN, "--optim.betas=[1.5,0.9]"], "optim.betas: each must be in [0, 1), got [1.5, 0.9]"),
    Case("lr-zero", [*TRAIN, "--optim.lr=0"], "optim.lr: must be positive, got 0.0"),
    Case("lr-negative", [*TRAIN, "--optim.lr=-1e-3"], "optim.lr: must be positive, got -0.001"),
    Case("lr-inf", [*TRAIN, "--optim.lr=inf"], "optim.lr: must be a finite number, got inf"),
    Case("lr-nan", [*TRAIN, "--optim.lr=nan"], "optim.lr: must be a finite number, got nan"),
    Case("muon-lr-zero", [*TRAIN, "--optim.muon_lr=0"], "optim.muon_lr: must be positive, got 0.0"),
    Case("eps-zero", [*TRAIN, "--optim.name=adamw", "--optim.eps=0"], "optim.eps: must be positive, got 0.0"),
    Case("eps-nan", [*TRAIN, "--optim.eps=.nan"], "optim.eps: must be a finite number, got nan"),
    Case("weight-decay-negative", [*TRAIN, "--optim.weight_decay=-0.1"], "optim.weight_decay: must be >= 0 (0: no decay), got -0.1"),
    Case("weight-decay-inf", [*TRAIN, "--optim.weight_decay=inf"], "optim.weight_decay: must be a finite number, got inf"),
    Case("grad-clip-nan", [*TRAIN, "--optim.grad_clip=nan"], "optim.grad_clip: must be a finite number, got nan"),
    Case("z-loss-nan", [*TRAIN, "--train.z_loss=nan"], "train.z_loss: must be a finite number, got nan"),
    Case("max-seconds-inf", [*TRAIN, "--train.max_seconds=inf"], "train.max_seconds: must be a finite number, got inf"),
    Case("peak-flops-zero", [*TRAIN, "--train.peak_flops=0"], "train.peak_flops: must be positive (or null), got 0.0"),
    Case("sample-tokens-negative", [*TRAIN, "--train.sample_tokens=-1"], "train.sample_tokens: must be >= 0 (0: no samples), got -1"),
    Case("min-lr-ratio-nan", [*TRAIN, "--schedule.min_lr_ratio=nan"], "schedule.min_lr_ratio: must be a finite number, got nan"),
    Case("norm-eps-zero", [*TRAIN, "--model.norm_eps=0"], "model.norm_eps: must be positive, got 0.0"),
    Case("dropout-nan", [*TRAIN, "--model.dropout=nan"], "model.dropout: must be a finite number, got nan"),
    Case("mask-prob-inf", [*TRAIN, "--data.mask_prob=inf"], "data.mask_prob: must be a finite number, got inf"),
    Case("lora-alpha-nan", [*TRAIN, "--lora.alpha=nan"], "lora.alpha: must be a finite number, got nan"),
    # Paths that cannot be written: one line naming the setting and the path, before anything trains.
    Case("out-dir-proc", [*TRAIN, "--out_dir=/proc/nope"],
         "out_dir: cannot create the run directory /proc/nope/bad: No such file or directory"),
    Case("out-dir-a-file", [*TRAIN, "--out_dir={tmp}/runs/file"], "out_dir: cannot create the run directory",
         setup=lambda tmp, run: ((tmp / "runs").mkdir(), (tmp / "runs" / "file").write_text("x"))),
    Case("cache-dir-proc", [*TRAIN, "--data.cache_dir=/proc/nope"],
         "data.cache_dir: cannot create /proc/nope/data: No such file or directory"),
    # What only the data can tell, found at start-up.
    Case("tokenizer-smaller-than-shards", [*TRAIN, "--data.dir={tmp}/data"],
         "tokenizer.json: the tokenizer has 2 symbols but the 'train' shards of",
         setup=prepared(TEXT, tokenizer_of="ab" * 20)),
    Case("val-split-empty", [*TRAIN, "--data.dir={tmp}/data"],
         "the 'val' split holds 0 tokens, but a window of model.block_size=64 needs 65 tokens in one shard",
         setup=prepared(TEXT, val_fraction=0.0)),
    Case("val-split-short", [*TRAIN, "--data.dir={tmp}/data"],
         "the 'val' split holds 24 tokens, but a window of model.block_size=64 needs 65 tokens in one shard",
         setup=prepared("hello world " * 20)),
    Case("train-split-short", [*TRAIN, "--data.dir={tmp}/data", "--model.block_size=2000"],
         "the 'train' split holds 1548 tokens, but a window of model.block_size=2000 needs 2001 tokens in one shard",
         setup=prepared(TEXT)),
    Case("corpus-unknown", [*TRAIN, "--data.corpus=foo"], "data.corpus: unknown bundled corpus 'foo'; choose one of: shakespeare"),
    Case("tokenizer-unknown", [*TRAIN, "--data.tokenizer=foo"], "data.tokenizer: unknown tokenizer 'foo'; choose one of: char, bpe"),
    Case("tokenizer-missing-file", [*TRAIN, "--data.tokenizer={tmp}/tok.json"], "data.tokenizer: no such file: "),
    Case("tokenizer-dir-without-one", [*TRAIN, "--data.tokenizer={tmp}"], "holds no tokenizer.json; choose one of"),
    Case("tokenizer-a-text-file", [*TRAIN, "--data.tokenizer={tmp}/t.txt"], "t.txt: not a tokenizer file (",
         setup=write("t.txt", b"hello\n")),
    Case("mlm-tokenizer-unknown", [*TRAIN, "--task=mlm", "--model.family=bert", "--data.tokenizer=foo"],
         "data.tokenizer: unknown tokenizer 'foo'; choose one of: char, wordpiece, bpe"),
    Case("vocab-smaller-than-tokenizer", [*TRAIN, "--model.vocab_size=10"],
         "model.vocab_size=10 is smaller than the tokenizer's 65"),
    Case("task-of-another-family", [*TRAIN, "--task=mlm"], "task: a decoder model does not do 'mlm'"),
    # The reward task: its preference file, its labeller fields.
    Case("reward-on-a-decoder", [*TRAIN, "--task=reward"], "task: a decoder model does not do 'reward'"),
    Case("reward-bad-ranking", [*TRAIN, "--model.family=reward", "--data.train_file={tmp}/p.jsonl"],
         "p.jsonl:2: 'ranking' must list the indices 0..1 of 'responses' once each, best first",
         setup=write("p.jsonl", b'{"prompt": "", "chosen": "a", "rejected": "b"}\n'
                                b'{"prompt": "", "responses": ["a", "b"], "ranking": [0, 0]}\n')),
    Case("reward-labeller-noise-without-ids", [*TRAIN, "--model.family=reward", "--model.labeller_noise=true",
                                               "--data.train_file={tmp}/p.jsonl"],
         "p.jsonl: model.labeller_noise needs comparisons with a \"labeller\" id, and no line has one",
         setup=write("p.jsonl", b"".join(b'{"prompt": "%d", "chosen": "a", "rejected": "b"}\n' % i for i in range(12)))),
    Case("reward-eps-init", [*TRAIN, "--model.family=reward", "--model.labeller_eps_init=0.5"],
         "model.labeller_eps_init: must be in (0, 0.5), got 0.5"),
    # The routed family's experts (issue 23) and Lory's settings.
    Case("routed-unknown-expert-family", [*TRAIN, "--model.family=routed", "--model.experts=[decoder:tiny, foo:tiny]"],
         "model.experts[1]: unknown family 'foo' in 'foo:tiny'; an expert is one of: decoder, mamba, rnn, conv_attention"),
    Case("routed-preset-of-another-family", [*TRAIN, "--model.family=routed", "--model.experts=[decoder:tiny, mamba:nanogpt-cpu]"],
         "model.experts[1]: unknown mamba preset 'nanogpt-cpu'; choose one of: tiny, char"),
    Case("routed-zero-experts", [*TRAIN, "--model.family=routed", "--model.experts=[]"],
         "model.experts: lists 0 expert(s); a router needs at least two"),
    Case("routed-expert-run-missing", [*TRAIN, "--model.family=routed", "--model.expert_runs=[{tmp}/nope, null]"],
         "model.expert_runs[0]: "),
    Case("lory-segment-without-lory", [*TRAIN, "--model.lory_segment=8"],
         "model.lory_segment: is only used by moe_kind=lory (got moe_kind=token)"),
    # Fails after it started, before its first checkpoint (step 2): nothing to resume, so nothing is kept.
    Case("diverges-before-checkpoint", [*TRAIN, "--optim.name=adamw", "--optim.lr=1e30"], "non-finite loss at step"),
]

# Supervised fine-tuning of the tiny run (`axon finetune RUN --task=sft`): a bad example is one line
# naming its file and line, found before anything trains.
SFT = ["finetune", "{run}", "--task=sft", "--data.train_file={tmp}/d.jsonl", "--data.val_file={tmp}/d.jsonl",
       *TRAIN[2:]]
GOOD = b'{"prompt": "abc", "response": "cba"}\n'

SFT_CASES = [
    Case("sft-not-json", SFT, "d.jsonl:2: not valid JSON", setup=write("d.jsonl", GOOD + b'{"prompt": "a",\n')),
    Case("sft-no-response", SFT, "d.jsonl:2: no 'response'", setup=write("d.jsonl", GOOD + b'{"prompt": "a"}\n')),
    Case("sft-wrong-type", SFT, "d.jsonl:1: messages[1].content must be a string, got list",
         setup=write("d.jsonl", b'{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": []}]}\n')),
    Case("sft-too-long", SFT, "d.jsonl:2: the example is 121 tokens in the chat template, so the model would read 120, "
         "more than model.block_size=64", setup=write("d.jsonl", GOOD + b'{"prompt": "abc", "response": "' + b"x" * 99 + b'"}\n')),
    Case("sft-unencodable", SFT, "d.jsonl:2: response: character '7' at position 0 is not in the character vocabulary",
         setup=write("d.jsonl", GOOD + b'{"prompt": "abc", "response": "7"}\n')),
    Case("sft-other-model", ["train", "--task=sft", "--train.init_from={run}", "--model.n_layer=3",
                             "--data.train_file={tmp}/d.jsonl", *TRAIN[1:]],
         "train.init_from: the model is not", setup=write("d.jsonl", GOOD)),
]

# PPO from the tiny run (`axon finetune RUN --task=ppo`): bad prompts, rewards and rollout sizes are
# one line each, found before anything trains (axon.tasks.ppo).
PPO = ["finetune", "{run}", "--task=ppo", "--ppo.prompts={tmp}/p.jsonl", "--ppo.val_prompts={tmp}/p.jsonl",
       "--ppo.max_new_tokens=8", "--ppo.rollout_batch=4", *TRAIN[2:]]
PROMPT = b'{"prompt": "abc"}\n'

PPO_CASES = [
    Case("ppo-unknown-judge", ["config", "--ppo.reward=gold:foo"], "ppo.reward: unknown judge 'gold:foo'"),
    Case("ppo-prompts-not-json", PPO, "p.jsonl:2: not valid JSON", setup=write("p.jsonl", PROMPT + b'{"prompt": \n')),
    Case("ppo-no-prompt", PPO, "p.jsonl:2: expected an object with a 'prompt' key",
         setup=write("p.jsonl", PROMPT + b'{"response": "abc"}\n')),
    Case("ppo-prompt-too-long", PPO, "p.jsonl:2: the prompt is 78 tokens in the chat template, more than "
         "model.block_size=64 - ppo.max_new_tokens=8", setup=write("p.jsonl", PROMPT + b'{"prompt": "' + b"x" * 60 + b'"}\n')),
    Case("ppo-rollout-does-not-split", [*PPO, "--ppo.rollout_batch=3"],
         "ppo.rollout_batch: 3 answers do not split into minibatches of train.batch_size x train.grad_accum = 2",
         setup=write("p.jsonl", PROMPT)),
    Case("ppo-reward-not-a-run", [*PPO, "--ppo.reward={tmp}/nothing"], "is neither gold:arithmetic, gold:instructions, gold:sentiment "
         "nor a run directory", setup=write("p.jsonl", PROMPT)),
    Case("ppo-reward-a-language-model", [*PPO, "--ppo.reward={run}"], "is a decoder run, not a reward model",
         setup=write("p.jsonl", PROMPT)),
    Case("ppo-no-init-from", ["train", "--task=ppo", "--model.family=actor_critic", *TRAIN[1:]],
         "train.init_from: ppo starts from a language model"),
    Case("ppo-critic-shape-of-a-shared-head", ["config", "--model.family=actor_critic", "--model.critic_n_layer=1"],
         "model.critic_n_layer: sets the shape of a separate critic"),
    Case("ppo-critic-from-a-language-model", [*PPO, "--model.value_head=separate", "--ppo.value_init={run}"],
         "ppo.value_init: ", setup=write("p.jsonl", PROMPT)),
]

# GRPO from the tiny run (`axon finetune RUN --task=grpo`): groups of one, rollouts that do not
# split into minibatches and prompts longer than the context are one line each (axon.tasks.grpo).
GRPO = ["finetune", "{run}", "--task=grpo", "--grpo.prompts={tmp}/p.jsonl", "--grpo.val_prompts={tmp}/p.jsonl",
        "--grpo.max_new_tokens=8", "--grpo.rollout_prompts=1", "--grpo.group_size=2", *TRAIN[2:]]

GRPO_CASES = [
    Case("grpo-group-of-one", ["config", "--grpo.group_size=1"], "grpo.group_size: must be >= 2"),
    Case("grpo-rollout-does-not-split", [*GRPO, "--grpo.group_size=3"],
         "grpo.rollout_prompts: 3 answers do not split into minibatches of train.batch_size x train.grad_accum = 2",
         setup=write("p.jsonl", PROMPT)),
    Case("grpo-prompt-too-long", GRPO, "p.jsonl:2: the prompt is 78 tokens in the chat template, more than "
         "model.block_size=64 - grpo.max_new_tokens=8",
         setup=write("p.jsonl", PROMPT + b'{"prompt": "' + b"x" * 60 + b'"}\n')),
]

# DPO from the tiny run (`axon finetune RUN --task=dpo`): a bad comparison is one line naming its
# file and line, found before anything trains (axon.tasks.dpo, axon.data.preferences).
DPO = ["finetune", "{run}", "--task=dpo", "--data.train_file={tmp}/c.jsonl", "--data.val_file={tmp}/c.jsonl",
       *TRAIN[2:]]
PAIR = b'{"prompt": "abc", "chosen": "a b c", "rejected": "cba"}\n'

DPO_CASES = [
    Case("dpo-unknown-loss", ["config", "--dpo.loss=kto"], "dpo.loss: unknown loss 'kto'; choose one of: dpo, cdpo"),
    Case("dpo-beta", ["config", "--dpo.beta=0"], "dpo.beta: must be > 0, got 0"),
    Case("dpo-smoothing-unused", ["config", "--dpo.label_smoothing=0.1"],
         "dpo.label_smoothing: is used by the cdpo and robust losses only"),
    Case("dpo-smoothing-half", ["config", "--dpo.loss=cdpo", "--dpo.label_smoothing=0.5"],
         "dpo.label_smoothing: must be in [0, 0.5)"),
    Case("dpo-empty-side", DPO, "c.jsonl:2: 'rejected' is empty",
         setup=write("c.jsonl", PAIR + b'{"prompt": "abc", "chosen": "a b c", "rejected": " "}\n')),
    Case("dpo-prompt-too-long", DPO, "c.jsonl:2: the prompt alone fills model.block_size=64 tokens in the chat template",
         setup=write("c.jsonl", PAIR + b'{"prompt": "' + b"x" * 80 + b'", "chosen": "a", "rejected": "b"}\n')),
    Case("dpo-answer-too-long", DPO, "c.jsonl:2: prompt + response is 121 tokens in the chat template, so the model "
         "would read 120, more than model.block_size=64",
         setup=write("c.jsonl", PAIR + b'{"prompt": "abc", "chosen": "' + b"x" * 99 + b'", "rejected": "b"}\n')),
    Case("dpo-end-marker", DPO, "c.jsonl:2: a response holds the end marker '$'",
         setup=write("c.jsonl", PAIR + b'{"prompt": "abc", "chosen": "a$", "rejected": "b"}\n')),
    Case("dpo-bad-ranking", DPO, "c.jsonl:2: 'ranking' must list the indices 0..2",
         setup=write("c.jsonl", PAIR + b'{"prompt": "abc", "responses": ["a", "b", "c"], "ranking": [0, 0, 1]}\n')),
    Case("dpo-no-init-from", ["train", "--task=dpo", "--data.train_file={tmp}/c.jsonl", *TRAIN[1:]],
         "train.init_from: dpo trains a language model from a starting run", setup=write("c.jsonl", PAIR)),
]

CASES = CONFIG + TRAIN_CASES + SFT_CASES + PPO_CASES + GRPO_CASES + DPO_CASES


@pytest.fixture(scope="module")
def results(tmp_path_factory, tiny_run, axon_cache):
    root = tmp_path_factory.mktemp("config-and-train")
    return root, run_all(CASES, root, tiny_run, axon_cache)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_line(case, results):
    root, found = results
    assert_user_error(found[case.id], case.expect, case.argv[0])


REFUSED_RUNS = TRAIN_CASES + SFT_CASES + [c for c in PPO_CASES + GRPO_CASES + DPO_CASES if c.argv[0] != "config"]


@pytest.mark.parametrize("case", REFUSED_RUNS, ids=[c.id for c in REFUSED_RUNS])
def test_a_refused_run_leaves_nothing_behind(case, results):
    root, _ = results
    runs = root / case.id / "runs"
    left = [p.relative_to(runs) for p in runs.rglob("*")] if runs.is_dir() else []
    assert left in ([], [Path("file")]), left  # out-dir-a-file's own file stays


def test_a_failure_after_the_run_directory_is_made_removes_it(tmp_path, axon_cache, monkeypatch):
    """A programming error keeps its traceback, and the directory it made is removed; an empty run
    directory the user made stays (empty)."""
    import axon.train.run as run
    from axon.config import load_config

    def broken(cfg):
        raise RuntimeError("a bug while building the model")

    monkeypatch.setattr(run, "build_model", broken)
    argv = [a.replace("{tmp}", str(tmp_path)) for a in TRAIN[1:]] + [f"--data.cache_dir={axon_cache}"]
    with pytest.raises(RuntimeError, match="a bug"):
        run.train(load_config(None, argv))
    assert list((tmp_path / "runs").iterdir()) == []

    (tmp_path / "runs" / "mine").mkdir()
    with pytest.raises(RuntimeError, match="a bug"):
        run.train(load_config(None, [*argv, "--name=mine"]))
    assert (tmp_path / "runs" / "mine").is_dir() and list((tmp_path / "runs" / "mine").iterdir()) == []
