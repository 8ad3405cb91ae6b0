"""DPO and its family (axon.objectives.dpo): each loss against a hand computation in fp64, the
sequence log-probabilities against a per-token loop, no gradient into the reference, SimPO with
no reference at all, and each variant TRL also has against TRL's own code on the same tensors."""

import importlib.util
import math
from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch

from axon.models import build_model
from axon.config import build_model_config
from axon.objectives.causal_lm import IGNORE_INDEX
from axon.objectives.dpo import DPO, LOSSES, _head_apart, model_sequence_logprobs, preference_loss, sequence_logprobs


def logsig(z):
    return -math.log1p(math.exp(-z)) if z >= 0 else z - math.log1p(math.exp(z))


def four(seed=0, B=5):
    g = torch.Generator().manual_seed(seed)
    t = lambda: -torch.rand(B, generator=g, dtype=torch.float64) * 20  # noqa: E731  (sequence log-probs < 0)
    lens = lambda: torch.randint(1, 9, (B,), generator=g).to(torch.float64)  # noqa: E731
    return t(), t(), t(), t(), lens(), lens()


def by_hand(kind, pw, pl, rw, rl, nw, nl, beta, eps, gamma, alpha, nll):
    h = (pw - rw) - (pl - rl)
    if kind == "dpo":
        return -logsig(beta * h)
    if kind == "cdpo":
        return -(1 - eps) * logsig(beta * h) - eps * logsig(-beta * h)
    if kind == "robust":
        return (-(1 - eps) * logsig(beta * h) + eps * logsig(-beta * h)) / (1 - 2 * eps)
    if kind == "ipo":
        return ((pw - rw) / nw - (pl - rl) / nl - 1 / (2 * beta)) ** 2
    if kind == "simpo":
        return -logsig(beta * (pw / nw - pl / nl) - gamma)
    if kind == "rpo":
        return -logsig(beta * h) + alpha * nll


@pytest.mark.numerics
@pytest.mark.parametrize("kind", LOSSES)
def test_each_loss_against_a_hand_computation(kind):
    pw, pl, rw, rl, nw, nl = four()
    beta, eps, gamma, alpha = 0.3, 0.2, 0.7, 0.5
    got = preference_loss(kind, pw, pl, rw, rl, nw, nl, beta, eps, gamma, alpha)
    nll = -pw.sum().item() / nw.sum().item()  # rpo: the chosen tokens' NLL per token, over the batch
    want = [by_hand(kind, *(v[i].item() for v in (pw, pl, rw, rl, nw, nl)), beta, eps, gamma, alpha, nll)
            for i in range(len(pw))]
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, torch.tensor(want, dtype=torch.float64), rtol=1e-12, atol=1e-12)


def test_cdpo_at_zero_smoothing_and_rpo_at_zero_alpha_are_dpo():
    pw, pl, rw, rl, nw, nl = four(1)
    dpo = preference_loss("dpo", pw, pl, rw, rl, nw, nl, beta=0.5)
    assert torch.equal(preference_loss("cdpo", pw, pl, rw, rl, nw, nl, beta=0.5, label_smoothing=0.0), dpo)
    assert torch.equal(preference_loss("rpo", pw, pl, rw, rl, nw, nl, beta=0.5, alpha=0.0), dpo)


@pytest.mark.numerics
def test_sequence_logprobs_sum_the_response_tokens():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 6, 11, generator=g, dtype=torch.float64)
    y = torch.randint(0, 11, (3, 6), generator=g)
    y[0, :2] = IGNORE_INDEX
    y[1, 4:] = IGNORE_INDEX
    y[2] = IGNORE_INDEX
    total, n = sequence_logprobs(logits, y)
    logp = torch.log_softmax(logits, -1)
    want = [sum(logp[b, t, y[b, t]].item() for t in range(6) if y[b, t] != IGNORE_INDEX) for b in range(3)]
    torch.testing.assert_close(total, torch.tensor(want, dtype=torch.float64), rtol=1e-12, atol=1e-12)
    assert n.tolist() == [4, 4, 0]


def tiny(seed):
    torch.manual_seed(seed)
    return build_model(build_model_config({"preset": "tiny", "vocab_size": 17, "block_size": 16})).double()


def pair_batch(B=4, T=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 17, (B, 2, T), generator=g)
    y = torch.randint(0, 17, (B, 2, T), generator=g)
    y[..., :4] = IGNORE_INDEX  # the prompt
    y[:, 1, 8:] = IGNORE_INDEX  # a shorter rejected answer (right padding)
    return x, y


@pytest.mark.numerics
def test_the_head_on_the_response_positions_only_gives_the_whole_forwards_logprobs():
    """An Axon decoder runs its LM head and log-softmax at the scored positions only: the same
    sequence log-probabilities and gradients as the whole forward's logits; a wrapped model, or one
    with a hook on its forward, runs whole."""
    model = tiny(0)
    x, y = (t.reshape(8, 10) for t in pair_batch())
    rows = []
    model.lm_head.register_forward_hook(lambda m, i, o: rows.append(i[0].shape[:-1]))
    assert _head_apart(model)
    fast, n = model_sequence_logprobs(model, x, y)
    assert rows == [((y != IGNORE_INDEX).sum(),)]  # (M, C): the response positions, not (8, 10)
    whole, n_whole = sequence_logprobs(model(x), y)
    assert torch.equal(n, n_whole)
    torch.testing.assert_close(fast, whole, rtol=1e-12, atol=1e-12)
    params = list(model.parameters())
    g_fast = torch.autograd.grad(model_sequence_logprobs(model, x, y)[0].sum(), params)
    g_whole = torch.autograd.grad(sequence_logprobs(model(x), y)[0].sum(), params)
    for a, b in zip(g_fast, g_whole):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)

    class Wrapped(torch.nn.Module):  # as torch.compile's and DDP's wrappers: another class, forward delegated
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, idx):
            return self.inner(idx)

    assert not _head_apart(Wrapped(model))
    rows.clear()
    torch.testing.assert_close(model_sequence_logprobs(Wrapped(model), x, y)[0], whole, rtol=0, atol=0)
    assert rows == [(8, 10)]
    model.register_forward_pre_hook(lambda m, args: None)
    assert not _head_apart(model)


@pytest.mark.parametrize("kind", [k for k in LOSSES if k != "simpo"])
def test_the_reference_gets_no_gradient_and_the_policy_does(kind):
    policy, reference = tiny(0), tiny(1)
    objective = DPO(kind, reference, beta=0.2, label_smoothing=0.1)
    loss, parts = objective(policy, pair_batch())
    loss.backward()
    assert all(p.grad is None for p in reference.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in policy.parameters())
    assert parts["count"] == 4 and 0 <= int(parts["correct"]) <= 4
    # the reported rewards are beta * (policy - reference) sequence log-probabilities
    x, y = pair_batch()
    with torch.no_grad():
        pi, _ = objective.logprobs(policy, x, y)
        ref, _ = objective.logprobs(reference, x, y)
    assert torch.equal(parts["sum_chosen_reward"], (0.2 * (pi[:, 0] - ref[:, 0])).sum())
    assert torch.equal(parts["sum_margin"], (0.2 * (pi[:, 0] - ref[:, 0]) - 0.2 * (pi[:, 1] - ref[:, 1])).sum())
    assert set(objective.metrics()) == {f"train_{k}" for k in ("chosen_reward", "rejected_reward", "margin",
                                                               "chosen_logp", "rejected_logp", "accuracy")}
    assert objective.metrics() == {}  # reset by the call


def test_simpo_needs_no_reference_and_the_others_do():
    policy = tiny(0)
    objective = DPO("simpo", None, beta=2.0, gamma=0.5)
    loss, parts = objective(policy, pair_batch())
    x, y = pair_batch()
    with torch.no_grad():
        pi, n = objective.logprobs(policy, x, y)
    want = preference_loss("simpo", pi[:, 0], pi[:, 1], None, None, n[:, 0].double(), n[:, 1].double(), 2.0, gamma=0.5)
    assert torch.equal(loss.detach(), want.mean())
    assert DPO("simpo", tiny(1)).reference is None  # a reference given is not used
    for kind in ("dpo", "ipo", "cdpo", "rpo"):
        with pytest.raises(ValueError, match=f"the {kind} loss needs a reference model"):
            DPO(kind, None)


# ----------------------------------------------------------------------------------------------
# Against TRL (a dev dependency): its DPOTrainer._compute_loss and CPOTrainer.cpo_loss, unbound,
# on a stand-in for the trainer that holds only what those methods read.

needs_trl = pytest.mark.skipif(importlib.util.find_spec("trl") is None,
                               reason="trl (the dev extra) is not installed; the comparison with TRL needs it")


class Accel:
    device = torch.device("cpu")

    def gather_for_metrics(self, t):
        return t

    gather = gather_for_metrics


def trl_dpo_loss(loss_types, loss_weights, beta, label_smoothing, input_ids, completion_mask, per_token_logps,
                 ref_w, ref_l):
    """TRL 1.16's DPO loss on (chosen; rejected) rows whose per-token log-probabilities (N, T - 1)
    are given: ``DPOTrainer._compute_loss`` with the reference log-probabilities precomputed."""
    from trl.trainer.dpo_trainer import DPOTrainer

    def model(**kwargs):  # what TRL's fused LM head returns: per-token log-probs and figures it logs
        zeros = torch.zeros_like(per_token_logps)
        return SimpleNamespace(log_probs=per_token_logps, entropy=zeros, mean_logits=zeros,
                               is_top1=torch.zeros_like(per_token_logps, dtype=torch.bool))

    trainer = SimpleNamespace(model=SimpleNamespace(training=True), accelerator=Accel(), aux_loss_enabled=False,
                              ld_alpha=None, precompute_ref_logps=True, f_divergence_type="reverse_kl",
                              loss_types=loss_types, loss_weights=loss_weights, beta=beta,
                              label_smoothing=label_smoothing, use_weighting=False,
                              _metrics={"train": defaultdict(list)}, _total_train_tokens=0, _tp_size=1)
    inputs = {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids), "completion_mask": completion_mask,
              "ref_chosen_logps": ref_w, "ref_rejected_logps": ref_l}
    return DPOTrainer._compute_loss(trainer, model, inputs, return_outputs=False)


def trl_case(seed=0):
    """Two pairs of an Axon model's outputs as TRL and Axon each read them: TRL's completion_mask
    (N, T) over input_ids, its log-probs (N, T - 1) of token t + 1; Axon's y (= -100 off the
    completion) over the same shifted positions."""
    model = tiny(seed)
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 17, (4, 12), generator=g)  # rows: chosen 0, chosen 1, rejected 0, rejected 1
    completion = torch.zeros(4, 12, dtype=torch.long)
    completion[0, 5:] = completion[1, 3:10] = completion[2, 5:9] = completion[3, 3:] = 1  # unequal lengths
    with torch.no_grad():
        logits = model(ids[:, :-1])
    y = ids[:, 1:].masked_fill(completion[:, 1:] == 0, IGNORE_INDEX)
    per_token = torch.log_softmax(logits, -1).gather(-1, ids[:, 1:, None]).squeeze(-1) * completion[:, 1:]
    return ids, completion, per_token, logits, y


@pytest.mark.numerics
@needs_trl
@pytest.mark.parametrize("kind,trl_types,weights", [("dpo", ["sigmoid"], [1.0]), ("ipo", ["ipo"], [1.0]),
                                                    ("robust", ["robust"], [1.0]),
                                                    ("rpo", ["sigmoid", "sft"], [1.0, 0.7])])
def test_equal_to_trl_dpo_trainer(kind, trl_types, weights):
    ids, completion, per_token, logits, y = trl_case()
    logp, n = sequence_logprobs(logits, y)
    assert torch.equal(n, completion[:, 1:].sum(1))
    torch.testing.assert_close(logp, per_token.sum(1), rtol=0, atol=1e-12)
    ref = logp - torch.tensor([0.3, -1.1, 0.8, 0.2], dtype=torch.float64)  # a reference the policy moved from
    beta, eps = 0.25, 0.15
    theirs = trl_dpo_loss(trl_types, weights, beta, eps, ids, completion, per_token, ref[:2], ref[2:])
    ours = preference_loss(kind, logp[:2], logp[2:], ref[:2], ref[2:], n[:2].double(), n[2:].double(), beta,
                           label_smoothing=eps, alpha=weights[-1]).mean()
    assert abs(float(ours) - float(theirs)) <= 1e-5, (float(ours), float(theirs))
    assert abs(float(ours) - float(theirs)) <= 1e-12  # in fp64 the two are the same sums


@pytest.mark.numerics
@needs_trl
def test_simpo_equal_to_trl_cpo_trainer():
    from trl.experimental.cpo.cpo_trainer import CPOTrainer

    _, _, _, logits, y = trl_case(3)
    logp, n = sequence_logprobs(logits, y)
    avg = logp / n  # CPO's simpo reads average log-probabilities (its get_batch_logps(average_log_prob=True))
    beta, gamma = 2.0, 0.6
    trainer = SimpleNamespace(alpha=0.0, accelerator=Accel(), loss_type="simpo", simpo_gamma=gamma, beta=beta,
                              label_smoothing=0.0)
    theirs, _, _ = CPOTrainer.cpo_loss(trainer, avg[:2], avg[2:])
    ours = preference_loss("simpo", logp[:2], logp[2:], None, None, n[:2].double(), n[2:].double(), beta, gamma=gamma)
    assert (ours - theirs).abs().max() <= 1e-5
    assert (ours - theirs).abs().max() <= 1e-12
