"""PPO on two processes (torchrun, gloo on CPU, DDP) against one process with the same global
batch, and a two-process run resumed from the middle of a rollout.

Each rank samples its half of every rollout, each row from its own generator, and the ranks
gather the whole rollout: so the two-process run must sample exactly the rollouts of the
one-process run (the same tokens, compared with torch.equal, hence the same gold scores and
lengths) and train to the same losses up to summation order. As in tests/train/test_distributed.py
the runs train in float64, where that order moves a loss by ~1e-14 and the bound
(tests/numerics.py, kind 3) is ~1e-11; in float32 a different rounding could flip a sampled token
and the runs would part. The separate critic (one layer) is on, so DDP averages its gradients too,
and PPO-ptx, whose second forward pass goes through DDP's wrapper in the same step.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from numerics import order_tol

from axon.config import dump_config, load_config
from axon.tasks.finetune import finetune_config
from axon.train.checkpoint import list_checkpoints
from axon.train.logging import read_metrics
from axon.train.run import load_run, train

pytestmark = pytest.mark.skipif(not torch.distributed.is_available() or not sys.platform.startswith("linux"),
                                reason="needs torch.distributed with gloo (Linux)")

QUIET = ["--log.progress=false", "--train.threads=1", "--train.sample_tokens=0"]
GLOBAL_BATCH, STEPS = 8, 12  # rollouts of 16 answers, 2 epochs: 4 steps per rollout, 3 rollouts


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("ppo-ddp")


@pytest.fixture(scope="module")
def recipe(root):
    """A tiny language model (30 steps) and the PPO recipe that starts from it, as a file."""
    lm = load_config(None, ["--model.preset=tiny", "--model.block_size=128", f"--out_dir={root}", "--name=lm",
                            "--train.max_steps=30", "--train.eval_interval=30", "--train.eval_batches=1", *QUIET])
    lm = Path(train(lm)["run_dir"])
    cfg = finetune_config(lm, None, ["--task=ppo", f"--out_dir={root}", "--model.value_head=separate", "--model.dropout=0.0",
                                     "--model.critic_n_layer=1", "--ppo.value_init=scratch", "--ppo.rollout_batch=16",
                                     "--ppo.epochs=2", "--ppo.max_new_tokens=16", "--ppo.kl_target=1.0",
                                     "--ppo.kl_horizon=64", "--ppo.ptx_coef=0.1", "--optim.name=adamw", "--optim.lr=3e-3",
                                     "--schedule.name=constant", "--schedule.warmup_steps=0", "--train.dtype=fp64",
                                     f"--train.max_steps={STEPS}", "--train.checkpoint_interval=6",
                                     "--train.keep_checkpoints=10", "--train.eval_interval=1000",
                                     "--train.eval_batches=2", "--train.log_interval=1", *QUIET])
    path = root / "ppo.yaml"
    path.write_text(dump_config(cfg))
    return path


def axon(*argv, nproc=2) -> str:
    cmd = [sys.executable, "-m", "axon", "train", *(["--nproc", str(nproc)] if nproc > 1 else []), *argv]
    out = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:]
    return out.stdout


def records(run):
    return [r for r in read_metrics(Path(run) / "metrics.jsonl") if "train_loss" in r]


@pytest.mark.numerics
def test_two_processes_sample_the_same_rollouts_and_train_to_the_same_losses(root, recipe):
    one = train(load_config(recipe, [f"--train.batch_size={GLOBAL_BATCH}", "--name=one"]))
    axon("--config", str(recipe), f"--train.batch_size={GLOBAL_BATCH // 2}", "--name=two")
    a, b = records(root / "one"), records(root / "two")
    assert [r["step"] for r in b] == list(range(1, STEPS + 1)) and [r["rollout"] for r in b][-1] == 2
    # The same answers: the gold scores and lengths of every rollout are equal, not close.
    for key in ("score", "gold", "length", "ended"):
        assert [r[key] for r in a] == [r[key] for r in b], key
    _, m1, _ = load_run(root / "one", "cpu")
    _, m2, _ = load_run(root / "two", "cpu")
    assert m2.rollout.held == 2 and torch.equal(m1.rollout.tokens, m2.rollout.tokens)
    assert torch.equal(m1.rollout.mask, m2.rollout.mask)
    # The same losses up to summation order: float64 sums of at most 256 terms (the MLP width; a
    # minibatch has 8 x 16 answer tokens), through STEPS x (forward + backward) x 3 reductions
    # (two policy blocks and the head; the critic's one block is shallower).
    for key in ("train_loss", "value_loss", "ptx_loss", "kl", "beta", "explained_variance"):
        scale = max(1.0, max(abs(r[key]) for r in a))
        tol = order_tol(torch.float64, n=256, depth=STEPS * 2 * 3, scale=scale)
        worst = max(abs(x[key] - y[key]) for x, y in zip(a, b))
        assert worst <= tol, f"{key}: largest difference {worst:.2e} > {tol:.2e}"
    two = json.loads((root / "two" / "result.json").read_text())
    # The validation answers are the same too: their mean gold differs only in the order of its sum
    # (each rank sums its share, then the shares are added: 1 ulp on an Intel Xeon), while one answer
    # changed would move it by a whole score over the validation prompts, orders above this bound.
    assert two["world_size"] == 2
    assert abs(two["val_gold"] - one["val_gold"]) <= order_tol(torch.float64, n=256, depth=1), (two["val_gold"], one["val_gold"])
    assert abs(two["val_loss"] - one["val_loss"]) <= order_tol(torch.float64, n=256, depth=STEPS * 6 + 1)


def test_a_two_process_run_resumes_from_the_middle_of_a_rollout_bit_for_bit(root, recipe):
    run = root / "two"
    if not (run / "result.json").is_file():
        pytest.skip("needs the two-process run of the test above")
    copy = root / "two-copy"
    import shutil

    shutil.copytree(run, copy)
    for c in list_checkpoints(copy / "checkpoints"):
        if int(c.name.split("_")[1]) > 6:  # step 6: the middle of rollout 1 (steps 4-7)
            shutil.rmtree(c)
    (copy / "config.yaml").write_text((copy / "config.yaml").read_text().replace(str(run), str(copy)))
    axon("--resume", str(copy))
    losses = lambda r: [(x["step"], x["train_loss"], x["value_loss"], x["kl"]) for x in records(r)]  # noqa: E731
    assert losses(copy) == losses(run)
    assert json.loads((copy / "result.json").read_text())["val_loss"] == json.loads((run / "result.json").read_text())["val_loss"]
