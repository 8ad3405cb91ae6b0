"""Direct preference optimisation and its family: a policy trained on comparisons "y_w is better
than y_l" of a prompt x with no reward model and no sampling (Rafailov et al. 2023, "Direct
Preference Optimization: Your Language Model is Secretly a Reward Model").

Every loss here is a function of four sequence log-probabilities per pair, each the sum over the
response's tokens (the end marker included) of log pi(y_t | x, y_<t):

    pi_w = log pi(y_w | x)      pi_l = log pi(y_l | x)        the policy being trained
    ref_w = log pi_ref(y_w | x) ref_l = log pi_ref(y_l | x)   the frozen starting model (no gradient)

    implicit rewards   r_w = beta * (pi_w - ref_w),   r_l = beta * (pi_l - ref_l)
    h = (pi_w - ref_w) - (pi_l - ref_l)               so the margin r_w - r_l = beta * h

    dpo    -log sigmoid(beta * h)                                     Rafailov et al. 2023, eq. 7
    cdpo   -(1 - eps) log sigmoid(beta * h) - eps log sigmoid(-beta * h)
                                          conservative DPO: a label is wrong with probability eps
                                          (Mitchell 2023, "A note on DPO with noisy preferences")
    robust (-(1 - eps) log sigmoid(beta * h) + eps log sigmoid(-beta * h)) / (1 - 2 eps)
                                          rDPO (Chowdhury et al. 2024): unbiased under flip rate eps
    ipo    (h' - 1 / (2 beta))^2,  h' = h with each log-ratio divided by its response's length
                                          Azar et al. 2023, eq. 17 (beta is their tau). The
                                          per-token form is TRL's, agreed with the IPO authors: a
                                          squared loss on sums would grow with the length
    simpo  -log sigmoid(beta * (pi_w / |y_w| - pi_l / |y_l|) - gamma)
                                          Meng et al. 2024: no reference; length-normalised
                                          log-probabilities, a target margin gamma
    rpo    dpo + alpha * NLL(y_w),  NLL = -sum over the batch's chosen tokens of log pi / their count
                                          the SFT-regularised form (Pang et al. 2024,
                                          "Iterative Reasoning Preference Optimization"); TRL's
                                          loss_type=["sigmoid", "sft"] with weights [1, alpha]

Each function returns the per-pair loss (B,); the objective averages it over the pairs. The
reported figures are the implicit rewards, their margin, the accuracy (margin > 0) and the
policy's log-probabilities: chosen rewards often fall while the margin grows (both
log-probabilities fall, the rejected one faster), so both are logged.

``DPO`` is the objective of the ``dpo`` task (``axon.tasks.dpo``) on batches of
``axon.data.preferences.ComparisonPairs``: it runs the policy on the chosen and rejected texts of
every pair in one forward, and the reference (held here, never checkpointed) on the same under
no_grad. An Axon decoder runs its LM head and the log-softmax over the vocabulary at the answers'
positions only (``model_sequence_logprobs``): prompts and padding are often half of a DPO batch,
and the head is its largest matmul. The losses are checked against hand computations in fp64
and against TRL's own code (tests/objectives/test_dpo.py); the speed of a step against TRL's is
benchmarks/trl_dpo.py's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from axon.models.base import unwrap
from axon.objectives.causal_lm import IGNORE_INDEX
from axon.objectives.ppo import token_logprobs

LOSSES = ("dpo", "cdpo", "robust", "ipo", "simpo", "rpo")
REFERENCE_FREE = ("simpo",)


def sequence_logprobs(logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum of log p over the response tokens (N,), their count (N,)) from logits (N, T, V) and
    targets (N, T) that hold IGNORE_INDEX off the response (axon.data.chat's y)."""
    mask = targets != IGNORE_INDEX
    logp = token_logprobs(logits, targets.clamp_min(0))  # (N, T); an ignored position reads token 0 ...
    return (logp * mask).sum(-1), mask.sum(-1)  # ... and counts nothing


def _head_apart(model: nn.Module) -> bool:
    """Whether ``model(x)`` may be run as ``model.lm_head(model.hidden_states(x))`` in two calls: an
    Axon decoder called directly, with the decoder's own forward and no hooks on it. A compiled or
    DDP-wrapped model is another class, and FSDP2's root gathers its tensors in a forward hook:
    those run whole."""
    from axon.models.decoder import Decoder

    if not isinstance(model, Decoder) or type(model).forward is not Decoder.forward or model.lm_head is None:
        return False
    if model._forward_hooks or model._forward_pre_hooks:
        return False
    if not torch.distributed.is_available():  # a torch built without it has no FSDP either
        return True
    from torch.distributed.fsdp import FSDPModule

    return not isinstance(model, FSDPModule)


def model_sequence_logprobs(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`sequence_logprobs` of ``model(x)`` for inputs x (N, T) and targets y (N, T). The LM head
    (the largest matmul) and the log-softmax over the vocabulary run only at the response positions
    when the model allows it (``_head_apart``): a DPO batch's prompts and padding are often half its
    positions. The per-token log-probabilities are put back in place and summed along each row as
    ``sequence_logprobs`` sums them."""
    if not _head_apart(model):
        return sequence_logprobs(model(x), y)
    mask = y != IGNORE_INDEX
    logits = model.lm_head(model.hidden_states(x)[mask])  # (M, V): the response positions only
    logp = token_logprobs(logits.unsqueeze(0), y[mask].unsqueeze(0)).squeeze(0)
    return logp.new_zeros(mask.shape).masked_scatter(mask, logp).sum(-1), mask.sum(-1)


def dpo_loss(pi_w, pi_l, ref_w, ref_l, beta: float) -> torch.Tensor:
    return -F.logsigmoid(beta * ((pi_w - ref_w) - (pi_l - ref_l)))


def cdpo_loss(pi_w, pi_l, ref_w, ref_l, beta: float, label_smoothing: float) -> torch.Tensor:
    z = beta * ((pi_w - ref_w) - (pi_l - ref_l))
    return -(1 - label_smoothing) * F.logsigmoid(z) - label_smoothing * F.logsigmoid(-z)


def robust_dpo_loss(pi_w, pi_l, ref_w, ref_l, beta: float, label_smoothing: float) -> torch.Tensor:
    z = beta * ((pi_w - ref_w) - (pi_l - ref_l))
    return (-(1 - label_smoothing) * F.logsigmoid(z) + label_smoothing * F.logsigmoid(-z)) / (1 - 2 * label_smoothing)


def ipo_loss(pi_w, pi_l, ref_w, ref_l, beta: float, len_w, len_l) -> torch.Tensor:
    """IPO on per-token log-ratios (module docstring); len_w, len_l: response lengths (B,)."""
    h = (pi_w - ref_w) / len_w.clamp_min(1) - (pi_l - ref_l) / len_l.clamp_min(1)
    return (h - 1 / (2 * beta)) ** 2


def simpo_loss(pi_w, pi_l, beta: float, gamma: float, len_w, len_l) -> torch.Tensor:
    """SimPO: no reference; log-probabilities averaged over each response's tokens."""
    return -F.logsigmoid(beta * (pi_w / len_w.clamp_min(1) - pi_l / len_l.clamp_min(1)) - gamma)


def rpo_loss(pi_w, pi_l, ref_w, ref_l, beta: float, alpha: float, len_w) -> torch.Tensor:
    """DPO + alpha * the chosen responses' NLL per token over the batch (a scalar added to each pair)."""
    nll = -pi_w.sum() / len_w.sum().clamp_min(1)
    return dpo_loss(pi_w, pi_l, ref_w, ref_l, beta) + alpha * nll


def preference_loss(kind: str, pi_w, pi_l, ref_w, ref_l, len_w, len_l, beta: float = 0.1,
                    label_smoothing: float = 0.0, gamma: float = 0.5, alpha: float = 1.0) -> torch.Tensor:
    """The per-pair loss of ``kind`` (one of LOSSES); ref_w / ref_l may be None for simpo."""
    if kind == "dpo":
        return dpo_loss(pi_w, pi_l, ref_w, ref_l, beta)
    if kind == "cdpo":
        return cdpo_loss(pi_w, pi_l, ref_w, ref_l, beta, label_smoothing)
    if kind == "robust":
        return robust_dpo_loss(pi_w, pi_l, ref_w, ref_l, beta, label_smoothing)
    if kind == "ipo":
        return ipo_loss(pi_w, pi_l, ref_w, ref_l, beta, len_w, len_l)
    if kind == "simpo":
        return simpo_loss(pi_w, pi_l, beta, gamma, len_w, len_l)
    if kind == "rpo":
        return rpo_loss(pi_w, pi_l, ref_w, ref_l, beta, alpha, len_w)
    raise ValueError(f"unknown preference loss {kind!r}; choose one of: {', '.join(LOSSES)}")


#: The figures the objective reports, each a mean over pairs.
FIGURES = ("chosen_reward", "rejected_reward", "margin", "chosen_logp", "rejected_logp", "accuracy")


class DPO:
    """The preference objective on batches (x (B, 2, T), y (B, 2, T)): row b holds pair b's chosen
    text at [b, 0] and its rejected one at [b, 1], y = IGNORE_INDEX off the response.

    ``reference``: the frozen starting model (None for simpo). Parts: ``ce`` = the mean loss,
    ``count`` = pairs, ``correct`` = pairs with margin > 0 (evaluation's ``accuracy``), and the
    sums over the batch's pairs of FIGURES (``sum_<figure>``). Rewards are beta * (policy -
    reference) log-probabilities; for simpo (no reference) beta * the per-token log-probability.
    ``metrics()`` gives the mean of each figure over the training batches since the last call.
    """

    def __init__(self, kind: str = "dpo", reference: nn.Module | None = None, beta: float = 0.1,
                 label_smoothing: float = 0.0, gamma: float = 0.5, alpha: float = 1.0):
        if kind not in LOSSES:
            raise ValueError(f"unknown preference loss {kind!r}; choose one of: {', '.join(LOSSES)}")
        if reference is None and kind not in REFERENCE_FREE:
            raise ValueError(f"the {kind} loss needs a reference model")
        self.kind, self.beta, self.label_smoothing, self.gamma, self.alpha = kind, beta, label_smoothing, gamma, alpha
        self.reference = None if kind in REFERENCE_FREE else reference
        self._sums: dict[str, float] = {}
        self._pairs = 0

    def logprobs(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Sequence log-probabilities (B, 2) and response lengths (B, 2) of the batch under ``model``."""
        B, _, T = x.shape
        logp, n = model_sequence_logprobs(model, x.reshape(2 * B, T), y.reshape(2 * B, T))
        return logp.view(B, 2), n.view(B, 2)

    def pair_losses(self, logp: torch.Tensor, n: torch.Tensor,
                    ref: torch.Tensor | None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The per-pair losses (B,) and FIGURES (each (B,), detached) of the policy's sequence
        log-probabilities ``logp`` (B, 2) with response lengths ``n`` (B, 2), chosen at [:, 0], and
        the reference's ``ref`` (B, 2) (None for simpo). Online DPO (``axon.tasks.online_dpo``)
        calls it with reference log-probabilities it measured itself."""
        pi_w, pi_l, len_w, len_l = logp[:, 0], logp[:, 1], n[:, 0].to(logp.dtype), n[:, 1].to(logp.dtype)
        if self.reference is None:
            ref_w = ref_l = None
            r_w, r_l = self.beta * pi_w / len_w.clamp_min(1), self.beta * pi_l / len_l.clamp_min(1)
        else:
            ref = ref.to(logp.dtype)
            ref_w, ref_l = ref[:, 0], ref[:, 1]
            r_w, r_l = self.beta * (pi_w - ref_w), self.beta * (pi_l - ref_l)
        losses = preference_loss(self.kind, pi_w, pi_l, ref_w, ref_l, len_w, len_l, self.beta,
                                 self.label_smoothing, self.gamma, self.alpha)
        r_w, r_l = r_w.detach(), r_l.detach()
        margin = r_w - r_l
        figures = {"chosen_reward": r_w, "rejected_reward": r_l, "margin": margin, "chosen_logp": pi_w.detach(),
                   "rejected_logp": pi_l.detach(), "accuracy": (margin > 0).to(margin.dtype)}
        return losses, figures

    def __call__(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, dict]:
        x, y = batch
        logp, n = self.logprobs(model, x, y)
        ref = None
        if self.reference is not None:
            with torch.no_grad():
                ref = self.logprobs(self.reference, x, y)[0]
        losses, figures = self.pair_losses(logp, n, ref)
        loss = losses.mean()
        margin = figures["margin"]
        parts = {"ce": loss.detach(), "count": x.size(0), "correct": (margin > 0).sum()}
        parts.update({f"sum_{k}": v.sum() for k, v in figures.items()})
        if torch.is_grad_enabled() and model.training:  # a training batch: kept for metrics()
            for k, v in figures.items():
                self._sums[k] = self._sums.get(k, 0.0) + float(v.sum())
            self._pairs += x.size(0)
        for name, value in unwrap(model).aux_losses().items():  # an MoE body's balance and z-losses
            loss = loss + value
            parts[name] = value
        return loss, parts

    def metrics(self) -> dict[str, float]:
        """Means over the training pairs since the last call (train_chosen_reward, ...), then reset."""
        out = {f"train_{k}": v / self._pairs for k, v in self._sums.items()} if self._pairs else {}
        self._sums, self._pairs = {}, 0
        return out
