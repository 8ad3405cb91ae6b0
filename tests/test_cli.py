"""End-to-end through the command line on the `tiny` preset."""

import json
import math
import re
import subprocess
import sys

import pytest

from axon.cli import main
from axon.eval.translation import translate
from axon.train.run import evaluate_run

TRAIN = ["--model.preset=tiny", "--train.batch_size=8", "--train.max_steps=30", "--train.eval_interval=15",
         "--train.eval_batches=2", "--train.sample_tokens=10", "--log.progress=false", "--train.threads=1",
         "--schedule.warmup_steps=5"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    rc = main(["train", *TRAIN, f"--out_dir={root}", "--name=run", f"--data.cache_dir={root / 'cache'}"])
    assert rc == 0
    return root / "run"


def test_train_prints_a_summary(run_dir, capsys):
    assert (run_dir / "checkpoints").is_dir()


def test_sample_greedy_is_deterministic_and_keeps_the_prompt(run_dir, capsys):
    assert main(["sample", str(run_dir), "--prompt", "ROMEO:", "--max-new-tokens", "20", "--temperature", "0"]) == 0
    first = capsys.readouterr().out
    assert first.startswith("ROMEO:") and len(first) == len("ROMEO:") + 20 + 1  # 20 chars + print newline
    main(["sample", str(run_dir), "--prompt", "ROMEO:", "--max-new-tokens", "20", "--temperature", "0"])
    assert capsys.readouterr().out == first


def test_sample_seeded_strategies(run_dir, capsys, tmp_path):
    prompt = tmp_path / "p.txt"
    prompt.write_text("JULIET:\n")
    common = ["sample", str(run_dir), "--prompt-file", str(prompt), "--max-new-tokens", "30", "--seed", "3"]
    for flags in (["--top-k", "5"], ["--top-p", "0.9"], ["--temperature", "1.2", "--num-samples", "2"]):
        assert main(common + flags) == 0
        a = capsys.readouterr().out
        main(common + flags)
        assert capsys.readouterr().out == a and a.startswith(("JULIET:", "--- sample 1 (length) ---\nJULIET:"))


def test_eval_reports_loss_perplexity_bits(run_dir, capsys):
    assert main(["eval", str(run_dir), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["split"] == "val" and out["tokens"] > 100_000
    # Python floats through JSON (which keeps every digit): the same arithmetic, so equality
    assert out["perplexity"] == math.exp(out["loss"])
    assert out["bits_per_char"] == out["loss"] / math.log(2)  # char-level: 1 char/token
    assert 1.0 < out["loss"] < 3.5  # it learned: ln(65) = 4.17 is chance


def test_axon_eval_prints_evaluate_run(run_dir, capsys):
    """`axon eval` is evaluate_run + metrics_line; compare's timed pass measures the same loss."""
    from axon.eval import metrics_line
    from axon.train.run import evaluate_run

    metrics = evaluate_run(run_dir, "val", batch_size=32, max_batches=3)
    assert main(["eval", str(run_dir), "--max-batches", "3"]) == 0
    assert capsys.readouterr().out == metrics_line(metrics) + "\n"
    assert main(["eval", str(run_dir), "--max-batches", "3", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == metrics
    assert list(metrics) == ["loss", "perplexity", "bits_per_token", "bits_per_char", "bits_per_byte", "split", "tokens"]
    timed = evaluate_run(run_dir, "val", batch_size=32, max_batches=3, task_metrics=False, timed=True)
    assert timed["loss"] == metrics["loss"] and timed["batches"] == 3 and timed["seconds"] > 0
    assert "perplexity" not in timed


def test_result_lines():
    from axon.eval import finetune_line, metrics_line, train_line

    run = {"run_dir": "runs/r", "step": 30, "elapsed": 1.25, "params": 1000}
    assert train_line({**run, "val_loss": 1.5, "val_bits_per_char": 2.1640}) == \
        "run: runs/r | steps 30 | 1.2 s | val loss 1.5000 | 2.164 bits/char"
    assert train_line({**run, "active_params": 400, "trainable_params": 10, "val_loss": None}) == \
        "run: runs/r | steps 30 | 1.2 s | params 1,000 (400 active per token) | trainable 10 of 1,000 params"
    assert train_line({**run, "val_loss": 0.5, "val_accuracy": 0.75, "val_bleu": 12.345, "val_chrf": 40.0,
                       "val_exact_match": 0.25}) == ("run: runs/r | steps 30 | 1.2 s | val loss 0.5000 | val accuracy "
                                                     "0.7500 | BLEU 12.35 | chrF 40.00 | exact match 0.2500")
    assert finetune_line({**run, "val_loss": 0.5, "val_accuracy": 0.75, "val_majority_baseline": 0.5}) == \
        "run: runs/r | steps 30 | 1.2 s | val loss 0.5000 | val accuracy 0.7500 | majority baseline 0.5000"
    assert metrics_line({"loss": 1.0, "split": "train", "tokens": 7}) == "train: loss 1.0000 | tokens 7"


def test_prepare_then_train_on_it(tmp_path, capsys):
    text = tmp_path / "a.txt"
    text.write_text("the quick brown fox jumps over the lazy dog. " * 400)
    assert main(["prepare", str(text), "--out", str(tmp_path / "d"), "--tokenizer", "bpe", "--vocab-size", "300"]) == 0
    assert re.search(r"vocab \d+, train [\d,]+ tokens, val [\d,]+ tokens", capsys.readouterr().out)
    rc = main(["train", *TRAIN, "--train.max_steps=5", "--model.block_size=32", "--model.vocab_size=null",
               f"--data.dir={tmp_path / 'd'}", f"--out_dir={tmp_path}", "--name=bpe"])
    assert rc == 0
    assert "bits/char" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--train.max_stepz=3"], "unknown key train.max_stepz; valid keys in train:"),
        (["train", "--model.norm=batchnorm"], "choose one of: layernorm, rmsnorm"),
        (["train", "--config", "nope.yaml"], "config file not found: nope.yaml"),
        (["sample", "no/such/run"], "is not a run directory"),
        (["eval", "no/such/run"], "is not a run directory"),
        (["prepare", "missing.txt", "--out", "x"], "missing.txt"),
        (["train", "--data.dir=/no/such/dir"], "not a prepared data directory"),
    ],
)
def test_user_errors_are_one_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


@pytest.mark.parametrize(
    "argv, extra",
    [
        (["sample", "some/run", "--temprature", "0"], "--temprature 0"),
        (["eval", "some/run", "--train.batch_size=4"], "--train.batch_size=4"),
        (["prepare", "a.txt", "--out", "x", "--vocabulary", "300"], "--vocabulary 300"),
        (["convert", "--from-hf", "hf", "--out", "x", "--bogus"], "--bogus"),
        (["translate", "some/run", "--input", "x", "--bogus"], "--bogus"),
        (["embed", "some/run", "--k", "3", "--bogus"], "--bogus"),
        (["lora", "merge", "some/run", "--out", "x", "--bogus"], "--bogus"),
        (["eval", "some/run", "other/run"], "other/run"),  # a stray positional too
    ],
)
def test_unknown_options_of_commands_without_overrides_are_one_line(argv, extra, capsys):
    """Only train, config, finetune, scaling and compare take --section.key=value overrides; the
    others refuse whatever argparse did not recognise, before they run (no run is loaded here)."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err == f"axon {argv[0]}: error: unrecognized arguments: {extra}; see axon {argv[0]} --help\n"


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--temperature", "-1"], "--temperature must be >= 0 and finite (0 is greedy), got -1.0"),
        (["--temperature", "nan"], "--temperature must be >= 0 and finite (0 is greedy), got nan"),
        (["--top-p", "2"], "--top-p must be in (0, 1], got 2.0"),
        (["--min-p", "nan"], "--min-p must be in [0, 1], got nan"),
        (["--repetition-penalty", "0"], "--repetition-penalty must be positive and finite (1 disables it), got 0.0"),
        (["--top-k", "-1"], "--top-k must be an integer >= 0 (0 keeps every token), got -1"),
        (["--num-samples", "0"], "--num-samples must be an integer >= 1, got 0"),
        (["--max-new-tokens", "-1"], "--max-new-tokens must be an integer >= 0, got -1"),
        (["--beams", "-1"], "--beams must be an integer >= 0 (0: sampling, no beam search), got -1"),
        (["--num-draft", "-1"], "--num-draft must be an integer >= 0 (0: no drafting), got -1"),
        (["--beams", "2", "--max-new-tokens", "0"], "--max-new-tokens must be an integer >= 1 with beam search, got 0"),
        (["--beams", "2", "--num-samples", "3"], "--num-samples must be an integer in [1, 2] (at most one per beam), got 3"),
        (["--stop-token", "-1"], "--stop-token takes token ids >= 0, got -1"),
        (["--length-penalty", "nan"], "--length-penalty must be finite, got nan"),
    ],
)
def test_sampling_flags_are_checked_before_the_run_is_loaded(flags, message, capsys):
    """The checks of axon.generate.SamplingOptions, worded with the flags; no/such/run is never opened."""
    assert main(["sample", "no/such/run", *flags]) == 2
    assert capsys.readouterr().err == f"axon sample: error: {message}\n"


def test_over_long_prompt_is_refused(run_dir, capsys):
    assert main(["sample", str(run_dir), "--prompt", "a" * 65]) == 2  # tiny's context is 64
    assert "context is 64" in capsys.readouterr().err


def test_console_script_help_for_every_subcommand():
    for sub in ("train", "sample", "eval", "prepare", "config"):
        out = subprocess.run([sys.executable, "-m", "axon", sub, "--help"], capture_output=True, text=True)
        assert out.returncode == 0 and "usage: axon " + sub in out.stdout


def test_config_prints_resolved_values(capsys):
    assert main(["config", "--model.preset=gpt2"]) == 0
    assert "n_embd: 768" in capsys.readouterr().out


def test_corrupt_shard_is_refused_naming_the_file(tmp_path, capsys):
    text = tmp_path / "a.txt"
    text.write_text("to be or not to be, that is the question. " * 200)
    assert main(["prepare", str(text), "--out", str(tmp_path / "d")]) == 0
    shard = tmp_path / "d" / "train.bin"
    data = bytearray(shard.read_bytes())
    data[-10] ^= 0x01
    shard.write_bytes(bytes(data))
    capsys.readouterr()
    assert main(["train", *TRAIN, f"--data.dir={tmp_path / 'd'}", f"--out_dir={tmp_path}", "--name=c"]) == 2
    err = capsys.readouterr().err
    assert "train.bin" in err and len(err.strip().splitlines()) == 1


def test_sample_beam_search_prints_n_best(run_dir, capsys):
    assert main(["sample", str(run_dir), "--prompt", "ROMEO:", "--max-new-tokens", "6", "--beams", "3", "--num-samples", "2"]) == 0
    out = capsys.readouterr().out
    scores = [float(m) for m in re.findall(r"--- beam \d: score (-?[\d.]+)", out)]
    assert len(scores) == 2 and scores[0] >= scores[1]
    assert out.count("ROMEO:") == 2
    # Width 1 is greedy decoding.
    main(["sample", str(run_dir), "--prompt", "ROMEO:", "--max-new-tokens", "6", "--beams", "1"])
    beam = capsys.readouterr().out.splitlines()[1]
    main(["sample", str(run_dir), "--prompt", "ROMEO:", "--max-new-tokens", "6", "--temperature", "0", "--no-stream"])
    assert capsys.readouterr().out.splitlines()[0] == beam


def test_streamed_output_equals_the_batch_output(run_dir, capsys):
    common = ["sample", str(run_dir), "--prompt", "KING:", "--max-new-tokens", "15", "--seed", "7", "--stop", "e"]
    main(common)
    streamed = capsys.readouterr().out
    main(common + ["--no-stream"])
    assert streamed == capsys.readouterr().out
    assert "e" not in streamed[len("KING:"):]  # cut before the stop string


def test_sample_with_a_draft_model_is_the_targets_greedy_output(run_dir, tmp_path, capsys):
    """Greedy speculative decoding through the CLI equals the target's own greedy output."""
    root = run_dir.parent
    assert main(["train", *TRAIN, "--model.n_layer=1", "--model.n_embd=32", "--train.max_steps=10",
                 f"--out_dir={root}", "--name=draft", f"--data.cache_dir={root / 'cache'}"]) == 0
    capsys.readouterr()
    common = ["sample", str(run_dir), "--prompt", "ROMEO:", "--max-new-tokens", "12", "--temperature", "0", "--no-stream"]
    main(common)
    plain = capsys.readouterr().out
    assert main(common + ["--draft", str(root / "draft"), "--num-draft", "3"]) == 0
    captured = capsys.readouterr()
    assert captured.out == plain
    assert re.search(r"speculative: \d+/\d+ draft tokens accepted", captured.err)


def test_a_task_the_family_does_not_do_is_one_line(tmp_path, capsys):
    rc = main(["train", "--model.family=seq2seq", "--task=lm", f"--out_dir={tmp_path}", "--log.progress=false"])
    assert rc == 2
    assert "a seq2seq model does not do 'lm' (it does seq2seq, rag); for lm set model.family=decoder" in capsys.readouterr().err


@pytest.mark.parametrize("call, message", [
    (lambda: evaluate_run("no/such/run", batch_size=0), "batch_size must be an integer >= 1, got 0"),
    (lambda: evaluate_run("no/such/run", max_batches=-1), "max_batches must be an integer >= 1, got -1"),
    (lambda: evaluate_run("no/such/run", data_dir="no/such/data"),
     "data_dir must be a prepared data directory (with meta.json: see axon prepare), got 'no/such/data'"),
    (lambda: translate(None, None, ["a"], beams=0), "beams must be an integer >= 1 (1: greedy), got 0"),
    (lambda: translate(None, None, ["a"], batch_size=0), "batch_size must be an integer >= 1, got 0"),
    (lambda: translate(None, None, ["a"], length_penalty=float("nan")), "length_penalty must be finite, got nan"),
])
def test_the_python_api_refuses_what_eval_and_translate_refuse(call, message):
    """Checked before a run or model is touched (none exists here), in the sentence the command
    line prints with its flag (tests/bad_inputs/test_commands.py)."""
    from axon.errors import OptionError

    with pytest.raises(OptionError) as info:
        call()
    assert str(info.value) == message
