"""The attention RNN encoder-decoder (Bahdanau / Luong over a bidirectional GRU/LSTM): attention
weights, padding, cached decoding against teacher forcing, beam search, and a tiny reversal task
learnt through the seq2seq task and `axon translate`.

Cached steps and padded batches against a full forward are the same mathematics in another
summation order (tests/numerics.py, kind 2): ``cache_checks.reductions`` gives n and depth."""

import json

import pytest
import torch
from cache_checks import assert_same_logits

from axon.cli import main
from axon.config import build_model_config, load_config
from axon.errors import ConfigError
from axon.generate import beam_search, generate
from axon.models import build_model
from axon.models.rnn_seq2seq import AttentionStateCache, RNNSeq2Seq

V, BOS, EOS = 40, 38, 39
VARIANTS = [(a, c) for a in ("bahdanau", "luong") for c in ("gru", "lstm")]


def model(attention="bahdanau", cell="gru", seed=0, **kw) -> RNNSeq2Seq:
    torch.manual_seed(seed)
    cfg = build_model_config({"family": "rnn_seq2seq", "preset": "tiny", "vocab_size": V, "block_size": 12,
                              "attention": attention, "cell": cell, "dropout": 0.1, **kw})
    m = build_model(cfg).eval()
    for p in m.parameters():  # a peaked, varied distribution: attention and greedy/beam paths differ
        torch.nn.init.normal_(p, 0.0, 0.5)
    return m


def sources():
    src = torch.randint(0, 30, (3, 9))
    mask = torch.ones(3, 9, dtype=torch.bool)
    mask[1, 5:] = False
    mask[2, 2:] = False
    src[~mask] = 37  # arbitrary pad ids: a leak changes the outputs
    return src, mask


def targets(T=12):
    return torch.cat([torch.full((3, 1), BOS), torch.randint(0, 30, (3, T - 1))], dim=1)


@pytest.mark.parametrize("attention, cell", VARIANTS)
@torch.no_grad()
def test_attention_weights_sum_to_one_over_real_tokens_and_are_zero_on_pads(attention, cell):
    m = model(attention, cell)
    src, mask = sources()
    a = m.alignments(src, targets(), mask)  # (B, T, S)
    assert a.shape == (3, 12, 9)
    assert torch.equal(a[~mask[:, None].expand_as(a)], torch.zeros(int((~mask).sum()) * 12))  # exactly 0
    torch.testing.assert_close(a.sum(-1), torch.ones(3, 12))
    assert (a[mask[:, None].expand_as(a)] > 0).all()
    assert a[0].std(0).max() > 0.01  # the weights move with the target position: not a constant


@pytest.mark.numerics
@pytest.mark.parametrize("attention, cell", VARIANTS)
@torch.no_grad()
def test_a_padded_batch_gives_each_source_what_it_gets_alone(attention, cell):
    m = model(attention, cell, seed=1)
    src, mask = sources()
    tgt = targets()
    batch = m(src, tgt, mask)
    for b in range(3):
        n = int(mask[b].sum())
        alone = m(src[b : b + 1, :n], tgt[b : b + 1])
        assert_same_logits(m, batch[b], alone[0], steps=12)
    other = src.clone()
    other[~mask] = 3  # other pad ids: nothing changes, bit for bit (same shapes, same kernels)
    assert torch.equal(m(other, tgt, mask), batch)


@pytest.mark.numerics
@pytest.mark.parametrize("attention, cell, input_feed", [(a, c, True) for a, c in VARIANTS] + [("luong", "gru", False)])
@torch.no_grad()  # caches are for inference (generate and beam_search run under inference_mode)
def test_cached_steps_equal_the_teacher_forced_forward(attention, cell, input_feed):
    """Token by token through the cache, every step's logits equal a full teacher-forced forward."""
    m = model(attention, cell, input_feed=input_feed)
    src, mask = sources()
    dec = m.conditioned(src, mask)
    cache = dec.make_cache(3, 12)
    assert isinstance(cache, AttentionStateCache)
    tgt = targets()
    full = m(src, tgt, mask)  # (3, 12, V)
    step = dec(tgt[:, :3], cache=cache)  # a 3-token prefill, then one token at a time
    assert_same_logits(m, step, full[:, :3], steps=12)
    for t in range(3, 12):
        step = dec(tgt[:, t : t + 1], cache=cache)
        assert_same_logits(m, step[:, 0], full[:, t], steps=12, msg=f"step {t}")
    assert cache.length == 12
    # the decoder without a cache is the same teacher-forced pass
    assert torch.equal(dec(tgt), full)


@pytest.mark.numerics
@pytest.mark.parametrize("attention", ["bahdanau", "luong"])
@torch.no_grad()
def test_reorder_moves_state_feed_and_memory_together(attention):
    m = model(attention, "lstm")
    src, mask = sources()
    dec = m.conditioned(src, mask)
    cache = dec.make_cache(3)
    dec(torch.tensor([[BOS, 5, 6]] * 3), cache=cache)
    order = torch.tensor([2, 0, 0, 1])  # reorder, duplicate one: 4 rows from 3
    cache.reorder(order)
    out = dec(torch.tensor([[7]] * 4), cache=cache)[:, 0]
    expected = m(src[order], torch.tensor([[BOS, 5, 6, 7]] * 4), mask[order])[:, -1]
    assert_same_logits(m, out, expected, steps=12)
    assert cache.memory.shape[0] == cache.mask.shape[0] == 4


@pytest.mark.parametrize("attention", ["bahdanau", "luong"])
def test_beam_width_one_is_greedy_and_greedy_is_the_argmax(attention):
    m = model(attention, seed=2)
    src, mask = sources()
    gen = generate(m.conditioned(src, mask), [[BOS]] * 3, 8, temperature=0.0)
    for b in range(3):
        n = int(mask[b].sum())
        seq = [BOS]
        for _ in range(8):  # greedy by hand, from full forwards of the source alone
            with torch.no_grad():
                seq.append(int(m(src[b : b + 1, :n], torch.tensor([seq]))[0, -1].argmax()))
        assert gen.tokens[b] == seq[1:]
        one = m.conditioned(src[b : b + 1], mask[b : b + 1])
        greedy = generate(one, [[BOS]], 10, temperature=0.0, stop_tokens=[EOS]).tokens[0]
        assert beam_search(one, [BOS], 10, num_beams=1, eos_token_id=EOS)[0].tokens == greedy
        assert len(beam_search(one, [BOS], 10, num_beams=4, eos_token_id=EOS, num_return=4)) == 4


def test_preset_counts_flops_and_bad_configs():
    for name, preset in RNN_PRESETS().items():
        cfg = build_model_config({"family": "rnn_seq2seq", "preset": name, "vocab_size": 64 if name == "tiny" else 63})
        assert f"{build_model(cfg).num_params():,}" == preset["params"].split()[0]
    cfg = build_model_config({"family": "rnn_seq2seq", "preset": "tiny", "vocab_size": 64, "attention": "luong"})
    H, E, T = 32, 16, 32  # tiny: hidden 32 (16 per encoder direction), n_embd 16, block 32
    enc = 2 * 3 * 16 * (E + 16)  # both directions, 3 gates, W_ih and W_hh
    dec = 3 * H * (E + H + H)  # input [E y ; h~] and the state
    assert build_model(cfg).flops_per_token() == 6 * (enc + dec + H * H + 2 * H * H + 64 * H) + 6 * T * 2 * H
    with pytest.raises(ConfigError, match="model.attention.*bahdanau, luong"):
        build_model_config({"family": "rnn_seq2seq", "attention": "dot"})
    with pytest.raises(ConfigError, match="model.hidden"):
        build_model_config({"family": "rnn_seq2seq", "hidden": 33})


def RNN_PRESETS():
    from axon.models.rnn_seq2seq import PRESETS

    return PRESETS


# ---------------------------------------------------------------------------------------------
# Through the seq2seq task and the CLI: a tiny reversal task learnt to exact match


@pytest.fixture(scope="module")
def reverse_run(tmp_path_factory):
    import random

    root = tmp_path_factory.mktemp("rnn-s2s")
    rng = random.Random(0)
    words = sorted({"".join(rng.choice("abcde") for _ in range(rng.randint(2, 5))) for _ in range(600)})
    rng.shuffle(words)
    (root / "train.tsv").write_text("".join(f"{w}\t{w[::-1]}\n" for w in words[:-40]))
    (root / "val.tsv").write_text("".join(f"{w}\t{w[::-1]}\n" for w in words[-40:]))  # unseen words
    rc = main(["train", "--model.family=rnn_seq2seq", "--model.preset=tiny", "--model.attention=luong",
               f"--data.train_file={root / 'train.tsv'}", f"--data.val_file={root / 'val.tsv'}", "--data.tokenizer=char",
               "--train.max_steps=300", "--train.batch_size=32", "--train.eval_interval=300", "--optim.lr=1e-2",
               "--train.label_smoothing=0", "--train.threads=1", "--log.progress=false", f"--out_dir={root}", "--name=run"])
    assert rc == 0
    return root


def test_a_reversal_task_trains_to_exact_match_and_translates(reverse_run, capsys):
    result = json.loads((reverse_run / "run" / "result.json").read_text())
    assert result["val_exact_match"] >= 0.95  # 40 words never seen in training, reversed character by character
    capsys.readouterr()
    assert main(["translate", str(reverse_run / "run"), "--input", "abcde", "--input", "eedcb", "--beams", "2"]) == 0
    assert capsys.readouterr().out.splitlines() == ["edcba", "bcdee"]
    assert main(["translate", str(reverse_run / "run"), "--eval", str(reverse_run / "val.tsv"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["exact_match"] == result["val_exact_match"]  # the same greedy decoding
    assert main(["sample", str(reverse_run / "run"), "--prompt", "ab"]) == 2
    assert "axon translate" in capsys.readouterr().err


def test_the_task_takes_encoder_decoders_only(tmp_path):
    from axon.tasks import build_task

    (tmp_path / "p.tsv").write_text("".join(f"{i}\t{i}\n" for i in range(20)))
    cfg = load_config(None, ["--model.family=rnn_seq2seq", "--model.preset=tiny", f"--data.train_file={tmp_path / 'p.tsv'}"])
    assert cfg.task == "seq2seq" or cfg.task is None
    build_task(cfg, torch.device("cpu"))
    cfg = load_config(None, ["--task=seq2seq", "--model.family=rnn", f"--data.train_file={tmp_path / 'p.tsv'}"])
    with pytest.raises(ConfigError, match="set model.family=seq2seq or model.family=rnn_seq2seq"):
        build_task(cfg, torch.device("cpu"))


@pytest.mark.parametrize("attention", ["bahdanau", "luong"])
def test_a_run_resumed_from_a_checkpoint_logs_the_unbroken_runs_losses(tmp_path, attention):
    """Exact resume: the run stopped after its step-3 checkpoint and resumed logs the unbroken run's
    losses bit for bit (dropout on, so the generator state must come back too)."""
    import shutil
    from pathlib import Path

    from axon.train.checkpoint import list_checkpoints
    from axon.train.logging import read_metrics
    from axon.train.run import train as train_run

    pairs = [(w, w[::-1]) for w in ("abc", "bca", "cab", "aabb", "bbca", "cc", "acb", "ba", "cba", "abca", "bb", "cab")]
    (tmp_path / "p.tsv").write_text("".join(f"{s}\t{t}\n" for s, t in pairs))
    args = ["--model.family=rnn_seq2seq", "--model.preset=tiny", f"--model.attention={attention}", "--model.dropout=0.2",
            f"--data.train_file={tmp_path / 'p.tsv'}", "--data.tokenizer=char", "--train.batch_size=4",
            "--train.log_interval=1", "--train.eval_interval=100", "--train.eval_batches=1", "--train.sample_tokens=0",
            "--train.checkpoint_interval=3", "--train.keep_checkpoints=10", "--train.threads=1", "--log.progress=false",
            "--train.max_steps=6", f"--out_dir={tmp_path}", "--name=ref"]
    ref = train_run(load_config(None, args))
    ref_dir = Path(ref["run_dir"])

    def losses(d):
        return {r["step"]: r["train_loss"] for r in read_metrics(Path(d) / "metrics.jsonl") if "train_loss" in r}

    run = tmp_path / "resumed"
    shutil.copytree(ref_dir, run)
    for ckpt in list_checkpoints(run / "checkpoints"):
        if int(ckpt.name.split("_")[1]) > 3:
            shutil.rmtree(ckpt)
    resumed = train_run(resume=run)
    assert len(losses(ref_dir)) == 6 and losses(run) == losses(ref_dir)
    assert resumed["val_loss"] == ref["val_loss"]
