"""End to end: the seq2seq recipe (shrunk to the tiny preset) trains and learns, then
`axon translate` decodes new inputs and scores a TSV, and `axon eval` reports BLEU/chrF."""

import json

import pytest

from axon.cli import main
from axon.data.corpus import CORPUS_DIR
from axon.eval.translation import translation_metrics

RECIPE = "configs/seq2seq_dates.yaml"



@pytest.fixture(scope="module")
def val_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("s2s-data") / "val.tsv"
    lines = (CORPUS_DIR / "dates" / "val.tsv").read_text(encoding="utf-8").splitlines()[:40]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, val_file):
    from pathlib import Path

    recipe = Path(__file__).resolve().parents[1] / RECIPE
    root = tmp_path_factory.mktemp("s2s-cli")
    rc = main(["train", "--config", str(recipe), "--model.preset=tiny", "--model.block_size=64",
               f"--data.val_file={val_file}", "--train.max_steps=40", "--train.batch_size=16",
               "--train.eval_interval=20", "--schedule.warmup_steps=10", "--optim.lr=3e-3", "--train.threads=1",
               "--log.progress=false", f"--out_dir={root}", "--name=run"])
    assert rc == 0
    return root / "run"


def test_tiny_recipe_learns(run_dir, capsys):
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    first_train = records[0]["train_loss"]  # label-smoothed, step 10
    final = records[-1]
    assert final["val_full"] and final["val_loss"] < 2.5 < first_train  # chance: ln(63) = 4.1 nats
    assert final["val_accuracy"] > 0.3  # teacher-forced token accuracy; chance: 1/63
    samples = (run_dir / "samples.txt").read_text()
    assert "val BLEU" in samples and " -> " in samples


def test_translate_inputs_files_and_beams(run_dir, tmp_path, capsys):
    assert main(["translate", str(run_dir), "--input", "the 3rd of May, 1999", "--input", "7/4/1976"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2
    sources = tmp_path / "in.txt"
    sources.write_text("the 3rd of May, 1999\n7/4/1976\n")
    assert main(["translate", str(run_dir), "--input-file", str(sources)]) == 0
    assert capsys.readouterr().out.splitlines() == out  # same greedy translations
    assert main(["translate", str(run_dir), "--input", "7/4/1976", "--beams", "3", "--max-new-tokens", "4"]) == 0
    assert len(capsys.readouterr().out.rstrip("\n")) <= 4


def test_translate_eval_and_axon_eval_report_bleu(run_dir, val_file, capsys):
    assert main(["translate", str(run_dir), "--eval", str(val_file), "--json"]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert scores["pairs"] == 40 and 0 <= scores["bleu"] <= 100 and 0 <= scores["exact_match"] <= 1
    assert main(["eval", str(run_dir), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    # the same greedy translations scored by the same function: the same figures, exactly
    assert metrics["bleu"] == scores["bleu"] and metrics["chrf"] == scores["chrf"]
    assert metrics["tokens"] == 40 * 11  # 10 characters + EOS per ISO date


@pytest.mark.parametrize(
    "args, message",
    [
        (["--input", ""], "input 1 is empty"),
        (["--input", "x" * 70], "input 1 is 70 tokens"),
        (["--input", "€"], "not in the character vocabulary"),
        ([], "give one of --input"),
        (["--input", "a", "--beams", "0"], "--beams"),
    ],
)
def test_translate_errors_are_one_line(run_dir, capsys, args, message):
    assert main(["translate", str(run_dir), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_sample_points_to_translate(run_dir, capsys):
    assert main(["sample", str(run_dir), "--prompt", "1"]) == 2
    assert "axon translate" in capsys.readouterr().err


def test_translation_metrics():
    refs = ["1994-03-23", "2001-01-01", "1950-12-31"]
    perfect = translation_metrics(refs, refs)
    assert perfect == {"bleu": pytest.approx(100.0), "chrf": pytest.approx(100.0), "exact_match": 1.0}
    one_off = translation_metrics(["1994-03-23", "2001-01-02", "1950-12-31"], refs)
    assert one_off["exact_match"] == 2 / 3 and 50 < one_off["bleu"] < 100 and 80 < one_off["chrf"] < 100  # a count ratio: exact
