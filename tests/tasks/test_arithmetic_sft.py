"""Arithmetic on the tasks: an sft run from scratch on worked problems reports the exact-match
accuracy of its greedy answers (``val_gold``), the shipped recipe fits its files, and the ppo
task takes ``gold:arithmetic`` as its reward.

One tiny model (1 layer, 32 wide, ~14k parameters) trains for 200 AdamW steps on 8 short problems; its
validation set is 4 of them and 4 it never saw, so it answers some right and some wrong.
"""

import json
from pathlib import Path

import pytest
import torch

from axon.config import load_config
from axon.data.chat import END, prompt_ids
from axon.feedback import arithmetic_gold, generate_problems
from axon.feedback.arithmetic import MAX_PROMPT_CHARS, MAX_RESPONSE_CHARS
from axon.generate import cut_at_stop, generate
from axon.tasks import build_task
from axon.tasks.finetune import finetune_config
from axon.train.run import load_run, train

QUIET = ["--log.progress=false", "--train.threads=1", "--train.sample_tokens=0"]
RECIPE = Path(__file__).resolve().parents[2] / "configs" / "grpo" / "arithmetic_sft.yaml"
TEMPLATE_CHARS = len("User: \nAssistant: $")  # the chat template around a pair


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("arith")


@pytest.fixture(scope="module")
def files(root):
    """(train file, val file): 8 worked problems that fit a block of 64; val = 4 of them + 4 unseen."""
    short = [p for p in generate_problems(400, seed=1) if len(p.prompt) + len(p.demonstration()) + TEMPLATE_CHARS <= 64]
    seen, unseen = short[:8], short[8:12]

    def write(name, problems):
        path = root / name
        rows = [{"prompt": p.prompt, "response": p.demonstration()} for p in problems]
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        return path

    return write("train.jsonl", seen), write("val.jsonl", seen[:4] + unseen)


@pytest.fixture(scope="module")
def sft_run(root, files):
    cfg = load_config(None, ["--task=sft", "--model.family=decoder", "--model.block_size=64", "--model.n_layer=1",
                             "--model.n_head=2", "--model.n_embd=32", f"--data.train_file={files[0]}",
                             f"--data.val_file={files[1]}", "--train.max_steps=200", "--train.batch_size=8",
                             "--optim.name=adamw", "--optim.lr=1e-2", "--schedule.warmup_steps=10",
                             "--train.eval_interval=200", f"--out_dir={root}", "--name=sft", *QUIET])
    return train(cfg)


def test_sft_from_scratch_reports_the_exact_match_accuracy_of_greedy_answers(sft_run, files):
    _, model, tok = load_run(sft_run["run_dir"], device="cpu")
    assert tok.decode(tok.encode("0123456789+-*=")) == "0123456789+-*="  # a char tokenizer of the files: digits
    rows = [json.loads(line) for line in files[1].read_text().splitlines()]
    ids = [prompt_ids(tok, r["prompt"])[1] for r in rows]
    new = min(64, model.config.block_size - max(map(len, ids)))  # one limit for the split (sft.gold_figures)
    right = []
    for row, x in zip(rows, ids):  # each prompt alone, greedily: a path other than the task's batched one
        out = generate(model, [x], new, temperature=0.0, stop_strings=[END], decode=tok.decode)
        right.append(arithmetic_gold(row["prompt"], cut_at_stop(tok.decode(out.tokens[0]), [END])))
    assert 0 < sum(right) < len(rows)  # an informative case: some answers exactly right, not all
    assert sft_run["val_gold"] == pytest.approx(sum(right) / len(rows), abs=1e-12)
    assert json.loads((Path(sft_run["run_dir"]) / "result.json").read_text())["val_gold"] == sft_run["val_gold"]


def test_the_shipped_recipe_fits_the_bundled_files():
    cfg = load_config(RECIPE, QUIET)
    assert cfg.task == "sft" and cfg.train.init_from is None and cfg.data.tokenizer == "char"
    assert cfg.model.block_size >= MAX_PROMPT_CHARS + MAX_RESPONSE_CHARS + TEMPLATE_CHARS - 1  # n tokens train n - 1
    task = build_task(cfg, torch.device("cpu"))  # an example longer than the block would be an error (no truncate)
    assert task.model_metrics is not None and len(task.train_data.seqs) == 5000


def test_ppo_takes_the_arithmetic_judge_as_its_reward(sft_run, files, root):
    from axon.tasks.ppo import JudgeReward

    cfg = finetune_config(sft_run["run_dir"], None, [
        "--task=ppo", "--ppo.reward=gold:arithmetic", f"--ppo.prompts={files[0]}", f"--ppo.val_prompts={files[1]}",
        "--ppo.rollout_batch=8", "--ppo.epochs=1", "--ppo.max_new_tokens=30", "--train.batch_size=8",
        "--train.max_steps=2", "--train.eval_interval=2", "--train.eval_batches=1", f"--out_dir={root}", "--name=ppo",
        *QUIET])
    task = build_task(cfg, torch.device("cpu"))
    assert isinstance(task.objective.reward, JudgeReward) and task.objective.reward.judge is arithmetic_gold
    assert task.objective.gold is arithmetic_gold  # ppo.gold auto: the reward itself
    result = train(cfg)
    assert result["val_score"] == result["val_gold"] and 0 <= result["val_gold"] <= 1
