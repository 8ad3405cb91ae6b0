"""word2vec: planted neighbours and analogies are recovered, the batches follow the paper's
sampling (dynamic window, subsampling, unigram^0.75 negatives), the loss is eq. 4 of Mikolov et
al. 2013b, the export format round-trips, and `axon embed` answers queries with clear errors."""

import math

import numpy as np
import pytest
import torch

from axon.cli import main
from axon.config import build_model_config
from axon.data.words import ContextWindows, Vocabulary, words_of
from axon.errors import ConfigError, DataError
from axon.models.word2vec import (
    Word2Vec,
    Word2VecConfig,
    analogy,
    load_word2vec_format,
    neighbors,
    save_word2vec_format,
)
from axon.objectives.negative_sampling import NegativeSampling, negative_sampling_loss

from numerics import assert_close_orders, order_tol

G, M = 8, 6  # planted groups of words that co-occur


def grouped_text(n_sentences=3000, seed=0) -> str:
    """Sentences of 8 words drawn from one group each: words of a group co-occur, others rarely."""
    rng = np.random.default_rng(seed)
    groups = [[f"g{g}w{i}" for i in range(M)] for g in range(G)]
    return "\n".join(" ".join(rng.choice(groups[rng.integers(G)], size=8)) for _ in range(n_sentences))


def grid_text(n_sentences=4000, seed=0) -> str:
    """Words w{x}{y} on a 3 x 3 grid, each seen with marker words of its row x and its column y:
    a vector ~ row part + column part, so w{x1}{y2} - w{x1}{y1} + w{x2}{y1} ~ w{x2}{y2}."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_sentences):
        x, y = rng.integers(3), rng.integers(3)
        words = [f"w{x}{y}"] + [f"r{x}m{k}" for k in rng.integers(4, size=2)] + [f"c{y}m{k}" for k in rng.integers(4, size=2)]
        rng.shuffle(words)
        out.append(" ".join(words))
    return "\n".join(out)


def train(text, mode, steps=250, **kw):
    cfg = Word2VecConfig(**{**dict(block_size=16, n_embd=16, window=2, negatives=3, min_count=1, subsample=0.0,
                                   mode=mode), **kw})
    vocab = Vocabulary.build(words_of(text), 1)
    cfg.vocab_size = len(vocab)
    data = ContextWindows(vocab.encode(words_of(text)), vocab.counts, cfg, "train")
    torch.manual_seed(0)
    model = Word2Vec(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    objective = NegativeSampling()
    for step in range(steps):
        loss, _ = objective(model, data.get_batch(step, 16, cfg.block_size, seed=0))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return vocab, model.vectors()


@pytest.mark.parametrize("mode", ["skipgram", "cbow"])
def test_planted_neighbours_are_recovered(mode):
    vocab, vectors = train(grouped_text(), mode, subsample=0.01)  # t = 0.01 keeps ~70% of these words
    hits = []
    for i, word in enumerate(vocab.words):
        group = word.split("w")[0]
        hits += [vocab.words[j].split("w")[0] == group for j, _ in neighbors(vectors, i, M - 1)]
    assert len(vocab) == G * M and np.mean(hits) >= 0.95


@pytest.mark.parametrize("mode", ["skipgram", "cbow"])
def test_planted_analogies_are_recovered(mode):
    vocab, vectors = train(grid_text(), mode, negatives=5, steps=300)
    ix, right, total = vocab.index, 0, 0
    for x1, x2 in [(0, 1), (1, 2), (2, 0)]:
        for y1, y2 in [(0, 1), (1, 2), (2, 0)]:
            (best, _), *_ = analogy(vectors, ix[f"w{x1}{y1}"], ix[f"w{x1}{y2}"], ix[f"w{x2}{y1}"], k=1)
            right += vocab.words[best] == f"w{x2}{y2}"
            total += 1
    assert right / total >= 0.8


@pytest.mark.numerics
def test_loss_is_equation_4_by_hand():
    pos = torch.tensor([[0.5, -1.0], [2.0, 0.3]])
    neg = torch.tensor([[[0.1, -0.2], [1.0, 0.0]], [[-3.0, 0.4], [0.2, 0.2]]])
    weight = torch.tensor([[True, False], [True, True]])
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    terms = [-math.log(sig(p)) - sum(math.log(sig(-n)) for n in ns)
             for p, ns, w in zip(pos.flatten().tolist(), neg.view(4, 2).tolist(), weight.flatten().tolist()) if w]
    loss, count = negative_sampling_loss(pos, neg, weight)
    want = sum(terms) / 3  # float64 by hand: exact next to float32
    # float32: a sum of 1 + 2 log-sigmoids per example, then a weighted sum over the 4 examples
    tol = order_tol(torch.float32, n=4, depth=2, scale=max(1.0, want))
    assert count.item() == 3 and loss.item() == pytest.approx(want, abs=tol)


@pytest.mark.numerics
@pytest.mark.parametrize("mode", ["skipgram", "cbow"])
def test_model_logits_are_dot_products(mode):
    cfg = Word2VecConfig(vocab_size=10, n_embd=4, mode=mode, window=1, negatives=2)
    model = Word2Vec(cfg)
    torch.nn.init.normal_(model.out.weight)
    centers, contexts = torch.tensor([1, 2]), torch.tensor([[3, 4], [5, 6]])
    mask = torch.tensor([[True, False], [True, True]])
    negs = torch.tensor([[[7, 8], [9, 0]], [[1, 1], [2, 3]]]) if mode == "skipgram" else torch.tensor([[7, 8], [9, 0]])
    pos, neg = model(centers, contexts, mask, negs)
    v, u = model.wte.weight, model.out.weight
    # bmm (or a product and a sum) against a plain dot product over n_embd = 4
    if mode == "skipgram":
        assert_close_orders(pos[1, 0], u[5] @ v[2], n=4)
        assert_close_orders(neg[0, 1, 0], u[9] @ v[1], n=4)
    else:  # h = mean of the real context vectors (a masked mean over the 2 slots), then the dot product
        assert_close_orders(pos[0], u[1] @ v[3], n=4, depth=2)
        assert_close_orders(neg[1, 1], u[0] @ ((v[5] + v[6]) / 2), n=4, depth=2)


# ----------------------------------------------------------------------------------------------
# Data


def windows(text, **kw):
    cfg = Word2VecConfig(**{**dict(block_size=32, window=4, negatives=5, min_count=1, subsample=0.0), **kw})
    vocab = Vocabulary.build(words_of(text), 1)
    return vocab, ContextWindows(vocab.encode(words_of(text)), vocab.counts, cfg, "train")


def test_vocabulary_counts_orders_filters_and_round_trips(tmp_path):
    words = words_of("The cat saw the dog; THE dog o'er-ran the cat's tail. the")
    assert words[:3] == ["the", "cat", "saw"] and "o'er" in words and "cat's" in words
    vocab = Vocabulary.build(words, min_count=2)
    assert vocab.words == ["the", "dog"] and vocab.counts.tolist() == [5, 2]
    assert vocab.encode(["dog", "unknown", "the"]).tolist() == [1, 0]  # unknown words are dropped
    vocab.save(tmp_path / "vocab.txt")
    back = Vocabulary.load(tmp_path / "vocab.txt")
    assert back.words == vocab.words and back.counts.tolist() == vocab.counts.tolist()
    assert words_of("The Cat", lowercase=False) == ["The", "Cat"]


def test_batches_are_a_pure_function_of_seed_step_and_micro_step():
    _, data = windows(grouped_text(200))
    a, b = data.get_batch(5, 4, 32, seed=1), data.get_batch(5, 4, 32, seed=1)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    for other in (data.get_batch(6, 4, 32, seed=1), data.get_batch(5, 4, 32, seed=2), data.get_batch(5, 4, 32, 1, micro_step=1)):
        assert not torch.equal(a[0], other[0])
    centers, contexts, mask, negatives = a
    assert centers.shape == (128,) and contexts.shape == mask.shape == (128, 8) and negatives.shape == (128, 8, 5)
    first, second = list(data.iter_eval_batches(4, 32)), list(data.iter_eval_batches(4, 32))
    assert all(torch.equal(x, y) for p, q in zip(first, second) for x, y in zip(p, q))


def test_ranks_share_out_the_centre_words_of_one_draw():
    """Under torchrun each rank must train on batch_size windows of centre words -- its share of
    what one process with batch_size x world_size draws -- not on batch_size single centres (a
    batch's rows here are centre words, so slicing rows as for token windows took 1/block_size of
    them)."""
    from axon.train import distributed as D

    _, data = windows(grouped_text(200))
    whole = data.get_batch(5, 6, 32, seed=1, micro_step=1)
    parts = [D.rank_batch(data, D.Dist(rank=r, world_size=3), 5, 2, 32, 1, 1) for r in range(3)]
    assert all(p[0].shape == (2 * 32,) for p in parts)
    for k in range(4):
        assert torch.equal(torch.cat([p[k] for p in parts]), whole[k])
    assert all(torch.equal(x, y) for x, y in zip(data.get_batch(5, 6, 32, 1, 1, rank=0, world_size=1), whole))


def test_contexts_are_the_neighbours_within_a_dynamic_window():
    text = " ".join(f"w{i:03d}" for i in range(400))  # every word once: ids follow the text order
    vocab, data = windows(text)
    centers, contexts, mask, _ = data.get_batch(0, 8, 32, seed=0)
    pos = lambda ids: np.array([int(vocab.words[i][1:]) for i in ids.tolist()])  # noqa: E731
    offsets = np.array([-4, -3, -2, -1, 1, 2, 3, 4])
    c, ctx = pos(centers), pos(contexts.flatten()).reshape(contexts.shape)
    assert np.array_equal(ctx, c[:, None] + offsets[None, :])  # without subsampling: the adjacent words
    m = mask.numpy()
    assert np.array_equal(m, m[:, ::-1])  # symmetric around the centre
    reach = m.sum(1) // 2
    assert np.array_equal(m, np.abs(offsets)[None, :] <= reach[:, None])  # the nearest b on each side
    counts = np.bincount(reach, minlength=5)[1:]
    assert counts.min() > 0.15 * len(reach)  # b uniform on 1..4 (each ~25%)


def test_subsampling_keeps_a_word_with_probability_sqrt_t_over_f():
    rng = np.random.default_rng(0)
    words = rng.choice(["the", "a", "rare1", "rare2", "rare3"], p=[0.5, 0.3, 0.1, 0.05, 0.05], size=40000)
    vocab, data = windows(" ".join(words), subsample=0.01, window=2, block_size=16)
    freq = vocab.counts / vocab.counts.sum()
    expected = np.minimum(1, np.sqrt(0.01 / freq))
    np.testing.assert_array_equal(data.keep_prob, expected)  # the same float64 expression on the same counts
    # Centres come from the kept words: their frequencies follow f * keep / sum(f * keep).
    centers = torch.cat([data.get_batch(s, 16, 16, seed=0)[0] for s in range(40)]).numpy()
    got = np.bincount(centers, minlength=len(vocab)) / len(centers)
    want = freq * expected / (freq * expected).sum()
    # 0.02: ~4 standard errors of a share among 10,240 centres (sqrt(p (1 - p) / N) <= 0.0047), with
    # slack for neighbouring centres of a window being correlated (seeded: deterministic)
    np.testing.assert_allclose(got, want, atol=0.02)


def test_negatives_follow_the_unigram_distribution_to_the_three_quarters():
    rng = np.random.default_rng(0)
    words = rng.choice(["a", "b", "c", "d"], p=[0.6, 0.25, 0.1, 0.05], size=20000)
    vocab, data = windows(" ".join(words), window=2, block_size=16)
    negatives = torch.cat([data.get_batch(s, 16, 16, seed=0)[3].flatten() for s in range(30)]).numpy()
    got = np.bincount(negatives, minlength=4) / len(negatives)
    want = vocab.counts ** 0.75 / (vocab.counts ** 0.75).sum()
    np.testing.assert_allclose(got, want, atol=0.01)  # ~8 standard errors: 153,600 draws, sd <= 0.0013


def test_a_text_too_short_for_the_window_is_a_clear_error():
    with pytest.raises(DataError, match="needs at least 9"):
        windows("a b c d e")


def test_export_round_trips(tmp_path):
    words = ["the", "king", "o'er"]
    vectors = torch.randn(3, 7)
    save_word2vec_format(tmp_path / "v.txt", words, vectors)
    lines = (tmp_path / "v.txt").read_text().splitlines()
    assert lines[0] == "3 7" and lines[2].split(" ")[0] == "king" and len(lines[2].split(" ")) == 8
    back_words, back = load_word2vec_format(tmp_path / "v.txt")
    assert back_words == words
    # not a summation order: "%.6g" keeps 6 significant digits, a relative error of at most 5e-6 (rtol)
    torch.testing.assert_close(back, vectors, rtol=1e-5, atol=1e-6)
    (tmp_path / "bad.txt").write_text("2 3\nx 1 2 3\n")
    with pytest.raises(DataError, match="header says 2 words, the file has 1"):
        load_word2vec_format(tmp_path / "bad.txt")


@pytest.mark.parametrize(
    "kw, message",
    [(dict(mode="glove"), "choose one of: skipgram, cbow"), (dict(window=0), "model.window: must be positive"),
     (dict(subsample=1.5), r"model.subsample: must be in \[0, 1\)")],
)
def test_bad_configs_name_the_field(kw, message):
    with pytest.raises(ConfigError, match=message):
        build_model_config({"family": "word2vec", **kw})


# ----------------------------------------------------------------------------------------------
# The task and `axon embed` through the command line


@pytest.fixture(scope="module")
def w2v_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("w2v")
    (root / "corpus.txt").write_text(grouped_text(1500))
    rc = main(["train", "--config", "configs/word2vec.yaml", "--model.preset=tiny", "--model.min_count=1",
               "--model.subsample=0", f"--data.train_file={root / 'corpus.txt'}", "--optim.lr=0.05",
               "--train.max_steps=120", "--train.batch_size=16", "--train.eval_interval=60", "--train.eval_batches=2",
               "--train.sample_prompt=g0w0 g3w1", "--log.progress=false", "--train.threads=1", f"--out_dir={root}",
               "--name=run"])
    assert rc == 0
    return root / "run"


def test_run_directory_has_vocab_and_neighbour_samples(w2v_run):
    vocab = Vocabulary.load(w2v_run / "vocab.txt")
    assert len(vocab) == G * M and not (w2v_run / "tokenizer.json").exists()
    samples = (w2v_run / "samples.txt").read_text()
    assert "g0w0: g0w" in samples and "g3w1: g3w" in samples  # the nearest word is from the same group


def test_embed_neighbors_analogy_and_export(w2v_run, tmp_path, capsys):
    assert main(["embed", str(w2v_run), "--neighbors", "G2W3", "--k", "5"]) == 0  # queries are lowercased
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "nearest to 'G2W3':" and len(lines) == 6
    assert all(line.split()[0].startswith("g2w") for line in lines[1:])
    assert main(["embed", str(w2v_run), "--analogy", "g0w0", "g0w1", "g1w0", "--k", "3"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "g0w0 : g0w1 :: g1w0 : ?" and not {"g0w0", "g0w1", "g1w0"} & {line.split()[0] for line in out[1:]}
    assert main(["embed", str(w2v_run), "--export", str(tmp_path / "vectors.txt")]) == 0
    words, vectors = load_word2vec_format(tmp_path / "vectors.txt")
    assert len(words) == G * M and vectors.shape == (G * M, 16)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--neighbors", "zebra"], "'zebra' is not in the vocabulary (48 words"),
        (["--analogy", "g0w0", "nope", "g1w1"], "'nope' is not in the vocabulary"),
        ([], "give --neighbors WORD, --analogy A B C or --export FILE"),
    ],
)
def test_embed_errors_are_one_line(w2v_run, args, message, capsys):
    assert main(["embed", str(w2v_run), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_embed_refuses_other_families_and_word2vec_refuses_muon(tmp_path, capsys):
    assert main(["train", "--model.family=word2vec", "--optim.name=muon", f"--out_dir={tmp_path}"]) == 2
    assert "Muon does not train" in capsys.readouterr().err
    assert main(["embed", str(tmp_path / "missing"), "--neighbors", "a"]) == 2
    assert "is not a run directory" in capsys.readouterr().err


def test_sample_on_a_word2vec_run_points_to_embed(w2v_run, capsys):
    assert main(["sample", str(w2v_run)]) == 2
    assert "trained for 'word2vec': it does not continue text; use axon embed" in capsys.readouterr().err


def test_neighbours_refuse_k_below_one_as_axon_embed_does():
    """The sentence `axon embed --k 0` prints with its flag (tests/bad_inputs/test_commands.py)."""
    from axon.errors import OptionError

    vectors = torch.randn(5, 3)
    for call in (lambda: neighbors(vectors, 0, 0), lambda: analogy(vectors, 0, 1, 2, k=-1)):
        with pytest.raises(OptionError, match=r"^k must be an integer >= 1, got -?\d$"):
            call()
