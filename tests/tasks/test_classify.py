import json
from collections import Counter

import pytest
import torch

from axon.config import load_config
from axon.data.files import read_examples
from axon.data.speakers import build_speaker_task, speeches
from axon.errors import ConfigError, DataError
from axon.tasks import build_task
from axon.tasks.finetune import finetune_config

ROWS = [("a fine day in the park", "pos"), ("what a dreadful\tsmell", "neg"), ("lovely!", "pos"),
        ("terrible, awful, bad", "neg"), ("great fun", "pos"), ("boring", "neg")] * 4


def write_jsonl(path, rows, text="text", label="label"):
    path.write_text("".join(json.dumps({text: t, label: lab}) + "\n" for t, lab in rows))
    return path


def write_tsv(path, rows):
    path.write_text("".join(f"{t}\t{lab}\n" for t, lab in rows))
    return path


def test_reads_jsonl_and_tsv_alike(tmp_path):
    a = read_examples(write_jsonl(tmp_path / "a.jsonl", ROWS))
    b = read_examples(write_tsv(tmp_path / "b.tsv", ROWS))
    assert [(e.text, e.label) for e in a] == [(e.text, e.label) for e in b] == ROWS  # a tab inside the text is kept
    assert a[3].line == 4
    c = read_examples(write_jsonl(tmp_path / "c.jsonl", [("x", 3), ("y", 4)], "sentence", "y"), "sentence", "y")
    assert [e.label for e in c] == ["3", "4"]


@pytest.mark.parametrize("name,content,message", [
    ("e.jsonl", '{"text": "a", "label": "x"}\n\n{"text": "b", "label": "y"}\n', r"e.jsonl:2: empty line"),
    ("j.jsonl", '{"text": "a", "label": "x"}\n{"text": "b", label}\n', r"j.jsonl:2: not valid JSON"),
    ("k.jsonl", '{"txt": "a", "label": "x"}\n', r"k.jsonl:1: expected an object with keys 'text' and 'label'"),
    ("t.jsonl", '{"text": "   ", "label": "x"}\n', r"t.jsonl:1: empty text"),
    ("b.jsonl", '{"text": "a", "label": true}\n', r"b.jsonl:1: 'label' must be a string or an integer"),
    ("n.tsv", "good\tpos\nno tab here\n", r"n.tsv:2: no tab"),
    ("l.tsv", "good\t \n", r"l.tsv:1: empty label"),
    ("x.csv", "good,pos\n", r"unsupported file type '.csv'"),
])
def test_bad_lines_are_named(tmp_path, name, content, message):
    (tmp_path / name).write_text(content)
    with pytest.raises(DataError, match=message):
        read_examples(tmp_path / name)


def cfg_for(tmp_path, train, val=None, *extra):
    args = ["--task=classify", "--model.family=bert", "--model.head=classify", "--model.preset=tiny",
            "--data.tokenizer=char", f"--data.train_file={train}", f"--data.cache_dir={tmp_path / 'cache'}", *extra]
    if val is not None:
        args.append(f"--data.val_file={val}")
    return load_config(None, args)


def test_task_builds_contract_batches(tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", ROWS)
    val = write_tsv(tmp_path / "val.tsv", ROWS[:5])
    cfg = cfg_for(tmp_path, train, val)
    task = build_task(cfg, torch.device("cpu"))
    assert cfg.model.num_labels == 2 and cfg.model.vocab_size == task.tokenizer.vocab_size
    ids, mask, labels = task.train_data.get_batch(step=2, batch_size=6, block_size=64, seed=1)
    assert ids.dtype == labels.dtype == torch.int64 and mask.dtype == torch.bool
    assert ids.shape == mask.shape and labels.shape == (6,)
    assert (ids[:, 0] == 2).all()  # [CLS] first
    lengths = mask.sum(1)
    assert lengths.max() == ids.shape[1]  # padded to the longest of the batch
    assert all((ids[i, n:] == 0).all() and ids[i, n - 1] == 3 for i, n in enumerate(lengths.tolist()))  # [SEP] then [PAD]
    again = task.train_data.get_batch(step=2, batch_size=6, block_size=64, seed=1)
    assert all(torch.equal(a, b) for a, b in zip(again, (ids, mask, labels)))
    batches = list(task.val_data.iter_eval_batches(2, 64))
    assert [b[2].tolist() for b in batches] == [[1, 0], [1, 0], [1]]  # file order; labels sorted: neg=0, pos=1
    assert task.summarize(0.5, "val") == {"majority_baseline": 2 / 5}  # a count ratio: exact
    task.extra_files["labels.json"](tmp_path / "labels.json")
    assert json.loads((tmp_path / "labels.json").read_text())["labels"] == ["neg", "pos"]


def test_without_val_file_every_tenth_example_is_held_out(tmp_path):
    rows = [(f"text number {i}", "ab"[i % 2]) for i in range(35)]
    task = build_task(cfg_for(tmp_path, write_tsv(tmp_path / "t.tsv", rows)), torch.device("cpu"))
    assert len(task.train_data) == 32 and len(task.val_data) == 3
    val_labels = torch.cat([b[2] for b in task.val_data.iter_eval_batches(8, 64)]).tolist()
    assert val_labels == [1, 1, 1]  # examples 10, 20, 30 (1-based) are odd-indexed: label "b"


def test_unknown_validation_label(tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", ROWS)
    val = write_jsonl(tmp_path / "val.jsonl", [("fine", "pos"), ("meh", "neutral")])
    with pytest.raises(DataError, match=r"val.jsonl:2: label 'neutral' does not occur in the training file .*neg, pos"):
        build_task(cfg_for(tmp_path, train, val), torch.device("cpu"))


def test_one_label_is_not_a_classification(tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", [("a", "x"), ("b", "x")])
    with pytest.raises(DataError, match="at least two labels"):
        build_task(cfg_for(tmp_path, train, train), torch.device("cpu"))


def test_over_long_text_is_refused_or_truncated(tmp_path):
    rows = [("short", "a"), ("x" * 70, "b"), ("fine", "b")]
    train = write_jsonl(tmp_path / "train.jsonl", rows)
    with pytest.raises(DataError, match=r"train.jsonl:2: the text is 72 tokens .* more than model.block_size=64.*data.truncate"):
        build_task(cfg_for(tmp_path, train, train), torch.device("cpu"))
    task = build_task(cfg_for(tmp_path, train, train, "--data.truncate=true"), torch.device("cpu"))
    ids, mask, _ = next(task.val_data.iter_eval_batches(3, 64))
    assert ids.shape[1] == 64 and mask[1].all() and ids[1, -1] == 3  # cut to 62 characters, then [SEP]


def test_the_task_needs_a_classifier_and_files(tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", ROWS)
    with pytest.raises(ConfigError, match="model.head: the classify task"):
        build_task(load_config(None, ["--task=classify", "--model.family=bert", f"--data.train_file={train}"]),
                   torch.device("cpu"))
    with pytest.raises(ConfigError, match="a decoder model does not do 'classify'.*model.family=bert"):
        build_task(load_config(None, ["--task=classify", f"--data.train_file={train}"]), torch.device("cpu"))
    with pytest.raises(ConfigError, match="data.train_file"):
        build_task(cfg_for(tmp_path, tmp_path / "missing.jsonl"), torch.device("cpu"))
    with pytest.raises(ConfigError, match="model.num_labels=3 but the training file has 2 labels"):
        build_task(cfg_for(tmp_path, train, None, "--model.num_labels=3"), torch.device("cpu"))
    with pytest.raises(ConfigError, match="unknown bundled file"):
        build_task(cfg_for(tmp_path, "bundled:speakers/nothing.jsonl"), torch.device("cpu"))


def test_speaker_task_is_deterministic_balanced_and_held_out_of_pretraining():
    task = build_speaker_task()
    assert task == build_speaker_task()
    assert len(task.labels) == 8 and task.labels[0] == "GLOUCESTER"
    tr, va = Counter(s.speaker for s in task.train), Counter(s.speaker for s in task.val)
    assert set(tr) == set(va) == set(task.labels)
    for name in task.labels:  # every 5th speech of each speaker
        assert va[name] == (tr[name] + va[name]) // 5
    assert task.meta["val"]["majority_rate"] == va["GLOUCESTER"] / len(task.val)  # the same division
    held = {s.block for s in task.val}
    blocks = _corpus().split("\n\n")
    assert task.pretrain_text.split("\n\n") == [b for i, b in enumerate(blocks) if i not in held]
    assert all(f"{s.speaker}:\n{s.text}" in blocks[s.block] for s in task.val)  # what was held out is the speech
    assert len(speeches(task.pretrain_text)) == len(speeches(_corpus())) - len(held)


def _corpus():
    from axon.data.corpus import corpus_path

    return corpus_path().read_text(encoding="utf-8")


def test_speaker_files_written_by_the_module_cli(tmp_path, capsys):
    from axon.data.speakers import main

    assert main(["--out", str(tmp_path / "s"), "--n-speakers", "3"]) == 0
    assert "3 speakers" in capsys.readouterr().out
    examples = read_examples(tmp_path / "s" / "train.jsonl")
    assert {e.label for e in examples} == set(json.loads((tmp_path / "s" / "meta.json").read_text())["labels"])


def test_finetune_config_keeps_the_pretrained_architecture(tmp_path):
    run = tmp_path / "pre"
    run.mkdir()
    pre = load_config(None, ["--model.family=bert", "--model.n_layer=3", "--model.vocab_size=99"])
    from axon.config import dump_config

    (run / "config.yaml").write_text(dump_config(pre))
    (run / "tokenizer.json").write_text("{}")
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model: {family: bert, n_layer: 4, pooling: mean}\noptim: {lr: 1.0e-4}\n")
    cfg = finetune_config(run, recipe, ["--data.train_file=x.jsonl", "--model.dropout=0.2"])
    m = cfg.model
    assert (m.n_layer, m.vocab_size, m.head, m.pooling, m.dropout) == (3, 99, "classify", "mean", 0.2)
    assert cfg.task == "classify" and cfg.train.init_from == str(run) and cfg.optim.lr == 1e-4
    assert cfg.data.tokenizer == str(run / "tokenizer.json")
    with pytest.raises(ConfigError, match="--model.n_embd: fine-tuning keeps"):
        finetune_config(run, None, ["--model.n_embd=64"])
    with pytest.raises(ConfigError, match="--train.init_from: axon finetune sets it"):
        finetune_config(run, None, ["--train.init_from=elsewhere"])
    with pytest.raises(ConfigError, match="not a run directory"):
        finetune_config(tmp_path, None)


def test_finetune_records_the_pretrained_run_absolute(tmp_path, monkeypatch):
    """A relative PRETRAINED_RUN is recorded absolute, so the fine-tuned run's config (axon eval, --resume)
    still finds the pretrained tokenizer from another directory."""
    from axon.config import dump_config

    run = tmp_path / "runs" / "pre"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(dump_config(load_config(None, ["--model.family=bert", "--model.vocab_size=99"])))
    (run / "tokenizer.json").write_text("{}")
    monkeypatch.chdir(tmp_path)
    cfg = finetune_config("runs/pre", None, ["--data.train_file=x.jsonl"])
    assert cfg.train.init_from == str(run) and cfg.data.tokenizer == str(run / "tokenizer.json")
