"""The grpo task: a policy without a value function, rollouts of groups as a pure function of
(weights, index), a planted reward learnt by GRPO and by RLOO, what explains a loss of 0 in the
logs, exact resume from a rollout boundary and from the middle of a rollout, the run end to end
from the command line with a gold judge, and one-line refusals.

Every run starts from one tiny language model trained for 30 steps on the bundled corpus (module
fixture), so its answers are nearly random characters. The planted reward is 1 for an answer that
contains an "e" and 0 otherwise: of 8-token answers about a third have one at the start, and a
group whose answers all have one (or none) has no signal.
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
from axon.errors import ConfigError, DataError
from axon.models import build_model
from axon.models.actor_critic import GROUP_STATS, ActorCritic
from axon.models.decoder import Decoder
from axon.tasks import TASKS, build_task
from axon.tasks.finetune import finetune_config
from axon.tasks.grpo import grpo_task
from axon.tasks.ppo import Answers
from axon.train.checkpoint import list_checkpoints
from axon.train.logging import read_metrics
from axon.train.run import load_run, train

QUIET = ["--log.progress=false", "--train.threads=1", "--train.sample_tokens=0"]
CPU = torch.device("cpu")


def has_e(prompt: str, answer: str) -> float:
    """The planted reward."""
    return float("e" in answer)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("grpo")


@pytest.fixture(scope="module")
def lm(root):
    """A tiny decoder trained for 30 steps: the reference policy of every run here."""
    cfg = load_config(None, ["--model.preset=tiny", "--model.n_layer=1", "--model.n_embd=32", "--model.block_size=128",
                             f"--out_dir={root}", "--name=lm", "--train.max_steps=30", "--train.eval_interval=30",
                             "--train.eval_batches=1", *QUIET])
    return Path(train(cfg)["run_dir"])


@pytest.fixture(scope="module")
def prompts(root):
    """Short prompts (words): training and validation files."""
    rng = random.Random(0)
    letters = "abcdfghijklmnopqrstuvwxyz"  # no "e": the answer cannot earn the reward by copying the prompt
    words = sorted({"".join(rng.choice(letters) for _ in range(rng.randint(3, 6))) for _ in range(60)})
    files = root / "prompts.jsonl", root / "val_prompts.jsonl"
    files[0].write_text("".join(json.dumps({"prompt": w}) + "\n" for w in words[:48]))
    files[1].write_text("".join(json.dumps({"prompt": w}) + "\n" for w in words[48:]))
    return files


def grpo_config(lm, root, prompts, name, *extra):
    return finetune_config(lm, None, ["--task=grpo", f"--out_dir={root}", f"--name={name}", "--train.batch_size=8",
                                      f"--grpo.prompts={prompts[0]}", f"--grpo.val_prompts={prompts[1]}",
                                      "--grpo.rollout_prompts=4", "--grpo.group_size=4", "--grpo.max_new_tokens=8",
                                      "--train.eval_interval=1000", "--train.eval_batches=1", "--train.log_interval=1",
                                      "--schedule.name=constant", "--schedule.warmup_steps=0", "--optim.name=adamw",
                                      "--optim.lr=3e-3", *QUIET, *extra])


@pytest.fixture
def planted(monkeypatch):
    """Runs whose task is built here take the planted reward (the Python API's callable reward)."""
    monkeypatch.setitem(TASKS, "grpo", functools.partial(grpo_task, reward=has_e))


def records(run):
    return [r for r in read_metrics(Path(run) / "metrics.jsonl") if "train_loss" in r]


# ----------------------------------------------------------------------------------------------
# The policy and its rollouts


def test_the_policy_has_no_value_function_and_exports_a_plain_decoder(lm, root, prompts):
    cfg = grpo_config(lm, root, prompts, "unused")
    assert cfg.model.family == "actor_critic" and cfg.model.value_head == "none" and cfg.task == "grpo"
    model = build_model(cfg.model)
    assert model.value_head is None and model.critic is None
    plain = Decoder(cfg.model.decoder_config())
    assert set(plain.state_dict()) == {k for k in model.state_dict() if not k.startswith("rollout.")}
    assert set(model.rollout.NAMES) >= {"logp", "ref_logp", "advantages"} and "values" not in model.rollout.NAMES
    idx = torch.randint(0, 65, (2, 7))
    assert torch.equal(model.policy()(idx), model(idx))
    with pytest.raises(ValueError, match="model.value_head=none: this policy has no value function"):
        model(idx, values=True)
    with pytest.raises(ConfigError, match="--model.value_head: fine-tuning keeps"):
        grpo_config(lm, root, prompts, "unused", "--model.value_head=shared")


def test_a_rollout_is_groups_of_answers_and_a_pure_function_of_the_weights_and_its_index(lm, root, prompts, planted):
    cfg = grpo_config(lm, root, prompts, "pure", "--grpo.kl_every=1")  # beta 0: the KL logged at every rollout
    task = build_task(cfg, CPU)
    torch.manual_seed(0)
    model = build_model(cfg.model)
    task.init_weights(model, cfg.train.init_from)
    order = task.train_data.rollout_prompts(3, cfg.train.seed)
    assert len(order) == 16 and all(order[4 * g : 4 * g + 4] == [order[4 * g]] * 4 for g in range(4))
    assert len(set(order)) == 4  # 4 prompts, each answered by a group of 4 consecutive rows
    held = {}
    for attempt in range(2):
        model.rollout.store(index=torch.tensor(-1))  # forget: sample again
        task.objective.rollout(model, 3)
        held[attempt] = {n: getattr(model.rollout, n).clone() for n in model.rollout.NAMES}
    same = lambda a, b: a.shape == b.shape and torch.allclose(a, b, rtol=0, atol=0, equal_nan=True)  # noqa: E731
    assert all(same(held[0][n], held[1][n]) for n in held[0])  # (no gold judge of these prompts: gold is NaN)
    st = model.rollout
    stats = dict(zip(GROUP_STATS, st.stats.tolist()))
    assert stats["kl"] == 0.0  # the policy is the reference at the start
    assert not torch.equal(st.tokens[0], st.tokens[1])  # a group's answers are drawn from their own generators
    # one advantage per answer; each group's sum to 0; a group with equal scores has none, and is counted
    texts = [task.tokenizer.decode(row[p : p + int(n)].tolist()) for row, p, n in
             zip(st.tokens, st.prompt_len, st.mask.sum(1))]
    scores = torch.tensor([has_e("", t) for t in texts]).view(4, 4)
    assert st.advantages.shape == (16,) and torch.allclose(st.advantages.view(4, 4).sum(1), torch.zeros(4), atol=1e-6)
    flat = scores.max(1).values == scores.min(1).values
    assert stats["frac_zero_std"] == flat.double().mean().item() and stats["score"] == scores.mean().item()
    assert torch.all(st.advantages.view(4, 4)[flat] == 0)


# ----------------------------------------------------------------------------------------------
# Learning


@pytest.mark.parametrize("advantage", ["grpo", "rloo"])
def test_a_planted_reward_is_learnt(lm, root, prompts, planted, advantage):
    # 4 prompts x 4 answers per rollout, minibatches of 8: 2 steps per rollout, 20 rollouts in 40 steps
    run = f"planted-{advantage}"
    result = train(grpo_config(lm, root, prompts, run, "--train.max_steps=40", f"--grpo.advantage={advantage}",
                               "--grpo.kl_every=1"))  # grpo has beta 0: the KL logged at every rollout
    per_rollout = {int(r["rollout"]): r for r in records(root / run)}
    assert sorted(per_rollout) == list(range(20))
    first = sum(per_rollout[k]["score"] for k in range(3)) / 3
    last = sum(per_rollout[k]["score"] for k in range(17, 20)) / 3
    # Measured: 0.18 over the first three rollouts, 0.96 over the last three, with grpo and with rloo (beta 0.05)
    assert first < 0.5 and last > first + 0.3, (first, last)
    assert result["val_score"] > 0.5 and result["val_rollout_score"] == per_rollout[19]["score"]
    for r in per_rollout.values():  # what explains a loss of 0, with every rollout
        assert 0 <= r["frac_zero_std"] <= 1 and r["group_std"] >= 0 and 0 <= r["clipfrac"] <= 1
        assert {"kl", "entropy", "length", "ended", "token_kl", "policy_loss"} <= set(r)
        if r["frac_zero_std"] == 1.0 and advantage == "grpo":
            assert r["policy_loss"] == 0.0  # no group with signal: every advantage 0, the loss exactly 0
    assert per_rollout[0]["kl"] == 0.0 and per_rollout[19]["kl"] > 0


# ----------------------------------------------------------------------------------------------
# Exact resume


def test_a_resumed_run_gives_the_same_losses_bit_for_bit(lm, root, prompts, planted):
    # 2 epochs of 2 minibatches: 4 steps per rollout, a checkpoint every 2. The kill after step 8
    # lands at a rollout boundary, the one after step 10 in the middle of rollout 2's passes. The KL
    # term is on, so the reference's log-probabilities must resume too.
    cfg = grpo_config(lm, root, prompts, "resume", "--train.max_steps=12", "--train.checkpoint_interval=2",
                      "--train.keep_checkpoints=10", "--grpo.epochs=2", "--grpo.beta=0.04", "--optim.lr=1e-2")
    run = Path(train(cfg)["run_dir"])
    losses = [(r["step"], r["train_loss"]) for r in records(run)]
    assert len(losses) == 12 and len({r["rollout"] for r in records(run)}) == 3
    for kept in (8, 10):
        copy = root / f"resume-{kept}"
        shutil.copytree(run, copy)
        for c in list_checkpoints(copy / "checkpoints"):
            if int(c.name.split("_")[1]) > kept:
                shutil.rmtree(c)
        (copy / "config.yaml").write_text((copy / "config.yaml").read_text().replace(str(run), str(copy)))
        resumed = train(resume=copy)
        assert [(r["step"], r["train_loss"]) for r in records(copy)] == losses, kept
        assert resumed["val_loss"] == json.loads((run / "result.json").read_text())["val_loss"]


# ----------------------------------------------------------------------------------------------
# What a rollout runs: the old log-probabilities from the sampling, the reference only when needed


def test_the_old_log_probabilities_are_the_sampling_s_and_beta_0_runs_no_reference_between_kl_rollouts(
        lm, root, prompts, planted):
    cfg = grpo_config(lm, root, prompts, "sampled")  # beta 0, kl_every 10: rollout 1 runs no reference
    task = build_task(cfg, CPU)
    model = build_model(cfg.model)
    task.init_weights(model, cfg.train.init_from)
    task.objective.rollout(model, 1)
    st = model.rollout
    stats = dict(zip(GROUP_STATS, st.stats.tolist()))
    assert st.ref_logp.numel() == 0 and stats["kl"] != stats["kl"]  # NaN: not measured, so not logged
    forward = task.objective.measure(model, Answers(st.tokens, st.prompt_len, st.mask, [], st.mask[:, 0]))
    torch.testing.assert_close(st.logp, forward["logp"], rtol=0, atol=1e-5)  # fp32: cached decode vs one forward
    assert torch.all(st.logp[st.mask == 0] == 0) and torch.all(st.logp[st.mask == 1] < 0)
    mean_entropy = float((forward["entropy"] * st.mask).sum() / st.mask.sum())
    assert stats["entropy"] == pytest.approx(mean_entropy, abs=1e-5)
    task.objective.rollout(model, 10)  # the kl_every-th: the reference runs, the policy is still it
    assert model.rollout.ref_logp.shape == model.rollout.logp.shape
    assert dict(zip(GROUP_STATS, model.rollout.stats.tolist()))["kl"] == 0.0


def test_at_beta_0_the_kl_is_logged_every_kl_every_rollouts_and_changes_no_loss(lm, root, prompts, planted):
    # 2 steps per rollout, 4 rollouts; the reference changes nothing the updates compute at beta 0
    runs = {}
    for every in (1, 2, 0):
        run = f"kl-every-{every}"
        train(grpo_config(lm, root, prompts, run, "--train.max_steps=8", f"--grpo.kl_every={every}"))
        runs[every] = records(root / run)
    losses = {every: [(r["step"], r["train_loss"], r["policy_loss"]) for r in rs] for every, rs in runs.items()}
    assert len(losses[1]) == 8 and losses[1] == losses[2] == losses[0]
    for every, rs in runs.items():
        for r in rs:
            measured = every == 1 or (every == 2 and int(r["rollout"]) % 2 == 0)
            assert ("kl" in r) == measured and ("token_kl" in r) == measured, (every, r)
    assert [r["kl"] for r in runs[2] if "kl" in r] == [r["kl"] for r in runs[1] if int(r["rollout"]) % 2 == 0]
    assert runs[1][0]["kl"] == 0.0 and runs[1][-1]["kl"] > 0


# ----------------------------------------------------------------------------------------------
# The run end to end, with a gold judge


def test_a_gold_run_from_the_command_line_reports_what_explains_the_loss(lm, root, capsys):
    assert main(["finetune", str(lm), "--task=grpo", f"--out_dir={root}", "--name=gold", "--train.batch_size=8",
                 "--grpo.rollout_prompts=2", "--grpo.group_size=4", "--grpo.max_new_tokens=16", "--train.max_steps=2",
                 "--train.eval_batches=1", "--train.log_interval=1", *QUIET]) == 0
    run = root / "gold"
    cfg = load_config(run / "config.yaml")
    assert cfg.task == "grpo" and cfg.model.value_head == "none" and cfg.grpo.reward == "gold:instructions"
    result = json.loads((run / "result.json").read_text())
    for key in ("val_score", "val_gold", "val_kl", "val_length", "val_ended", "val_rollout_score",
                "val_rollout_group_std", "val_rollout_frac_zero_std"):
        assert key in result, key
    assert result["val_loss"] == pytest.approx(-result["val_score"]) and result["val_gold"] == result["val_score"]
    assert {"score", "gold", "group_std", "frac_zero_std", "kl", "entropy", "length", "ended", "clipfrac",
            "token_kl", "policy_loss"} <= set(records(run)[0])
    capsys.readouterr()
    assert main(["eval", str(run), "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for k in ("score", "gold", "kl", "length", "ended", "rollout_frac_zero_std"):
        assert out[k] == pytest.approx(result[f"val_{k}"]), k
    _, model, _ = load_run(run, "cpu")
    assert isinstance(model, ActorCritic) and model.rollout.held == 1
    # The greedy gold beside the sampled one: sft.gold_figures of the final policy on the validation
    # prompts, the figure an sft run reports, so `axon compare --metric greedy_gold` ranks both alike.
    from axon.feedback import gold_for
    from axon.tasks.ppo import read_prompt_set
    from axon.tasks.sft import gold_figures, pretrained_tokenizer

    tok = pretrained_tokenizer(str(run))
    val = read_prompt_set(cfg.grpo.val_prompts, "grpo.val_prompts", "val", tok, cfg)
    greedy = gold_figures(model, tok, val.texts, gold_for("instructions"), cfg.model.block_size)
    assert (result["val_greedy_gold"], result["val_greedy_ended"]) == (greedy["gold"], greedy["ended"])
    assert out["greedy_gold"] == pytest.approx(result["val_greedy_gold"])
    assert main(["convert", "--to-hf", str(run), "--out", str(root / "gold-hf")]) == 0  # the policy alone
    assert json.loads((root / "gold-hf" / "config.json").read_text())["axon"]["family"] == "decoder"


# ----------------------------------------------------------------------------------------------
# Refusals, one line each


def test_bad_settings_are_refused_in_one_line(lm, root, prompts, tmp_path, monkeypatch):
    def refused(*extra, error=ConfigError):
        with pytest.raises(error) as e:
            build_task(grpo_config(lm, root, prompts, "refused", *extra), CPU)
        assert "\n" not in str(e.value)
        return str(e.value)

    assert "grpo.rollout_prompts: 12 answers do not split into minibatches of train.batch_size x train.grad_accum " \
           "= 8; make it a multiple of 8" in refused("--grpo.rollout_prompts=3")
    long = tmp_path / "long.jsonl"
    long.write_text(json.dumps({"prompt": "hi"}) + "\n" + json.dumps({"prompt": "a" * 110}) + "\n")
    assert "long.jsonl:2: the prompt is 128 tokens in the chat template, more than model.block_size=128 - " \
           "grpo.max_new_tokens=8" in refused(f"--grpo.prompts={long}", error=DataError)
    assert "grpo.reward: " in refused(f"--grpo.reward={lm}") and "is a decoder run, not a reward model" in refused(
        f"--grpo.reward={lm}")
    cfg = grpo_config(lm, root, prompts, "refused")
    cfg.model.value_head = "shared"
    with pytest.raises(ConfigError, match="model.value_head: grpo has no value function, and shared builds one"):
        build_task(cfg, CPU)
    cfg.task, cfg.model.value_head = "ppo", "none"
    with pytest.raises(ConfigError, match="model.value_head: ppo trains a value function, and none is the policy"):
        build_task(cfg, CPU)
    for flag, message in [("--grpo.group_size=1", "grpo.group_size: must be >= 2"),
                          ("--grpo.advantage=ppo", "grpo.advantage: unknown advantage 'ppo'; choose one of: grpo, rl"),
                          ("--grpo.loss_type=sum", "grpo.loss_type: unknown loss type 'sum'"),
                          ("--grpo.scale_rewards=max", "grpo.scale_rewards: unknown scaling 'max'"),
                          ("--grpo.reward=gold:x", "grpo.reward: unknown judge 'gold:x'"),
                          ("--grpo.beta=-1", "grpo.beta: must be >= 0"),
                          ("--grpo.gold=vader", "grpo.gold: unknown gold judge 'vader'")]:
        with pytest.raises(ConfigError, match=message):
            load_config(None, [flag])
    with pytest.raises(ConfigError, match="grpo.loss_type: is read with grpo.advantage=grpo only"):
        load_config(None, ["--grpo.advantage=rloo", "--grpo.loss_type=bnpo"])
    with pytest.raises(ConfigError, match="grpo.normalize_advantages: is read with grpo.advantage=rloo only"):
        load_config(None, ["--grpo.normalize_advantages=true"])
    # two processes (as torchrun starts them): minibatches count every process's answers; FSDP is refused
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "get_world_size", lambda: 2)
    monkeypatch.setattr(torch.distributed, "get_rank", lambda: 1)
    assert "x processes = 16; make it a multiple of 16" in refused("--grpo.rollout_prompts=2")
    assert "train.parallel: grpo runs under ddp, not fsdp" in refused("--train.parallel=fsdp")
