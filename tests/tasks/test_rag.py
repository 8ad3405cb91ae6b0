"""The rag task: a reader that answers from the passages a retriever gives it, and `axon rag` / `axon index`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from axon.cli import main
from axon.data.knowledge import knowledge_base
from axon.data.passages import load_collection
from axon.tasks.rag import Retrieval, ask, exact_match, normalize_answer

COLOURS = ["red", "blue", "green", "black", "white", "pink", "grey", "gold", "brown", "violet"]


def write_planted(folder: Path, n: int = 80, seed: int = 0) -> tuple[Path, Path, dict]:
    """n invented people, each with one colour; a question per person; the last fifth held out."""
    rng = np.random.default_rng(seed)
    letters = "bdfgklmnprstvz"
    names, colour = [], {}
    while len(names) < n:
        name = "".join(rng.choice(list(letters)) + rng.choice(list("aeiou")) for _ in range(3)).capitalize()
        if name not in colour:
            names.append(name)
            colour[name] = COLOURS[int(rng.integers(len(COLOURS)))]
    ps, qs = folder / "passages.jsonl", folder / "questions.jsonl"
    ps.write_text("".join(json.dumps({"id": name, "text": f"{name} likes {colour[name]}."}) + "\n" for name in names))
    qs.write_text("".join(json.dumps({"question": f"Which colour does {name} like?", "answer": colour[name],
                                      "passage_id": name, "split": "test" if i >= n * 4 // 5 else "train"}) + "\n"
                          for i, name in enumerate(names)))
    return ps, qs, colour


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("rag")


@pytest.fixture(scope="module")
def planted(root):
    ps, qs, colour = write_planted(root)
    args = ["--task=rag", "--model.preset=tiny", "--model.block_size=96", "--model.dropout=0", f"--rag.passages={ps}", f"--rag.questions={qs}",
            "--rag.retriever=oracle", "--rag.max_answer_tokens=8", "--train.batch_size=16", "--train.max_steps=300", "--train.eval_interval=300",
            "--optim.name=adamw", "--optim.lr=3e-3", "--schedule.warmup_steps=20", "--log.progress=false",
            f"--out_dir={root}", "--name=planted"]
    assert main(["train", *args]) == 0
    return root / "planted", ps, colour


def test_squad_normalisation():
    assert normalize_answer("The  Viola!") == "viola"
    assert exact_match("a cartographer", "cartographer") and not exact_match("Pilrous", "Pilrouse")


def test_retrievers_give_the_reader_the_passages_they_name():
    coll = load_collection(None, None, entities=20, seed=1)
    qs = coll.split("test")
    assert Retrieval("none", coll).search(qs, 3) == [[] for _ in qs]
    oracle = Retrieval("oracle", coll, seed=0).search(qs, 3)
    assert all(q.passage_id in ids and len(ids) == 3 for q, ids in zip(qs, oracle))
    assert len({ids.index(q.passage_id) for q, ids in zip(qs, oracle)}) > 1  # the gold passage is not always first
    from axon.retrieval.bm25 import BM25, tokenize

    bm25 = BM25([tokenize(p.text) for p in coll.passages]).top_k([tokenize(q.text) for q in qs], 2)
    assert Retrieval("bm25", coll).search(qs, 2) == bm25.tolist()


def test_a_reader_answers_a_planted_fact_only_when_the_passage_is_retrieved(planted):
    run, ps, colour = planted
    result = json.loads((run / "result.json").read_text())
    assert result["val_em"] >= 0.9 and result["val_hit"] == 1.0  # held-out people: the answer is only in the passage
    test = [json.loads(line) for line in (run.parent / "questions.jsonl").read_text().splitlines()][-16:]
    questions = [q["question"] for q in test]
    open_book = ask(run, questions, retriever="bm25", k=1)
    assert np.mean([exact_match(r["answer"], q["answer"]) for r, q in zip(open_book, test)]) >= 0.9
    assert all(r["passages"][0][0] == q["passage_id"] for r, q in zip(open_book, test))  # the name finds it
    closed = ask(run, questions, retriever="none")
    assert all(r["passages"] == [] for r in closed)
    assert np.mean([exact_match(r["answer"], q["answer"]) for r, q in zip(closed, test)]) <= 0.4  # chance: ~0.1


def test_editing_the_collection_changes_the_answer_without_retraining(planted, tmp_path):
    run, ps, colour = planted
    rows = [json.loads(line) for line in ps.read_text().splitlines()]
    test_names = [r["id"] for r in rows[-16:]]
    new = {name: COLOURS[(COLOURS.index(colour[name]) + 3) % len(COLOURS)] for name in test_names}
    edited = tmp_path / "edited.jsonl"
    edited.write_text("".join(json.dumps({"id": r["id"], "text": f"{r['id']} likes {new.get(r['id'], colour[r['id']])}."})
                              + "\n" for r in rows))
    answers = ask(run, [f"Which colour does {name} like?" for name in test_names], passages=edited, retriever="bm25")
    assert np.mean([exact_match(a["answer"], new[name]) for a, name in zip(answers, test_names)]) >= 0.9


def test_the_commands_show_passages_and_answers(planted, capsys, tmp_path):
    run, ps, colour = planted
    name = next(iter(colour))
    assert main(["rag", str(run), "--question", f"Which colour does {name} like?", "--retriever", "bm25"]) == 0
    out = capsys.readouterr().out
    assert f"read 1. [{name}] {name} likes {colour[name]}." in out and "answer: " in out
    assert main(["index", "build", "--passages", str(ps), "--out", str(tmp_path / "idx")]) == 0
    assert main(["index", "query", str(tmp_path / "idx"), "--question", f"Which colour does {name} like?", "--k", "2"]) == 0
    out = capsys.readouterr().out
    assert f"1. [{name}] {name} likes {colour[name]}." in out


def test_a_fid_reader_trains_and_scores(root):
    kb = knowledge_base(12, seed=2)
    p, q = kb.write(root / "kb")
    args = ["--task=rag", "--model.family=seq2seq", "--model.preset=tiny", "--model.block_size=96",
            f"--rag.passages={p}", f"--rag.questions={q}", "--rag.read_passages=2", "--train.max_steps=4",
            "--train.eval_interval=2", "--log.progress=false", f"--out_dir={root}", "--name=fid"]
    assert main(["train", *args]) == 0
    result = json.loads((root / "fid" / "result.json").read_text())
    assert {"val_em", "val_hit"} <= result.keys() and 0 <= result["val_hit"] <= 1


@pytest.fixture(scope="module")
def dpr_run(root, planted):
    run, ps, colour = planted
    files = [f"--rag.passages={ps}", f"--rag.questions={run.parent / 'questions.jsonl'}"]
    assert main(["train", "--model.family=dpr", "--model.preset=tiny", *files, "--train.max_steps=4", "--train.batch_size=8",
                 "--log.progress=false", f"--out_dir={root}", "--name=dpr"]) == 0
    return root / "dpr"


def test_an_embedding_reader_reads_a_dpr_runs_vectors(root, planted, dpr_run, capsys):
    run, ps, colour = planted
    qs = run.parent / "questions.jsonl"
    files = [f"--rag.passages={ps}", f"--rag.questions={qs}"]
    args = ["--task=rag", "--model.family=embed_reader", "--model.preset=tiny", "--model.block_size=64",
            "--model.passage_dim=32", f"--rag.retriever={root / 'dpr'}", "--rag.read_passages=2", *files,
            "--train.max_steps=4", "--train.eval_interval=2", "--log.progress=false", f"--out_dir={root}"]
    assert main(["train", *args, "--name=embed"]) == 0
    result = json.loads((root / "embed" / "result.json").read_text())
    assert {"val_em", "val_hit"} <= result.keys()
    name = next(iter(colour))
    answers = ask(root / "embed", [f"Which colour does {name} like?"])
    assert len(answers[0]["passages"]) == 2 and isinstance(answers[0]["answer"], str)
    capsys.readouterr()
    assert main(["train", *[a for a in args if "passage_dim" not in a], "--model.passage_dim=8", "--name=bad_dim"]) != 0
    err = capsys.readouterr().err.strip()
    assert "set model.passage_dim=32" in err and len(err.splitlines()) == 1


def test_the_runs_files_and_retriever_are_recorded_absolute(root, planted, dpr_run, monkeypatch):
    from axon.config import load_config

    run, ps, colour = planted
    monkeypatch.chdir(root)
    args = ["--task=rag", "--model.preset=tiny", "--model.block_size=96", "--rag.passages=passages.jsonl",
            "--rag.questions=questions.jsonl", "--rag.retriever=dpr", "--train.max_steps=1", "--log.progress=false",
            "--out_dir=.", "--name=relative"]
    assert main(["train", *args]) == 0
    rag = load_config(root / "relative" / "config.yaml").rag
    assert rag.passages == str(root / "passages.jsonl") and rag.retriever == str(root / "dpr")
    monkeypatch.chdir(root.parent)
    name = next(iter(colour))
    assert ask(root / "relative", [f"Which colour does {name} like?"])[0]["passages"]  # found from another directory


def test_a_run_killed_with_sigkill_resumes_exactly(root):
    import os

    import torch
    from safetensors.torch import load_file
    from train_processes import axon_train, kill_at_checkpoint

    from axon.train.checkpoint import list_checkpoints
    from axon.train.logging import read_metrics

    base = ["--task=rag", "--model.preset=tiny", "--model.block_size=96", "--rag.kb_entities=12", "--rag.eval_questions=8",
            "--train.batch_size=8", "--train.eval_interval=3", "--train.checkpoint_interval=3", "--train.log_interval=1",
            "--log.progress=false", "--train.threads=1", f"--out_dir={root}"]
    assert main(["train", *base, "--train.max_steps=6", "--name=whole"]) == 0
    proc = axon_train([*base, "--train.max_steps=100000", "--name=killed"], env={**os.environ, "OMP_NUM_THREADS": "1"})
    kill_at_checkpoint(proc, root / "killed", 3)
    assert main(["train", "--resume", str(root / "killed"), "--train.max_steps=6"]) == 0
    losses = [{r["step"]: r["train_loss"] for r in read_metrics(root / name / "metrics.jsonl") if "train_loss" in r}
              for name in ("whole", "killed")]
    assert losses[0] == losses[1]
    a, b = (load_file(str(list_checkpoints(root / n / "checkpoints")[0] / "model.safetensors")) for n in ("whole", "killed"))
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("args, message", [
    (["--rag.retriever=nowhere"], "rag.retriever: nowhere is no run directory"),
    (["--rag.read_passages=0"], "rag.read_passages"),
    (["--model.family=bert"], "does not do 'rag'"),
])
def test_bad_settings_end_in_one_line(root, capsys, args, message):
    code = main(["train", "--task=rag", "--model.preset=tiny", "--rag.kb_entities=8", *args, f"--out_dir={root}",
                 "--name=bad"])
    err = capsys.readouterr().err.strip()
    assert code != 0 and message in err and len(err.splitlines()) == 1


def test_asking_a_run_that_is_no_reader_is_one_line(root, capsys, tmp_path):
    assert main(["rag", str(tmp_path), "--question", "q"]) != 0
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
