"""The reward task: preference files, batches, the pairwise losses by hand, runs that learn a planted
preference, labellers of known reliability, init_from a language model, exact resume, refusals."""

import json
import math
import shutil

import pytest
import torch
from safetensors.torch import load_file

from axon.cli import main
from axon.config import load_config
from axon.data.files import resolve_file
from axon.data.labellers import LABELLERS, TRUSTED, flip_rates
from axon.data.labellers import planted_comparisons as planted
from axon.data.preferences import PreferencePairs, encode_groups, labeller_ids, read_preferences
from axon.data.tokenizers import CharTokenizer
from axon.errors import ConfigError, DataError
from axon.objectives.reward import PairwiseReward, bradley_terry_nll, labeller_nll
from axon.tasks import build_task
from axon.train.checkpoint import list_checkpoints
from axon.train.logging import read_metrics
from axon.train.run import train

def write(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def flags(tmp_path, train_file, val_file=None, *extra):
    out = ["--model.family=reward", "--model.preset=tiny", f"--data.train_file={train_file}", "--optim.name=adamw",
           "--optim.lr=3e-3", "--schedule.warmup_steps=5", "--train.batch_size=16", "--train.sample_tokens=0",
           "--log.progress=false", "--train.threads=1", f"--out_dir={tmp_path / 'runs'}", *extra]
    return out + ([f"--data.val_file={val_file}"] if val_file else [])


def losses(run):
    return {r["step"]: r["train_loss"] for r in read_metrics(run / "metrics.jsonl") if "train_loss" in r}


# --------------------------------------------------------------------------------------------
# Files and batches


def test_a_ranking_is_all_its_pairs_best_first(tmp_path):
    f = write(tmp_path / "p.jsonl", [
        {"prompt": "Q1 ", "responses": ["r0", "r1", "r2", "r3"], "ranking": [2, 0, 3, 1], "labeller": "ann"},
        {"prompt": "Q2 ", "chosen": "good", "rejected": "bad"},
        {"prompt": "Q1 ", "chosen": "r1", "rejected": "new", "labeller": "bob"},  # the same prompt: the same group
    ])
    g1, g2 = read_preferences(f)
    assert g1.responses == ["r0", "r1", "r2", "r3", "new"] and g2.responses == ["good", "bad"]
    # r2 > r0 > r3 > r1: K(K-1)/2 = 6 pairs (better, worse), then line 3's
    assert [(b, w, lab) for b, w, lab, _ in g1.pairs] == [
        (2, 0, "ann"), (2, 3, "ann"), (2, 1, "ann"), (0, 3, "ann"), (0, 1, "ann"), (3, 1, "ann"), (1, 4, "bob")]
    assert [(b, w, lab, line) for b, w, lab, line in g2.pairs] == [(0, 1, None, 2)]
    assert labeller_ids([g1, g2]) == ["ann", "bob"]


def encoded(rows, tmp_path, labellers=("ann", "bob")):
    groups = read_preferences(write(tmp_path / "e.jsonl", rows))
    tok = CharTokenizer.from_text([g.prompt + r for g in groups for r in g.responses])
    enc, _ = encode_groups(groups, tok, list(labellers), 64, False, "e.jsonl")
    return PreferencePairs(enc), tok


def test_batches_keep_a_prompts_pairs_in_one_row_and_are_pure(tmp_path):
    rows = [{"prompt": f"p{i}:", "responses": ["a" * (i + 1), "bb", "ccc"], "ranking": [1, 2, 0], "labeller": "bob"}
            for i in range(5)] + [{"prompt": "q:", "chosen": "x", "rejected": "yy"}]
    data, tok = encoded(rows, tmp_path)
    tokens, lengths, pairs, labeller = data.get_batch(step=3, batch_size=4, block_size=64, seed=7)
    assert tokens.shape[:2] == lengths.shape == (4, 3) and pairs.shape[:2] == labeller.shape and pairs.shape[2] == 2
    assert all(t.shape[0] == 4 and t.dtype == torch.int64 for t in (tokens, lengths, pairs, labeller))  # rows on dim 0
    assert all(torch.equal(a, b) for a, b in zip(data.get_batch(3, 4, 64, 7), (tokens, lengths, pairs, labeller)))
    assert not all(torch.equal(a, b) for a, b in zip(data.get_batch(3, 4, 64, 7, micro_step=1), (tokens, lengths, pairs, labeller)))
    batches = list(data.iter_eval_batches(4, 64))
    assert [b[0].shape[0] for b in batches] == [4, 2]  # file order, the last batch short
    t, n, p, lab = batches[1]
    assert p[0].tolist() == [[1, 2], [1, 0], [2, 0]] and lab[0].tolist() == [1, 1, 1]  # bb > ccc > a...: 3 pairs
    assert p[1].tolist() == [[0, 1], [-1, -1], [-1, -1]] and lab[1].tolist() == [-1, -1, -1]  # one pair, padding
    assert n[1].tolist() == [3, 4, 0]  # "q:x", "q:yy", an empty slot
    assert tok.decode(t[1, 1, :4].tolist()) == "q:yy" and t[1, 0, 3:].eq(0).all()  # right-padded


def test_val_labellers_unknown_to_training_count_as_none(tmp_path):
    data, _ = encoded([{"prompt": "p", "chosen": "a", "rejected": "b", "labeller": "carl"}], tmp_path)
    assert data.groups[0].pairs[:, 2].tolist() == [-1]


@pytest.mark.parametrize("line,message", [
    ("", "p.jsonl:2: empty line"),
    ("{not json", "p.jsonl:2: not valid JSON"),
    ("[1, 2]", "p.jsonl:2: expected a JSON object, got list"),
    ('{"prompt": "p", "chosen": "a"}', "p.jsonl:2: expected the keys prompt, chosen, rejected .* got chosen, prompt"),
    ('{"prompt": "p", "chosen": "a", "rejected": "b", "labeler": "x"}', "p.jsonl:2: expected the keys .* got chosen, labeler"),
    ('{"prompt": "p", "chosen": "a", "rejected": "b", "responses": ["a", "b"], "ranking": [0, 1]}', "p.jsonl:2: expected the keys"),
    ('{"prompt": 3, "chosen": "a", "rejected": "b"}', "p.jsonl:2: 'prompt' must be a string, got int"),
    ('{"prompt": "p", "chosen": " ", "rejected": "b"}', "p.jsonl:2: 'chosen' is empty"),
    ('{"prompt": "p", "chosen": "a", "rejected": "a"}', "p.jsonl:2: 'chosen' and 'rejected' are the same text"),
    ('{"prompt": "p", "chosen": "a", "rejected": "b", "labeller": 7}', "p.jsonl:2: 'labeller' must be a string, got int"),
    ('{"prompt": "p", "chosen": "a", "rejected": "b", "labeller": ""}', "p.jsonl:2: 'labeller' is empty"),
    ('{"prompt": "p", "responses": ["a"], "ranking": [0]}', "p.jsonl:2: 'responses' must be a list of at least two"),
    ('{"prompt": "p", "responses": ["a", 1], "ranking": [0, 1]}', r"p.jsonl:2: responses\[1\] must be a non-empty string"),
    ('{"prompt": "p", "responses": ["a", "b", "a"], "ranking": [0, 1, 2]}', r"p.jsonl:2: responses\[2\] repeats responses\[0\]"),
    ('{"prompt": "p", "responses": ["a", "b", "c"], "ranking": [0, 0, 2]}', r"p.jsonl:2: 'ranking' must list the indices 0..2"),
    ('{"prompt": "p", "responses": ["a", "b"], "ranking": [1, 2]}', r"p.jsonl:2: 'ranking' must list the indices 0..1"),
    ('{"prompt": "p", "responses": ["a", "b"], "ranking": [true, false]}', r"p.jsonl:2: 'ranking' must list"),
])
def test_bad_lines_are_one_line_naming_file_and_line(tmp_path, line, message):
    f = tmp_path / "p.jsonl"
    f.write_text('{"prompt": "ok", "chosen": "a", "rejected": "b"}\n' + line + "\n")
    with pytest.raises(DataError, match=message) as e:
        read_preferences(f)
    assert "\n" not in str(e.value)


def test_a_file_that_is_not_utf8_or_empty(tmp_path):
    (tmp_path / "b.jsonl").write_bytes(b'{"prompt": "\xff"}\n')
    with pytest.raises(DataError, match="b.jsonl: not UTF-8"):
        read_preferences(tmp_path / "b.jsonl")
    (tmp_path / "e.jsonl").write_text("")
    with pytest.raises(DataError, match="e.jsonl: no comparisons"):
        read_preferences(tmp_path / "e.jsonl")


# --------------------------------------------------------------------------------------------
# The losses by hand


def test_bradley_terry_by_hand():
    delta = torch.tensor([2.0, 0.0, -1.5], dtype=torch.float64)
    expected = [math.log(1 + math.exp(-d)) for d in (2.0, 0.0, -1.5)]  # -log sigmoid(d)
    assert bradley_terry_nll(delta).tolist() == pytest.approx(expected, rel=1e-15)


def test_labeller_likelihood_by_hand():
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    cases = [(1.3, 0.1), (1.3, 0.8), (-0.7, 0.3), (0.0, 0.5), (25.0, 0.05), (-25.0, 0.95)]
    delta = torch.tensor([d for d, _ in cases], dtype=torch.float64)
    eps = torch.tensor([e for _, e in cases], dtype=torch.float64)
    got = labeller_nll(delta, torch.log(eps / (1 - eps)))
    # P(label says better > worse) = (1 - eps) sigmoid(delta) + eps (1 - sigmoid(delta))
    expected = [-math.log((1 - e) * sig(d) + e * (1 - sig(d))) for d, e in cases]
    assert got.tolist() == pytest.approx(expected, rel=1e-12)
    # eps > 0.5 reverses the label: the likelihood falls as the reward agrees with it
    assert labeller_nll(torch.tensor([3.0]), torch.tensor([2.0])) > labeller_nll(torch.tensor([-3.0]), torch.tensor([2.0]))


def test_no_labeller_is_bradley_terry_bit_for_bit_with_finite_gradients():
    delta = (torch.randn(1000) * 8).requires_grad_()
    theta = torch.zeros(3, requires_grad=True)
    lab = torch.randint(-1, 3, (1000,))
    flip = torch.where(lab >= 0, theta[lab.clamp(min=0)], torch.full((1000,), -math.inf))
    nll = labeller_nll(delta, flip)
    none = lab < 0
    assert torch.equal(nll[none], bradley_terry_nll(delta[none]))
    nll.sum().backward()
    assert torch.isfinite(delta.grad).all() and torch.isfinite(theta.grad).all()
    big = labeller_nll(torch.tensor([200.0, -200.0]), torch.tensor([-30.0, 30.0]))
    assert torch.isfinite(big).all()  # log space: no log(0)


def test_objective_is_the_mean_over_pairs_of_rewards_scored_once(tmp_path):
    from axon.config import build_model_config
    from axon.models import build_model

    rows = [{"prompt": "p:", "responses": ["aa", "b", "cab"], "ranking": [2, 0, 1], "labeller": "bob"},
            {"prompt": "q:", "chosen": "x", "rejected": "yy", "labeller": "ann"},
            {"prompt": "r:", "chosen": "ab", "rejected": "ba"}]
    data, tok = encoded(rows, tmp_path)
    cfg = build_model_config({"family": "reward", "preset": "tiny", "vocab_size": tok.vocab_size,
                              "labeller_noise": True, "labellers": ["ann", "bob"]})
    model = build_model(cfg).double()
    with torch.no_grad():
        model.labeller_theta.copy_(torch.tensor([0.4, -1.2], dtype=torch.float64))
    batch = next(data.iter_eval_batches(3, 64))
    loss, parts = PairwiseReward()(model, batch)

    def r(prompt, response):
        ids = torch.tensor([tok.encode(prompt + response)])
        return model(ids, torch.tensor([ids.shape[1]])).item()

    pairs = [("p:", "cab", "aa", -1.2), ("p:", "cab", "b", -1.2), ("p:", "aa", "b", -1.2), ("q:", "x", "yy", 0.4),
             ("r:", "ab", "ba", None)]
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    nll, right = [], 0
    for prompt, better, worse, a in pairs:
        d = r(prompt, better) - r(prompt, worse)
        e = 0.0 if a is None else sig(a)
        nll.append(-math.log((1 - e) * sig(d) + e * sig(-d)))
        right += d > 0
    assert parts["count"] == 5 and int(parts["correct"]) == right
    assert loss.item() == pytest.approx(sum(nll) / 5, rel=1e-9)  # fp64: another batch shape, the same maths


# --------------------------------------------------------------------------------------------
# Runs


@pytest.fixture(scope="module")
def planted_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("planted")
    return write(root / "train.jsonl", planted(300, seed=1)), write(root / "val.jsonl", planted(200, seed=2)), root


def test_pairwise_accuracy_rises_on_a_planted_preference(planted_files):
    train_file, val_file, root = planted_files
    cfg = load_config(None, flags(root, train_file, val_file, "--name=planted", "--train.max_steps=40",
                                  "--train.eval_interval=10", "--train.log_interval=10"))
    task = build_task(cfg, torch.device("cpu"))
    from axon.eval import evaluate
    from axon.models import build_model

    torch.manual_seed(cfg.train.seed)
    before = evaluate(build_model(cfg.model), task.objective, task.val_data.iter_eval_batches(16, 64))["accuracy"]
    result = train(cfg)
    # 200 held-out pairs: an untrained reward is a coin (0.5 +- 0.035 sd); the planted mark is learnt
    assert before < 0.75 and result["val_accuracy"] >= 0.95, (before, result["val_accuracy"])
    assert "val_eps/ann" not in result and json.loads((root / "runs" / "planted" / "result.json").read_text())["val_accuracy"] >= 0.95
    record = [json.loads(line) for line in (root / "runs" / "planted" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in record if "val_accuracy" in r] == [10, 20, 30, 40]  # pairwise accuracy at each evaluation


# bundled:labellers (axon.data.labellers): three labellers of known flip rates, the adversarial one (C,
# eps 0.8) labelling 60% of the comparisons, 10% trusted (no id). The labels agree with the truth 47% of
# the time, so plain Bradley-Terry learns the planted preference backwards; the labeller model finds
# who reverses and learns it the right way round.


@pytest.fixture(scope="module")
def labeller_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("labellers")
    files = ["bundled:labellers/train.jsonl", "bundled:labellers/val.jsonl"]
    common = ["--train.max_steps=250", "--train.eval_interval=250", "--train.log_interval=50", f"--data.cache_dir={root}"]
    plain = train(load_config(None, flags(root, *files, "--name=bt", *common)))
    noisy = train(load_config(None, flags(root, *files, "--name=noise", "--model.labeller_noise=true", *common)))
    path = resolve_file(files[0], "data.train_file", load_config(None, [f"--data.cache_dir={root}"]).data)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return rows, plain, noisy, root


def test_labeller_flip_rates_are_recovered(labeller_runs):
    rows, _, noisy, root = labeller_runs
    cfg = load_config(root / "runs" / "noise" / "config.yaml")
    assert cfg.model.labellers == ["A", "B", "C"]  # filled from the training file, recorded in the run
    for lab, (n, in_file) in flip_rates(rows).items():
        eps, est = LABELLERS[lab][0], noisy[f"val_eps/{lab}"]
        # What the likelihood can find is the share of this labeller's comparisons reversed in the file;
        # the estimate misses it by what 250 steps leave (the reward never reaches certainty, and fits a
        # few reversed pairs): at most 0.04 over 6 seeds of this setup, so 0.05.
        assert abs(est - in_file) <= 0.05, (lab, est, in_file)
        # That share is Binomial(n, eps) / n around the true eps: 4 of its standard deviations more
        # (A: n = 218 -> 0.059, B: 0.113, C: 0.053).
        assert abs(est - eps) <= 0.05 + 4 * math.sqrt(eps * (1 - eps) / n), (lab, est, eps)
    assert noisy["val_eps/C"] > 0.5  # the adversary is found


def test_the_labeller_model_beats_bradley_terry_when_the_adversary_labels_most(labeller_runs):
    _, plain, noisy, _ = labeller_runs
    # 400 clean held-out pairs; BT follows the majority of labels, which is reversed
    assert plain["val_accuracy"] < 0.6 and noisy["val_accuracy"] > 0.9, (plain["val_accuracy"], noisy["val_accuracy"])


def test_eval_reports_the_flip_rates(labeller_runs, capsys):
    _, _, noisy, root = labeller_runs
    assert main(["eval", str(root / "runs" / "noise")]) == 0
    out = capsys.readouterr().out
    assert "accuracy" in out and f"eps/C {noisy['val_eps/C']:.4f}" in out
    metrics = [json.loads(line) for line in (root / "runs" / "noise" / "metrics.jsonl").read_text().splitlines()]
    assert all(0 < r["eps/A"] < 1 for r in metrics if "train_loss" in r)  # logged with each training record


def test_exact_resume_with_labeller_noise(tmp_path):
    rows = planted(200, LABELLERS, TRUSTED, seed=6)
    train_file = write(tmp_path / "train.jsonl", rows)
    cfg = load_config(None, flags(tmp_path, train_file, None, "--name=r", "--model.labeller_noise=true",
                                  "--train.max_steps=20", "--train.checkpoint_interval=10", "--train.log_interval=1",
                                  "--train.eval_interval=10", "--train.eval_batches=2"))
    train(cfg)
    run, copy = tmp_path / "runs" / "r", tmp_path / "runs" / "r-resumed"
    shutil.copytree(run, copy)
    newest = list_checkpoints(copy / "checkpoints")[0]
    assert newest.name == "step_00000020"
    shutil.rmtree(newest)  # as a kill after step 10 would leave it
    resumed = train(resume=copy)
    assert resumed["step"] == 20 and sorted(losses(run)) == list(range(1, 21))
    assert losses(copy) == losses(run)  # bit for bit
    a, b = (load_file(str(list_checkpoints(r / "checkpoints")[0] / "model.safetensors")) for r in (run, copy))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # the flip rates' logits too
    assert resumed["val_eps/C"] == json.loads((run / "result.json").read_text())["val_eps/C"]


def test_init_from_a_language_model_run_loads_the_body(tmp_path, cache_dir, capsys):
    from axon.tasks.finetune import load_pretrained_body
    from axon.tasks.reward import REWARD_HEADS
    from axon.train.run import load_run

    lm = ["train", "--model.preset=tiny", "--train.max_steps=2", "--train.batch_size=2", "--train.eval_batches=1",
          "--train.sample_tokens=0", "--log.progress=false", "--train.threads=1", f"--data.cache_dir={cache_dir}",
          f"--out_dir={tmp_path / 'runs'}", "--name=lm", "--optim.name=adamw"]
    assert main(lm) == 0  # a tied decoder: its checkpoint stores lm_head.weight, wte.weight is its alias
    lm_run = tmp_path / "runs" / "lm"
    stored = load_file(str(list_checkpoints(lm_run / "checkpoints")[0] / "model.safetensors"))
    assert "lm_head.weight" in stored and "wte.weight" not in stored
    train_file = write(tmp_path / "train.jsonl", planted(30, seed=3))
    capsys.readouterr()
    cfg = load_config(None, flags(tmp_path, train_file, None, "--name=rm", "--train.max_steps=1", f"--train.init_from={lm_run}"))
    task = build_task(cfg, torch.device("cpu"))
    assert task.tokenizer.vocab_size == 65 == cfg.model.vocab_size  # the language model's Shakespeare characters
    from axon.models import build_model

    model = build_model(cfg.model)
    report = load_pretrained_body(model, lm_run, heads=REWARD_HEADS)
    assert report["initialised"] == ["reward_head.weight"] and report["dropped"] == ["lm_head.weight"]
    assert "new (initialised here): reward_head; dropped from the checkpoint: lm_head" in capsys.readouterr().err
    _, lm_model, _ = load_run(lm_run, "cpu")
    own = model.state_dict()
    for name, t in lm_model.state_dict().items():
        if name != "lm_head.weight":
            assert torch.equal(own[name], t), name  # wte through its tied name
    assert train(cfg)["step"] == 1  # and the run starts from it


# --------------------------------------------------------------------------------------------
# Refusals of the task


def test_the_task_refuses_in_one_line(tmp_path):
    good = write(tmp_path / "g.jsonl", planted(12, {"A": (0.1, 1.0)}, trusted=0.0))
    cpu = torch.device("cpu")
    with pytest.raises(ConfigError, match="a decoder model does not do 'reward'.*model.family=reward"):
        build_task(load_config(None, ["--task=reward", f"--data.train_file={good}"]), cpu)
    with pytest.raises(ConfigError, match="a reward model does not do 'lm'"):
        build_task(load_config(None, ["--task=lm", "--model.family=reward"]), cpu)
    with pytest.raises(ConfigError, match="data.train_file: this task needs a file"):
        build_task(load_config(None, ["--model.family=reward"]), cpu)
    with pytest.raises(ConfigError, match="model.labellers does not list 'A'"):
        build_task(load_config(None, flags(tmp_path, good, None, "--model.labeller_noise=true", "--model.labellers=[B]")), cpu)
    few = write(tmp_path / "few.jsonl", planted(9))
    with pytest.raises(DataError, match="few.jsonl: fewer than 10 prompts"):
        build_task(load_config(None, flags(tmp_path, few)), cpu)
    anonymous = write(tmp_path / "anon.jsonl", planted(12))
    with pytest.raises(DataError, match="anon.jsonl: model.labeller_noise needs comparisons with a \"labeller\" id"):
        build_task(load_config(None, flags(tmp_path, anonymous, None, "--model.labeller_noise=true")), cpu)
    long = write(tmp_path / "long.jsonl", [*planted(11), {"prompt": "p" * 70, "chosen": "ab", "rejected": "ba"}])
    with pytest.raises(DataError, match=r"long.jsonl:12: prompt \+ response is 72 tokens, more than model.block_size=64"):
        build_task(load_config(None, flags(tmp_path, long, good)), cpu)
    task = build_task(load_config(None, flags(tmp_path, long, good, "--data.truncate=true")), cpu)
    kept = task.train_data.groups[-1].seqs[0]
    assert len(kept) == 64 and task.tokenizer.decode(kept.tolist()).endswith("ppab")  # the last tokens are kept


def test_the_config_refuses_in_one_line():
    with pytest.raises(ConfigError, match="^model.labeller_eps_init: must be in"):
        load_config(None, ["--model.family=reward", "--model.labeller_eps_init=0.7"])
    with pytest.raises(ConfigError, match="^unknown key model.labeller_noise; valid keys in model"):
        load_config(None, ["--model.labeller_noise=true"])  # the decoder has no labellers
