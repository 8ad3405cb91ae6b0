"""The sft task: the chat template and its loss mask, the objective by hand, the families that
serve it, a tiny pretrain -> SFT run that learns a planted mapping, exact resume, `axon sample`
on the result, and bad input named by file and line."""

import json
import shutil
from pathlib import Path

import pytest
import torch
from cache_checks import assert_same_logits
from numerics import assert_close_orders

from axon.cli import main
from axon.config import build_model_config, load_config
from axon.data.chat import END, IGNORE, encode_conversations, pieces, prompt_ids, read_conversations, render
from axon.data.tokenizers import CharTokenizer, load_tokenizer
from axon.errors import ConfigError, DataError
from axon.eval import evaluate
from axon.models import FAMILIES, build_model
from axon.models.base import Model
from axon.objectives import IGNORE_INDEX, ResponseLM
from axon.tasks import build_task
from axon.tasks.finetune import finetune_config
from axon.train.checkpoint import list_checkpoints
from axon.train.logging import read_metrics
from axon.train.run import load_run, train

CHAT = [("system", "Reverse the letters."), ("user", "abc"), ("assistant", "cba"),
        ("user", "hello"), ("assistant", "olleh")]
QUIET = ["--log.progress=false", "--train.threads=1"]
PLANTED = ["abc", "dog", "hat", "sun", "pig", "red", "map", "toy"]  # each answered by its reverse


def write_jsonl(path, objects):
    path.write_text("".join(json.dumps(o) + "\n" for o in objects))
    return path


def chat_obj(messages):
    return {"messages": [{"role": r, "content": c} for r, c in messages]}


def char_tokenizer():
    from axon.data.corpus import corpus_path

    return CharTokenizer.from_text(corpus_path().read_text(encoding="utf-8"))  # the bundled run's 65 characters


def encoded(convs, block_size=128, tokenizer=None, truncate=False):
    return encode_conversations(convs, tokenizer or char_tokenizer(), block_size, truncate, "f.jsonl")


# ----------------------------------------------------------------------------------------------
# The template and the mask


def test_template_renders_and_the_mask_covers_each_assistant_turn(tmp_path):
    assert render(CHAT) == "System: Reverse the letters.\nUser: abc\nAssistant: cba$\nUser: hello\nAssistant: olleh$"
    assert render(CHAT[1:2], generation=True) == "User: abc\nAssistant: "
    tok = char_tokenizer()  # the template is in tiny Shakespeare's characters
    assert tok.decode(tok.encode(render(CHAT))) == render(CHAT)
    convs = read_conversations(write_jsonl(tmp_path / "c.jsonl", [chat_obj(CHAT)]))
    data, cut = encoded(convs)
    ids, trained = data.seqs[0], data.trained[0]
    assert cut == 0 and tok.decode(ids) == render(CHAT)
    assert tok.decode(ids[trained]) == "cba$olleh$"  # both answers and their markers, nothing else
    x, y = data.collate([0])
    assert torch.equal(x[0], torch.from_numpy(ids[:-1]))
    kept = y[0] != IGNORE
    assert tok.decode(y[0][kept].tolist()) == "cba$olleh$"
    # y[t] is the token after x[t]: the first target of each answer is read after "Assistant: "
    first = int(kept.nonzero()[0])
    assert tok.decode(x[0, : first + 1].tolist()).endswith("User: abc\nAssistant: ")
    assert data.num_targets == len("cba$olleh$")


def test_reads_both_forms_and_a_pair_is_a_one_turn_chat(tmp_path):
    f = write_jsonl(tmp_path / "m.jsonl", [{"prompt": "abc", "response": "cba", "id": 7}, chat_obj(CHAT[1:3])])
    a, b = read_conversations(f)
    assert a.messages == b.messages == (("user", "abc"), ("assistant", "cba")) and (a.line, b.line) == (1, 2)
    assert a.fields == ("prompt", "response") and b.fields == ("messages[0].content", "messages[1].content")
    data, _ = encoded([a, b])
    assert all(torch.equal(u, v) for u, v in zip(data.collate([0]), data.collate([1])))


def test_prompt_tokens_are_never_targets(tmp_path):
    """Two examples whose prompts differ (same length) have the same targets: only answers count."""
    f = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "abc", "response": "xy"}, {"prompt": "QRS", "response": "xy"}])
    data, _ = encoded(read_conversations(f))
    x, y = data.collate([0, 1])
    assert not torch.equal(x[0], x[1]) and torch.equal(y[0], y[1])
    assert (y != IGNORE).sum(1).tolist() == [3, 3]  # "xy$"


def test_prompt_ids_are_the_training_prefix():
    tok = char_tokenizer()
    text, ids = prompt_ids(tok, "abc")
    assert text == "User: abc\nAssistant: " and tok.decode(ids) == text
    full = "".join(p.text for p in pieces([("user", "abc"), ("assistant", "cba")]))
    assert full.startswith(text)


# ----------------------------------------------------------------------------------------------
# The objective


class FixedLogits(Model):
    """A 'model' that returns the given logits, so the loss can be checked against them by hand."""

    def __init__(self, logits):
        super().__init__()
        self.logits = logits

    def forward(self, idx):
        return self.logits


@pytest.mark.numerics
def test_loss_is_the_mean_over_response_positions_by_hand(tmp_path):
    f = write_jsonl(tmp_path / "h.jsonl", [{"prompt": "abc", "response": "cba"}, chat_obj(CHAT)])
    data, _ = encoded(read_conversations(f))
    x, y = data.collate([0, 1])
    logits = torch.randn(*x.shape, 65)
    loss, parts = ResponseLM()(FixedLogits(logits), (x, y))
    keep = y != IGNORE_INDEX
    by_hand = -logits.log_softmax(-1)[keep].gather(-1, y[keep][:, None]).mean()
    # a log-softmax over 65, then a mean over the response targets, in F.cross_entropy's order and this one
    assert_close_orders(loss, by_hand, n=max(65, int(keep.sum())), depth=2)
    assert int(parts["count"]) == int(keep.sum()) == len("cba$") + len("cba$olleh$")
    # What the model predicts at prompt positions does not count: change it there, the loss is the same
    noisy = logits.clone()
    noisy[~keep] += 10 * torch.randn(int((~keep).sum()), 65)
    assert torch.equal(ResponseLM()(FixedLogits(noisy), (x, y))[0], loss)
    # ...which a loss over every next token (prompt tokens counted) would see
    every = torch.full_like(y, IGNORE_INDEX)
    for b, ids in enumerate(data.seqs):
        every[b, : len(ids) - 1] = torch.from_numpy(ids[1:])
    assert float(ResponseLM()(FixedLogits(noisy), (x, every))[0]) > float(loss) + 1


def test_evaluation_weights_batches_by_response_tokens(tmp_path):
    f = write_jsonl(tmp_path / "w.jsonl", [{"prompt": "abc", "response": "c"}, chat_obj(CHAT)])
    data, _ = encoded(read_conversations(f))
    model = build_model(build_model_config({"preset": "tiny", "vocab_size": 65, "block_size": 128}))
    per_batch = [ResponseLM()(model.eval(), b) for b in data.iter_eval_batches(1, 128)]
    counts = [int(p["count"]) for _, p in per_batch]
    assert counts == [2, 10]
    result = evaluate(model, ResponseLM(), data.iter_eval_batches(1, 128))
    expected = sum(float(loss) * n for (loss, _), n in zip(per_batch, counts)) / 12
    assert result["count"] == 12 and result["loss"] == pytest.approx(expected, rel=1e-12)  # the same sums


def test_batches_are_a_pure_function_of_seed_step_and_micro_step(tmp_path):
    f = write_jsonl(tmp_path / "b.jsonl", [{"prompt": w, "response": w[::-1] * (i + 1)} for i, w in enumerate(PLANTED)])
    data, _ = encoded(read_conversations(f), block_size=64)
    a = data.get_batch(step=3, batch_size=5, block_size=64, seed=1, micro_step=1)
    assert all(torch.equal(u, v) for u, v in zip(a, data.get_batch(3, 5, 64, 1, micro_step=1)))
    assert not torch.equal(a[0], data.get_batch(3, 5, 64, 1, micro_step=0)[0])
    x, y = a
    assert x.shape == y.shape and x.shape[0] == 5 and x.dtype == y.dtype == torch.int64
    assert data.collate([0, 7])[0].shape == (2, len(data.seqs[7]) - 1)  # padded to the longest of the batch
    batches = list(data.iter_eval_batches(3, 64))
    assert [len(b[0]) for b in batches] == [3, 3, 2]  # 8 examples, file order, 3 at a time
    assert all(torch.equal(u, v) for u, v in zip(batches[1], data.collate([3, 4, 5])))
    with pytest.raises(DataError, match="checked for block_size 64"):
        data.get_batch(0, 2, 32, 1)


@pytest.mark.numerics
@pytest.mark.parametrize("family", [f for f, fam in FAMILIES.items() if "sft" in fam.other_tasks])
def test_right_padding_leaves_each_example_as_it_is_alone(family, tmp_path):
    """Every family that serves sft reads a right-padded row as the example alone (a causal model:
    padding comes after every real token), so padding changes no loss."""
    f = write_jsonl(tmp_path / "r.jsonl", [chat_obj(CHAT), {"prompt": "abc", "response": "c"}])
    data, _ = encoded(read_conversations(f))
    model = build_model(build_model_config({"family": family, "preset": "tiny", "vocab_size": 65, "block_size": 128})).eval()
    x, _ = data.collate([0, 1])
    short, _ = data.collate([1])
    n = short.shape[1]
    with torch.no_grad():
        assert_same_logits(model, model(x)[1, :n], model(short)[0], steps=x.shape[1])


def test_the_causal_lm_families_serve_sft_and_others_are_refused(tmp_path):
    assert {f for f, fam in FAMILIES.items() if "sft" in fam.other_tasks} == {
        "decoder", "progressive", "conv_attention", "mamba", "rnn", "routed"}
    f = write_jsonl(tmp_path / "t.jsonl", [{"prompt": "a", "response": "b"}] * 10)
    with pytest.raises(ConfigError, match="a bert model does not do 'sft'.*model.family=decoder"):
        build_task(load_config(None, ["--task=sft", "--model.family=bert", f"--data.train_file={f}"]), torch.device("cpu"))


# ----------------------------------------------------------------------------------------------
# Bad input: one line naming the file and line


@pytest.mark.parametrize("content,message", [
    ('{"prompt": "a", "response": "b"}\n\n', r"x.jsonl:2: empty line"),
    ('{"prompt": "a", "response": "b"}\n{"prompt": "a", response}\n', r"x.jsonl:2: not valid JSON"),
    ('["a", "b"]\n', r"x.jsonl:1: expected an object \{\"prompt\""),
    ('{"text": "a"}\n', r"x.jsonl:1: expected an object"),
    ('{"prompt": "a"}\n', r"x.jsonl:1: no 'response'"),
    ('{"prompt": "a", "response": 3}\n', r"x.jsonl:1: response must be a string, got int"),
    ('{"prompt": "  ", "response": "b"}\n', r"x.jsonl:1: prompt is empty"),
    ('{"prompt": "a", "response": "costs $3"}\n', r"x.jsonl:1: response holds the end marker '\$'"),
    ('{"messages": "hi"}\n', r"x.jsonl:1: 'messages' must be a non-empty list"),
    ('{"messages": []}\n', r"x.jsonl:1: 'messages' must be a non-empty list"),
    ('{"messages": [{"role": "user"}]}\n', r"x.jsonl:1: messages\[0\] must be an object with keys 'role' and 'content'"),
    ('{"messages": [{"role": "bot", "content": "x"}]}\n', r"x.jsonl:1: messages\[0\].role must be one of system, user"),
    ('{"messages": [{"role": ["user"], "content": "x"}]}\n', r"x.jsonl:1: messages\[0\].role must be one of"),
    ('{"messages": [{"role": "user", "content": 1}, {"role": "assistant", "content": "x"}]}\n',
     r"x.jsonl:1: messages\[0\].content must be a string"),
    ('{"messages": [{"role": "assistant", "content": "x"}, {"role": "user", "content": "y"}]}\n',
     r"x.jsonl:1: the last message is the user's"),
    ('{"messages": [{"role": "user", "content": "x"}], "prompt": "a", "response": "b"}\n', r"x.jsonl:1: give either"),
    ('', r"x.jsonl: no examples"),
])
def test_bad_lines_are_named(tmp_path, content, message):
    (tmp_path / "x.jsonl").write_text(content)
    with pytest.raises(DataError, match=message):
        read_conversations(tmp_path / "x.jsonl")


def test_an_unencodable_character_and_a_long_example_name_the_line(tmp_path):
    f = write_jsonl(tmp_path / "u.jsonl", [{"prompt": "abc", "response": "cba"}, {"prompt": "café", "response": "x"}])
    with pytest.raises(DataError, match=r"f.jsonl:2: prompt: character 'é' at position 3 is not in the character vocabulary"):
        encoded(read_conversations(f))
    f = write_jsonl(tmp_path / "l.jsonl", [{"prompt": "abc", "response": "cba"}, {"prompt": "abc", "response": "x" * 60}])
    convs = read_conversations(f)
    with pytest.raises(DataError, match=r"f.jsonl:2: the example is 82 tokens .* read 81, more than model.block_size=64.*"
                                        r"data.truncate=true"):
        encoded(convs, block_size=64)
    data, cut = encoded(convs, block_size=64, truncate=True)
    assert cut == 1 and len(data.seqs[1]) == 65 and data.trained[1][-1]  # the answer's tail is gone, the rest trains
    assert len(data.seqs[0]) == len("User: abc\nAssistant: cba$")
    long_prompt = read_conversations(write_jsonl(tmp_path / "p.jsonl", [{"prompt": "a" * 70, "response": "b"}]))
    with pytest.raises(DataError, match=r"f.jsonl:1: the prompt alone is more than model.block_size=64"):
        encoded(long_prompt, block_size=64, truncate=True)


def test_without_val_file_every_tenth_example_is_held_out(tmp_path):
    f = write_jsonl(tmp_path / "t.jsonl", [{"prompt": f"q{w}", "response": w} for w in "abcdefghijklmnopqrstuvwxy"])
    cfg = load_config(None, ["--task=sft", "--model.preset=tiny", f"--data.train_file={f}"])
    task = build_task(cfg, torch.device("cpu"))
    assert (len(task.train_data), len(task.val_data)) == (23, 2) and task.val_data.lines == [10, 20]
    assert cfg.model.vocab_size == task.tokenizer.vocab_size  # char: the file's characters in the template
    assert task.summarize(0.0, "val") == {"perplexity": 1.0}
    few = write_jsonl(tmp_path / "few.jsonl", [{"prompt": "a", "response": "b"}] * 9)
    with pytest.raises(DataError, match="fewer than 10 examples; give data.val_file"):
        build_task(load_config(None, ["--task=sft", f"--data.train_file={few}"]), torch.device("cpu"))


# ----------------------------------------------------------------------------------------------
# Pretrain -> SFT, end to end


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("sft")


@pytest.fixture(scope="module")
def pretrained(root, tmp_path_factory):
    cache = tmp_path_factory.getbasetemp() / "axon-cache"
    assert main(["train", "--model.preset=tiny", "--train.max_steps=20", "--train.sample_tokens=0", *QUIET,
                 f"--data.cache_dir={cache}", f"--out_dir={root / 'runs'}", "--name=pre"]) == 0
    return root / "runs" / "pre"


@pytest.fixture(scope="module")
def planted(root):
    return write_jsonl(root / "planted.jsonl", [{"prompt": w, "response": w[::-1]} for w in PLANTED])


SFT = ["--task=sft", "--optim.name=adamw", "--optim.lr=3e-3", "--schedule.warmup_steps=5", "--train.batch_size=8",
       "--train.log_interval=1", "--train.eval_interval=10", *QUIET]


def sft_args(root, planted, name, *extra):
    return [*SFT, f"--data.train_file={planted}", f"--data.val_file={planted}", f"--out_dir={root / 'runs'}",
            f"--name={name}", *extra]


def losses(run_dir):
    return {r["step"]: r["train_loss"] for r in read_metrics(Path(run_dir) / "metrics.jsonl") if "train_loss" in r}


@pytest.fixture(scope="module")
def sft_run(root, pretrained, planted):
    assert main(["finetune", str(pretrained), *sft_args(root, planted, "sft", "--train.max_steps=30",
                                                          "--train.sample_tokens=12")]) == 0
    return root / "runs" / "sft"


def test_sft_from_a_pretrained_run_learns_the_planted_answers(sft_run, pretrained, capsys):
    cfg, model, tokenizer = load_run(sft_run, device="cpu")
    assert cfg.task == "sft" and cfg.train.init_from == str(pretrained)
    assert load_tokenizer(sft_run / "tokenizer.json").chars == load_tokenizer(pretrained / "tokenizer.json").chars
    task = build_task(cfg, torch.device("cpu"))
    _, before, _ = load_run(pretrained, device="cpu")
    start = evaluate(before, task.objective, task.val_data.iter_eval_batches(8, 64))["loss"]
    result = json.loads((sft_run / "result.json").read_text())
    end = evaluate(model, task.objective, task.val_data.iter_eval_batches(8, 64))["loss"]
    assert end == pytest.approx(result["val_loss"], rel=1e-6)  # the run's own final figure
    assert result["val_perplexity"] == pytest.approx(2.718281828459045 ** end, rel=1e-9)
    assert end < 0.6 * start, (start, end)  # the answers' loss falls clearly (measured: 4.08 -> 1.75)
    samples = (sft_run / "samples.txt").read_text()
    assert "User: abc\nAssistant: " in samples and "(reference: cba)" in samples


def test_finetune_prints_the_response_loss_and_perplexity(root, pretrained, planted, capsys):
    assert main(["finetune", str(pretrained), *sft_args(root, planted, "line", "--train.max_steps=2",
                                                          "--train.sample_tokens=0")]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith(f"run: {root / 'runs' / 'line'} | steps 2") and "| val perplexity " in line


def test_sample_wraps_the_prompt_and_stops_at_the_end_marker(sft_run, capsys):
    assert main(["sample", str(sft_run), "--prompt", "dog", "--temperature", "0", "--max-new-tokens", "20",
                 "--no-stream"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("User: dog\nAssistant: ")
    answer = out[len("User: dog\nAssistant: "):].rstrip("\n")
    assert END not in answer and len(answer) < 19  # it wrote the marker and stopped there, well before 20 tokens
    assert main(["sample", str(sft_run), "--prompt", "dog", "--temperature", "0", "--max-new-tokens", "20"]) == 0
    assert capsys.readouterr().out == out  # streaming prints the same
    assert main(["sample", str(sft_run), "--prompt", " "]) == 2
    assert "an sft run answers a prompt: give --prompt TEXT" in capsys.readouterr().err


def test_sft_run_resumes_exactly(root, pretrained, planted):
    args = sft_args(root, planted, "resume", "--train.max_steps=20", "--train.checkpoint_interval=10",
                    "--train.sample_tokens=0")
    run = Path(train(finetune_config(pretrained, None, args))["run_dir"])
    copy = root / "runs" / "resume-copy"
    shutil.copytree(run, copy)
    newest = list_checkpoints(copy / "checkpoints")[0]
    assert newest.name == "step_00000020"
    shutil.rmtree(newest)
    (copy / "config.yaml").write_text((copy / "config.yaml").read_text().replace(str(run), str(copy)))
    resumed = train(resume=copy)
    assert resumed["step"] == 20 and len(losses(run)) == 20
    assert losses(copy) == losses(run)
    assert resumed["val_loss"] == json.loads((run / "result.json").read_text())["val_loss"]


def test_the_model_must_be_the_pretrained_one(root, pretrained, planted):
    cfg = finetune_config(pretrained, None, ["--task=sft", f"--data.train_file={planted}", "--model.dropout=0.1"])
    pre = load_config(pretrained / "config.yaml").model
    assert cfg.task == "sft" and cfg.model.n_layer == pre.n_layer and cfg.model.dropout == 0.1
    assert not hasattr(cfg.model, "head")
    with pytest.raises(ConfigError, match="--model.n_layer: fine-tuning keeps.*dropout, attn_impl, scan_impl"):
        finetune_config(pretrained, None, ["--task=sft", "--model.n_layer=3"])
    # axon train with init_from and another model: refused before any data is read, naming the fields
    argv = ["--task=sft", f"--train.init_from={pretrained}", "--data.train_file=missing.jsonl"]
    with pytest.raises(ConfigError, match=r"train.init_from: the model is not .*pre's: model.n_layer=3 \(the run has 2\).*"
                                          r"axon finetune .* --task=sft"):
        build_task(load_config(None, [*argv, "--model.preset=tiny", "--model.n_layer=3"]), torch.device("cpu"))
    with pytest.raises(ConfigError, match="data.train_file: .* not found"):
        build_task(load_config(None, [*argv, "--model.preset=tiny"]), torch.device("cpu"))  # same model: on to the data
    unencodable = write_jsonl(root / "u.jsonl", [{"prompt": "abc", "response": "cba"}, {"prompt": "2 + 2", "response": "4"}])
    with pytest.raises(DataError, match=r"u.jsonl:2: prompt: character '2' at position 0 is not in the character vocabulary"):
        build_task(finetune_config(pretrained, None, ["--task=sft", f"--data.train_file={unencodable}",
                                                 f"--data.val_file={unencodable}"]), torch.device("cpu"))


def test_instruction_data_reports_the_gold_score_of_greedy_answers(root, pretrained, sft_run):
    from axon.feedback import generate_instructions, instruction_gold
    from axon.feedback.instructions import instruction_demonstrations
    from axon.generate import cut_at_stop, generate

    rows = instruction_demonstrations(generate_instructions(12, seed=3))
    data = write_jsonl(root / "instructions.jsonl", rows)
    args = sft_args(root, data, "gold", "--train.max_steps=40", "--train.sample_tokens=0", "--data.truncate=true")
    result = train(finetune_config(pretrained, None, args))
    _, model, tok = load_run(result["run_dir"], device="cpu")
    ids = [prompt_ids(tok, row["prompt"])[1] for row in rows]
    new = min(64, model.config.block_size - max(map(len, ids)))  # one limit for the split (sft.gold_figures)
    assert new >= 4
    golds, ended = [], 0
    for row, x in zip(rows, ids):  # each prompt alone, greedily: a path other than the task's batched one
        out = generate(model, [x], new, temperature=0.0, stop_strings=[END], decode=tok.decode)
        text = tok.decode(out.tokens[0])
        ended += END in text
        golds.append(instruction_gold(row["prompt"], cut_at_stop(text, [END])))
    assert 0 < sum(golds) < len(rows)  # an informative case: some answers score, not all
    assert result["val_gold"] == pytest.approx(sum(golds) / len(rows), abs=1e-12)
    assert result["val_greedy_gold"] == result["val_gold"]  # the name the rollout tasks' greedy figure shares
    assert result["val_ended"] == ended / len(rows)
    assert json.loads((Path(result["run_dir"]) / "result.json").read_text())["val_gold"] == result["val_gold"]
    assert "val_gold" not in json.loads((sft_run / "result.json").read_text())  # reversed words: no judge applies
