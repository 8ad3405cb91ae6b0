"""The online_dpo task: index batches a pure function of the step, pairs a pure function of
(weights, step) however rows are batched, the chosen answer the better, ties dropped from the loss
and counted, a planted preference learnt in 20 steps, exact resume, the figures in result.json and
``axon eval``, a gold run from the command line, and bad input in one line.

Every run starts from one tiny language model trained for 20 steps on the bundled corpus (module
fixture), so its answers are nearly random characters. The planted reward is the share of spaces
in an answer, as in tests/tasks/test_ppo_task.py: the starting policy writes few, and every token
can raise it.
"""

import functools
import json
import random
import shutil
from pathlib import Path

import pytest
import torch

from axon.cli import main
from axon.config import load_config
from axon.data.chat import IGNORE, prompt_ids
from axon.data.prompts import TRAIN, PairBatches
from axon.data.tokenizers import load_tokenizer
from axon.errors import ConfigError, DataError
from axon.models import FAMILIES, build_model
from axon.tasks import TASKS, build_task
from axon.tasks.finetune import finetune_config
from axon.tasks.online_dpo import chat_rows, online_dpo_task
from axon.tasks.ppo import Answers
from axon.train.checkpoint import list_checkpoints
from axon.train.logging import read_metrics
from axon.train.run import init_weights, train

QUIET = ["--log.progress=false", "--train.threads=1", "--train.sample_tokens=0"]
CPU = torch.device("cpu")
LETTERS = "abcdefghijklmnopqrstuvwxyz"


def spaces(prompt: str, answer: str) -> float:
    """The planted reward: the share of spaces in the answer."""
    return answer.count(" ") / max(len(answer), 1)


def coarse(prompt: str, answer: str) -> float:
    """A reward with ties: whether the answer holds a space at all."""
    return float(" " in answer)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("online_dpo")


PLANTED = functools.partial(online_dpo_task, reward=spaces)  # the task with the planted reward (the Python API)


@pytest.fixture
def planted(monkeypatch):
    """Runs whose task is built in the test take the planted reward."""
    monkeypatch.setitem(TASKS, "online_dpo", PLANTED)


@pytest.fixture(scope="module")
def lm(root, tmp_path_factory):
    cache = tmp_path_factory.getbasetemp() / "axon-cache"
    cfg = load_config(None, ["--model.preset=tiny", f"--out_dir={root}", "--name=lm", "--train.max_steps=20",
                             "--train.eval_interval=20", "--train.eval_batches=1", f"--data.cache_dir={cache}", *QUIET])
    return Path(train(cfg)["run_dir"])


@pytest.fixture(scope="module")
def prompts(root):
    rng = random.Random(0)
    words = sorted({"".join(rng.choice(LETTERS) for _ in range(rng.randint(3, 5))) for _ in range(40)})
    for name, ws in (("train.jsonl", words[:32]), ("val.jsonl", words[32:40])):
        (root / name).write_text("".join(json.dumps({"prompt": w}) + "\n" for w in ws))
    return root / "train.jsonl", root / "val.jsonl"


def online_config(lm, root, prompts, name, *extra):
    return finetune_config(lm, None, ["--task=online_dpo", f"--out_dir={root}", f"--name={name}",
                                      f"--online_dpo.prompts={prompts[0]}", f"--online_dpo.val_prompts={prompts[1]}",
                                      "--online_dpo.max_new_tokens=16", "--train.batch_size=8",
                                      "--train.eval_interval=1000", "--train.eval_batches=1", "--train.log_interval=1",
                                      "--optim.name=adamw", "--optim.lr=3e-3", "--schedule.name=constant",
                                      "--schedule.warmup_steps=0", *QUIET, *extra])


def records(run):
    return [r for r in read_metrics(Path(run) / "metrics.jsonl") if "train_loss" in r]


@pytest.fixture(scope="module")
def planted_run(lm, root, prompts):
    cfg = online_config(lm, root, prompts, "planted", "--train.max_steps=20", "--train.checkpoint_interval=10",
                        "--train.keep_checkpoints=5")
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(TASKS, "online_dpo", PLANTED)
        return Path(train(cfg)["run_dir"])


def task_and_model(lm, root, prompts, reward, *extra):
    cfg = online_config(lm, root, prompts, "unused", *extra)
    task = online_dpo_task(cfg, CPU, reward=reward)
    model = build_model(cfg.model)
    init_weights(model, cfg.train.init_from)  # the trainer's start: the init_from run's weights, strictly
    return cfg, task, model.train()


# ----------------------------------------------------------------------------------------------
# Batches and pairs


def test_index_batches_are_a_pure_function_of_the_step_and_walk_every_prompt():
    b = PairBatches(n_prompts=10, grad_accum=2)
    kind, step, rows, prompts = b.get_batch(3, 4, 64, seed=5, micro_step=1)
    assert torch.all(kind == TRAIN) and torch.all(step == 3) and rows.tolist() == [4, 5, 6, 7]
    again = b.get_batch(3, 4, 64, seed=5, micro_step=1)
    assert all(torch.equal(u, v) for u, v in zip(again, (kind, step, rows, prompts)))
    walked = [p for s in range(3) for m in range(2) for p in b.get_batch(s, 4, 64, seed=5, micro_step=m)[3].tolist()]
    assert sorted(walked[:10]) == list(range(10)) and sorted(walked[10:20]) == list(range(10))  # each pass: all once
    assert walked[:10] != walked[10:20]  # each pass in its own order
    assert b.get_batch(3, 4, 64, seed=6, micro_step=1)[3].tolist() != prompts.tolist()


def test_chat_rows_score_the_answer_tokens_only():
    tokens = torch.tensor([[5, 6, 7, 8, 9, 0], [5, 6, 7, 1, 2, 3]])  # prompts of 3 tokens; answers of 2 and 3
    mask = torch.tensor([[1.0, 1, 0], [1, 1, 1]])
    answers = Answers(tokens, torch.tensor([3, 3]), mask, ["", ""], torch.tensor([False, False]))
    x, y = chat_rows(answers)
    assert torch.equal(x, tokens[:, :-1])
    assert y.tolist() == [[IGNORE, IGNORE, 8, 9, IGNORE], [IGNORE, IGNORE, 1, 2, 3]]


def test_pairs_are_a_pure_function_of_the_weights_and_the_step(lm, root, prompts):
    cfg, task, model = task_and_model(lm, root, prompts, spaces)
    obj = task.objective
    a = obj.sample_pairs(model, 7, range(6), [0, 1, 2, 3, 4, 5])
    b = obj.sample_pairs(model, 7, range(6), [0, 1, 2, 3, 4, 5])
    for name in ("x", "y", "score", "tie", "ref_logp", "kl", "length", "ended"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    assert a.texts == b.texts and a.x.shape[:2] == (6, 2) and a.x.shape == a.y.shape
    # a row's pair is its own, whichever rows share its batch (as under several processes)
    part = obj.sample_pairs(model, 7, [4, 5], [4, 5])
    assert part.texts == a.texts[4:]
    assert torch.equal(part.score, a.score[4:]) and torch.allclose(part.ref_logp, a.ref_logp[4:], atol=1e-4)
    assert obj.sample_pairs(model, 8, range(6), [0, 1, 2, 3, 4, 5]).texts != a.texts  # another step, other answers
    # the chosen answer is the better: its score is the higher, strictly unless tied
    assert torch.all(a.score[:, 0] >= a.score[:, 1])
    assert torch.equal(a.tie, a.score[:, 0] == a.score[:, 1])
    assert [(spaces("", c), spaces("", r)) for c, r in a.texts] == [tuple(s) for s in a.score.tolist()]
    # the policy is its reference at the start: each answer's KL is 0 exactly
    assert torch.all(a.kl == 0)
    tok = load_tokenizer(lm / "tokenizer.json")
    first = a.x[0, 0][: int((a.y[0, 0] != IGNORE).nonzero().max()) + 1].tolist()
    text = tok.decode(first + [int(a.y[0, 0][a.y[0, 0] != IGNORE][-1])])
    assert text.startswith(prompt_ids(tok, task.objective.sets[0].texts[0])[0])  # prompt + answer in the chat template
    assert text.endswith(a.texts[0][0] + ("$" if a.ended[0, 0] else ""))


def test_ties_are_dropped_from_the_loss_and_counted(lm, root, prompts):
    cfg, task, model = task_and_model(lm, root, prompts, coarse, "--dpo.beta=0.5")
    obj = task.objective
    with torch.no_grad():  # move the policy off its reference, so the losses are not all log 2
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    batch = task.train_data.get_batch(2, 8, 64, cfg.train.seed)
    pairs = obj.sample_pairs(model, 2, batch[2].tolist(), batch[3].tolist())
    tied = int(pairs.tie.sum())
    assert 0 < tied < 8, pairs.score  # the coarse reward ties some pairs, not all
    loss, parts = obj(model, batch)
    keep = ~pairs.tie
    logp, n = obj.dpo.logprobs(model, pairs.x[keep], pairs.y[keep])
    by_hand = -torch.nn.functional.logsigmoid(0.5 * ((logp[:, 0] - pairs.ref_logp[keep, 0])
                                                     - (logp[:, 1] - pairs.ref_logp[keep, 1])))
    assert loss.item() == pytest.approx(by_hand.mean().item(), rel=1e-5)
    assert parts["ties"] == tied and parts["pairs"] == 8 - tied
    m = obj.metrics()
    assert m["ties"] == tied and m["tie_share"] == tied / 8
    assert m["score"] == pytest.approx((m["chosen_score"] + m["rejected_score"]) / 2)
    assert m["chosen_score"] > m["rejected_score"] and m["train_accuracy"] <= 1
    assert obj.metrics() == {}  # reset by the call
    # every pair tied: a loss of 0 that still runs backward, and no DPO figures
    _, flat, model = task_and_model(lm, root, prompts, lambda p, a: 1.0)
    loss, parts = flat.objective(model, batch)
    loss.backward()
    assert loss.item() == 0 and parts["pairs"] == 0
    assert all(p.grad is None or not p.grad.any() for p in model.parameters())
    m = flat.objective.metrics()
    assert m["tie_share"] == 1 and "train_margin" not in m and m["chosen_score"] == m["rejected_score"] == 1


# ----------------------------------------------------------------------------------------------
# Runs


def test_a_planted_preference_is_learnt(planted_run):
    recs = records(planted_run)
    assert [r["step"] for r in recs] == list(range(1, 21))
    for r in recs:
        assert {"score", "chosen_score", "rejected_score", "ties", "tie_share", "kl", "length", "ended",
                "train_chosen_reward", "train_rejected_reward", "train_margin", "train_accuracy"} <= set(r)
        assert r["chosen_score"] >= r["rejected_score"] and 0 <= r["tie_share"] <= 1
        assert r["train_margin"] == pytest.approx(r["train_chosen_reward"] - r["train_rejected_reward"], abs=1e-6)
    first, last = recs[0], recs[-3:]
    # Measured: 0.03 at step 1, 0.47 as the mean of steps 18-20; KL from 0 to 16 nats per answer.
    assert first["kl"] == 0 and first["score"] < 0.15
    assert sum(r["score"] for r in last) / 3 > first["score"] + 0.2
    assert sum(r["train_accuracy"] for r in last) / 3 > 0.7
    result = json.loads((planted_run / "result.json").read_text())
    assert result["val_score"] > 0.25 and result["val_loss"] == pytest.approx(-result["val_score"])
    assert result["val_kl"] > 0 and 0 < result["val_length"] <= 16 and 0 <= result["val_ended"] <= 1
    assert "val_gold" not in result  # a callable reward on letter prompts: no gold judge applies
    assert (planted_run / "rewards.png").stat().st_size > 10_000  # the dpo task's figure of the same records


def test_a_resumed_run_gives_the_same_losses_bit_for_bit(planted_run, root, planted):
    copy = root / "planted-copy"
    shutil.copytree(planted_run, copy)
    newest = list_checkpoints(copy / "checkpoints")[0]
    assert newest.name == "step_00000020"
    shutil.rmtree(newest)  # as if killed after the checkpoint at step 10
    (copy / "config.yaml").write_text((copy / "config.yaml").read_text().replace(str(planted_run), str(copy)))
    resumed = train(resume=copy)
    assert resumed["step"] == 20
    keys = ("train_loss", "score", "kl", "ties", "train_margin")
    assert [[r[k] for k in keys] for r in records(copy)] == [[r[k] for k in keys] for r in records(planted_run)]
    assert resumed["val_score"] == json.loads((planted_run / "result.json").read_text())["val_score"]


def test_axon_eval_and_sample_read_the_run(planted_run, planted, capsys):
    assert main(["eval", str(planted_run), "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    result = json.loads((planted_run / "result.json").read_text())
    for k in ("loss", "score", "kl", "length", "ended"):
        assert out[k] == pytest.approx(result[f"val_{k}"], rel=1e-6), k
    assert main(["sample", str(planted_run), "--prompt", "abc", "--max-new-tokens", "4", "--no-stream"]) == 0
    assert capsys.readouterr().out.startswith("User: abc\nAssistant: ")  # an assistant: the chat template


def test_a_gold_run_from_the_command_line(lm, root, prompts):
    assert main(["finetune", str(lm), "--task=online_dpo", f"--out_dir={root}", "--name=gold",
                 "--online_dpo.reward=gold:sentiment", f"--online_dpo.prompts={prompts[0]}",
                 f"--online_dpo.val_prompts={prompts[1]}", "--online_dpo.max_new_tokens=8", "--dpo.loss=ipo",
                 "--train.batch_size=4", "--train.max_steps=2", "--train.eval_batches=1", *QUIET]) == 0
    cfg = load_config(root / "gold" / "config.yaml")
    assert cfg.task == "online_dpo" and cfg.model.family == "decoder" and cfg.online_dpo.reward == "gold:sentiment"
    result = json.loads((root / "gold" / "result.json").read_text())
    assert result["val_gold"] == result["val_score"]  # auto: a gold reward is its own gold figure
    assert all("online_dpo" in (f.task, *f.other_tasks) for f in FAMILIES.values() if "dpo" in f.other_tasks)


def test_iterated_dpo_trains_rounds_on_comparisons_of_the_last_rounds_samples(lm, root, prompts):
    from axon.lab.iterated_dpo import iterated_dpo

    args = dict(name="iterated", out_dir=root, pairs=16, reward=spaces, say=lambda line: None,
                overrides=[f"--online_dpo.prompts={prompts[0]}", f"--online_dpo.val_prompts={prompts[1]}",
                           "--online_dpo.max_new_tokens=16", "--train.batch_size=8", "--train.max_steps=8",
                           "--train.eval_batches=1", "--optim.name=adamw", "--optim.lr=3e-3",
                           "--schedule.warmup_steps=0", "--dpo.beta=0.5", *QUIET])
    summary = iterated_dpo(lm, 2, **args)
    rounds = summary["rounds"]
    assert [r["round"] for r in rounds] == [0, 1, 2] and rounds[0]["kl"] == 0  # round 0: the start, KL 0 to itself
    for k in (1, 2):
        cfg = load_config(root / "iterated" / f"round_{k}" / "config.yaml")
        assert cfg.task == "dpo" and cfg.train.init_from == str(lm if k == 1 else root / "iterated" / "round_1")
        lines = (root / "iterated" / f"round_{k}-data" / "train.jsonl").read_text().splitlines()
        counts = rounds[k]["comparisons"]
        assert len(lines) == counts["comparisons"] == 16 - counts["ties"] - counts["empty"] > 0
        for row in map(json.loads, lines):  # each comparison's chosen answer is the better, none tied
            assert spaces(row["prompt"], row["chosen"]) > spaces(row["prompt"], row["rejected"])
        assert rounds[k]["kl"] != 0 and 0 <= rounds[k]["val_accuracy"] <= 1  # moved off the start (k1, sampled)
    assert json.loads((root / "iterated" / "summary.json").read_text()) == json.loads(json.dumps(summary))
    seen = []
    again = iterated_dpo(lm, 2, **{**args, "say": seen.append})  # again: every round finished, none redone
    assert seen == [f"round {k}: finished before, skipped: {root / 'iterated' / f'round_{k}'}" for k in (1, 2)]
    assert again == summary


# ----------------------------------------------------------------------------------------------
# Refusals, one line each


def test_bad_inputs_end_in_one_line(lm, root, prompts, tmp_path, capsys):
    def refused(*extra, error=ConfigError):
        with pytest.raises(error) as e:
            build_task(online_config(lm, root, prompts, "refused", *extra), CPU)
        assert "\n" not in str(e.value)
        return str(e.value)

    long = tmp_path / "long.jsonl"
    long.write_text(json.dumps({"prompt": "hi"}) + "\n" + json.dumps({"prompt": "a" * 40}) + "\n")
    assert ("long.jsonl:2: the prompt is 58 tokens in the chat template, more than model.block_size=64 - "
            "online_dpo.max_new_tokens=16") in refused(f"--online_dpo.prompts={long}", error=DataError)
    assert "online_dpo.max_new_tokens: 64 leaves no room" in refused("--online_dpo.max_new_tokens=64")
    assert refused(f"--online_dpo.reward={tmp_path / 'none'}").startswith(
        "online_dpo.reward: ") and "neither gold:arithmetic, gold:instructions, gold:sentiment nor a run directory" in refused(
        f"--online_dpo.reward={tmp_path / 'none'}")
    assert refused(f"--online_dpo.reward={lm}").startswith("online_dpo.reward: ")  # a decoder run, not a reward model
    assert "online_dpo.gold: instructions judges instructions" in refused("--online_dpo.gold=instructions")
    assert "online_dpo.prompts: " in refused(f"--online_dpo.prompts={tmp_path / 'missing.jsonl'}")
    for flag, message in [("--online_dpo.reward=gold:x", "online_dpo.reward: unknown judge 'gold:x'"),
                          ("--online_dpo.temperature=0", "online_dpo.temperature: must be > 0"),
                          ("--online_dpo.max_new_tokens=0", "online_dpo.max_new_tokens: must be >= 1"),
                          ("--online_dpo.gold=vader", "online_dpo.gold: unknown gold judge 'vader'")]:
        with pytest.raises(ConfigError, match=message):
            load_config(None, [flag])
    cfg = load_config(None, ["--task=online_dpo", "--model.preset=tiny"])
    with pytest.raises(ConfigError, match="train.init_from: online_dpo trains a language model from a starting run"):
        build_task(cfg, CPU)
    capsys.readouterr()
    assert main(["iterated-dpo", str(lm), "--rounds=0", "--name=x", f"--out-dir={tmp_path}"]) == 2
    assert capsys.readouterr().err == "axon iterated-dpo: error: --rounds: must be >= 1, got 0\n"
