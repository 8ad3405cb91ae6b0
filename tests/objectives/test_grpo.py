"""GRPO and RLOO (axon.objectives.grpo): the advantages against hand computations (a group whose
answers all scored the same has zero advantage and is counted), the loss normalisations by hand,
and the whole minibatch update of the grpo task's objective against TRL 1.16's own
``GRPOTrainer._compute_loss`` and ``RLOOTrainer._compute_loss`` on the same model, exported with
``to_hf`` and run by transformers, on the same answers, old log-probabilities and advantages."""

import importlib.util
import math
import statistics
from collections import defaultdict
from contextlib import nullcontext
from functools import partial
from types import SimpleNamespace

import pytest
import torch

from axon.config import load_config
from axon.data.prompts import TRAIN
from axon.models import build_model
from axon.objectives.grpo import (
    EPS, clipped_surrogate, group_advantages, group_figures, grpo_loss, rloo_advantages, rloo_loss,
)
from axon.objectives.ppo import token_logprobs
from axon.tasks.grpo import GRPO
from axon.tasks.ppo import answer_logits, answer_tokens

SCORES = [1.0, 0.0, 0.5, 0.5,  # a group with signal
          0.3, 0.3, 0.3, 0.3,  # a group whose answers all scored the same: no signal
          2.0, 0.0, 0.0, 0.0]


def test_grpo_advantages_by_hand_and_a_flat_group_is_zero_and_counted():
    scores = torch.tensor(SCORES, dtype=torch.float64)
    got = {scale: group_advantages(scores, 4, scale) for scale in ("group", "batch", "none")}
    for g in range(3):
        r = SCORES[4 * g : 4 * g + 4]
        mean, std = sum(r) / 4, statistics.stdev(r)  # unbiased, as TRL's nanstd
        for i in range(4):
            assert got["none"][4 * g + i] == pytest.approx(r[i] - mean, abs=1e-15)
            assert got["group"][4 * g + i] == pytest.approx((r[i] - mean) / (std + EPS), abs=1e-12)
            assert got["batch"][4 * g + i] == pytest.approx((r[i] - mean) / (statistics.stdev(SCORES) + EPS), abs=1e-12)
    assert got["group"][4:8].abs().max() < 1e-12  # the flat group: no advantage ...
    unit = 0.5 / (math.sqrt(1 / 6) + EPS)  # [1, 0, .5, .5]: mean .5, std sqrt(1/6)
    assert got["group"][:4].tolist() == pytest.approx([unit, -unit, 0, 0])
    figures = group_figures(scores, 4)
    assert figures["frac_zero_std"] == pytest.approx(1 / 3)  # ... and counted
    assert figures["group_std"] == pytest.approx((statistics.stdev(SCORES[:4]) + 0 + 1.0) / 3)  # [2, 0, 0, 0]: std 1


def test_rloo_advantages_are_the_score_minus_the_mean_of_the_others():
    scores = torch.tensor(SCORES, dtype=torch.float64)
    got = rloo_advantages(scores, 4)
    assert got[:4].tolist() == pytest.approx([1 - 1 / 3, 0 - 2 / 3, 0.5 - 0.5, 0.5 - 0.5])
    assert got[4:8].abs().max() < 1e-15  # all equal: zero
    assert got[8:].tolist() == pytest.approx([2.0, -2 / 3, -2 / 3, -2 / 3])
    # RLOO's advantage is G / (G - 1) times the group-centred score
    assert torch.allclose(got, group_advantages(scores, 4, "none") * 4 / 3, atol=1e-15)
    white = rloo_advantages(scores, 4, normalize=True)
    assert white.tolist() == pytest.approx(((got - got.mean()) / (got.std() + EPS)).tolist())


def test_the_loss_normalisations_by_hand():
    # ratio 1 everywhere (logp = old): each token's loss is -A; answers of 3 and 1 tokens, A = 2 and -1
    logp = torch.zeros(2, 3, dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]], dtype=torch.float64)
    adv = torch.tensor([2.0, -1.0], dtype=torch.float64)
    loss = {t: float(grpo_loss(logp, logp, adv, mask, loss_type=t, max_new_tokens=5, mean_length=2.5)[0])
            for t in ("grpo", "bnpo", "dr_grpo", "dapo")}
    assert loss["grpo"] == pytest.approx((-2 + 1) / 2)  # each answer's token mean, then the mean
    assert loss["bnpo"] == pytest.approx((-6 + 1) / 4)  # the minibatch's token mean
    assert loss["dr_grpo"] == pytest.approx((-6 + 1) / (2 * 5))  # B x max_new_tokens
    assert loss["dapo"] == pytest.approx((-6 + 1) / (2 * 2.5))  # B x the rollout's mean answer length
    ratio = torch.tensor([0.5, 1.5, 1.1, 0.7])
    a = torch.tensor([1.0, 1.0, -1.0, -1.0])
    surrogate, clipped = clipped_surrogate(ratio, a, 0.2, clip_high=0.28)
    assert surrogate.tolist() == pytest.approx([-0.5, -1.28, 1.1, 0.8])
    assert clipped.tolist() == [False, True, False, True]
    # RLOO: one ratio per answer, exp of its summed log-ratio
    old = torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]], dtype=torch.float64)
    new = torch.tensor([[0.1, -0.05, 0.02], [-0.3, 9.0, 9.0]], dtype=torch.float64)  # padding ignored
    got, info = rloo_loss(new, old, adv, mask, clip=0.2)
    assert float(got) == pytest.approx((-2 * math.exp(0.07) + 0.8) / 2)  # the second's ratio 0.74 < 0.8, A < 0: ...
    assert float(info["clipfrac"]) == 0.5  # ... clipped


# ----------------------------------------------------------------------------------------------
# Against TRL (a dev dependency): the grpo task's update on one minibatch of a rollout, and TRL's
# _compute_loss, unbound, on a stand-in for the trainer that holds only what it reads, running the
# same weights exported with to_hf and loaded by transformers (TRL's fused LM head added as TRL
# adds it: the log-probabilities of logits / temperature).

needs_trl = pytest.mark.skipif(importlib.util.find_spec("trl") is None,
                               reason="trl (the dev extra) is not installed; the comparison with TRL needs it")

V, PROMPT, GROUP, ROWS, TEMPERATURE, NEW = 24, 5, 4, 8, 0.7, 7
MINIBATCH, GRAD_ACCUM = 2, 2


def grpo_config(*extra):
    return load_config(None, ["--task=grpo", "--model.family=actor_critic", "--model.value_head=none",
                              f"--model.vocab_size={V}", "--model.block_size=16", "--model.n_layer=1",
                              "--model.n_head=2", "--model.n_embd=16", "--grpo.rollout_prompts=2",
                              f"--grpo.group_size={GROUP}", f"--grpo.temperature={TEMPERATURE}",
                              f"--grpo.max_new_tokens={NEW}", f"--train.batch_size={MINIBATCH}",
                              f"--train.grad_accum={GRAD_ACCUM}", *extra])


def logprobs(model, tokens, plen, R):
    with torch.no_grad():
        return token_logprobs(answer_logits(model(tokens), plen, R, V, TEMPERATURE), answer_tokens(tokens, plen, R))


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    """A policy (fp64), the rollout it is trained on -- 2 prompts of 5 tokens, 4 answers each of 2
    to 7 tokens, old log-probabilities from the policy before two updates' worth of drift, the
    reference's from another model, scores and GRPO's advantages -- and the policy exported to
    transformers (fp64, TRL's fused head at the sampling temperature)."""
    from transformers import AutoModelForCausalLM
    from trl.trainer.utils import add_fused_lm_head

    from axon.interop.hf import to_hf

    torch.manual_seed(0)
    cfg = grpo_config().model
    policy, old, ref = (build_model(cfg).double() for _ in range(3))
    old.load_state_dict({k: v + 0.1 * torch.randn_like(v) if v.is_floating_point() else v
                         for k, v in policy.state_dict().items()})  # a policy that moved since the rollout
    g = torch.Generator().manual_seed(1)
    lengths = torch.tensor([7, 2, 5, 3, 6, 4, 7, 1])
    tokens = torch.zeros(ROWS, PROMPT + NEW, dtype=torch.long)
    mask = torch.zeros(ROWS, NEW, dtype=torch.float64)
    for r in range(ROWS):
        prompt = torch.randint(1, V, (PROMPT,), generator=torch.Generator().manual_seed(r // GROUP))
        tokens[r, : PROMPT + lengths[r]] = torch.cat([prompt, torch.randint(1, V, (int(lengths[r]),), generator=g)])
        mask[r, : lengths[r]] = 1
    plen = torch.full((ROWS,), PROMPT)
    scores = torch.tensor([1.0, 0.0, 0.0, 1.0, 0.2, 0.9, 0.4, 0.4], dtype=torch.float64)
    hf_dir = to_hf(policy.policy(), tmp_path_factory.mktemp("grpo-trl") / "hf")
    hf = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float64)
    add_fused_lm_head(hf, temperature=TEMPERATURE, outputs=("log_probs", "entropy"))
    return SimpleNamespace(policy=policy, hf=hf, tokens=tokens, plen=plen, mask=mask, scores=scores,
                           old=logprobs(old, tokens, plen, NEW) * mask, ref=logprobs(ref, tokens, plen, NEW) * mask)


class Accel:
    device = torch.device("cpu")
    num_processes, is_main_process = 1, True

    def gather(self, t):
        return t

    gather_for_metrics = reduce = lambda self, t, reduction=None: t  # noqa: E731

    def autocast(self):
        return nullcontext()


def axon_update(case, rows, *flags):
    """The grpo objective's loss on minibatch ``rows`` of the case's rollout, and its figures."""
    cfg = grpo_config(*flags)
    objective = GRPO(cfg, SimpleNamespace(vocab_size=V), {}, None, None, None, None)
    p = cfg.grpo
    if p.advantage == "rloo":
        reward = case.scores - p.kl_coef * ((case.old - case.ref) * case.mask).sum(1)
        advantages = rloo_advantages(reward, GROUP)
    else:
        advantages = group_advantages(case.scores, GROUP, p.scaling)
    case.policy.rollout.store(index=torch.tensor(0), tokens=case.tokens, prompt_len=case.plen, mask=case.mask,
                              logp=case.old, ref_logp=case.ref, advantages=advantages)
    case.policy.zero_grad()
    batch = (torch.full_like(rows, TRAIN), torch.zeros_like(rows), rows)
    loss, parts = objective(case.policy, batch)
    return loss, parts, advantages


def trl_inputs(case, rows, advantages):
    R = int(case.mask[rows].sum(1).max())
    return {"prompt_ids": case.tokens[rows, :PROMPT], "prompt_mask": torch.ones(len(rows), PROMPT, dtype=torch.long),
            "completion_ids": case.tokens[rows, PROMPT : PROMPT + R], "completion_mask": case.mask[rows, :R].long(),
            "old_per_token_logps": case.old[rows, :R], "ref_per_token_logps": case.ref[rows, :R],
            "advantages": advantages[rows], "num_items_in_batch": case.mask.sum()}


def grad_norm(model):
    return math.sqrt(sum(float((p.grad.double() ** 2).sum()) for p in model.parameters() if p.grad is not None))


@pytest.mark.numerics
@needs_trl
@pytest.mark.parametrize("loss_type", ["dapo", "grpo", "bnpo", "dr_grpo"])
@pytest.mark.parametrize("beta", [0.0, 0.04])
def test_the_grpo_update_equals_trls(case, loss_type, beta):
    from trl.trainer.grpo_trainer import GRPOTrainer

    rows = torch.tensor([5, 2])  # one answer of each group, of 4 and 5 tokens
    ours, parts, advantages = axon_update(case, rows, f"--grpo.loss_type={loss_type}", f"--grpo.beta={beta}",
                                          "--grpo.clip_high=0.28")
    ours = ours / GRAD_ACCUM  # the trainer's mean over the micro-steps; TRL's _compute_loss returns it so scaled
    ours.backward()
    ours_norm = grad_norm(case.policy)
    trainer = SimpleNamespace(
        model=SimpleNamespace(training=True), accelerator=Accel(), aux_loss_enabled=False, top_entropy_quantile=1.0,
        off_policy_mask_threshold=None, importance_sampling_level="token", beta=beta, loss_type=loss_type,
        epsilon_low=0.2, epsilon_high=0.28, use_vllm=False, vllm_importance_sampling_correction=False,
        current_gradient_accumulation_steps=GRAD_ACCUM, max_completion_length=NEW, _entropy_bonus_enabled=False,
        _metrics={"train": defaultdict(list)},
        args=SimpleNamespace(use_bias_correction_kl=False, delta=None, steps_per_generation=ROWS // MINIBATCH))
    trainer._get_per_token_logps_and_entropies = partial(GRPOTrainer._get_per_token_logps_and_entropies, trainer)
    case.hf.zero_grad()
    theirs = GRPOTrainer._compute_loss(trainer, case.hf, trl_inputs(case, rows, advantages))
    theirs.backward()
    ours, theirs = float(ours.detach()), float(theirs.detach())
    assert abs(ours - theirs) <= 1e-5, (ours, theirs)
    assert abs(ours - theirs) <= 1e-7  # fp64; the two models' logits differ by ~4e-8 (rotary tables in fp32)
    assert ours_norm == pytest.approx(grad_norm(case.hf), rel=1e-6)  # the same gradient
    assert float(parts["clipfrac"]) == pytest.approx(trainer._metrics["train"]["clip_ratio/region_mean"][0])
    if beta:
        assert float(parts["token_kl"]) == pytest.approx(trainer._metrics["train"]["kl"][0])
    assert float(parts["entropy"]) == pytest.approx(trainer._metrics["train"]["entropy"][0])
    assert float(parts["clipfrac"]) > 0  # the policy moved: some ratios are clipped


@pytest.mark.numerics
@needs_trl
@pytest.mark.parametrize("beta", [None, 0.0])  # None: RLOOConfig's default beta, 0.05, in the rewards
def test_the_rloo_update_equals_trls(case, beta):
    from trl.trainer.rloo_trainer import RLOOTrainer

    rows = torch.tensor([0, 7, 3])
    ours, parts, advantages = axon_update(case, rows, "--grpo.advantage=rloo",
                                          *([] if beta is None else [f"--grpo.beta={beta}"]))
    ours.backward()  # RLOO's loss is the micro-batch's mean: the trainer's mean over micro-steps as TRL's Trainer
    ours_norm = grad_norm(case.policy)
    trainer = SimpleNamespace(model=SimpleNamespace(training=True), accelerator=Accel(), aux_loss_enabled=False,
                              epsilon_low=0.2, epsilon_high=0.2, _metrics={"train": defaultdict(list)})
    trainer._get_per_token_logps_and_entropies = partial(RLOOTrainer._get_per_token_logps_and_entropies, trainer)
    inputs = trl_inputs(case, rows, advantages)
    inputs["old_logps"] = (inputs.pop("old_per_token_logps") * inputs["completion_mask"]).sum(1)
    case.hf.zero_grad()
    theirs = RLOOTrainer._compute_loss(trainer, case.hf, inputs)
    theirs.backward()
    ours, theirs = float(ours.detach()), float(theirs.detach())
    assert abs(ours - theirs) <= 1e-7, (ours, theirs)
    assert ours_norm == pytest.approx(grad_norm(case.hf), rel=1e-6)
    assert float(parts["clipfrac"]) == pytest.approx(trainer._metrics["train"]["clip_ratio/region_mean"][0])
    kl = ((case.old - case.ref) * case.mask).sum(1)  # the KL went into the rewards, not the loss
    no_kl = rloo_advantages(case.scores, GROUP)
    assert torch.equal(advantages, no_kl) == (beta == 0.0)
    assert torch.allclose(advantages, no_kl - 0.05 * rloo_advantages(kl, GROUP)) or beta == 0.0
