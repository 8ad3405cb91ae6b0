"""Recurrent language models: Elman RNN, LSTM and GRU, the baselines before attention.

  Elman 1990 ("Finding structure in time"): h_t = tanh(W x_t + U h_{t-1} + b)
  LSTM, Hochreiter & Schmidhuber 1997 (forget gate: Gers et al. 2000):
      i, f, o = sigma(...), g = tanh(...);  c_t = f * c_{t-1} + i * g;  h_t = o * tanh(c_t)
  GRU, Cho et al. 2014:  z, r = sigma(...);  n = tanh(W x_t + r * (U h_{t-1}));  h_t = (1 - z) * n + z * h_{t-1}

     tokens (B, T)
        |
     wte -> dropout                      (B, T, n_embd)
        |
     cell x n_layer  (torch.nn.RNN / LSTM / GRU; dropout between layers)   state (n_layer, B, hidden)
        |
     dropout -> lm_head -> logits (B, T, vocab_size)     (head tied to wte when tie_embeddings)

Dropout only on the non-recurrent connections, as in Zaremba et al. 2014 ("Recurrent neural
network regularization"). The classic char-rnn (Karpathy 2015) is this model with an LSTM.

Training is truncated backpropagation through time over windows of ``block_size`` tokens, each
window starting from a zero state (the trainer draws random windows, as for the transformer, so
the two see the same data and are evaluated on the same windows). Generation has no context
limit: the state carries everything read so far (``axon.generate.state.RecurrentStateCache``).

The model returns logits; losses live in ``axon.objectives``.
"""

from __future__ import annotations

import torch
from torch import nn

from axon.model_configs.rnn import PRESETS, RNNConfig  # noqa: F401 (re-exported: the family's config and sizes)
from axon.models.base import Model

CELLS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}
GATES = {"rnn": 1, "lstm": 4, "gru": 3}  # weight matrices stacked per layer in torch's layout


# ----------------------------------------------------------------------------------------------
# Running a torch recurrent module on a state kept as a tuple of tensors (LSTM: (h, c), others: (h,)),
# each (n_layer * directions, B, hidden).


def to_hx(rnn: nn.RNNBase, state: tuple[torch.Tensor, ...] | None):
    """Our tuple -> the ``hx`` torch's module takes."""
    if state is None:
        return None
    return state if isinstance(rnn, nn.LSTM) else state[0]


def from_hx(hx) -> tuple[torch.Tensor, ...]:
    return tuple(hx) if isinstance(hx, tuple) else (hx,)


def masked_recurrence(rnn: nn.RNNBase, x: torch.Tensor, state: tuple[torch.Tensor, ...] | None,
                      mask: torch.Tensor | None) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """Run a unidirectional ``rnn`` (batch_first) over x (B, T, C) from ``state``; -> (outputs
    (B, T, H), new state).

    ``mask`` (B, T), True for real tokens: at a pad position a sequence's state is carried over
    unchanged (h_t = h_{t-1}, and c_t = c_{t-1} for an LSTM), so padding anywhere, e.g. the left
    padding of a batch of prompts, never changes what a sequence has read. Its output there is
    not meaningful. Columns up to the last one holding a pad run one step at a time; the rest (all
    of a window without padding) is one fused call.
    """
    B, T = x.shape[:2]
    # Columns t0..T-1 hold no pad: the trailing run of all-real columns.
    t0 = 0 if mask is None else T - int(mask.all(0).flip(0).long().cumprod(0).sum())
    if state is None and t0 > 0:
        zeros = x.new_zeros(rnn.num_layers, B, rnn.hidden_size)
        state = (zeros, zeros) if isinstance(rnn, nn.LSTM) else (zeros,)
    outs = []
    for t in range(t0):  # one step at a time, so that each step can be kept or dropped per sequence
        out, hx = rnn(x[:, t : t + 1], to_hx(rnn, state))
        keep = mask[:, t].view(1, B, 1)
        state = tuple(torch.where(keep, new, old) for new, old in zip(from_hx(hx), state))
        outs.append(out)
    if t0 < T:
        out, hx = rnn(x[:, t0:], to_hx(rnn, state))
        state = from_hx(hx)
        outs.append(out)
    return torch.cat(outs, dim=1) if len(outs) > 1 else outs[0], state


def recurrent_matmul_params(rnn: nn.RNNBase) -> int:
    """Weights that multiply an input or a state at each step (biases excluded)."""
    return sum(p.numel() for name, p in rnn.named_parameters() if name.startswith("weight_"))


def init_forget_bias(rnn: nn.RNNBase, value: float = 1.0) -> None:
    """An LSTM forgets little at first: forget-gate bias 1 (Gers et al. 2000; Jozefowicz et al. 2015).
    torch stacks the gates as (input, forget, cell, output) and adds bias_ih + bias_hh."""
    if not isinstance(rnn, nn.LSTM):
        return
    H = rnn.hidden_size
    with torch.no_grad():
        for name, p in rnn.named_parameters():
            if name.startswith("bias_ih"):
                p[H : 2 * H].fill_(value)
            elif name.startswith("bias_hh"):
                p[H : 2 * H].zero_()


# ----------------------------------------------------------------------------------------------


class RNNLM(Model):
    def __init__(self, cfg: RNNConfig):
        super().__init__()
        if cfg.vocab_size is None:
            raise ValueError("RNNConfig.vocab_size must be set before building the model")
        self.config = cfg
        self.wte = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.drop = nn.Dropout(cfg.dropout) if cfg.dropout > 0 else nn.Identity()
        self.rnn = CELLS[cfg.cell](cfg.n_embd, cfg.hidden, cfg.n_layer, batch_first=True,
                                   dropout=cfg.dropout if cfg.n_layer > 1 else 0.0)
        self.lm_head = nn.Linear(cfg.hidden, cfg.vocab_size, bias=True)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.wte.weight
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """torch's defaults for the cells (uniform in +-1/sqrt(hidden)), the LSTM forget-gate bias at
        1, embeddings and head uniform in +-0.1 (char-rnn initialises everything in +-0.08)."""
        self.rnn.reset_parameters()
        init_forget_bias(self.rnn)
        nn.init.uniform_(self.wte.weight, -0.1, 0.1)
        if not self.config.tie_embeddings:
            nn.init.uniform_(self.lm_head.weight, -0.1, 0.1)
        nn.init.zeros_(self.lm_head.bias)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def flops_per_token(self, seq_len: int | None = None) -> float:
        """Training FLOPs per token, for MFU: 6 per weight that multiplies (forward 2, backward 4),
        the cell matrices and the head; no term grows with the sequence (unlike attention)."""
        cfg = self.config
        return 6.0 * (recurrent_matmul_params(self.rnn) + cfg.vocab_size * cfg.hidden)

    def make_cache(self, batch_size: int, max_len: int | None = None):
        """A zero state for ``batch_size`` sequences (``max_len`` is not needed: the state has a
        fixed size whatever the length)."""
        from axon.generate.state import RecurrentStateCache

        cfg, p = self.config, self.lm_head.weight
        shape = (cfg.n_layer, batch_size, cfg.hidden)
        n_states = 2 if cfg.cell == "lstm" else 1  # LSTM: (h, c)
        return RecurrentStateCache([torch.zeros(shape, dtype=p.dtype, device=p.device) for _ in range(n_states)], batch_dim=1)

    def forward(self, idx: torch.Tensor, cache=None, pad_mask: torch.Tensor | None = None, last_only: bool = False) -> torch.Tensor:
        """idx (B, T) token ids -> logits (B, T, vocab_size), or (B, 1, vocab_size) with ``last_only``.

        Without ``cache`` every sequence starts from a zero state. With ``cache`` idx continues the
        cached sequences from their state (``pad_mask`` (B, T) marks left padding of a prompt
        batch; pads leave the state unchanged) and the cache keeps the new state.
        """
        replay, state = 0, None
        if cache is not None:
            idx_new, mask_new = idx, pad_mask
            idx, pad_mask, replay, state = cache.begin(idx, pad_mask)  # tokens pending after a crop come first
        elif pad_mask is not None and bool(pad_mask.all()):
            pad_mask = None
        x = self.drop(self.wte(idx))  # (B, T, C)
        out, state = masked_recurrence(self.rnn, x, state, pad_mask)  # (B, T, H)
        if cache is not None:
            cache.commit(state, idx_new, mask_new)
        out = out[:, replay:]
        if last_only:
            out = out[:, -1:]
        return self.lm_head(self.drop(out))  # (B, T, V)


__all__ = ["RNNConfig", "RNNLM", "PRESETS", "masked_recurrence"]
