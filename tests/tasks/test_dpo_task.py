"""The dpo task: comparisons in the chat template (the mask on the answers only, a ranking's
pairs, batches a pure function of their arguments), a tiny pretrain -> DPO run that learns a
planted preference on held-out prompts, every loss of the family through the task, the frozen
reference never in a checkpoint, exact resume, and bad input named by file and line."""

import json
import random
import shutil
from pathlib import Path

import pytest
import torch

from axon.cli import main
from axon.data.chat import IGNORE, END
from axon.data.preferences import encode_comparisons, read_preferences
from axon.data.tokenizers import load_tokenizer
from axon.errors import DataError
from axon.tasks import build_task
from axon.tasks.dpo import chosen_fell, plot_rewards, preference_figures
from axon.tasks.finetune import finetune_config
from axon.train.checkpoint import list_checkpoints
from axon.train.logging import read_metrics
from axon.train.run import load_run, train

QUIET = ["--log.progress=false", "--train.threads=1"]
LETTERS = "abcdefghijklmnopqrstuvwxyz"


def write_jsonl(path, objects):
    path.write_text("".join(json.dumps(o) + "\n" for o in objects))
    return path


def planted_rows(words):
    """The planted preference: the prompt's letters spaced out beat them reversed."""
    return [{"prompt": w, "chosen": " ".join(w), "rejected": w[::-1]} for w in words]


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("dpo")


@pytest.fixture(scope="module")
def pretrained(root, tmp_path_factory):
    cache = tmp_path_factory.getbasetemp() / "axon-cache"
    assert main(["train", "--model.preset=tiny", "--train.max_steps=20", "--train.sample_tokens=0", *QUIET,
                 f"--data.cache_dir={cache}", f"--out_dir={root / 'runs'}", "--name=pre"]) == 0
    return root / "runs" / "pre"


@pytest.fixture(scope="module")
def files(root):
    rng = random.Random(0)
    words = sorted({"".join(rng.choice(LETTERS) for _ in range(rng.randint(3, 5))) for _ in range(60)})
    return (write_jsonl(root / "train.jsonl", planted_rows(words[:48])),
            write_jsonl(root / "val.jsonl", planted_rows(words[48:])))  # held-out prompts


DPO_ARGS = ["--task=dpo", "--optim.name=adamw", "--optim.lr=3e-3", "--schedule.warmup_steps=5",
            "--train.batch_size=8", "--train.log_interval=5", "--train.eval_interval=10", *QUIET]


def dpo_args(root, files, name, *extra):
    return [*DPO_ARGS, f"--data.train_file={files[0]}", f"--data.val_file={files[1]}", f"--out_dir={root / 'runs'}",
            f"--name={name}", *extra]


def losses(run_dir):
    return {r["step"]: r["train_loss"] for r in read_metrics(Path(run_dir) / "metrics.jsonl") if "train_loss" in r}


@pytest.fixture(scope="module")
def dpo_run(root, pretrained, files):
    assert main(["finetune", str(pretrained), *dpo_args(root, files, "dpo", "--train.max_steps=30")]) == 0
    return root / "runs" / "dpo"


# ----------------------------------------------------------------------------------------------
# The data


def test_each_side_is_the_chat_template_with_the_loss_on_the_answer(tmp_path, pretrained):
    tok = load_tokenizer(pretrained / "tokenizer.json")
    f = write_jsonl(tmp_path / "c.jsonl", [{"prompt": "abc", "chosen": "a b c", "rejected": "cba"},
                                           {"prompt": "hat", "responses": ["t a h", "h a t", "tah"], "ranking": [1, 0, 2]}])
    pairs, cut = encode_comparisons(read_preferences(f), tok, 64, False, str(f))
    assert cut == 0 and len(pairs) == 1 + 3  # a ranking of 3 gives its 3 pairs
    x, y = pairs.collate(range(4))
    assert x.shape == y.shape and x.shape[:2] == (4, 2)  # rows along dim 0: (pairs, chosen/rejected, T)
    text = lambda row: tok.decode([t for t in row.tolist() if t != IGNORE])  # noqa: E731
    assert [text(y[b, s]) for b in range(4) for s in range(2)] == [
        "a b c$", "cba$", "h a t$", "t a h$", "h a t$", "tah$", "t a h$", "tah$"]
    n = len("User: abc\nAssistant: cba$")
    assert tok.decode(x[0, 1, : n - 1].tolist()) == "User: abc\nAssistant: cba"  # x = ids[:-1], y = ids[1:]
    assert (y[0, 1, : n - 1 - 4] == IGNORE).all() and (y[0, 1, n - 1:] == IGNORE).all()  # prompt and padding
    a = pairs.get_batch(3, 5, 64, seed=7, micro_step=1)
    b = pairs.get_batch(3, 5, 64, seed=7, micro_step=1)
    c = pairs.get_batch(3, 5, 64, seed=7, micro_step=0)
    assert all(torch.equal(u, v) for u, v in zip(a, b)) and a[0].shape[0] == 5
    assert not all(torch.equal(u, v) for u, v in zip(a, c)) or a[0].shape != c[0].shape
    with pytest.raises(DataError, match=r"c.jsonl:1: prompt \+ response is 27 tokens in the chat template, so the "
                                        r"model would read 26, more than model.block_size=24"):
        encode_comparisons(read_preferences(f), tok, 24, False, str(f))
    with pytest.raises(DataError, match=r"c.jsonl:1: the prompt alone fills model.block_size=20 tokens"):
        encode_comparisons(read_preferences(f), tok, 20, True, str(f))  # "User: abc\nAssistant: " is 21
    cut_pairs, cut = encode_comparisons(read_preferences(f), tok, 24, True, str(f))
    assert cut == 3 and [len(s) for s in cut_pairs.seqs] == [25] * 5  # 27 tokens cut to 25; "cba$", "tah$" fit
    assert [tok.decode(s.tolist()).endswith(END) for s in cut_pairs.seqs] == [False, True, False, False, True]


# ----------------------------------------------------------------------------------------------
# Runs


def test_dpo_learns_a_planted_preference_on_held_out_prompts(dpo_run, pretrained):
    cfg, model, _ = load_run(dpo_run, device="cpu")
    assert cfg.task == "dpo" and cfg.train.init_from == str(pretrained) and cfg.dpo.loss == "dpo"
    task = build_task(cfg, torch.device("cpu"))
    _, before, _ = load_run(pretrained, device="cpu")
    start = preference_figures(before, task.objective, task.val_data, 8, cfg.model.block_size)
    end = preference_figures(model, task.objective, task.val_data, 8, cfg.model.block_size)
    # the policy starts as its reference: every implicit reward is 0, so no pair is ordered yet
    assert start["margin"] == 0 and start["accuracy"] == 0 and start["chosen_reward"] == 0
    assert end["accuracy"] >= 0.9 and end["margin"] > 0.5
    result = json.loads((dpo_run / "result.json").read_text())
    for k, v in end.items():
        assert result[f"val_{k}"] == pytest.approx(v, rel=1e-6, abs=1e-9)
    assert result["val_margin"] == pytest.approx(result["val_chosen_reward"] - result["val_rejected_reward"])
    records = [r for r in read_metrics(dpo_run / "metrics.jsonl") if "train_loss" in r]
    assert [r["step"] for r in records] == [5, 10, 15, 20, 25, 30]
    for r in records:  # both rewards and the margin at every logged step, not only the margin
        assert {"train_chosen_reward", "train_rejected_reward", "train_margin", "train_accuracy",
                "train_chosen_logp", "train_rejected_logp"} <= set(r)
        assert r["train_margin"] == pytest.approx(r["train_chosen_reward"] - r["train_rejected_reward"], abs=1e-6)
    assert records[-1]["train_margin"] > records[0]["train_margin"]
    assert records[1]["val_accuracy"] >= 0.5  # evaluations report the pairwise accuracy too
    assert (dpo_run / "rewards.png").stat().st_size > 10_000  # chosen, rejected, margin; accuracy


def test_the_rewards_figure_says_when_chosen_rewards_fall_while_the_margin_grows(tmp_path):
    def rec(step, chosen, rejected):
        return {"step": step, "train_chosen_reward": chosen, "train_rejected_reward": rejected,
                "train_margin": chosen - rejected, "train_accuracy": 0.5 + step / 100}

    falling = [rec(10, 0.0, 0.0), rec(20, -0.3, -0.8), rec(30, -0.6, -1.9)]
    rising = [rec(10, 0.0, 0.0), rec(20, 0.2, -0.3), rec(30, 0.4, -0.6)]
    both_down_margin_flat = [rec(10, 0.0, -0.5), rec(30, -1.0, -1.5)]
    assert chosen_fell(falling) and not chosen_fell(rising) and not chosen_fell(both_down_margin_flat)
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in [{"step": 5, "train_loss": 1.0}]))
    assert plot_rewards(run) is None and not (run / "rewards.png").exists()  # not a dpo-family run
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in falling))
    assert plot_rewards(run) == run / "rewards.png" and (run / "rewards.png").stat().st_size > 10_000


def test_the_reference_is_frozen_and_in_no_checkpoint(dpo_run, pretrained):
    from safetensors.torch import load_file

    cfg, model, _ = load_run(dpo_run, device="cpu")
    task = build_task(cfg, torch.device("cpu"))
    ref = task.objective.reference
    _, start, _ = load_run(pretrained, device="cpu")
    assert not ref.training and not any(p.requires_grad for p in ref.parameters())
    assert all(torch.equal(a, b) for a, b in zip(ref.state_dict().values(), start.state_dict().values()))
    names = load_file(str(list_checkpoints(dpo_run / "checkpoints")[0] / "model.safetensors"))
    assert set(names) <= set(model.state_dict())  # the policy's tensors only


@pytest.mark.parametrize("loss,extra", [("ipo", ["--dpo.beta=0.5"]), ("cdpo", ["--dpo.label_smoothing=0.1"]),
                                        ("robust", ["--dpo.label_smoothing=0.1"]), ("simpo", ["--dpo.beta=2"]),
                                        ("rpo", ["--dpo.alpha=0.5"])])
def test_every_loss_of_the_family_trains(root, pretrained, files, loss, extra):
    cfg = finetune_config(pretrained, None, dpo_args(root, files, f"dpo-{loss}", f"--dpo.loss={loss}",
                                                     "--train.max_steps=15", *extra))
    result = train(cfg)
    task = build_task(cfg, torch.device("cpu"))
    assert (task.objective.reference is None) == (loss == "simpo")  # SimPO loads no reference
    assert result["val_accuracy"] >= 0.75, result


def test_dpo_run_resumes_exactly(root, pretrained, files):
    args = dpo_args(root, files, "resume", "--train.max_steps=20", "--train.checkpoint_interval=10",
                    "--train.log_interval=1")
    run = Path(train(finetune_config(pretrained, None, args))["run_dir"])
    copy = root / "runs" / "resume-copy"
    shutil.copytree(run, copy)
    newest = list_checkpoints(copy / "checkpoints")[0]
    assert newest.name == "step_00000020"
    shutil.rmtree(newest)
    (copy / "config.yaml").write_text((copy / "config.yaml").read_text().replace(str(run), str(copy)))
    resumed = train(resume=copy)
    assert resumed["step"] == 20 and len(losses(run)) == 20
    assert losses(copy) == losses(run)
    result = json.loads((run / "result.json").read_text())
    assert resumed["val_loss"] == result["val_loss"] and resumed["val_margin"] == result["val_margin"]


def test_axon_eval_reports_the_preference_figures(dpo_run, capsys):
    assert main(["eval", str(dpo_run), "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    result = json.loads((dpo_run / "result.json").read_text())
    for k in ("loss", "accuracy", "chosen_reward", "rejected_reward", "margin"):
        assert out[k] == pytest.approx(result[f"val_{k}"], rel=1e-6), k
