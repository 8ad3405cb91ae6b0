"""axon.lab.baseline: the TF-IDF + logistic-regression baseline of classify configs."""

import random

import pytest
import torch

from axon.cli import main
from axon.config import load_config
from axon.errors import ConfigError
from axon.lab.baseline import baseline_data, choose_C, tfidf_baseline
from axon.tasks import build_task

pytest.importorskip("sklearn")

FILLER = "the a of and to in that it with as his her my thy thou".split()
MARKERS = {"alpha": "joy", "beta": "grief", "gamma": "calm"}


def planted(n: int, seed: int) -> list[tuple[str, str]]:
    """Texts of filler words with one marker word that decides the label."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        marker = list(MARKERS)[i % 3]
        words = rng.choices(FILLER, k=rng.randint(3, 8))
        words.insert(rng.randint(0, len(words)), marker)
        rows.append((" ".join(words), MARKERS[marker]))
    return rows


def write_tsv(path, rows):
    path.write_text("".join(f"{t}\t{lab}\n" for t, lab in rows))
    return path


def cfg_for(tmp_path, train, val=None, *extra):
    args = ["--task=classify", "--model.family=rnn_classifier", "--data.tokenizer=char", "--model.block_size=64",
            f"--data.train_file={train}", f"--data.cache_dir={tmp_path / 'cache'}", *extra]
    if val is not None:
        args.append(f"--data.val_file={val}")
    return load_config(None, args)


def test_planted_marker_words_are_learnt_exactly(tmp_path):
    train = write_tsv(tmp_path / "train.tsv", planted(90, seed=0))
    val = write_tsv(tmp_path / "val.tsv", planted(30, seed=1))
    result = tfidf_baseline(cfg_for(tmp_path, train, val))
    assert result["val_accuracy"] == 1.0 and result["val_macro_f1"] == 1.0
    assert result["labels"] == ["calm", "grief", "joy"] and result["val_examples"] == 30
    assert result["majority_baseline"] == pytest.approx(1 / 3)  # balanced: ties go to the first label


def test_labels_that_no_word_predicts_are_at_chance(tmp_path):
    rows = planted(120, seed=2)
    shuffled = [lab for _, lab in rows]
    random.Random(3).shuffle(shuffled)  # labels independent of the text
    train = write_tsv(tmp_path / "train.tsv", [(t, lab) for (t, _), lab in zip(rows[:90], shuffled[:90])])
    val = write_tsv(tmp_path / "val.tsv", [(t, lab) for (t, _), lab in zip(rows[90:], shuffled[90:])])
    assert tfidf_baseline(cfg_for(tmp_path, train, val))["val_accuracy"] < 0.7


def test_C_is_chosen_on_train_only(tmp_path):
    rows = planted(60, seed=4)
    texts, labels = [t for t, _ in rows], [lab for _, lab in rows]
    best, scores = choose_C(texts, labels, seed=0)
    assert best in scores and scores[best] == max(scores.values())
    # the validation file never enters: a val file whose labels are all flipped leaves C as it was
    train = write_tsv(tmp_path / "train.tsv", rows)
    flipped = [(t, {"joy": "grief", "grief": "calm", "calm": "joy"}[lab]) for t, lab in planted(30, seed=5)]
    val = write_tsv(tmp_path / "val.tsv", flipped)
    result = tfidf_baseline(cfg_for(tmp_path, train, val, "--train.seed=0"))
    assert result["C"] == best and result["val_accuracy"] == 0.0


def test_reads_the_classify_tasks_validation_examples(tmp_path):
    rows = planted(45, seed=6)  # no val file: every 10th example is held out, by both
    cfg = cfg_for(tmp_path, write_tsv(tmp_path / "all.tsv", rows))
    _, _, val_ex, _, labels = baseline_data(cfg)
    task = build_task(cfg_for(tmp_path, tmp_path / "all.tsv"), torch.device("cpu"))
    task_labels = torch.cat([b[2] for b in task.val_data.iter_eval_batches(8, 64)]).tolist()
    assert [labels.index(e.label) for e in val_ex] == task_labels and len(val_ex) == 4
    assert [e.text for e in val_ex] == [rows[i][0] for i in (9, 19, 29, 39)]


def test_bundled_vader_validation_is_the_classify_tasks(tmp_path):
    args = ["--data.tokenizer=char", f"--data.cache_dir={tmp_path / 'cache'}"]
    cfg = load_config("configs/rnn_classifier_vader.yaml", args)
    _, _, val_ex, _, labels = baseline_data(cfg)
    task = build_task(load_config("configs/rnn_classifier_vader.yaml", args), torch.device("cpu"))
    assert task.val_data.labels.tolist() == [labels.index(e.label) for e in val_ex]
    assert len(val_ex) == 1089 and labels == ["negative", "neutral", "positive"]


def test_a_config_of_another_task_is_one_line(tmp_path, capsys):
    with pytest.raises(ConfigError, match="TF-IDF baseline reads a classify task's data; this config's task is 'lm'"):
        tfidf_baseline(load_config(None, []))
    assert main(["baseline", "--config", "configs/bert_tiny_mlm.yaml"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("axon baseline: error: task:") and "\n" not in err


def test_cli_prints_the_figures(tmp_path, capsys):
    train = write_tsv(tmp_path / "train.tsv", planted(150, seed=7))
    val = write_tsv(tmp_path / "val.tsv", planted(30, seed=8))
    assert main(["baseline", "--task=classify", "--model.family=rnn_classifier", f"--data.train_file={train}",
                 f"--data.val_file={val}"]) == 0
    out = capsys.readouterr().out
    assert "val accuracy 1.0000 | val macro F1 1.0000 | majority baseline 0.3333 (calm)" in out
