"""PPO's separate value network (``model.value_head: separate``): the critic's parameters are its
own (its gradients and the policy's come from their own losses), it starts from the SFT body or
from a reward run (whose score it then gives), the planted reward still rises, a run resumes bit
for bit, the export is the policy alone, and the refusals are one line each.

Like tests/tasks/test_ppo_task.py, every run starts from a tiny language model trained for 30
steps (module fixture); the planted reward is the share of spaces in an answer.
"""

import functools
import json
import random
import shutil
from pathlib import Path

import pytest
import torch
from numerics import order_tol

from axon.cli import main
from axon.config import load_config
from axon.data.prompts import read_prompts
from axon.errors import ConfigError
from axon.feedback import bundled_path
from axon.models import build_model
from axon.models.decoder import Decoder
from axon.tasks import TASKS, build_task
from axon.tasks.finetune import finetune_config
from axon.tasks.ppo import ppo_task
from axon.train.checkpoint import list_checkpoints
from axon.train.logging import read_metrics
from axon.train.run import load_run, train

QUIET = ["--log.progress=false", "--train.threads=1", "--train.sample_tokens=0"]
CPU = torch.device("cpu")
SEPARATE = "--model.value_head=separate"


def spaces(prompt: str, answer: str) -> float:
    return answer.count(" ") / max(len(answer), 1)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("critic")


@pytest.fixture(scope="module")
def lm(root):
    cfg = load_config(None, ["--model.preset=tiny", "--model.block_size=128", f"--out_dir={root}", "--name=lm",
                             "--train.max_steps=30", "--train.eval_interval=30", "--train.eval_batches=1", *QUIET])
    return Path(train(cfg)["run_dir"])


def reward_run(lm, root, name, *extra):
    """A tiny reward model taught that spaced answers beat the same letters unspaced."""
    rng = random.Random(0)
    rows = []
    for p in [r[0] for r in read_prompts(bundled_path("train"))[:80]]:
        words = ["".join(rng.choice("abcdefghij") for _ in range(rng.randint(2, 5))) for _ in range(3)]
        rows.append({"prompt": p, "chosen": " ".join(words), "rejected": "".join(words)})
    comparisons = root / f"{name}.jsonl"
    comparisons.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = load_config(None, ["--model.family=reward", "--model.preset=tiny", "--model.block_size=128",
                             f"--data.train_file={comparisons}", "--optim.name=adamw", "--optim.lr=3e-3",
                             "--train.batch_size=16", f"--out_dir={root}", f"--name={name}", "--train.eval_batches=1",
                             *QUIET, *extra])
    return Path(train(cfg)["run_dir"])


@pytest.fixture(scope="module")
def rm(lm, root):
    return reward_run(lm, root, "rm", f"--train.init_from={lm}", "--train.max_steps=20")


def ppo_config(lm, root, name, *extra):
    return finetune_config(lm, None, ["--task=ppo", f"--out_dir={root}", f"--name={name}", "--train.batch_size=8",
                                      "--ppo.rollout_batch=32", "--ppo.epochs=2", "--ppo.max_new_tokens=24",
                                      "--train.eval_interval=1000", "--train.eval_batches=1", "--train.log_interval=1",
                                      "--schedule.name=constant", "--schedule.warmup_steps=0", *QUIET, *extra])


@pytest.fixture
def planted(monkeypatch):
    monkeypatch.setitem(TASKS, "ppo", functools.partial(ppo_task, reward=spaces))


def records(run):
    return [r for r in read_metrics(Path(run) / "metrics.jsonl") if "train_loss" in r]


def built(cfg):
    """(task, model with its initial weights) of a PPO config, as a run builds them."""
    task = build_task(cfg, CPU)
    torch.manual_seed(0)
    model = build_model(cfg.model)
    task.init_weights(model, cfg.train.init_from)
    return task, model


# ----------------------------------------------------------------------------------------------
# The model


def test_the_separate_critic_has_its_own_body_and_the_policy_is_the_sft_model(lm, root, planted):
    cfg = ppo_config(lm, root, "unused", SEPARATE)
    task, model = built(cfg)
    _, sft, _ = load_run(lm, "cpu")
    names = {k for k in model.state_dict() if not k.startswith("rollout.")}
    assert names - {f"critic.{k}" for k in model.critic.state_dict()} == set(sft.state_dict())
    assert model.value_head is None and not any(k.startswith("value_head.") for k in names)
    idx = torch.randint(0, 65, (3, 11))
    logits, values = model(idx, values=True)
    assert torch.equal(model(idx), logits) and torch.equal(logits, sft(idx))  # the policy: the SFT model
    assert torch.equal(model.policy()(idx), logits) and type(model.policy()) is Decoder
    assert torch.all(values == 0)  # the head at zero ...
    for k, v in sft.state_dict().items():  # ... on the SFT body (ppo.value_init=sft)
        if k != "lm_head.weight":
            assert torch.equal(model.critic.state_dict()[k], v), k
    small = load_config(None, ["--model.family=actor_critic", "--model.preset=tiny", "--model.vocab_size=65", SEPARATE,
                               "--model.critic_n_layer=1", "--model.critic_n_embd=32", "--model.critic_n_head=2"]).model
    critic = build_model(small).critic
    assert len(critic.blocks) == 1 and critic.wte.weight.shape == (65, 32)
    assert build_model(small).flops_per_token() < model.flops_per_token()


def gradients(model, task, cfg, step=0):
    model.zero_grad(set_to_none=True)
    batch = task.train_data.get_batch(step, cfg.train.batch_size, cfg.model.block_size, cfg.train.seed)
    loss, _ = task.objective(model, batch)
    loss.backward()
    return {n: (p.grad.clone() if p.grad is not None else torch.zeros_like(p)) for n, p in model.named_parameters()}


@pytest.mark.parametrize("value_head", ["separate", "shared"])
def test_policy_and_value_losses_train_disjoint_parameters_only_with_a_separate_critic(lm, root, planted, value_head):
    # The value head starts at zero, which sends no gradient into any body; give it a weight first.
    grads = {}
    for coef in (0.1, 0.7):
        cfg = ppo_config(lm, root, "unused", f"--model.value_head={value_head}", f"--ppo.value_coef={coef}")
        task, model = built(cfg)
        head = model.critic.value_head if value_head == "separate" else model.value_head
        with torch.no_grad():
            head.weight.copy_(torch.linspace(-1, 1, head.weight.numel()).view_as(head.weight))
        grads[coef] = gradients(model, task, cfg)
        if coef == 0.7:  # the same rollout held, the advantages reversed: another policy loss, the same value loss
            model.rollout.advantages.neg_()
            grads["flipped"] = gradients(model, task, cfg)
    critic = lambda n: n.startswith(("critic.", "value_head."))  # noqa: E731
    policy = [n for n in grads[0.1] if not critic(n)]
    value = [n for n in grads[0.1] if critic(n)]
    assert any(grads[0.1][n].abs().sum() > 0 for n in policy) and all(grads[0.1][n].abs().sum() > 0 for n in value)
    same_policy = all(torch.equal(grads[0.1][n], grads[0.7][n]) for n in policy)
    assert not any(torch.equal(grads[0.1][n], grads["flipped"][n]) for n in policy if grads[0.1][n].abs().sum() > 0)
    if value_head == "separate":
        assert same_policy  # the policy's gradients do not depend on value_coef ...
        for n in value:  # ... and the critic's follow value_coef, whatever the policy loss
            assert torch.equal(grads[0.7][n], grads["flipped"][n]) and not torch.equal(grads[0.7][n], grads[0.1][n]), n
    else:  # shared: the value loss moves the policy's body (why the separate critic exists)
        assert not same_policy


# ----------------------------------------------------------------------------------------------
# Learning, resume, export


def test_a_planted_reward_rises_with_a_separate_critic(lm, root, planted):
    cfg = ppo_config(lm, root, "planted-separate", SEPARATE, "--train.max_steps=64", "--optim.name=adamw",
                     "--optim.lr=3e-3", "--ppo.kl_beta=0.02")
    train(cfg)
    per_rollout = {int(r["rollout"]): r for r in records(root / "planted-separate")}
    assert sorted(per_rollout) == list(range(8))
    first = per_rollout[0]
    final = sum(per_rollout[k]["score"] for k in (6, 7)) / 2
    # Measured: 0.084 at rollout 0, 0.223 and 0.427 at rollouts 6 and 7, KL 4.6 and 9.5 nats (the
    # shared head's run: 0.187 and 0.257 at 2.4 and 4.4 nats).
    assert first["kl"] == 0.0 and first["score"] < 0.1
    assert final > 2 * first["score"] and final > 0.15
    assert all(r["kl"] < 15.0 for r in per_rollout.values())


def test_a_separate_critic_resumes_bit_for_bit_and_exports_the_policy_alone(lm, root, planted):
    cfg = ppo_config(lm, root, "resume-separate", SEPARATE, "--model.critic_n_layer=1", "--ppo.value_init=scratch",
                     "--train.max_steps=16", "--train.checkpoint_interval=4", "--train.keep_checkpoints=10",
                     "--ppo.kl_target=1.0", "--ppo.kl_horizon=64", "--optim.lr=1e-2")
    run = Path(train(cfg)["run_dir"])
    copy = root / "resume-separate-copy"
    shutil.copytree(run, copy)
    for c in list_checkpoints(copy / "checkpoints"):
        if int(c.name.split("_")[1]) > 12:  # keep step 12: the middle of rollout 1
            shutil.rmtree(c)
    (copy / "config.yaml").write_text((copy / "config.yaml").read_text().replace(str(run), str(copy)))
    assert train(resume=copy)["step"] == 16
    losses = lambda r: [(x["step"], x["train_loss"], x["value_loss"]) for x in records(r)]  # noqa: E731
    assert losses(copy) == losses(run) and len(losses(run)) == 16
    _, a, _ = load_run(run, "cpu")
    _, b, _ = load_run(copy, "cpu")
    assert all(torch.equal(x, y) for x, y in zip(a.critic.state_dict().values(), b.critic.state_dict().values()))
    assert main(["convert", "--to-hf", str(run), "--out", str(root / "separate-hf")]) == 0
    assert main(["convert", "--from-hf", str(root / "separate-hf"), "--out", str(root / "separate-back")]) == 0
    _, back, _ = load_run(root / "separate-back", "cpu")
    idx = torch.randint(0, 65, (2, 7))
    assert type(back) is Decoder and torch.equal(back(idx), a(idx))


# ----------------------------------------------------------------------------------------------
# The critic from a reward run


@pytest.mark.numerics
def test_the_critic_from_a_reward_run_gives_its_reward_before_training(lm, root, rm, planted):
    cfg = ppo_config(lm, root, "unused", SEPARATE, f"--ppo.value_init={rm}")
    task, model = built(cfg)
    _, reward_model, _ = load_run(rm, "cpu")
    assert torch.equal(model.critic.value_head.weight, reward_model.reward_head.weight)
    task.objective.rollout(model, 0)
    st = model.rollout
    ends = st.prompt_len + st.mask.sum(1).long()  # tokens of prompt + answer per row
    with torch.no_grad():
        values = model.critic(st.tokens)  # (N, L)
        scores = reward_model(st.tokens, ends)  # the reward model on the same ids, read at the answer's last token
    at_end = values[torch.arange(len(ends)), ends - 1]
    # The same body on the same ids; the scalar head runs on (N, L, C) against (N, C): a sum of C products.
    tol = order_tol(torch.float32, n=cfg.model.n_embd, depth=1, scale=max(1.0, scores.abs().max().item()))
    assert (at_end - scores).abs().max() <= tol and scores.std() > 0
    # ppo.value_init=reward names the ppo.reward run: the same weights
    _, same = built(ppo_config(lm, root, "unused", SEPARATE, f"--ppo.reward={rm}", "--ppo.value_init=reward"))
    assert all(torch.equal(x, y) for x, y in zip(same.critic.state_dict().values(), model.critic.state_dict().values()))


def test_bad_critic_settings_are_refused_in_one_line(lm, root, rm, planted):
    def refused(*extra):
        with pytest.raises(ConfigError) as e:
            built(ppo_config(lm, root, "refused", *extra))
        assert "\n" not in str(e.value)
        return str(e.value)

    assert "the critic is not" in refused(SEPARATE, f"--ppo.value_init={rm}", "--model.critic_n_layer=1")
    assert "model.critic_n_layer=1 (the run has 2)" in refused(SEPARATE, f"--ppo.value_init={rm}", "--model.critic_n_layer=1")
    other = reward_run(lm, root, "rm-chars", "--train.max_steps=2")  # its own character tokenizer
    assert "encodes text with another tokenizer than the policy's" in refused(SEPARATE, f"--ppo.value_init={other}")
    assert "is a decoder run, not a reward model" in refused(SEPARATE, f"--ppo.value_init={lm}")
    assert "neither sft, scratch, reward nor a run directory" in refused(SEPARATE, f"--ppo.value_init={root / 'none'}")
    assert "but ppo.reward is gold:instructions" in refused(SEPARATE, "--ppo.value_init=reward")
    assert "sft starts the critic from train.init_from's body" in refused(SEPARATE, "--model.critic_n_embd=32")
    assert "model.value_head is shared" in refused(f"--ppo.value_init={rm}")
    with pytest.raises(ConfigError, match="model.critic_n_layer: sets the shape of a separate critic"):
        ppo_config(lm, root, "x", "--model.critic_n_layer=1")
    with pytest.raises(ConfigError, match="model.critic_n_embd: 30 is not divisible by the critic's n_head=4"):
        ppo_config(lm, root, "x", SEPARATE, "--model.critic_n_embd=30")


def test_the_dense_critic_of_an_moe_policy_cannot_start_from_its_body():
    from axon.tasks.ppo import init_critic

    cfg = load_config(None, ["--task=ppo", "--model.family=actor_critic", "--model.preset=tiny", "--model.vocab_size=11",
                             SEPARATE, "--model.moe_experts=2"])
    model = build_model(cfg.model)
    assert model.critic.config.moe_experts == 0  # the critic is dense, whatever the policy
    with pytest.raises(ConfigError, match=r"which has no blocks\.0\.mlp\.gate_up\.weight \(the critic is a dense decoder\)"):
        init_critic(model.critic, cfg, Decoder(cfg.model.decoder_config()))
    cfg.ppo.value_init = "scratch"
    assert init_critic(model.critic, cfg, Decoder(cfg.model.decoder_config())) == []
