"""`axon tag` on tiny planted runs (test_tag.py's planted entities): BiLSTM, BiLSTM-CRF and BERT runs
tag new sentences, the JSON entities of a planted sentence are right, and --eval on the run's own
validation file gives exactly its final val_* scores; refusals in one line."""

import json
from pathlib import Path

import pytest
from test_tag import TINY, planted, write_conll

from axon.cli import main
from axon.config import dump_config, load_config
from axon.tasks.tag import entities, load_tagger, tag_sentences
from axon.train.run import train

SENTENCE = "Juliet Montague go to Mantua"  # every word seen in training; a name, its I-PER, a place
EXPECT = ["B-PER", "I-PER", "O", "O", "B-LOC"]
SCORES = ("precision", "recall", "f1", "token_accuracy")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """name -> (run dir, train()'s result); and the validation file."""
    root = tmp_path_factory.mktemp("tagcli")
    train_file, val_file = write_conll(root / "train.conll", planted(200, 0)), write_conll(root / "val.conll", planted(40, 1))
    base = [*TINY, f"--out_dir={root}", f"--data.cache_dir={root / 'cache'}", f"--data.train_file={train_file}",
            f"--data.val_file={val_file}", "--train.eval_interval=1000"]
    variants = {
        "bilstm": ["--model.family=rnn_tagger", "--train.max_steps=150", "--optim.lr=1e-2"],
        "crf": ["--model.family=rnn_tagger", "--model.crf=true", "--train.max_steps=150", "--optim.lr=1e-2"],
        # a short run whose scores are not all 1.0, its sentences cut to 5 words: --eval must cut them alike
        "short": ["--model.family=rnn_tagger", "--model.crf=true", "--train.max_steps=40", "--optim.lr=1e-2",
                  "--model.block_size=5", "--data.truncate=true"],
        "bert": ["--model.family=bert", "--model.head=tag", "--data.tokenizer=char", "--train.max_steps=150",
                 "--optim.lr=3e-3"],
    }
    out = {}
    for name, extra in variants.items():
        result = train(load_config(None, [*base, f"--name={name}", *extra]))
        out[name] = (Path(result["run_dir"]), result)
    return out, val_file


def tag(capsys, *argv) -> tuple[int, str, str]:
    rc = main(["tag", *map(str, argv)])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


@pytest.mark.parametrize("name", ["bilstm", "crf", "bert"])
def test_each_kind_of_run_tags_a_planted_sentence(runs, name, capsys, tmp_path):
    run, result = runs[0][name]
    rc, out, _ = tag(capsys, run, "--input", SENTENCE, "--input", "the lord is here")
    assert rc == 0
    assert out.splitlines() == [" ".join(f"{w}/{t}" for w, t in zip(SENTENCE.split(), EXPECT)),
                                "the/O lord/O is/O here/O"]
    lines = tmp_path / "lines.txt"
    lines.write_text(f"{SENTENCE}\nthe lord is here\n")
    assert tag(capsys, run, "--input-file", lines)[1] == out  # a line of the file is an --input


def test_json_gives_words_tags_and_entities(runs, capsys):
    run, _ = runs[0]["crf"]
    rc, out, _ = tag(capsys, run, "--input", "Romeo's lord, speak to Juliet Montague in Verona!", "--input", SENTENCE, "--json")
    assert rc == 0
    first, second = json.loads(out)
    assert first["words"] == ["Romeo", "'s", "lord", ",", "speak", "to", "Juliet", "Montague", "in", "Verona", "!"]  # ner.tokenize
    assert len(first["tags"]) == len(first["words"])
    assert second == {"words": SENTENCE.split(), "tags": EXPECT, "entities": [["PER", "Juliet Montague"], ["LOC", "Mantua"]]}


@pytest.mark.parametrize("name", ["bilstm", "crf", "short", "bert"])
def test_eval_on_the_validation_file_is_the_runs_own_final_score(runs, name, capsys):
    by_name, val_file = runs
    run, result = by_name[name]
    rc, out, _ = tag(capsys, run, "--eval", val_file, "--json")
    assert rc == 0
    scores = json.loads(out)
    assert scores["sentences"] == 40
    assert {k: scores[k] for k in SCORES} == {k: result[f"val_{k}"] for k in SCORES}  # exactly, not approximately
    if name == "short":
        assert 0.0 < result["val_f1"] < 1.0  # a score that could come out otherwise
    rc, text, _ = tag(capsys, run, "--eval", val_file)
    assert text.strip() == (f"{val_file}: 40 sentences | precision {scores['precision']:.4f} | recall {scores['recall']:.4f} "
                            f"| F1 {scores['f1']:.4f} | token accuracy {scores['token_accuracy']:.4f}")


def test_the_plain_functions_under_the_command(runs):
    tagger = load_tagger(runs[0]["bilstm"][0], "cpu")
    assert tagger.tags == ["B-LOC", "B-PER", "I-PER", "O"]
    many = [SENTENCE.split(), ["Portia", "go"], ["the", "night"] * 10]
    assert tag_sentences(tagger, many) == [tag_sentences(tagger, [s])[0] for s in many]  # batching changes nothing
    assert entities(["a", "Romeo", "Montague", "b", "Verona"], ["O", "I-PER", "I-PER", "I-LOC", "B-LOC"]) == [
        ("PER", "Romeo Montague"), ("LOC", "b"), ("LOC", "Verona")]  # I-X after O or another type opens X (conlleval)


def test_refusals_name_the_right_command(runs, capsys, tmp_path):
    by_name, _ = runs
    s2s = tmp_path / "s2s"
    s2s.mkdir()
    (s2s / "config.yaml").write_text(dump_config(load_config(None, ["--model.family=seq2seq", "--model.preset=tiny"])))
    rc, _, err = tag(capsys, s2s, "--input", "a")
    assert rc == 2 and err.count("\n") == 1 and "trained for 'seq2seq'" in err and "use axon translate RUN_DIR" in err
    rc = main(["sample", str(by_name["bilstm"][0])])
    err = capsys.readouterr().err
    assert rc == 2 and "use axon tag RUN_DIR --input TEXT" in err
    long = " ".join(["the"] * 6)
    rc, _, err = tag(capsys, by_name["short"][0], "--input", "a", "--input", long)
    assert rc == 2 and err == "axon tag: error: --input 2: 6 words, more than the run's model.block_size=5; split it\n"
    bad = write_conll(tmp_path / "bad.conll", [(["Romeo", "is"], ["B-PER", "O"]), (["the", "Duke"], ["O", "B-ORG"])])
    rc, _, err = tag(capsys, by_name["bilstm"][0], "--eval", bad)
    assert rc == 2 and f"{bad}:5: tag 'B-ORG' is not one of the run's tags (B-LOC, B-PER, I-PER, O)" in err
