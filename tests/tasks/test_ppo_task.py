"""The ppo task: the actor-critic family, index batches, rollouts as a pure function of (weights,
index), a planted reward learnt with the KL bounded, exact resume from a rollout boundary and from
the middle of a rollout, the reward sources (a reward run of the reward task among them),
best-of-n, and one-line refusals.

Every run starts from one tiny language model trained for 30 steps on the bundled corpus (module
fixture), so its answers are nearly random characters. The planted reward is the share of spaces
in an answer: the starting policy writes about 4% spaces, a share it can raise on every token.
"""

import functools
import json
import math
import shutil
from pathlib import Path

import pytest
import torch

from axon.cli import main
from axon.config import GOLD_REWARDS, load_config
from axon.data.prompts import EVAL, TRAIN, PromptBatches, RolloutSchedule, read_prompts
from axon.errors import ConfigError, DataError
from axon.feedback import GOLDS, bundled_path, instruction_gold
from axon.models import build_model
from axon.models.actor_critic import ROLLOUT_STATS, ActorCritic
from axon.models.base import Model
from axon.models.decoder import Decoder
from axon.tasks import TASKS, build_task
from axon.tasks.finetune import finetune_config
from axon.tasks.ppo import JudgeReward, RunReward, answer_tokens, at_answers, best_of_n, ppo_task
from axon.train.checkpoint import list_checkpoints
from axon.train.logging import read_metrics
from axon.train.run import load_run, train

QUIET = ["--log.progress=false", "--train.threads=1", "--train.sample_tokens=0"]
CPU = torch.device("cpu")


def spaces(prompt: str, answer: str) -> float:
    """The planted reward: the share of spaces in the answer."""
    return answer.count(" ") / max(len(answer), 1)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("ppo")


@pytest.fixture(scope="module")
def lm(root):
    """A tiny decoder trained for 30 steps: the reference policy of every run here."""
    cfg = load_config(None, ["--model.preset=tiny", "--model.block_size=128", f"--out_dir={root}", "--name=lm",
                             "--train.max_steps=30", "--train.eval_interval=30", "--train.eval_batches=1", *QUIET])
    return Path(train(cfg)["run_dir"])


def ppo_config(lm, root, name, *extra):
    return finetune_config(lm, None, ["--task=ppo", f"--out_dir={root}", f"--name={name}", "--train.batch_size=8",
                                      "--ppo.rollout_batch=32", "--ppo.epochs=2", "--ppo.max_new_tokens=24",
                                      "--train.eval_interval=1000", "--train.eval_batches=1", "--train.log_interval=1",
                                      "--schedule.name=constant", "--schedule.warmup_steps=0", *QUIET, *extra])


@pytest.fixture
def planted(monkeypatch):
    """Runs whose task is built here take the planted reward (the Python API's callable reward)."""
    monkeypatch.setitem(TASKS, "ppo", functools.partial(ppo_task, reward=spaces))


def records(run):
    return [r for r in read_metrics(Path(run) / "metrics.jsonl") if "train_loss" in r]


# ----------------------------------------------------------------------------------------------
# The family


def test_the_actor_critic_is_a_decoder_with_a_value_head_that_starts_at_zero():
    cfg = load_config(None, ["--model.family=actor_critic", "--model.preset=tiny", "--model.vocab_size=11"]).model
    torch.manual_seed(0)
    model = build_model(cfg)
    assert isinstance(model, ActorCritic) and cfg.decoder_config().family == "decoder"
    plain = Decoder(cfg.decoder_config())
    assert set(plain.state_dict()) == {k for k in model.state_dict() if not k.startswith(("value_head.", "rollout."))}
    model.load_state_dict({**model.state_dict(), **plain.state_dict()})
    idx = torch.randint(0, 11, (3, 9))
    logits, values = model(idx, values=True)
    assert torch.equal(logits, plain(idx)) and torch.equal(model(idx), logits)  # the same pass, the policy unchanged
    assert values.shape == (3, 9) and torch.all(values == 0)
    assert torch.equal(model.policy()(idx), logits)  # the export: a plain decoder with the policy's weights
    from axon.train.optim import build_optimizers

    lrs = {id(p): g["lr"] for opt in build_optimizers(model, load_config(None, ["--optim.lr=1e-4"]).optim)
           for g in opt.param_groups for p in g["params"]}
    assert lrs[id(model.value_head.weight)] == lrs[id(model.value_head.bias)] == pytest.approx(1e-4 * cfg.value_lr_scale)
    assert lrs[id(model.wte.weight)] == 1e-4  # the rest at the configured lr


def test_the_rollout_buffers_take_a_checkpoints_shapes():
    cfg = load_config(None, ["--model.family=actor_critic", "--model.preset=tiny", "--model.vocab_size=11"]).model
    a, b = build_model(cfg), build_model(cfg)
    a.rollout.store(index=torch.tensor(3), tokens=torch.arange(12).view(3, 4), mask=torch.ones(3, 2),
                    stats=torch.arange(len(ROLLOUT_STATS), dtype=torch.float64))
    b.load_state_dict(a.state_dict())
    assert b.rollout.held == 3 and torch.equal(b.rollout.tokens, a.rollout.tokens) and b.rollout.mask.shape == (3, 2)
    assert b.metrics()["rollout"] == 3.0 and b.metrics()["kl"] == 2.0


# ----------------------------------------------------------------------------------------------
# Batches and answers


def test_index_batches_are_pure_and_each_epoch_visits_every_row_once():
    s = RolloutSchedule(n_prompts=10, rollout_batch=8, epochs=3, grad_accum=2)
    assert s.steps_per_rollout(batch_size=2) == 6
    rows = []
    for step in range(6):
        for micro in range(2):
            kind, k, r = s.get_batch(step, 2, 64, seed=5, micro_step=micro)
            assert torch.all(kind == TRAIN) and torch.all(k == 0)
            assert torch.equal(r, s.get_batch(step, 2, 64, seed=5, micro_step=micro)[2])
            rows += r.tolist()
    assert [sorted(rows[e * 8 : (e + 1) * 8]) for e in range(3)] == [list(range(8))] * 3
    assert s.get_batch(6, 2, 64, seed=5)[1][0] == 1  # step 6 opens rollout 1
    walked = s.rollout_prompts(0, 5) + s.rollout_prompts(1, 5)[:2]  # 10 prompts: each once before any twice
    assert sorted(walked) == list(range(10)) and walked[:8] == s.rollout_prompts(0, 5)
    assert [list(b[2]) for b in PromptBatches(1, 5).iter_eval_batches(2, 64)] == [[0, 1], [2, 3], [4]]
    assert all(torch.all(b[0] == EVAL) and torch.all(b[1] == 1) for b in PromptBatches(1, 5).iter_eval_batches(2, 64))


def test_answers_are_read_at_the_positions_that_predict_them():
    tokens = torch.tensor([[1, 2, 3, 10, 11, 0], [4, 5, 20, 21, 22, 23]])  # prompts of 3 and 2 tokens
    plen = torch.tensor([3, 2])
    assert answer_tokens(tokens, plen, 4)[1].tolist() == [20, 21, 22, 23]
    assert answer_tokens(tokens, plen, 4)[0, :2].tolist() == [10, 11]
    x = torch.arange(6).float().expand(2, 6)  # position t holds t
    assert at_answers(x, plen, 4).tolist() == [[2, 3, 4, 5], [1, 2, 3, 4]]  # the first answer token: predicted at P - 1


def test_the_rollout_is_a_pure_function_of_the_weights_and_its_index(lm, root, planted):
    cfg = ppo_config(lm, root, "pure")
    task = build_task(cfg, CPU)
    torch.manual_seed(0)
    model = build_model(cfg.model)
    task.init_weights(model, cfg.train.init_from)
    held = {}
    for attempt in range(2):
        model.rollout.store(index=torch.tensor(-1))  # forget: sample again
        task.objective.rollout(model, 3)
        held[attempt] = {n: getattr(model.rollout, n).clone() for n in model.rollout.NAMES}
    assert all(torch.equal(held[0][n], held[1][n]) for n in held[0])
    assert held[0]["index"] == 3 and held[0]["mask"].shape[0] == 32
    task.objective.rollout(model, 4)
    assert not torch.equal(model.rollout.tokens[:, :20], held[0]["tokens"][:, :20])  # another index, other answers
    # the policy is the reference at the start: the rollout's KL is exactly 0
    assert held[0]["stats"][ROLLOUT_STATS.index("kl")] == 0.0


# ----------------------------------------------------------------------------------------------
# Learning


def test_a_planted_reward_rises_while_the_kl_stays_bounded(lm, root, planted):
    cfg = ppo_config(lm, root, "planted", "--train.max_steps=64", "--optim.name=adamw", "--optim.lr=3e-3",
                     "--ppo.kl_beta=0.02")
    train(cfg)
    per_rollout = {int(r["rollout"]): r for r in records(root / "planted")}
    assert sorted(per_rollout) == list(range(8))  # 64 steps of 8 per rollout
    first, last = per_rollout[0], [per_rollout[k] for k in (6, 7)]
    final = sum(r["score"] for r in last) / 2
    # Measured: 0.084 at rollout 0, 0.187 and 0.257 at rollouts 6 and 7, KL 2.4 and 4.4 nats per answer.
    assert first["kl"] == 0.0 and first["score"] < 0.1
    assert final > 2 * first["score"] and final > 0.15
    assert all(r["kl"] < 10.0 for r in per_rollout.values())
    assert all(0 <= r["clipfrac"] <= 1 and r["beta"] == 0.02 for r in per_rollout.values())


def run_losses(run):
    return [(r["step"], r["train_loss"]) for r in records(run)]


@pytest.mark.parametrize("keep", ["boundary", "mid-rollout"])
def test_a_resumed_run_gives_the_same_losses_bit_for_bit(lm, root, planted, keep):
    # 8 steps per rollout, a checkpoint every 4: step 12 is in the middle of rollout 1, step 8 opens it.
    # The adaptive KL controller and PPO-ptx are on, so beta and the pretraining windows must resume too.
    name = f"resume-{keep}"
    cfg = ppo_config(lm, root, name, "--train.max_steps=16", "--train.checkpoint_interval=4",
                     "--train.keep_checkpoints=10", "--ppo.kl_target=1.0", "--ppo.kl_horizon=64",
                     "--ppo.ptx_coef=0.1", "--ppo.kl_beta=0.05", "--optim.lr=1e-2")
    run = Path(train(cfg)["run_dir"])
    copy = root / f"{name}-copy"
    shutil.copytree(run, copy)
    drop = [c for c in list_checkpoints(copy / "checkpoints") if int(c.name.split("_")[1]) > (8 if keep == "boundary" else 12)]
    for c in drop:
        shutil.rmtree(c)
    (copy / "config.yaml").write_text((copy / "config.yaml").read_text().replace(str(run), str(copy)))
    resumed = train(resume=copy)
    assert resumed["step"] == 16
    assert run_losses(copy) == run_losses(run) and len(run_losses(run)) == 16
    betas = [r["beta"] for r in records(run)]
    assert betas[8] != betas[0]  # the controller moved beta between the rollouts
    assert [r["beta"] for r in records(copy)] == betas and resumed["val_loss"] == json.loads((run / "result.json").read_text())["val_loss"]


# ----------------------------------------------------------------------------------------------
# The run end to end, with a gold judge


def test_a_gold_run_from_the_command_line_reports_reward_gold_and_kl(lm, root, capsys):
    assert main(["finetune", str(lm), "--task=ppo", f"--out_dir={root}", "--name=gold", "--train.batch_size=8",
                 "--ppo.rollout_batch=16", "--ppo.epochs=1", "--ppo.max_new_tokens=16", "--train.max_steps=4",
                 "--train.eval_batches=1", "--train.log_interval=1", *QUIET]) == 0
    run = root / "gold"
    cfg = load_config(run / "config.yaml")
    assert cfg.task == "ppo" and cfg.model.family == "actor_critic" and cfg.ppo.reward == "gold:instructions"
    result = json.loads((run / "result.json").read_text())
    for key in ("val_score", "val_gold", "val_kl", "val_length", "val_ended", "val_rollout_score", "val_rollout_kl"):
        assert math.isfinite(result[key]), key
    assert result["val_loss"] == pytest.approx(-result["val_score"])  # the same seeded answers, scored twice
    assert result["val_gold"] == result["val_score"] and 0 <= result["val_ended"] <= 1
    first = records(run)[0]
    assert {"score", "gold", "kl", "beta", "entropy", "length", "clipfrac", "approx_kl", "value_loss",
            "explained_variance", "policy_loss"} <= set(first)
    _, model, _ = load_run(run, "cpu")
    assert isinstance(model, ActorCritic) and model.rollout.held == 1  # 2 steps per rollout
    capsys.readouterr()
    assert main(["convert", "--to-hf", str(run), "--out", str(root / "gold-hf")]) == 0  # the policy alone
    assert main(["convert", "--from-hf", str(root / "gold-hf"), "--out", str(root / "gold-back")]) == 0
    _, back, _ = load_run(root / "gold-back", "cpu")
    idx = torch.randint(0, 65, (2, 7))
    assert type(back) is Decoder and torch.equal(back(idx), model(idx))
    capsys.readouterr()
    assert main(["sample", str(run), "--prompt", "Repeat the word king twice.", "--max-new-tokens", "8",
                 "--no-stream"]) == 0
    assert capsys.readouterr().out.startswith("User: Repeat the word king twice.\nAssistant: ")  # the chat template


# ----------------------------------------------------------------------------------------------
# Rewards and best-of-n


class SumOfIds(Model):
    """A stand-in reward model with the reward family's forward: (ids, lengths) -> (N,)."""

    def __init__(self, block_size=8):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(()))
        self.config = type("C", (), {"block_size": block_size})()

    def forward(self, idx, lengths):
        keep = torch.arange(idx.size(1))[None] < lengths[:, None]
        return self.w * (idx * keep).sum(1).float()


class Bytes:
    vocab_size = 256

    def encode(self, text):
        return list(text.encode())


def test_a_reward_run_scores_prompt_plus_answer_on_its_last_block_size_tokens():
    reward = RunReward(SumOfIds(block_size=4), Bytes(), batch_size=2)
    got = reward.score(["ab", "", "x"], ["c", "defgh", "y"])
    assert got.tolist() == [sum(b"abc"), sum(b"efgh"), sum(b"xy")]  # "defgh" keeps its last 4 bytes
    assert not reward.model.w.requires_grad


def test_a_reward_run_is_the_reward_of_a_ppo_run(lm, root):
    # A reward model (the reward task) taught that an answer with spaces beats the same letters
    # without, from the tiny language model; then PPO against it.
    import random

    rng = random.Random(0)
    prompts = [r[0] for r in read_prompts(bundled_path("train"))[:80]]
    rows = []
    for p in prompts:
        words = ["".join(rng.choice("abcdefghij") for _ in range(rng.randint(2, 5))) for _ in range(3)]
        rows.append({"prompt": p, "chosen": " ".join(words), "rejected": "".join(words)})
    comparisons = root / "comparisons.jsonl"
    comparisons.write_text("".join(json.dumps(r) + "\n" for r in rows))
    rm = load_config(None, ["--model.family=reward", "--model.preset=tiny", "--model.block_size=128",
                            f"--train.init_from={lm}", f"--data.train_file={comparisons}", "--optim.name=adamw",
                            "--optim.lr=3e-3", "--train.batch_size=16", "--train.max_steps=40", f"--out_dir={root}",
                            "--name=rm", "--train.eval_batches=1", *QUIET])
    assert train(rm)["val_accuracy"] > 0.9
    cfg = ppo_config(lm, root, "ppo-rm", f"--ppo.reward={root / 'rm'}", "--train.max_steps=8")
    task = build_task(cfg, CPU)
    reward = task.objective.reward
    assert isinstance(reward, RunReward) and type(reward.model).__name__ == "RewardModel"
    spaced, solid = reward.score(prompts[:2], ["ab cd ef", "hij ab"]), reward.score(prompts[:2], ["abcdef", "hijab"])
    assert torch.all(spaced > solid)  # the planted preference, read on prompt + answer
    assert task.objective.gold is instruction_gold  # the prompts are instructions: gold reported beside
    train(cfg)
    first = records(root / "ppo-rm")[0]
    assert math.isfinite(first["score"]) and 0 <= first["gold"] <= 1


def test_gold_rewards_are_the_feedback_judges(lm, root):
    assert set(GOLD_REWARDS) == {f"gold:{g}" for g in GOLDS}  # the config's copy of the setups
    task = build_task(ppo_config(lm, root, "unused"), CPU)
    assert task.objective.gold is instruction_gold
    assert task.objective.reward.score(["Repeat the word king twice."], ["king king"]).tolist() == [1.0]


def test_ppo_gold_names_the_judge_reported_beside_the_reward():
    from axon.config import PPO_GOLDS, PPOConfig
    from axon.feedback import sentiment_gold
    from axon.tasks.ppo import gold_judge

    instructions = [json.loads(line)["prompt"] for line in bundled_path("val").read_text().splitlines()[:5]]
    prefixes = ["Come, my lord,", "O monstrous arrogance!"]
    assert gold_judge("runs/rm", prefixes) is None  # auto: a learnt reward on corpus prefixes reports none
    assert gold_judge("runs/rm", prefixes, "sentiment") is sentiment_gold  # ppo.gold: sentiment asks for VADER
    assert gold_judge("gold:sentiment", prefixes, "none") is None
    assert gold_judge("runs/rm", instructions) is instruction_gold and gold_judge("runs/rm", instructions, "instructions") is instruction_gold
    assert gold_judge("gold:instructions", instructions, "sentiment") is sentiment_gold  # named: taken as asked
    with pytest.raises(ConfigError, match="ppo.gold: instructions judges instructions, and a prompt is not one"):
        gold_judge("runs/rm", prefixes, "instructions")
    assert set(PPO_GOLDS) == {"auto", "none", *GOLDS}
    with pytest.raises(ConfigError, match="ppo.gold: unknown gold judge 'vader'; "
                                          "choose one of: auto, sentiment, instructions, arithmetic, none"):
        PPOConfig(gold="vader")
    with pytest.raises(ConfigError, match="ppo.gold"):
        load_config(None, ["--ppo.gold=happy"])


def test_best_of_n_keeps_the_best_answer_and_its_kl_is_log_n_minus_one(lm):
    _, model, tokenizer = load_run(lm, "cpu")
    prompts = ["Repeat the word king twice.", "Write the word rose in capitals."]
    one = best_of_n(model, tokenizer, prompts, 1, spaces, max_new_tokens=12, seed=1)
    four = best_of_n(model, tokenizer, prompts, 4, JudgeReward(spaces), max_new_tokens=12, seed=1, gold=instruction_gold)
    assert one["kl"] == 0.0 and four["kl"] == pytest.approx(math.log(4) - 0.75)
    assert four["score"] == pytest.approx(sum(max(row) for row in four["scores"]) / 2)
    assert [spaces(p, a) for p, a in zip(prompts, four["answers"])] == [max(row) for row in four["scores"]]
    assert len(four["scores"][0]) == 4 and 0 <= four["gold"] <= 1


# ----------------------------------------------------------------------------------------------
# Refusals, one line each


def test_bad_settings_are_refused_in_one_line(lm, root, tmp_path):
    def refused(*extra, error=ConfigError):
        with pytest.raises(error) as e:
            build_task(ppo_config(lm, root, "refused", *extra), CPU)
        assert "\n" not in str(e.value)
        return str(e.value)

    assert "ppo.rollout_batch: 36 answers do not split into minibatches of train.batch_size x train.grad_accum = 16" \
        in refused("--ppo.rollout_batch=36", "--train.grad_accum=2")
    assert "is a decoder run, not a reward model" in refused(f"--ppo.reward={lm}")
    assert "neither gold:arithmetic, gold:instructions, gold:sentiment nor a run directory" in refused(f"--ppo.reward={tmp_path / 'none'}")
    with pytest.raises(ConfigError, match="--model.n_layer: fine-tuning keeps"):
        ppo_config(lm, root, "x", "--model.n_layer=3")
    cfg = load_config(None, ["--task=ppo", "--model.family=actor_critic", "--model.preset=tiny", "--model.block_size=128"])
    with pytest.raises(ConfigError, match="train.init_from: ppo starts from a language model"):
        build_task(cfg, CPU)
    cfg.train.init_from = str(lm)
    cfg.model.n_layer = 3
    with pytest.raises(ConfigError, match=r"the policy is not .*lm's model: model.n_layer=3 \(the run has 2\)"):
        build_task(cfg, CPU)
    with pytest.raises(ConfigError, match="a decoder model does not do 'ppo'"):
        build_task(load_config(None, ["--task=ppo", f"--train.init_from={lm}"]), CPU)
    long = tmp_path / "long.jsonl"
    long.write_text(json.dumps({"prompt": "hi"}) + "\n" + json.dumps({"prompt": "a" * 100}) + "\n")
    assert "long.jsonl:2: the prompt is 118 tokens" in refused(f"--ppo.prompts={long}", error=DataError)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "hi"}\n{"response": "x"}\n')
    with pytest.raises(DataError, match="bad.jsonl:2: expected an object with a 'prompt' key"):
        read_prompts(bad)
    for flag, message in [("--ppo.reward=gold:x", "ppo.reward: unknown judge 'gold:x'"),
                          ("--ppo.kl_target=0", "ppo.kl_target: must be > 0"),
                          ("--ppo.clip=1.5", "ppo.clip: must be in (0, 1)"),
                          ("--ppo.temperature=0", "ppo.temperature: must be > 0")]:
        with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
            load_config(None, [flag])
    with pytest.raises(ConfigError, match="the adaptive controller scales beta"):
        load_config(None, ["--ppo.kl_beta=0", "--ppo.kl_target=6"])


def test_a_distributed_run_splits_the_rollout_and_refuses_what_it_cannot(lm, root, monkeypatch):
    # Two processes (as torchrun would start them; tests/tasks/test_ppo_distributed.py runs them):
    # minibatches are batch_size x grad_accum x 2 answers, and FSDP is refused.
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "get_world_size", lambda: 2)
    monkeypatch.setattr(torch.distributed, "get_rank", lambda: 1)
    assert build_task(ppo_config(lm, root, "ddp"), CPU).objective.dist.rank == 1
    with pytest.raises(ConfigError, match=r"train.batch_size x train.grad_accum x processes = 64; make it a multiple of 64"):
        build_task(ppo_config(lm, root, "ddp", "--train.grad_accum=4"), CPU)
    with pytest.raises(ConfigError, match="train.parallel: ppo runs under ddp, not fsdp"):
        build_task(ppo_config(lm, root, "fsdp", "--train.parallel=fsdp"), CPU)
