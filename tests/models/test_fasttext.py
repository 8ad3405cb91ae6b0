"""fastText: the character n-grams of a word by hand, fastText's FNV-1a hash (reference values, the
same in every process), an unseen word's vector is the sum of its n-gram rows, word2vec's planted
groups recovered, a morphology test (an unseen variant of a word lands by it and by its group mates),
`axon embed` on a fasttext run (unseen words answered) and exact resume."""

import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from axon.cli import main
from axon.config import build_model_config, load_config
from axon.data.words import Vocabulary, words_of
from axon.errors import ConfigError, DataError
from axon.models.fasttext import FastText, FastTextConfig, char_ngrams, fnv1a, subword_ids, subword_table
from axon.models.word2vec import Word2VecConfig, load_word2vec_format, neighbors
from axon.objectives.negative_sampling import NegativeSampling
from axon.tasks.fasttext import SubwordWindows, vocabulary_vectors
from axon.tasks.word2vec import Embeddings
from axon.train.checkpoint import list_checkpoints
from axon.train.logging import read_metrics
from axon.train.run import train as train_run

from test_word2vec import G, M, grouped_text


def test_ngrams_of_where_by_hand():
    assert char_ngrams("where", 3, 3) == ["<wh", "whe", "her", "ere", "re>"]  # the paper's example
    assert char_ngrams("where", 3, 4) == ["<wh", "<whe", "whe", "wher", "her", "here", "ere", "ere>", "re>"]
    assert char_ngrams("where", 3, 6)[-1] == "re>" and len(char_ngrams("where", 3, 6)) == 5 + 4 + 3 + 2
    assert char_ngrams("a", 3, 6) == ["<a>"] and char_ngrams("a", 4, 6) == []
    assert char_ngrams("né", 3, 3) == ["<né", "né>"]  # characters, not UTF-8 bytes


def test_fnv1a_reference_values_and_fasttexts_signed_bytes():
    # FNV-1a 32-bit test vectors (Noll's reference): "" -> offset basis, "a", "foobar"
    assert fnv1a("") == 0x811C9DC5 and fnv1a("a") == 0xE40C292C and fnv1a("foobar") == 0xBF9CF968
    # fastText casts each byte through int8_t: 0xC3 0xA9 ("é") enter as 0xFFFFFFC3, 0xFFFFFFA9
    h = 0x811C9DC5
    for b in (0xFFFFFFC3, 0xFFFFFFA9):
        h = ((h ^ b) * 16777619) % 2**32
    assert fnv1a("é") == h


def test_hashing_is_the_same_in_every_process():
    """Python's own hash() of a str is salted per process; the n-gram rows must not be (axon embed
    rebuilds them in another process than training)."""
    words = ["where", "king", "o'er", "né", "kingly"]
    code = ("from axon.models.fasttext import FastTextConfig, subword_table; "
            f"print(subword_table({words!r}, FastTextConfig(vocab_size=5, buckets=1000)).tolist())")
    outs = set()
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        outs.add(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout)
    here = subword_table(words, FastTextConfig(vocab_size=5, buckets=1000)).tolist()
    assert outs == {f"{here}\n"}


def test_subword_rows_of_seen_and_unseen_words():
    cfg = FastTextConfig(vocab_size=2, buckets=100, minn=3, maxn=3)
    index = {"king": 0, "where": 1}
    assert subword_ids("where", index, 2, cfg) == [1] + [2 + fnv1a(g) % 100 for g in ["<wh", "whe", "her", "ere", "re>"]]
    assert subword_ids("wher", index, 2, cfg) == [2 + fnv1a(g) % 100 for g in ["<wh", "whe", "her", "er>"]]
    table = subword_table(["king", "where"], cfg)
    assert table.shape == (2, 6) and table[0, 5] == -1 and table[0, 0] == 0 and table[1, 0] == 1  # -1 pads
    with pytest.raises(DataError, match="'ab' has no character n-grams of length 5..6"):
        subword_table(["ab"], FastTextConfig(vocab_size=1 + 1, buckets=10, minn=5, maxn=6), index)


@pytest.mark.parametrize("pool", ["sum", "mean"])
def test_an_unseen_words_vector_is_the_sum_of_its_ngram_rows(pool):
    cfg = FastTextConfig(vocab_size=3, n_embd=5, buckets=50, pool=pool)
    model = FastText(cfg).double()
    torch.nn.init.normal_(model.wte.weight)
    vocab_index = {"king": 0, "queen": 1, "the": 2}
    word = "kingly"  # not in the vocabulary
    rows = [3 + fnv1a(g) % 50 for g in char_ngrams(word, 3, 6)]
    want = sum(model.wte.weight[r] for r in rows)  # the paper's sum (mean: / the number of rows)
    want = want / len(rows) if pool == "mean" else want
    got = model.word_vectors(torch.from_numpy(subword_table([word], cfg, vocab_index)))[0]
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    seen = model.word_vectors(torch.from_numpy(subword_table(["king"], cfg, vocab_index)))[0]
    own = model.wte.weight[0] + sum(model.wte.weight[3 + fnv1a(g) % 50] for g in char_ngrams("king", 3, 6))
    torch.testing.assert_close(seen, own / (1 + len(char_ngrams("king", 3, 6))) if pool == "mean" else own,
                               rtol=1e-12, atol=1e-12)  # a seen word: its own row too
    # and through axon embed's Embeddings, as `axon embed --neighbors kingly` asks
    vocab = Vocabulary(["king", "queen", "the"], [3, 2, 1])
    emb = Embeddings(SimpleNamespace(model=cfg), vocab, torch.zeros(3, 5), model)
    index, vector = emb.query("Kingly")
    assert index is None and torch.equal(vector, got.detach())
    assert emb.query("king")[0] == 0


def test_word2vec_has_no_vector_for_an_unseen_word():
    vocab = Vocabulary(["king", "queen"], [2, 1])
    emb = Embeddings(SimpleNamespace(model=Word2VecConfig(vocab_size=2)), vocab, torch.zeros(2, 4))
    with pytest.raises(DataError, match="'kingly' is not in the vocabulary .*a word2vec run has no vector"):
        emb.query("kingly")


def train(text, steps=250, **kw):
    vocab = Vocabulary.build(words_of(text), 1)
    cfg = FastTextConfig(**{**dict(vocab_size=len(vocab), block_size=16, n_embd=16, window=2, negatives=3,
                                   min_count=1, subsample=0.01, buckets=4096), **kw})
    table = subword_table(vocab.words, cfg)
    data = SubwordWindows(vocab.encode(words_of(text)), vocab.counts, table, cfg, "train")
    torch.manual_seed(0)
    model = FastText(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    objective = NegativeSampling()
    for step in range(steps):
        loss, _ = objective(model, data.get_batch(step, 16, cfg.block_size, seed=0))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return vocab, cfg, model, table


def test_batches_are_word2vecs_with_centres_as_subword_rows():
    text = grouped_text(200)
    vocab = Vocabulary.build(words_of(text), 1)
    cfg = FastTextConfig(vocab_size=len(vocab), block_size=8, window=2, negatives=3, min_count=1, subsample=0.0, buckets=64)
    from axon.data.words import ContextWindows

    table = subword_table(vocab.words, cfg)
    ids = vocab.encode(words_of(text))
    plain = ContextWindows(ids, vocab.counts, cfg, "train").get_batch(3, 4, 8, seed=1)
    sub = SubwordWindows(ids, vocab.counts, table, cfg, "train").get_batch(3, 4, 8, seed=1)
    assert torch.equal(sub[0], torch.from_numpy(table[plain[0].numpy()]))  # every g?w? has the same row length
    assert sub[0][:, 0].tolist() == plain[0].tolist()  # a vocabulary word's row starts with its own id
    assert all(torch.equal(a, b) for a, b in zip(sub[1:], plain[1:]))


def test_planted_groups_are_recovered():
    """word2vec's planted test: the 5 nearest neighbours of every word are its group mates."""
    vocab, cfg, model, table = train(grouped_text())
    vectors = vocabulary_vectors(model, table)
    hits = [vocab.words[j].split("w")[0] == w.split("w")[0] for i, w in enumerate(vocab.words)
            for j, _ in neighbors(vectors, i, M - 1)]
    assert len(vocab) == G * M and np.mean(hits) >= 0.95


def test_an_unseen_variant_lands_by_its_word_and_the_words_group():
    """Groups of random 7-letter words co-occur (word2vec's planted text, other spellings). After
    training, each word with its last letter changed -- never seen -- is nearest to that word (most
    n-grams shared) and nearer its group mates, which share no n-grams with it, than other groups'
    words: what the shared rows learned carries over. Untrained, the second margin is ~0."""
    rng = np.random.default_rng(1)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    groups = [["".join(rng.choice(letters, 7)) for _ in range(M)] for _ in range(G)]
    rng = np.random.default_rng(0)
    text = "\n".join(" ".join(rng.choice(groups[rng.integers(G)], size=8)) for _ in range(3000))

    def margins(steps):
        vocab, cfg, model, table = train(text, steps=steps)
        unit = F.normalize(vocabulary_vectors(model, table), dim=-1)
        nearest_is_word, margin = [], []
        for g, ws in enumerate(groups):
            for w in ws:
                unseen = w[:-1] + ("z" if w[-1] != "z" else "y")
                assert unseen not in vocab.index
                with torch.no_grad():
                    v = model.word_vectors(torch.from_numpy(subword_table([unseen], cfg, vocab.index)))[0]
                cos = unit @ F.normalize(v, dim=0)
                nearest_is_word.append(int(cos.argmax()) == vocab.index[w])
                mates = [vocab.index[x] for x in ws if x != w]
                others = [vocab.index[x] for h, xs in enumerate(groups) if h != g for x in xs]
                margin.append((cos[mates].mean() - cos[others].mean()).item())
        return np.mean(nearest_is_word), np.array(margin)

    share, margin = margins(250)
    assert share == 1.0 and margin.min() > 0.25 and margin.mean() > 0.4, (share, margin.min(), margin.mean())
    _, untrained = margins(0)
    assert abs(untrained.mean()) < 0.1


@pytest.mark.parametrize("kw, message", [(dict(minn=0), "model.minn: must be at least 1"),
                                         (dict(minn=4, maxn=3), "model.maxn: must be >= model.minn=4"),
                                         (dict(buckets=0), "model.buckets: must be positive"),
                                         (dict(pool="max"), "choose one of: sum, mean")])
def test_bad_configs_name_the_field(kw, message):
    with pytest.raises(ConfigError, match=message):
        build_model_config({"family": "fasttext", **kw})


@pytest.fixture(scope="module")
def fasttext_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("fasttext")
    (root / "corpus.txt").write_text(grouped_text(1500))
    rc = main(["train", "--config", "configs/fasttext.yaml", "--model.preset=tiny", "--model.min_count=1",
               "--model.subsample=0", f"--data.train_file={root / 'corpus.txt'}", "--optim.lr=0.05",
               "--train.max_steps=120", "--train.batch_size=16", "--train.eval_interval=60", "--train.eval_batches=2",
               "--train.sample_prompt=g0w0 g3w1", "--log.progress=false", "--train.threads=1", f"--out_dir={root}",
               "--name=run"])
    assert rc == 0
    return root / "run"


def test_embed_reads_a_fasttext_run_and_answers_for_unseen_words(fasttext_run, tmp_path, capsys):
    samples = (fasttext_run / "samples.txt").read_text()
    assert "g0w0: g0w" in samples and "g3w1: g3w" in samples
    assert main(["embed", str(fasttext_run), "--neighbors", "g2w3", "--neighbors", "g2w3x", "--k", "5"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "nearest to 'g2w3':" and all(line.split()[0].startswith("g2w") for line in lines[1:6])
    assert lines[6] == "nearest to 'g2w3x': (not in the vocabulary: its vector from its n-grams)"
    assert lines[7].split()[0] == "g2w3"  # its n-grams are mostly g2w3's
    assert main(["embed", str(fasttext_run), "--analogy", "g0w0", "g0w1x", "g1w0", "--k", "3"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "g0w0 : g0w1x :: g1w0 : ?" and len(out) == 4 and not {"g0w0", "g1w0"} & {x.split()[0] for x in out[1:]}
    assert main(["embed", str(fasttext_run), "--export", str(tmp_path / "v.txt")]) == 0
    words, vectors = load_word2vec_format(tmp_path / "v.txt")
    assert len(words) == G * M and vectors.shape == (G * M, 16)


def test_fasttext_task_refuses_other_families_and_muon(tmp_path, capsys):
    assert main(["train", "--task=fasttext", "--model.family=word2vec", f"--out_dir={tmp_path}"]) == 2
    assert "for fasttext set model.family=fasttext" in capsys.readouterr().err
    assert main(["train", "--model.family=fasttext", "--optim.name=muon", f"--out_dir={tmp_path}"]) == 2
    assert "Muon does not train" in capsys.readouterr().err


def test_exact_resume(tmp_path):
    """A run resumed from its step-3 checkpoint logs the same losses, bit for bit, as the unbroken run
    (the subword table is rebuilt from the text; the batches depend on the step only)."""
    (tmp_path / "corpus.txt").write_text(grouped_text(300))
    args = ["--model.preset=tiny", "--model.min_count=1", f"--data.train_file={tmp_path / 'corpus.txt'}",
            "--train.batch_size=4", "--train.log_interval=1", "--train.eval_interval=100", "--train.eval_batches=1",
            "--train.checkpoint_interval=3", "--train.keep_checkpoints=10", "--train.threads=1", "--log.progress=false",
            "--train.max_steps=6", f"--out_dir={tmp_path}", "--name=ref"]
    ref = train_run(load_config("configs/fasttext.yaml", args))
    ref_dir = Path(ref["run_dir"])
    losses = lambda d: {r["step"]: r["train_loss"] for r in read_metrics(Path(d) / "metrics.jsonl") if "train_loss" in r}  # noqa: E731
    run = tmp_path / "resumed"
    shutil.copytree(ref_dir, run)
    for ckpt in list_checkpoints(run / "checkpoints"):
        if int(ckpt.name.split("_")[1]) > 3:
            shutil.rmtree(ckpt)
    resumed = train_run(resume=run)
    assert len(losses(ref_dir)) == 6 and losses(run) == losses(ref_dir)
    assert resumed["val_loss"] == ref["val_loss"]
