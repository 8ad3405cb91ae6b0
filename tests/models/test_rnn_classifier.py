"""The bidirectional recurrent classifier: the classification contract, padding never leaks,
it learns, errors; and a short run through the classify task."""

import json
import random

import pytest
import torch
import torch.nn.functional as F

from axon.cli import main
from axon.config import build_model_config
from axon.errors import ConfigError
from axon.models import FAMILIES
from axon.models.rnn_classifier import RNNClassifier, RNNClassifierConfig

from numerics import assert_close_orders

CELLS = ["rnn", "lstm", "gru"]
POOLS = ["mean", "max", "last"]


def reductions(model: RNNClassifier, steps: int) -> dict:
    """``n`` and ``depth`` of tests/numerics.py for the logits over ``steps`` tokens (the convention
    of cache_checks.reductions for recurrent cells): a gate sums its inputs (n_embd, or both
    directions' states above the first layer) and the state; each (layer, step) is one more
    reduction in sequence (both directions of a layer run the steps side by side), then the head,
    after a mean over the steps when the pooling is a mean (max and last pooling add no rounding)."""
    cfg, D = model.config, model.directions
    n = max(cfg.n_embd, D * cfg.hidden) + cfg.hidden
    if cfg.pool == "mean":
        n = max(n, steps)
    return dict(n=n, depth=cfg.n_layer * steps + 1 + (cfg.pool == "mean"))


def classifier(cell="lstm", pool="mean", **kw):
    torch.manual_seed(0)
    cfg = dict(vocab_size=30, num_labels=3, cell=cell, n_layer=2, n_embd=8, n_hidden=12, pool=pool)
    return RNNClassifier(RNNClassifierConfig(**{**cfg, **kw})).eval()


@pytest.mark.parametrize("pool", POOLS)
@pytest.mark.parametrize("cell", CELLS)
def test_logits_shape(cell, pool):
    model = classifier(cell, pool)
    ids = torch.randint(0, 30, (4, 9))
    mask = torch.ones(4, 9, dtype=torch.bool)
    assert model(ids, mask).shape == (4, 3)
    assert torch.equal(model(ids), model(ids, mask))  # no mask = every token real: the same computation


@pytest.mark.numerics
@pytest.mark.parametrize("bidirectional", [True, False])
@pytest.mark.parametrize("pool", POOLS)
@pytest.mark.parametrize("cell", CELLS)
@torch.no_grad()
def test_padding_never_leaks(cell, pool, bidirectional):
    """A row's logits are those of its real tokens alone, wherever its pads are and whatever they hold."""
    model = classifier(cell, pool, bidirectional=bidirectional)
    seqs = [torch.randint(1, 30, (n,)) for n in (5, 9, 2, 12)]
    alone = torch.cat([model(s[None]) for s in seqs])
    T = 12
    layouts = [range(0, 5), range(3, 12), [4, 9], range(12)]  # right-, left-padded, scattered, none
    for _ in range(2):
        ids = torch.randint(0, 30, (4, T))  # different pad contents each trial
        mask = torch.zeros(4, T, dtype=torch.bool)
        for b, (s, where) in enumerate(zip(seqs, layouts)):
            where = torch.tensor(list(where))
            ids[b, where] = s
            mask[b, where] = True
        # packed in a batch of 4 against alone: up to summation order, over the longest row's 12 steps
        assert_close_orders(model(ids, mask), alone, **reductions(model, steps=12))


@torch.no_grad()
def test_both_directions_read_the_whole_sequence():
    """Bidirectional: the first token changes the backward pass's final state and the last token
    the forward one's, so with 'last' pooling both ends matter (a one-way model ignores neither)."""
    model = classifier("lstm", "last")
    ids = torch.randint(1, 30, (1, 8))
    base = model(ids)
    for t in (0, 7):
        changed = ids.clone()
        changed[0, t] = (changed[0, t] + 5) % 29 + 1
        assert not torch.allclose(model(changed), base)


@pytest.mark.parametrize("pool", POOLS)
def test_overfits_one_batch(pool):
    torch.manual_seed(0)
    model = RNNClassifier(RNNClassifierConfig(vocab_size=20, num_labels=4, n_embd=16, pool=pool))
    ids = torch.randint(1, 20, (8, 10))
    mask = torch.arange(10)[None, :] < torch.randint(3, 11, (8, 1))  # right padding, ragged
    labels = torch.randint(0, 4, (8,))
    opt = torch.optim.Adam(model.parameters(), lr=2e-2)
    for _ in range(80):
        loss = F.cross_entropy(model(ids, mask), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.05 and torch.equal(model(ids, mask).argmax(-1), labels)


def test_an_all_padding_row_is_an_error():
    model = classifier()
    mask = torch.ones(2, 5, dtype=torch.bool)
    mask[1] = False
    with pytest.raises(ValueError, match="at least one real token"):
        model(torch.zeros(2, 5, dtype=torch.long), mask)


@pytest.mark.parametrize(
    "kw, message",
    [
        (dict(num_labels=1), "model.num_labels: a classifier needs at least 2 labels"),
        (dict(pool="cls"), "choose one of: mean, max, last"),
        (dict(dropout=-0.1), r"model.dropout: must be in \[0, 1\)"),
    ],
)
def test_bad_configs_name_the_field(kw, message):
    with pytest.raises(ConfigError, match=message):
        build_model_config({"family": "rnn_classifier", **kw})


def test_registered_for_the_classify_task():
    assert FAMILIES["rnn_classifier"].task == "classify"


def test_a_short_run_through_the_classify_task(tmp_path, capsys):
    """A planted sentiment task: one cue word decides the label; the BiLSTM finds it."""
    rng = random.Random(0)
    cues = {"pos": ["good", "great", "fine", "nice"], "neg": ["bad", "awful", "poor", "sad"]}
    filler = ["the", "a", "day", "was", "very", "and", "it", "so"]
    lines = []
    for _ in range(400):
        label = rng.choice(["pos", "neg"])
        words = [rng.choice(filler) for _ in range(rng.randint(1, 6))] + [rng.choice(cues[label])]
        words += [rng.choice(filler) for _ in range(rng.randint(0, 5))]
        lines.append(" ".join(words) + "\t" + label)
    (tmp_path / "train.tsv").write_text("\n".join(lines) + "\n")
    rc = main(["train", "--model.family=rnn_classifier", "--model.preset=tiny", f"--data.train_file={tmp_path / 'train.tsv'}",
               "--optim.name=adamw", "--optim.lr=1e-2", "--train.max_steps=80", "--train.batch_size=16",
               "--train.eval_interval=40", "--schedule.warmup_steps=5", "--log.progress=false", "--train.threads=1",
               f"--out_dir={tmp_path}", "--name=run"])
    assert rc == 0
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "run"), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["accuracy"] >= 0.85 > metrics["majority_baseline"] + 0.2
