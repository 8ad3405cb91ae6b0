"""Macro F1 of a classifier (axon.eval.classification): by hand, against scikit-learn's, and in a run's result."""

import json
import random

import pytest

from axon.eval.classification import macro_f1


def test_macro_f1_by_hand():
    gold = [0, 0, 0, 1, 1, 2]
    pred = [0, 0, 1, 1, 0, 0]
    # label 0: TP 2, FP 2 (the 1 and the 2 read as 0), FN 1 -> 4/7; label 1: TP 1, FP 1, FN 1 -> 1/2;
    # label 2: TP 0, FN 1 -> 0; label 3: never gold, never predicted -> 0 (counted: a K-th of the mean)
    assert macro_f1(gold, pred, 3) == pytest.approx((4 / 7 + 1 / 2 + 0) / 3)
    assert macro_f1(gold, pred, 4) == pytest.approx((4 / 7 + 1 / 2) / 4)
    assert macro_f1([1, 0, 1], [1, 0, 1], 2) == 1.0
    with pytest.raises(ValueError, match="3 gold labels but 2 predictions"):
        macro_f1([0, 1, 1], [0, 1], 2)


def test_macro_f1_is_scikit_learns_with_the_training_labels():
    f1_score = pytest.importorskip("sklearn.metrics").f1_score
    rng = random.Random(0)
    for k in (2, 3, 5):
        gold = [rng.randrange(k) for _ in range(200)]
        pred = [g if rng.random() < 0.6 else rng.randrange(k - 1) for g in gold]  # label k-1 seldom predicted
        assert macro_f1(gold, pred, k) == pytest.approx(
            f1_score(gold, pred, labels=list(range(k)), average="macro", zero_division=0), abs=1e-12)


def test_a_classify_run_reports_the_macro_f1_of_its_own_predictions(tmp_path, capsys):
    """The final val_macro_f1 equals the F1 of the labels the run predicts for its validation file."""
    import torch

    from axon.cli import main
    from axon.data.files import read_examples
    from axon.eval.classification import predict_labels
    from axon.tasks import build_task
    from axon.train.run import load_run

    rng = random.Random(1)
    words = {"a": "hill field stone".split(), "b": "wave salt ship".split(), "c": "king crown throne".split()}
    rows = []
    for _ in range(120):
        lab = rng.choice("aab" + "c")  # unbalanced, and some texts mixed, so F1 is not 1
        text = " ".join(rng.choice(words[lab] + words[rng.choice("abc")]) for _ in range(3))
        rows.append((text, lab))
    (tmp_path / "train.tsv").write_text("".join(f"{t}\t{lab}\n" for t, lab in rows[:90]))
    (tmp_path / "val.tsv").write_text("".join(f"{t}\t{lab}\n" for t, lab in rows[90:]))
    assert main(["train", "--model.family=rnn_classifier", "--model.preset=tiny", "--task=classify",
                 f"--data.train_file={tmp_path / 'train.tsv'}", f"--data.val_file={tmp_path / 'val.tsv'}",
                 "--data.tokenizer=char", "--train.max_steps=30", "--train.batch_size=8", "--train.eval_interval=30",
                 "--optim.name=adamw", "--train.threads=1", "--log.progress=false", f"--out_dir={tmp_path}",
                 "--name=run"]) == 0
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    cfg, model, _ = load_run(tmp_path / "run", "cpu")
    task = build_task(cfg, torch.device("cpu"))
    gold, pred = predict_labels(model, task.val_data.iter_eval_batches(7, cfg.model.block_size))  # another batching
    assert len(gold) == len(read_examples(tmp_path / "val.tsv", "text", "label")) == 30
    assert result["val_macro_f1"] == pytest.approx(macro_f1(gold, pred, 3), abs=1e-12)
    assert 0.0 < result["val_macro_f1"] < 1.0
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "run"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["macro_f1"] == result["val_macro_f1"]
