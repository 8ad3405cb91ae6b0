"""Prompted evaluation (axon.eval.prompting): the scorer's three request types against hand
computations from full forwards, token boundaries, rolling windows, few-shot selection, batch
invariance, task files and `axon eval --tasks`.

Fixtures: a randomly initialised tiny decoder and LSTM (scoring needs no training), and a decoder
trained for 60 steps on one repeated sentence, which therefore prefers its planted continuations.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

from axon.cli import main
from axon.data.tokenizers import BPETokenizer, CharTokenizer
from axon.errors import ConfigError, DataError
from axon.eval.prompting import LMScorer, build_example, evaluate_tasks, load_task
from axon.eval.prompting.metrics import apply_filters, count_words, f1_score
from axon.eval.prompting.scorer import rolling_windows
from axon.eval.prompting.tasks_spec import fewshot_indices
from axon.models.decoder import Decoder, DecoderConfig
from axon.models.rnn import RNNLM, RNNConfig

CHARS = "abcdefghijklmnopqrstuvwxyz0123456789QA .,:?+-=\n#"
SENTENCE = "the cat sat on the mat. "
# Kind 2 of tests/numerics.py (the same sums in another order: forwards of other shapes, padded
# batches): observed <= 2.4e-7 on these sums of ~40 log-probs of magnitude ~4; a real fault (a token
# scored from the wrong context, a leaked pad) moves them by more than 1e-2.
TOL = 1e-5


@pytest.fixture(scope="module")
def tok():
    return CharTokenizer.from_text(CHARS)


@pytest.fixture(scope="module")
def eot_tok():
    """The same characters, "#" standing for the end-of-text token."""
    t = CharTokenizer.from_text(CHARS)
    t.eot_id = t.encode("#")[0]
    return t


@pytest.fixture(scope="module")
def decoder(tok):
    torch.manual_seed(0)
    return Decoder(DecoderConfig(vocab_size=tok.vocab_size, block_size=64, n_layer=1, n_head=2, n_embd=32)).eval()


@pytest.fixture(scope="module")
def lstm(tok):
    torch.manual_seed(0)
    return RNNLM(RNNConfig(vocab_size=tok.vocab_size, n_layer=1, n_embd=16)).eval()


@pytest.fixture(scope="module")
def trained(tok):
    """A decoder that has learnt SENTENCE (60 AdamW steps, under a second)."""
    torch.manual_seed(0)
    model = Decoder(DecoderConfig(vocab_size=tok.vocab_size, block_size=64, n_layer=1, n_head=2, n_embd=32))
    data = torch.tensor(tok.encode(SENTENCE * 20))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(0)
    for _ in range(60):
        starts = torch.randint(0, len(data) - 33, (8,), generator=g).tolist()
        x = torch.stack([data[s : s + 32] for s in starts])
        y = torch.stack([data[s + 1 : s + 33] for s in starts])
        loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def hand_loglikelihood(model, context_ids, cont_ids):
    """Sum of log p(continuation token) from one full forward, and whether each is the argmax."""
    seq = torch.tensor([context_ids + cont_ids])
    with torch.no_grad():
        logp = model(seq[:, :-1])[0].log_softmax(-1)  # (T - 1, V): row r predicts token r + 1
    rows = range(len(context_ids) - 1, len(context_ids) + len(cont_ids) - 1)
    ll = sum(logp[r, t].item() for r, t in zip(rows, cont_ids))
    return ll, all(logp[r].argmax().item() == t for r, t in zip(rows, cont_ids))


# --- loglikelihood ---------------------------------------------------------------------------------


@pytest.mark.numerics
@pytest.mark.parametrize("family", ["decoder", "lstm"])
def test_loglikelihood_is_the_hand_sum_of_token_log_probs(family, tok, request):
    model = request.getfixturevalue(family)
    scorer = LMScorer(model, tok)
    [(ll, greedy)] = scorer.loglikelihood([("what is 2 + 3?", " 5 ok")])
    want, want_greedy = hand_loglikelihood(model, tok.encode("what is 2 + 3?"), tok.encode(" 5 ok"))
    assert abs(ll - want) < TOL and greedy == want_greedy


def test_greedy_flag_and_planted_continuation(trained, tok):
    scorer = LMScorer(trained, tok)
    (mat, mat_greedy), (dog, dog_greedy) = scorer.loglikelihood([("the cat sat on the", " mat"),
                                                                  ("the cat sat on the", " dog")])
    assert mat_greedy and not dog_greedy and mat > dog + 5


@pytest.mark.numerics
def test_trailing_whitespace_of_the_context_moves_to_the_continuation(decoder, tok):
    scorer = LMScorer(decoder, tok)
    a, b = scorer.loglikelihood([("a b ", "c"), ("a b", " c")])
    assert abs(a[0] - b[0]) < TOL and a[1] == b[1]
    # char tokens: the space is now scored as the continuation's first token
    assert abs(a[0] - hand_loglikelihood(decoder, tok.encode("a b"), tok.encode(" c"))[0]) < TOL


@pytest.mark.numerics
def test_a_bpe_boundary_is_cut_as_lm_eval_cuts_it():
    # Byte-level BPE merges " 4" into one token: encode("Answer: ") + encode("4") would score a
    # lone space and a bare "4" (lm-eval #942); the continuation is whole[len(encode(context)):].
    bpe = BPETokenizer.train(["Answer: 4 and 5 then 44, the answer is 4"] * 20, 300)
    assert bpe.encode("Answer: 4")[-1] not in bpe.encode("Answer: ") + bpe.encode("4")  # a merge across the cut
    torch.manual_seed(0)
    model = Decoder(DecoderConfig(vocab_size=bpe.vocab_size, block_size=32, n_layer=1, n_head=2, n_embd=16)).eval()
    [(ll, _)] = LMScorer(model, bpe).loglikelihood([("Answer: ", "4")])
    whole, ctx = bpe.encode("Answer: 4"), bpe.encode("Answer:")
    assert abs(ll - hand_loglikelihood(model, ctx, whole[len(ctx):])[0]) < TOL


@pytest.mark.numerics
def test_an_empty_context_is_scored_from_end_of_text_or_refused(decoder, tok, eot_tok):
    [(ll, _)] = LMScorer(decoder, eot_tok).loglikelihood([("", "abc")])
    assert abs(ll - hand_loglikelihood(decoder, eot_tok.encode("#"), eot_tok.encode("abc"))[0]) < TOL
    with pytest.raises(DataError, match="end-of-text"):
        LMScorer(decoder, tok).loglikelihood([("  ", "abc")])


@pytest.mark.numerics
def test_a_long_context_is_left_truncated_to_the_model_context(decoder, tok):
    context = "one two three four five six seven eight nine ten eleven twelve"  # 63 chars + " x" > 64 + 1
    [(ll, _)] = LMScorer(decoder, tok).loglikelihood([(context, " xyz")])
    ids = (tok.encode(context) + tok.encode(" xyz"))[-65:]  # 64 inputs: the newest that fit
    assert abs(ll - hand_loglikelihood(decoder, ids[:-4], ids[-4:])[0]) < TOL


# --- loglikelihood_rolling -------------------------------------------------------------------------


@pytest.mark.numerics
@pytest.mark.parametrize("family", ["decoder", "lstm"])
def test_rolling_equals_the_full_sequence_loss_when_the_document_fits(family, tok, eot_tok, request):
    model = request.getfixturevalue(family)
    doc = "the quick brown fox jumps over it"
    with torch.no_grad():
        for t, first in ((eot_tok, eot_tok.encode("#")), (tok, [])):  # without end-of-text: n - 1 tokens scored
            ids = torch.tensor([first + t.encode(doc)])
            losses = F.cross_entropy(model(ids[:, :-1])[0], ids[0, 1:], reduction="none")  # (T - 1,)
            loss_sum = losses.double().sum().item()  # summed in float64, as the scorer sums
            [ll] = LMScorer(model, t).loglikelihood_rolling([doc])
            assert abs(ll + loss_sum) < TOL


@pytest.mark.parametrize("n,L,c", [(2, 4, 1), (5, 4, 1), (9, 4, 1), (10, 4, 2), (23, 5, 5), (40, 8, 3), (8, 8, 1)])
def test_rolling_windows_predict_every_token_once(n, L, c):
    scored, done = [], 0
    for start, end in rolling_windows(n, L, c):
        assert 0 <= start and end - start <= L  # never more than max_length inputs
        new = list(range(done + 1, end + 1))  # the targets stream[done+1 .. end]
        assert new and new[0] - start >= min(c, new[0])  # the first new target sees >= c tokens (or all before it)
        scored += new
        done = end
    assert scored == list(range(1, n))


@pytest.mark.numerics
@pytest.mark.parametrize("rolling_context", [1, 8])
def test_rolling_windows_score_each_token_from_the_context_they_give(decoder, eot_tok, rolling_context):
    doc = "rolling windows overlap so that every token is predicted once"
    L = 8
    stream = eot_tok.encode("#") + eot_tok.encode(doc)
    # by hand: target i sees stream[s:i], s = the start of the window that scores it
    total = 0.0
    with torch.no_grad():
        for i in range(1, len(stream)):
            if i <= L:
                s = 0
            else:
                stride = L - rolling_context + 1
                end = min(L + math.ceil((i - L) / stride) * stride, len(stream) - 1)
                s = end - L
            if rolling_context == L and i > L:
                assert s == i - L  # one new token per window: the most context that fits
            total += decoder(torch.tensor([stream[s:i]]))[0, -1].log_softmax(-1)[stream[i]].item()
    [ll] = LMScorer(decoder, eot_tok, max_length=L, rolling_context=rolling_context).loglikelihood_rolling([doc])
    assert abs(ll - total) < TOL


@pytest.mark.numerics
def test_a_sliding_window_model_scores_documents_longer_than_its_block(eot_tok):
    # No context limit (RoPE, every layer slides): one window through its cache, past block_size.
    # One layer of window 8 and relative positions: token i depends on stream[i-8:i] alone.
    torch.manual_seed(0)
    model = Decoder(DecoderConfig(vocab_size=eot_tok.vocab_size, block_size=16, n_layer=1, n_head=2, n_embd=16,
                                  attention="sliding", attn_window=8)).eval()
    doc = "a document twice as long as the block of the model"
    stream = eot_tok.encode("#") + eot_tok.encode(doc)
    with torch.no_grad():
        want = sum(model(torch.tensor([stream[max(0, i - 8) : i]]))[0, -1].log_softmax(-1)[stream[i]].item()
                   for i in range(1, len(stream)))
    [ll] = LMScorer(model, eot_tok).loglikelihood_rolling([doc])
    assert abs(ll - want) < TOL


# --- generate_until --------------------------------------------------------------------------------


def test_generate_until_stops_at_the_stop_string_and_never_returns_it(trained, tok):
    scorer = LMScorer(trained, tok)
    out = scorer.generate_until([("the cat", {"until": ["."], "max_gen_toks": 30}),
                                 ("the cat", {"until": ["on", "."], "max_gen_toks": 30}),
                                 ("the cat", {"until": ["zz"], "max_gen_toks": 7})])
    assert out == [" sat on the mat", " sat ", " sat on"]  # the sentence it learnt, cut; 7 tokens at most


# --- batch invariance ------------------------------------------------------------------------------


@pytest.mark.numerics
@pytest.mark.parametrize("family", ["decoder", "lstm"])
def test_batch_size_one_and_eight_give_the_same_numbers(family, eot_tok, request):
    model = request.getfixturevalue(family)
    pairs = [("q" * k + " a:", " " + "xyz"[: 1 + k % 3]) for k in range(11)]
    docs = ["some document " * (1 + k % 4) for k in range(9)]
    gens = [(ctx, {"until": ["\n"], "max_gen_toks": 6, "do_sample": k % 2 == 1}) for k, (ctx, _) in enumerate(pairs)]
    one, eight = (LMScorer(model, eot_tok, batch_size=b, max_length=None if family == "lstm" else 24) for b in (1, 8))
    for (a, ga), (b, gb) in zip(one.loglikelihood(pairs), eight.loglikelihood(pairs)):
        assert abs(a - b) < TOL and ga == gb
    assert all(abs(a - b) < TOL for a, b in zip(one.loglikelihood_rolling(docs), eight.loglikelihood_rolling(docs)))
    assert one.generate_until(gens) == eight.generate_until(gens)


# --- task files, shots, metrics ----------------------------------------------------------------------


def write_task(folder, name="t", records=None, fewshot=None, **keys):
    """A task YAML (keys override a multiple-choice default) and its JSONL file(s) in ``folder``."""
    import yaml

    records = records if records is not None else [{"q": f"q{i}", "a": f"a{i}"} for i in range(10)]
    (folder / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    files = {"test": f"{name}.jsonl"}
    if fewshot is not None:
        (folder / f"{name}_shots.jsonl").write_text("".join(json.dumps(r) + "\n" for r in fewshot))
        files["train"] = f"{name}_shots.jsonl"
    spec = {"task": name, "dataset_path": "json", "dataset_kwargs": {"data_files": files}, "test_split": "test",
            "output_type": "loglikelihood", "doc_to_text": "Q: {{q}}\nA:", "doc_to_target": "a",
            **({"fewshot_split": "train"} if fewshot is not None else {}), **keys}
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump({k: v for k, v in spec.items() if v is not None}, sort_keys=False))
    return path


def test_fewshot_selection_is_seeded_and_excludes_the_test_example(tmp_path):
    records = [{"q": f"q{i}", "a": f"a{i}"} for i in range(10)] + [{"q": "q3", "a": "a3"}]  # a copy of record 3
    # lm-eval's convention for a loglikelihood target: the space in doc_to_target, no delimiter
    spec = load_task(write_task(tmp_path, records=records, doc_to_target=" {{a}}", target_delimiter=""))
    draws = {seed: [fewshot_indices(spec, i, 4, seed) for i in range(len(spec))] for seed in (1, 2)}
    assert draws[1] == [fewshot_indices(spec, i, 4, 1) for i in range(len(spec))]  # the same seed, the same shots
    assert draws[1] != draws[2]
    for i, shots in enumerate(draws[1]):
        assert len(set(shots)) == 4 and i not in shots
        assert not ({3, 10} & set(shots) and i in (3, 10))  # a record equal to the example is no shot either
    example = build_example(spec, 0, 2, seed=1)
    a, b = draws[1][0][:2]
    assert example.prompt == f"Q: q{a}\nA: a{a}\n\nQ: q{b}\nA: a{b}\n\nQ: q0\nA:"
    assert example.requests == [(example.prompt, " a0")]


def test_a_loglikelihood_target_follows_the_prompt_without_the_delimiter(tmp_path):
    """lm-eval 0.4.13's rule: target_delimiter joins the shots only; the request is (prompt, target)."""
    spec = load_task(write_task(tmp_path, fewshot_config={"sampler": "first_n"}))  # target_delimiter " "
    example = build_example(spec, 0, 1)
    assert example.prompt == "Q: q1\nA: a1\n\nQ: q0\nA:" and example.requests == [(example.prompt, "a0")]


def test_first_n_shots_skip_the_example_and_a_fewshot_split_is_used(tmp_path):
    spec = load_task(write_task(tmp_path, fewshot_config={"sampler": "first_n"}))
    assert fewshot_indices(spec, 1, 3) == [0, 2, 3] and fewshot_indices(spec, 5, 3) == [0, 1, 2]
    shots = [{"q": f"s{i}", "a": f"b{i}"} for i in range(3)]
    spec = load_task(write_task(tmp_path, name="u", fewshot=shots, fewshot_config={"sampler": "first_n"}))
    assert build_example(spec, 0, 2).prompt == "Q: s0\nA: b0\n\nQ: s1\nA: b1\n\nQ: q0\nA:"
    with pytest.raises(ConfigError, match="shots must be at most 3"):
        build_example(spec, 0, 4)


def test_multiple_choice_picks_the_planted_answer(trained, tok, tmp_path):
    records = [{"ctx": "the cat sat on the", "choices": ["dog", "mat", "sun"], "gold": 1},
               {"ctx": "the cat sat", "choices": ["on the mat", "in a box"], "gold": "on the mat"},
               {"ctx": "the mat", "choices": ["and", ". the cat"], "gold": 1}]
    path = write_task(tmp_path, records=records, output_type="multiple_choice", doc_to_text="{{ctx}}",
                      doc_to_target="gold", doc_to_choice="choices")
    log = tmp_path / "samples.jsonl"
    result = evaluate_tasks(LMScorer(trained, tok), [path], log_samples=log, progress=False)["t"]
    assert result["metrics"] == {"acc": 1.0, "acc_norm": 1.0} and result["n"] == 3 and result["shots"] == 0
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [s["target"] for s in lines] == [1, 0, 1] and lines[0]["requests"][1] == ["the cat sat on the", " mat"]
    assert lines[0]["responses"][1][0] == max(r[0] for r in lines[0]["responses"])


def test_generate_until_task_filters_and_scores_answers(trained, tok, tmp_path):
    records = [{"p": "the cat", "want": "mat"}, {"p": "the cat sat", "want": "hat"}]
    path = write_task(tmp_path, records=records, output_type="generate_until", doc_to_text="p", doc_to_target="want",
                      generation_kwargs={"until": ["."], "max_gen_toks": 20}, metric_list=[{"metric": "exact_match"},
                                                                                           {"metric": "f1"}],
                      filter_list=[{"name": "last-word", "filter": [{"function": "regex", "regex_pattern": r"(\w+)$"},
                                                                    {"function": "take_first"}]}])
    r = evaluate_tasks(LMScorer(trained, tok), str(path), progress=False)["t"]
    assert r["metrics"] == {"exact_match,last-word": 0.5, "f1,last-word": 0.5}
    assert r["stderr"]["exact_match,last-word"] == pytest.approx(0.5)  # sample std 0.707 / sqrt(2)


def test_loglikelihood_and_rolling_task_aggregates(decoder, eot_tok, tmp_path):
    scorer = LMScorer(decoder, eot_tok)
    path = write_task(tmp_path, metric_list=[{"metric": "perplexity"}, {"metric": "acc"}], doc_to_target=" {{a}}",
                      target_delimiter="")
    r = evaluate_tasks(scorer, [path], limit=4, progress=False)["t"]
    lls = [ll for ll, _ in scorer.loglikelihood([(f"Q: q{i}\nA:", f" a{i}") for i in range(4)])]
    assert r["n"] == 4 and r["metrics"]["perplexity"] == pytest.approx(math.exp(-sum(lls) / 4), rel=1e-9)
    docs = ["a few words here", "and more words"]
    path = write_task(tmp_path, name="r", records=[{"text": d} for d in docs], output_type="loglikelihood_rolling",
                      doc_to_text="", doc_to_target="text")
    r = evaluate_tasks(scorer, [path], progress=False)["r"]
    ll = sum(scorer.loglikelihood_rolling(docs))
    assert r["metrics"]["word_perplexity"] == pytest.approx(math.exp(-ll / 7))
    assert r["metrics"]["bits_per_byte"] == pytest.approx(-ll / 30 / math.log(2))


def test_lm_eval_defaults_word_count_and_stop_string(tmp_path):
    # lm-eval 0.4.13 counts a document's words as re.split(r"\s+"): a trailing newline adds one piece.
    assert count_words("a few words here") == 4 and count_words(" a b\n") == 4 and count_words("") == 1
    # A generate_until task without `until` stops at its shots' separator, as lm-eval's TaskConfig sets it.
    path = write_task(tmp_path, output_type="generate_until", generation_kwargs={"max_gen_toks": 5},
                      fewshot_delimiter="\n###\n")
    assert load_task(path).generation_kwargs == {"max_gen_toks": 5, "until": ["\n###\n"]}
    path = write_task(tmp_path, output_type="generate_until", generation_kwargs={"until": []})
    assert load_task(path).generation_kwargs == {"until": []}  # an explicit empty list: no stop string


def test_squad_f1_and_regex_filter():
    assert f1_score("The cat sat", "cat sat down") == pytest.approx(0.8)
    assert f1_score("a", "the") == 1.0 and f1_score("x", "y") == 0.0
    steps = [{"function": "regex", "regex_pattern": r"The answer is (-?[0-9]+)"}, {"function": "take_first"}]
    assert apply_filters("so. The answer is -12. The answer is 3", steps) == "-12"
    assert apply_filters("no number", steps) == "[invalid]"


# --- axon eval --tasks --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def run_dir(trained, tok, tmp_path_factory):
    from axon.config import RunConfig, dump_config
    from axon.train.checkpoint import save_checkpoint

    run = tmp_path_factory.mktemp("prompting") / "run"
    run.mkdir()
    (run / "config.yaml").write_text(dump_config(RunConfig(model=trained.config, out_dir=str(run.parent), name="run")))
    tok.save(run / "tokenizer.json")
    save_checkpoint(run / "checkpoints", 0, trained, [], {"step": 0})
    return run


def test_axon_eval_tasks_prints_a_table_and_json(run_dir, tmp_path, capsys):
    records = [{"ctx": "the cat sat on the", "choices": ["dog", "mat"], "gold": 1},
               {"ctx": "the cat sat", "choices": [" on", " in"], "gold": 0}]
    path = write_task(tmp_path, name="mc", records=records, output_type="multiple_choice", doc_to_text="ctx",
                      doc_to_target="gold", doc_to_choice="choices")
    assert main(["eval", str(run_dir), "--tasks", str(path), "--batch-size", "1"]) == 0
    header, *rows = capsys.readouterr().out.strip().splitlines()
    assert header.split() == ["task", "shots", "metric", "value", "stderr", "n"]
    assert rows[0].split() == ["mc", "0", "acc", "1.0000", "±", "0.0000", "2"]
    assert main(["eval", str(run_dir), "--tasks", str(tmp_path), "--shots", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["mc"]["shots"] == 1


@pytest.mark.parametrize("change,says", [
    (dict(doc_to_txt="q"), "doc_to_txt: unknown key"),
    (dict(doc_to_text=None), "doc_to_text: missing"),
    (dict(output_type="ranking"), "output_type: must be one of"),
    (dict(metric_list=[{"metric": "bleu"}]), "metric_list: metric 'bleu'"),
    (dict(records=[{"q": "a", "a": "b"}, "{not json"]), "t.jsonl:2: not valid JSON"),
    (dict(doc_to_text="{{q}"), "doc_to_text: not a valid Jinja2 template"),
    (dict(doc_to_text="{{missing}}"), "t.jsonl:1: doc_to_text: the template cannot render"),
])
def test_a_malformed_task_file_is_one_line_naming_the_field(change, says, run_dir, tmp_path, capsys):
    records = change.pop("records", None)
    if records is not None:
        (tmp_path / "t.jsonl").write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    path = write_task(tmp_path, **change)
    if records is not None:  # write_task wrote good records: put the bad file back
        (tmp_path / "t.jsonl").write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    assert main(["eval", str(run_dir), "--tasks", str(path)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and says in err, err


@pytest.mark.parametrize("argv,says", [
    (["--tasks", "no_such_task"], "--tasks must name a bundled task"),
    (["--tasks", "t.yaml", "--shots", "-1"], "--shots must be an integer >= 0"),
    (["--shots", "2"], "--shots needs --tasks"),
    (["--tasks", "t.yaml", "--split", "train"], "--split is for the run's own data"),
])
def test_eval_task_flags_are_checked_in_one_line(argv, says, run_dir, tmp_path, capsys, monkeypatch):
    write_task(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert main(["eval", str(run_dir), *argv]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and says in err, err


def test_a_run_that_is_no_causal_language_model_is_refused(tmp_path, capsys):
    from axon.config import RunConfig, dump_config
    from axon.model_configs.bert import BertConfig

    run = tmp_path / "bert"
    run.mkdir()
    (run / "config.yaml").write_text(dump_config(RunConfig(model=BertConfig(vocab_size=50), out_dir=str(tmp_path),
                                                           name="bert")))
    path = write_task(tmp_path)
    assert main(["eval", str(run), "--tasks", str(path)]) == 2  # refused before any weights are read
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "is a bert run, not a causal language model" in err, err
