"""The dpr task: DPR's encoders trained on a passage collection, scored by top-k retrieval against BM25."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from train_processes import axon_train, kill_at_checkpoint

from axon.cli import main
from axon.train.checkpoint import list_checkpoints
from axon.train.logging import read_metrics

TINY = ["--model.family=dpr", "--model.preset=tiny", "--rag.kb_entities=16", "--train.batch_size=8",
        "--train.log_interval=1", "--log.progress=false", "--train.sample_tokens=0",
        "--train.threads=1"]  # one thread in every process: the killed run and the whole one sum alike
COMMON = ["--train.max_steps=6", "--train.eval_interval=3", "--train.checkpoint_interval=3"]


def losses(run):
    return {r["step"]: r["train_loss"] for r in read_metrics(Path(run) / "metrics.jsonl") if "train_loss" in r}


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("dpr")


@pytest.fixture(scope="module")
def tiny_run(root):
    assert main(["train", *TINY, *COMMON, f"--out_dir={root}", "--name=tiny"]) == 0
    return root / "tiny"


def test_a_run_reports_dense_and_bm25_top_k_on_the_held_out_entities(tiny_run):
    result = json.loads((tiny_run / "result.json").read_text())
    for k in (1, 5, 20):
        assert 0.0 <= result[f"val_top{k}"] <= 1.0
        assert 0.0 <= result[f"val_bm25_top{k}"] <= 1.0
    assert result["val_bm25_top20"] == 1.0  # 4 test entities x 4 passages: every passage is in BM25's top 20
    records = [r for r in read_metrics(tiny_run / "metrics.jsonl") if "val_top1" in r]
    assert [r["step"] for r in records] == [3, 6]
    assert 0 < result["val_accuracy"] <= 1  # in-batch accuracy of the held-out questions


def write_planted(folder: Path) -> tuple[Path, Path]:
    """Ten passages, each the only one with its colour word; four wordings of a question, one of each colour's
    held out (a different one for each colour): every held-out question is a (wording, colour) never trained on."""
    colours = ["crimson", "azure", "violet", "amber", "olive", "teal", "ivory", "coral", "indigo", "maroon"]
    ps = folder / "p.jsonl"
    ps.write_text("".join(json.dumps({"id": c, "text": f"the {c} box holds item {i}"}) + "\n"
                          for i, c in enumerate(colours)))
    asks = ["what is in the {c} box", "open the {c} one", "{c}: which item", "tell me about {c}"]
    rows = [{"question": a.format(c=c), "answer": str(i), "passage_id": c, "split": "test" if j == i % 4 else "train"}
            for i, c in enumerate(colours) for j, a in enumerate(asks)]
    qs = folder / "q.jsonl"
    qs.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return ps, qs


def test_a_tiny_retriever_learns_to_find_a_planted_passage_from_unseen_wording(root):
    ps, qs = write_planted(root)
    args = ["--model.family=dpr", "--model.preset=tiny", "--model.shared=true", "--model.dropout=0",
            "--model.pooling=mean", f"--rag.passages={ps}", f"--rag.questions={qs}", "--train.batch_size=10", "--train.max_steps=300",
            "--train.eval_interval=300", "--optim.name=adamw", "--optim.lr=3e-3", "--schedule.warmup_steps=10",
            "--log.progress=false", "--train.sample_tokens=0", f"--out_dir={root}", "--name=planted"]
    assert main(["train", *args]) == 0
    result = json.loads((root / "planted" / "result.json").read_text())
    assert result["val_top1"] >= 0.6  # ten held-out questions; chance 0.1 (0.7-1.0 over seeds 1-4 and 1337)


def test_a_run_killed_with_sigkill_resumes_exactly(root, tiny_run):
    run = root / "sigkill"
    proc = axon_train([*TINY, "--train.max_steps=100000", "--train.eval_interval=3", "--train.checkpoint_interval=3",
                       f"--out_dir={root}", "--name=sigkill"], env={**os.environ, "OMP_NUM_THREADS": "1"})
    kill_at_checkpoint(proc, run, 3)
    assert not (run / "result.json").exists()
    assert main(["train", "--resume", str(run), "--train.max_steps=6"]) == 0
    assert losses(run) == losses(tiny_run)
    a = load_file(str(list_checkpoints(tiny_run / "checkpoints")[0] / "model.safetensors"))
    b = load_file(str(list_checkpoints(run / "checkpoints")[0] / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_both_encoders_start_from_a_bert_run(root):
    from axon.config import load_config
    from axon.model_configs.dpr import DPRConfig
    from axon.models import build_model
    from axon.tasks.dpr import init_encoders

    bert = ["--model.family=bert", "--model.preset=tiny", "--train.max_steps=2", "--train.batch_size=4",
            "--log.progress=false", "--train.sample_tokens=0", f"--out_dir={root}", "--name=bert"]
    assert main(["train", *bert]) == 0
    b = load_config(root / "bert" / "config.yaml").model
    model = build_model(DPRConfig(vocab_size=b.vocab_size, block_size=b.block_size, n_layer=b.n_layer, n_head=b.n_head,
                                  n_embd=b.n_embd))
    init_encoders(model, root / "bert")
    pre = load_file(str(list_checkpoints(root / "bert" / "checkpoints")[0] / "model.safetensors"))
    for encoder in (model.question_encoder, model.passage_encoder):
        own = encoder.state_dict()
        assert own.keys() <= pre.keys() and all(torch.equal(own[k], pre[k]) for k in own)  # every tensor, the MLM head left
    wrong = DPRConfig(vocab_size=b.vocab_size, block_size=b.block_size, n_layer=1, n_head=b.n_head, n_embd=b.n_embd)
    with pytest.raises(Exception, match="no tensor|has no place"):
        init_encoders(build_model(wrong), root / "bert")


@pytest.mark.parametrize("passages, questions, message", [
    ("", '{"question": "q", "answer": "a"}\n', "no passages"),
    ('{"id": "a", "text": "x"}\n', '{"question": "q", "answer": "y", "passage_id": "zz", "split": "train"}\n',
     "a question with no passage"),
])
def test_bad_collections_end_in_one_line(root, tmp_path, capsys, passages, questions, message):
    (tmp_path / "p.jsonl").write_text(passages)
    (tmp_path / "q.jsonl").write_text(questions)
    code = main(["train", "--model.family=dpr", "--model.preset=tiny", f"--rag.passages={tmp_path / 'p.jsonl'}",
                 f"--rag.questions={tmp_path / 'q.jsonl'}", f"--out_dir={root}", "--name=bad"])
    err = capsys.readouterr().err.strip()
    assert code != 0 and message in err and len(err.splitlines()) == 1
