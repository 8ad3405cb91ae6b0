"""BERT end to end through the command line: the masked-LM recipe learns, `axon finetune` loads
its encoder under a classification head, the classify recipe learns, bad data ends in one line."""

import json
import random
from pathlib import Path

import pytest
import torch
from numerics import order_tol

from axon.cli import main
from axon.config import load_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
MLM, SPEAKERS = str(CONFIGS / "bert_tiny_mlm.yaml"), str(CONFIGS / "bert_tiny_speakers.yaml")
SMALL = ["--model.n_layer=2", "--model.n_embd=64", "--model.block_size=32", "--train.batch_size=16",
         "--log.progress=false", "--train.threads=1", "--schedule.warmup_steps=5", "--train.eval_batches=4"]


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("bert")


@pytest.fixture(scope="module")
def mlm_run(root):
    """The masked-LM recipe, small and short: 40 steps on the bundled pretraining text."""
    rc = main(["train", "--config", MLM, *SMALL, "--train.max_steps=40",
               "--train.eval_interval=20", "--train.log_interval=1", "--optim.lr=3e-3", f"--out_dir={root}", "--name=mlm",
               f"--data.cache_dir={root / 'cache'}"])
    assert rc == 0
    return root / "mlm"


def records(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.numerics
def test_masked_lm_recipe_learns(mlm_run, capsys):
    recs = records(mlm_run)
    train = [r["train_loss"] for r in recs if "train_loss" in r]
    final = recs[-1]
    assert train[0] > 7.0  # about ln(2048) = 7.6 at the start
    # learnt: a nat below the start, and blanks filled right 100x as often as chance (1/2048)
    assert final["val_loss"] < train[0] - 1.0 and final["val_accuracy"] > 0.05, (train, final)
    assert "blanks right" in (mlm_run / "samples.txt").read_text()
    capsys.readouterr()
    assert main(["eval", str(mlm_run), "--json"]) == 0  # the same fixed blanks: the run's own final figure
    metrics = json.loads(capsys.readouterr().out)
    # The same blanks in batches of 32 (eval's default) rather than the run's 16: the same sums in
    # another order. n: the cross-entropy's logsumexp over the vocabulary, the longest reduction;
    # depth: the layers, the MLM head's transform, that logsumexp, the mean over each batch's targets.
    m = load_config(mlm_run / "config.yaml").model
    n, depth = max(m.vocab_size, m.n_embd, m.hidden, m.block_size), m.n_layer + 3
    assert abs(metrics["loss"] - final["val_loss"]) <= order_tol(torch.float32, n, depth, scale=max(1.0, final["val_loss"]))
    assert metrics["accuracy"] == final["val_accuracy"]
    assert metrics["perplexity"] == pytest.approx(2.718281828459045 ** metrics["loss"])
    assert main(["sample", str(mlm_run)]) == 2 and "does not continue text" in capsys.readouterr().err


def speaker_args(root, name):
    return ["--config", SPEAKERS, *SMALL, "--train.max_steps=10", "--train.eval_interval=5",
            f"--out_dir={root}", f"--name={name}", f"--data.cache_dir={root / 'cache'}"]


def test_finetune_loads_the_pretrained_encoder_under_a_new_head(mlm_run, root, capsys):
    args = speaker_args(root, "ft")
    args.remove("--model.n_layer=2")  # the architecture is the pretrained run's; model overrides must agree
    rc = main(["finetune", str(mlm_run), *args])
    out, err = capsys.readouterr()
    assert rc == 0, err
    # 5 embedding tensors (3 tables, LayerNorm weight and bias) + 14 per layer, x 2 layers
    assert "loaded 33 tensors; new (initialised here): classifier; dropped from the checkpoint: mlm" in err
    assert "val accuracy" in out and "majority baseline 0.1647" in out
    run = root / "ft"
    assert json.loads((run / "labels.json").read_text())["labels"][0] == "CORIOLANUS"
    assert (run / "tokenizer.json").read_text() == (mlm_run / "tokenizer.json").read_text()
    assert main(["eval", str(run), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["tokens"] == 255 and 0 <= metrics["accuracy"] <= 1 and metrics["majority_baseline"] == 42 / 255  # a count ratio, exact


def test_finetune_refuses_another_architecture(mlm_run, root, capsys):
    assert main(["finetune", str(mlm_run), "--model.n_layer=3", f"--out_dir={root}"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "fine-tuning keeps the pretrained run's architecture" in err


def test_init_from_an_mlm_run_of_another_size_is_an_error(mlm_run, root, capsys):
    args = speaker_args(root, "bad") + ["--model.n_embd=32", f"--train.init_from={mlm_run}",
                                        f"--data.tokenizer={mlm_run / 'tokenizer.json'}"]
    assert main(["train", *args]) == 2
    assert "has shape" in capsys.readouterr().err


def test_classify_recipe_learns_a_synthetic_task(root, tmp_path):
    """Label = which of two word families a text draws from: a tiny model learns it in 40 steps."""
    rng = random.Random(0)
    fam = {"land": "hill field stone tree grass road".split(), "sea": "wave salt ship tide shore fish".split()}
    rows = [(" ".join(rng.choice(fam[lab]) for _ in range(rng.randint(2, 6))), lab) for lab in ["land", "sea"] * 150]
    rng.shuffle(rows)
    for name, part in (("train.tsv", rows[:240]), ("val.tsv", rows[240:])):
        (tmp_path / name).write_text("".join(f"{t}\t{lab}\n" for t, lab in part))
    rc = main(["train", "--config", SPEAKERS, *SMALL, "--train.max_steps=40", "--optim.lr=1e-3",
               f"--data.train_file={tmp_path / 'train.tsv'}", f"--data.val_file={tmp_path / 'val.tsv'}",
               "--data.tokenizer=bpe", f"--out_dir={root}", "--name=synthetic"])
    assert rc == 0
    final = records(root / "synthetic")[-1]
    assert final["val_accuracy"] > 0.9, final  # chance is 0.5; the word families never overlap


def test_bad_labelled_data_ends_in_one_line(root, tmp_path, capsys):
    (tmp_path / "train.jsonl").write_text('{"text": "a", "label": "x"}\n{"text": "b", "label": "y"}\n')
    (tmp_path / "val.jsonl").write_text('{"text": "c", "label": "z"}\n')
    rc = main(["train", "--config", SPEAKERS, f"--data.train_file={tmp_path / 'train.jsonl'}",
               f"--data.val_file={tmp_path / 'val.jsonl'}", "--data.tokenizer=char", f"--out_dir={root}"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "val.jsonl:1: label 'z' does not occur" in err
