"""GloVe: the co-occurrence counts (1/d within a symmetric window), the weighting function and the
loss of eq. 8 by hand on a 3-word matrix, planted groups recovered (word2vec's planted text), the
batches a pure function of the step, and `axon embed` on a glove run."""

import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from axon.cli import main
from axon.config import build_model_config, load_config
from axon.data.words import Vocabulary, words_of
from axon.errors import ConfigError
from axon.models.glove import GloVe, GloVeConfig, cooccurrence
from axon.models.word2vec import load_word2vec_format, neighbors
from axon.objectives.glove import GloVeObjective, glove_loss, weighting
from axon.tasks.glove import CooccurrenceEntries
from axon.train.checkpoint import list_checkpoints
from axon.train.logging import read_metrics
from axon.train.run import train

from test_word2vec import G, M, grouped_text


def test_cooccurrence_counts_weigh_a_pair_by_one_over_distance():
    i, j, x = cooccurrence(np.array([0, 1, 2, 0]), vocab_size=3, window=2)
    X = np.zeros((3, 3))
    X[i, j] = x
    # pairs at d=1: (0,1) (1,2) (2,0); at d=2: (0,2) (1,0); each counted both ways
    want = np.array([[0, 1 + 0.5, 1 + 0.5], [1 + 0.5, 0, 1], [1 + 0.5, 1, 0]])
    np.testing.assert_allclose(X, want)
    assert (x > 0).all() and len(x) == 6  # only nonzero entries are kept


def test_weighting_below_and_above_x_max():
    x = torch.tensor([1.0, 50.0, 100.0, 250.0], dtype=torch.float64)
    f = weighting(x, x_max=100.0, alpha=0.75)
    assert f[0].item() == pytest.approx(0.01 ** 0.75) and f[1].item() == pytest.approx(0.5 ** 0.75)
    assert f[2].item() == 1.0 and f[3].item() == 1.0  # capped at 1 from x_max on


def test_loss_is_equation_8_by_hand_on_a_3_word_matrix():
    cfg = GloVeConfig(vocab_size=3, n_embd=2, x_max=2.0, alpha=0.5)
    model = GloVe(cfg).double()
    W = [[1.0, 0.0], [0.5, -1.0], [0.0, 2.0]]
    Wc = [[0.2, 0.1], [-0.3, 0.4], [1.0, 1.0]]
    b, bc = [0.1, -0.2, 0.3], [0.0, 0.5, -0.1]
    with torch.no_grad():
        model.wte.weight.copy_(torch.tensor(W, dtype=torch.float64))
        model.ctx.weight.copy_(torch.tensor(Wc, dtype=torch.float64))
        model.bias.weight.copy_(torch.tensor(b, dtype=torch.float64)[:, None])
        model.ctx_bias.weight.copy_(torch.tensor(bc, dtype=torch.float64)[:, None])
    X = [[0, 1.5, 4.0], [1.5, 0, 1.0], [4.0, 1.0, 0]]  # symmetric, zero diagonal
    want = 0.0
    for a in range(3):
        for c in range(3):
            if X[a][c] > 0:
                f = (X[a][c] / 2.0) ** 0.5 if X[a][c] < 2.0 else 1.0
                dot = W[a][0] * Wc[c][0] + W[a][1] * Wc[c][1]
                want += f * (dot + b[a] + bc[c] - math.log(X[a][c])) ** 2
    i, j = torch.tensor([0, 0, 1, 1, 2, 2]), torch.tensor([1, 2, 0, 2, 0, 1])
    x = torch.tensor([X[a][c] for a, c in zip(i.tolist(), j.tolist())], dtype=torch.float64)
    assert glove_loss(model(i, j), x, x_max=2.0, alpha=0.5).sum().item() == pytest.approx(want, rel=1e-12)
    loss, info = GloVeObjective(x_max=2.0, alpha=0.5)(model, (i, j, x))
    assert loss.item() == pytest.approx(want / 6, rel=1e-12) and info["count"].item() == 6
    torch.testing.assert_close(model.vectors(), torch.tensor(W, dtype=torch.float64) + torch.tensor(Wc, dtype=torch.float64))


def entries(text, window=2):
    vocab = Vocabulary.build(words_of(text), 1)
    return vocab, CooccurrenceEntries(vocab.encode(words_of(text)), len(vocab), window, "train")


def test_planted_groups_are_recovered():
    """Words of a group co-occur within it (across groups only at sentence joins): after training,
    the mean cosine within a group is well above the mean across groups, and neighbours are
    group mates."""
    vocab, data = entries(grouped_text())
    cfg = GloVeConfig(vocab_size=len(vocab), n_embd=16, window=2, x_max=10.0)
    torch.manual_seed(0)
    model = GloVe(cfg)
    opt = torch.optim.Adagrad(model.parameters(), lr=0.1)
    objective = GloVeObjective(cfg.x_max, cfg.alpha)
    first = None
    for step in range(300):
        loss, _ = objective(model, data.get_batch(step, 16, 16, seed=0))
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.2 * first
    u = torch.nn.functional.normalize(model.vectors(), dim=-1)
    cos = u @ u.T
    group = torch.tensor([int(w[1:].split("w")[0]) for w in vocab.words])
    same = group[:, None] == group[None, :]
    off_diag = ~torch.eye(len(vocab), dtype=torch.bool)
    within, across = cos[same & off_diag].mean().item(), cos[~same].mean().item()
    assert within > across + 0.5, (within, across)
    hits = [vocab.words[j].split("w")[0] == w.split("w")[0] for k, w in enumerate(vocab.words)
            for j, _ in neighbors(model.vectors(), k, M - 1)]
    assert len(vocab) == G * M and np.mean(hits) >= 0.95


def test_batches_are_a_pure_function_of_seed_step_and_micro_step():
    _, data = entries(grouped_text(200))
    a, b = data.get_batch(5, 4, 8, seed=1), data.get_batch(5, 4, 8, seed=1)
    assert all(torch.equal(x, y) for x, y in zip(a, b)) and a[0].shape == (32,)
    for other in (data.get_batch(6, 4, 8, seed=1), data.get_batch(5, 4, 8, seed=2), data.get_batch(5, 4, 8, 1, micro_step=1)):
        assert not torch.equal(a[0], other[0])
    parts = [data.get_batch(5, 2, 8, 1, rank=r, world_size=2) for r in range(2)]
    whole = data.get_batch(5, 4, 8, 1)
    assert all(torch.equal(torch.cat([p[k] for p in parts]), whole[k]) for k in range(3))
    X = np.zeros((G * M, G * M))
    X[data.i, data.j] = data.x
    assert np.array_equal(X[a[0].numpy(), a[1].numpy()].astype(np.float32), a[2].numpy())  # each entry is its X_ij
    assert (a[2] > 0).all()  # nonzero entries only


@pytest.mark.parametrize("kw, message", [(dict(x_max=0.0), "model.x_max: must be positive"),
                                         (dict(window=0), "model.window: must be positive")])
def test_bad_configs_name_the_field(kw, message):
    with pytest.raises(ConfigError, match=message):
        build_model_config({"family": "glove", **kw})


@pytest.fixture(scope="module")
def glove_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("glove")
    (root / "corpus.txt").write_text(grouped_text(1500))
    rc = main(["train", "--config", "configs/glove.yaml", "--model.preset=tiny", "--model.min_count=1",
               "--model.x_max=10", f"--data.train_file={root / 'corpus.txt'}", "--optim.lr=0.1",
               "--train.max_steps=200", "--train.batch_size=16", "--train.eval_interval=100", "--train.eval_batches=2",
               "--train.sample_prompt=g0w0 g3w1", "--log.progress=false", "--train.threads=1", f"--out_dir={root}",
               "--name=run"])
    assert rc == 0
    return root / "run"


def test_embed_reads_a_glove_run(glove_run, tmp_path, capsys):
    samples = (glove_run / "samples.txt").read_text()
    assert "g0w0: g0w" in samples and "g3w1: g3w" in samples
    assert main(["embed", str(glove_run), "--neighbors", "g2w3", "--k", "5"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "nearest to 'g2w3':" and all(line.split()[0].startswith("g2w") for line in lines[1:6])
    assert main(["embed", str(glove_run), "--export", str(tmp_path / "v.txt")]) == 0
    words, vectors = load_word2vec_format(tmp_path / "v.txt")
    assert len(words) == G * M and vectors.shape == (G * M, 16)


def test_glove_task_refuses_other_families(tmp_path, capsys):
    assert main(["train", "--task=glove", "--model.family=word2vec", f"--out_dir={tmp_path}"]) == 2
    assert "for glove set model.family=glove" in capsys.readouterr().err


def test_exact_resume(tmp_path):
    """A run resumed from its step-3 checkpoint logs the same losses, bit for bit, as the unbroken run
    (the co-occurrences are rebuilt from the text; the batches depend on the step only)."""
    (tmp_path / "corpus.txt").write_text(grouped_text(300))
    args = ["--model.family=glove", "--optim.name=adagrad", "--optim.lr=0.05", "--model.preset=tiny", "--model.min_count=1",
            f"--data.train_file={tmp_path / 'corpus.txt'}", "--train.batch_size=4", "--train.log_interval=1",
            "--train.eval_interval=100", "--train.eval_batches=1", "--train.checkpoint_interval=3",
            "--train.keep_checkpoints=10", "--train.threads=1", "--log.progress=false", "--train.max_steps=6",
            f"--out_dir={tmp_path}", "--name=ref"]
    ref = train(load_config("configs/glove.yaml", args))
    ref_dir = Path(ref["run_dir"])
    losses = lambda d: {r["step"]: r["train_loss"] for r in read_metrics(Path(d) / "metrics.jsonl") if "train_loss" in r}  # noqa: E731
    run = tmp_path / "resumed"
    shutil.copytree(ref_dir, run)
    for ckpt in list_checkpoints(run / "checkpoints"):
        if int(ckpt.name.split("_")[1]) > 3:
            shutil.rmtree(ckpt)
    resumed = train(resume=run)
    assert len(losses(ref_dir)) == 6 and losses(run) == losses(ref_dir)
    assert resumed["val_loss"] == ref["val_loss"]
