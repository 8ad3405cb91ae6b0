"""The tag task end to end: planted entities learnt by the BiLSTM with and without a CRF, and by
BERT fine-tuned from a masked-LM run; first-sub-token alignment by hand; Viterbi at evaluation;
exact resume; refusals in one line."""

import json
import random
import shutil
from pathlib import Path

import pytest
import torch

from axon.config import load_config
from axon.data.bert_tokens import BertTokens, build_bert_tokenizer
from axon.data.tagged import IGNORE, TaggedSentences, WordVocab, first_subtoken_labels, unknown_ids
from axon.errors import ConfigError, DataError
from axon.models import build_model
from axon.model_configs.rnn_tagger import RNNTaggerConfig
from axon.objectives.tagging import TokenTagging, predict_tags, word_emissions
from axon.tasks import build_task
from axon.tasks.finetune import finetune_config
from axon.train.checkpoint import list_checkpoints
from axon.train.logging import read_metrics
from axon.train.run import train

# Planted NER: a word from NAMES is a person (B-PER; "Montague" after it continues the name, I-PER), a word
# from PLACES a location; everything else is O. A tagger must learn the lists and the I-PER rule.
NAMES = ["Romeo", "Juliet", "Hamlet", "Ophelia", "Lear", "Portia"]
PLACES = ["Verona", "Mantua", "Padua"]
FILLER = ["the", "a", "good", "night", "speak", "come", "sweet", "love", "is", "here", "to", "my", "lord", "go"]


def planted(n: int, seed: int) -> list[tuple[list[str], list[str]]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        words, tags = [], []
        for _ in range(rng.randint(3, 9)):
            r = rng.random()
            if r < 0.15:
                words.append(rng.choice(NAMES))
                tags.append("B-PER")
                if rng.random() < 0.3:
                    words.append("Montague")
                    tags.append("I-PER")
            elif r < 0.25:
                words.append(rng.choice(PLACES))
                tags.append("B-LOC")
            else:
                words.append(rng.choice(FILLER))
                tags.append("O")
        out.append((words, tags))
    return out


def write_conll(path: Path, sentences) -> Path:
    path.write_text("\n".join("".join(f"{w} {t}\n" for w, t in zip(ws, ts)) for ws, ts in sentences))
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("tag")
    return root, write_conll(root / "train.conll", planted(200, 0)), write_conll(root / "val.conll", planted(40, 1))


TINY = ["--task=tag", "--model.preset=tiny", "--train.batch_size=16", "--train.eval_interval=50", "--train.eval_batches=4",
        "--train.sample_tokens=0", "--train.threads=1", "--optim.name=adamw", "--schedule.warmup_steps=10",
        "--log.progress=false"]


def run_args(root, name, train_file, val_file=None, *extra):
    val = [f"--data.val_file={val_file}"] if val_file else []
    return [*TINY, f"--out_dir={root}", f"--name={name}", f"--data.cache_dir={root / 'cache'}",
            f"--data.train_file={train_file}", *val, *extra]


@pytest.mark.parametrize("crf", [False, True])
def test_bilstm_learns_planted_entities_to_f1_one(files, crf):
    root, train_file, val_file = files
    result = train(load_config(None, run_args(root, f"bilstm-crf{crf}", train_file, val_file, "--model.family=rnn_tagger",
                                               f"--model.crf={str(crf).lower()}", "--train.max_steps=150",
                                               "--optim.lr=1e-2")))
    assert result["val_f1"] == 1.0 and result["val_precision"] == 1.0 and result["val_recall"] == 1.0
    assert result["val_token_accuracy"] == 1.0 and result["val_accuracy"] == 1.0
    run = Path(result["run_dir"])
    assert json.loads((run / "tags.json").read_text())["tags"] == ["B-LOC", "B-PER", "I-PER", "O"]
    words = (run / "vocab.txt").read_text().split("\n")
    assert words[:3] == ["<pad>", "<unk>", "<Unk>"] and "Montague" in words and not (run / "tokenizer.json").exists()
    evals = [r for r in read_metrics(run / "metrics.jsonl") if "val_f1" in r]
    assert evals[0]["step"] == 50 and evals[-1]["val_f1"] == 1.0  # scored at every evaluation, not only at the end
    params = {k for k, _ in build_model(load_config(run / "config.yaml").model).named_parameters()}
    assert any(k.startswith("crf.") for k in params) == crf


def test_word_batches_and_held_out_sentences(files):
    root, train_file, _ = files
    cfg = load_config(None, run_args(root, "b", train_file, None, "--model.family=rnn_tagger"))
    task = build_task(cfg, torch.device("cpu"))
    assert (len(task.train_data), len(task.val_data)) == (180, 20)  # every 10th of 200 sentences held out
    assert cfg.model.num_labels == 4 and cfg.model.vocab_size == 3 + len(NAMES) + len(PLACES) + len(FILLER) + 1
    ids, mask, labels = task.train_data.get_batch(step=3, batch_size=5, block_size=64, seed=7)
    again = task.train_data.get_batch(step=3, batch_size=5, block_size=64, seed=7)
    assert all(torch.equal(a, b) for a, b in zip((ids, mask, labels), again))
    assert ids.shape == mask.shape == labels.shape and labels.dtype == torch.int64
    assert torch.equal(labels != IGNORE, mask)  # word level: every real position is a word with a tag
    assert ((ids == 0) == ~mask).all()  # <pad> = 0 exactly on padding
    gold = planted(200, 0)[9][1]  # the first held-out sentence, in file order
    first = next(task.val_data.iter_eval_batches(4, 64))[2][0]
    assert [t for t in first.tolist() if t != IGNORE] == [["B-LOC", "B-PER", "I-PER", "O"].index(t) for t in gold]


def test_unknown_words_by_their_first_letter_and_word_dropout_in_training_batches_only():
    vocab = WordVocab([["Romeo", "is", "here"], ["Romeo", "go"]], min_count=2)
    assert vocab.words == ["<pad>", "<unk>", "<Unk>", "Romeo"]
    assert vocab.encode(["Romeo", "Tybalt", "dies", "ROMEO"]) == [3, 2, 1, 2]
    assert WordVocab([["Romeo"]], lowercase=True).encode(["ROMEO", "Tybalt", "x"]) == [3, 2, 1]
    sentences = [[f"w{i}" for i in range(8)], [f"W{i}" for i in range(5)]]
    seqs = [[10 + i for i in range(8)], [20 + i for i in range(5)]]
    labels = [[0] * 8, [1] * 5]
    data = TaggedSentences(seqs, labels, 0, unknown_ids(sentences, 64), word_dropout=0.5)
    ids, mask, _ = data.get_batch(step=1, batch_size=64, block_size=64, seed=3)
    assert torch.equal(ids, data.get_batch(step=1, batch_size=64, block_size=64, seed=3)[0])  # a pure function
    dropped = (ids < 10) & mask
    assert 0.4 < dropped.sum() / mask.sum() < 0.6  # 64 rows x ~6.5 words: 0.5 +- 0.07 at 3 sigma
    first = mask.sum(1) == 8  # rows of the first sentence (8 words), the others of the second (5)
    assert first.any() and (~first).any()
    assert set(ids[first][dropped[first]].tolist()) == {1}  # "w0".."w7": lower case -> <unk>
    assert set(ids[~first][dropped[~first]].tolist()) == {2}  # "W0".."W4": capitalised -> <Unk>
    val = TaggedSentences(seqs, labels, 0, unknown_ids(sentences, 64), word_dropout=0.5)
    assert [b[0].tolist() for b in val.iter_eval_batches(2, 64)] == [[s + [0] * (8 - len(s)) for s in seqs]]  # never dropped


def test_a_word_of_three_subtokens_gets_one_label_at_its_first():
    tok = build_bert_tokenizer("char", ["Rom is"])
    tokens = BertTokens(tok)
    r, o, m, i, s = (tok.tokenizer.token_to_id(c) for c in "Romis")
    ids, labels = first_subtoken_labels(tokens.encode_batch(["Rom", "is"]), [7, 3], tokens)
    assert ids == [tokens.cls_id, r, o, m, i, s, tokens.sep_id]
    assert labels == [IGNORE, 7, IGNORE, IGNORE, 3, IGNORE, IGNORE]
    # the objective reads each word's score at its first sub-token: positions 1 and 4
    emissions = torch.arange(7.0).view(1, 7, 1).expand(1, 7, 2)
    em, tags, mask = word_emissions(emissions, torch.tensor([labels]))
    assert em[0, :, 0].tolist() == [1.0, 4.0] and tags.tolist() == [[7, 3]] and mask.all()


def test_bert_task_aligns_words_and_refuses_a_classify_head(files):
    root, train_file, val_file = files
    cfg = load_config(None, run_args(root, "bb", train_file, val_file, "--model.family=bert", "--model.head=tag",
                                     "--data.tokenizer=char"))
    task = build_task(cfg, torch.device("cpu"))
    ids, mask, labels = next(task.val_data.iter_eval_batches(1, 64))
    words, tags = planted(40, 1)[0]
    assert ids.shape[1] == sum(map(len, words)) + 2  # one piece per character, [CLS] and [SEP]
    starts = [1 + sum(map(len, words[:k])) for k in range(len(words))]
    assert (labels[0] != IGNORE).nonzero().flatten().tolist() == starts
    bad = load_config(None, run_args(root, "bc", train_file, val_file, "--model.family=bert", "--model.head=classify"))
    with pytest.raises(ConfigError, match="model.head: the tag task trains a token-classification head; set model.head=tag"):
        build_task(bad, torch.device("cpu"))


def test_bert_finetuned_from_a_masked_lm_run(files):
    root, train_file, val_file = files
    (root / "pretrain.txt").write_text("\n".join(" ".join(w) for w, _ in planted(200, 0)) + "\n")
    mlm = train(load_config(None, [f"--out_dir={root}", "--name=mlm", "--model.family=bert", "--model.preset=tiny",
                                   f"--data.train_file={root / 'pretrain.txt'}", "--data.tokenizer=wordpiece",
                                   "--data.vocab_size=200", "--train.max_steps=20", "--train.batch_size=8",
                                   "--train.sample_tokens=0", "--train.threads=1", "--log.progress=false",
                                   f"--data.cache_dir={root / 'cache'}"]))
    cfg = finetune_config(mlm["run_dir"], None, run_args(root, "ft", train_file, val_file, "--train.max_steps=150",
                                                         "--optim.lr=1e-3"))
    assert cfg.task == "tag" and cfg.model.head == "tag" and cfg.train.init_from == mlm["run_dir"]
    result = train(cfg)
    assert result["val_f1"] == 1.0
    with open(Path(result["run_dir"]) / "tokenizer.json") as a, open(Path(mlm["run_dir"]) / "tokenizer.json") as b:
        assert a.read() == b.read()  # the pretrained run's word pieces


def test_crf_model_is_decoded_by_viterbi_at_evaluation():
    """Emissions that favour tag 1 everywhere, a transition that forbids 1 after 1: argmax says 1 1 1 1,
    Viterbi alternates 1 0 1 0 -- evaluation's predictions and its token accuracy must be Viterbi's."""
    torch.manual_seed(0)
    model = build_model(RNNTaggerConfig(vocab_size=5, num_labels=2, n_embd=4, crf=True)).eval()
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.copy_(torch.tensor([0.0, 1.0]))
        model.crf.transitions.zero_()
        model.crf.start.zero_()
        model.crf.end.zero_()
        model.crf.transitions[1, 1] = -100.0
    batch = (torch.tensor([[2, 3, 4, 2]]), torch.ones(1, 4, dtype=torch.bool), torch.tensor([[1, 0, 1, 0]]))
    gold, pred = predict_tags(model, [batch])
    assert gold == [[1, 0, 1, 0]] and pred == [[1, 0, 1, 0]]
    with torch.no_grad():
        _, parts = TokenTagging()(model, batch)
    assert parts["correct"] == 4 and parts["count"] == 4
    model.crf = None  # the same emissions without the CRF: argmax, all 1
    assert predict_tags(model, [batch])[1] == [[1, 1, 1, 1]]


def test_run_resumes_exactly(files):
    root, train_file, val_file = files
    extra = ("--model.family=rnn_tagger", "--model.crf=true", "--model.dropout=0.2", "--model.word_dropout=0.1", "--train.max_steps=20",
             "--train.checkpoint_interval=10", "--train.log_interval=1", "--train.eval_interval=10")
    result = train(load_config(None, run_args(root, "resume", train_file, val_file, *extra)))
    run = Path(result["run_dir"])
    copy = root / "resume-copy"
    shutil.copytree(run, copy)
    newest = list_checkpoints(copy / "checkpoints")[0]
    assert newest.name == "step_00000020"
    shutil.rmtree(newest)
    resumed = train(resume=copy)
    losses = lambda d: [(r["step"], r["train_loss"]) for r in read_metrics(d / "metrics.jsonl") if "train_loss" in r]  # noqa: E731
    assert resumed["step"] == 20 and len(losses(run)) == 20 and losses(copy) == losses(run)
    assert resumed["val_f1"] == result["val_f1"] and resumed["val_loss"] == result["val_loss"]


def test_a_validation_tag_absent_from_training_is_refused_naming_its_line(files, tmp_path):
    root, train_file, _ = files
    val = tmp_path / "val.conll"
    val.write_text("Romeo B-PER\nis O\n\nthe O\nDuke B-ORG\n")
    cfg = load_config(None, run_args(root, "v", train_file, val, "--model.family=rnn_tagger"))
    with pytest.raises(DataError, match=r"val.conll:5: tag 'B-ORG' does not occur in the training file .*train.conll"):
        build_task(cfg, torch.device("cpu"))


def test_bad_input_is_one_line(files, tmp_path):
    root, train_file, _ = files
    bad = tmp_path / "bad.conll"
    bad.write_text("Romeo B-PER\nis\n")
    cfg = load_config(None, run_args(root, "x", bad, None, "--model.family=rnn_tagger"))
    with pytest.raises(DataError, match=r"bad.conll:2: one column 'is'"):
        build_task(cfg, torch.device("cpu"))
    one = write_conll(tmp_path / "one.conll", [(["a", "b"], ["O", "O"])] * 20)
    with pytest.raises(DataError, match="a tagger needs at least two tags"):
        build_task(load_config(None, run_args(root, "y", one, None, "--model.family=rnn_tagger")), torch.device("cpu"))
    long = write_conll(tmp_path / "long.conll", [(["a"] * 70, ["O"] * 69 + ["B-PER"])] * 20)
    with pytest.raises(DataError, match=r"long.conll: sentence 1 \('a a a a a a \.\.\.'\) is 70 words, more than model.block_size=64"):
        build_task(load_config(None, run_args(root, "z", long, None, "--model.family=rnn_tagger")), torch.device("cpu"))
    cut = load_config(None, run_args(root, "z", long, None, "--model.family=rnn_tagger", "--data.truncate=true"))
    assert build_task(cut, torch.device("cpu")).train_data.get_batch(0, 2, 64, 0)[0].shape == (2, 64)
    with pytest.raises(ConfigError, match="a decoder model does not do 'tag'"):
        build_task(load_config(None, run_args(root, "w", train_file, None, "--model.family=decoder")), torch.device("cpu"))
