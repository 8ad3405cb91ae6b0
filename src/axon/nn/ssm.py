"""The selective scan of Mamba (Gu & Dao 2023, sec. 3.2, Algorithm 2), in plain PyTorch.

A diagonal state-space model with input-dependent ("selective") step size dt and matrices B, C,
one independent SSM per channel d of the expanded width D (``d_inner``), each with N states:

    A (D, N) < 0 (time-invariant);  per step t:  dt_t (B, D) > 0,  B_t, C_t (B, N),  x_t (B, D)

    zero-order hold (sec. 2, eq. 4; Mamba uses the simpler Euler rule for B, sec. 3.5.2 / Alg. 2):
        dA_t = exp(dt_t A)           (B, D, N), each in (0, 1]
        dB_t x_t = dt_t B_t x_t      (B, D, N)
    recurrence (eq. 2a, 2b):
        h_t = dA_t * h_{t-1} + dB_t x_t      (B, D, N)
        y_t = sum_n C_t[n] h_t[:, :, n]      (B, D)     (the D-skip, y += D x, is the caller's)

Three ways to run it, all giving the same numbers (tests/models/test_mamba.py):

* ``scan_sequential``: the recurrence one step at a time, the reference (and what Hugging Face's
  slow path does). On a CPU it is also the fastest: each step touches (B, D, N) numbers that stay
  in cache, and T Python steps cost little next to the memory traffic (fwd + bwd at B 8, T 256,
  D 256, N 16, one thread: ~0.3 s, the chunked scan ~0.75 s at L = 8..32;
  ``benchmarks/decode_vs_context.py --scan-timing``).
* ``scan_chunked``: a two-level blocked scan. The T steps are cut into K chunks of L
  (T padded with identity steps dA = 1, dB x = 0):

      1. inside every chunk at once, from a zero state:  h_loc[k, i] = dA[k, i] h_loc[k, i-1] + u[k, i]
         (L Python steps on (B, K, D, N): all chunks advance together)
      2. the decay from each chunk's start, by a cumulative sum of log dA (a segment sum):
         P[k, i] = exp(sum_{j<=i} dt[k, j] A)      in (0, 1]: the exponent is never positive
         (A is time-invariant, so the sum is (sum_j dt[k, j]) A: a cumsum over (B, K, L, D) only)
      3. across chunks (K Python steps on (B, D, N)):  h_in[k+1] = P[k, L-1] h_in[k] + h_loc[k, L-1]
      4. every state at once:  h[k, i] = h_loc[k, i] + P[k, i] h_in[k]

  L + K Python steps instead of T (L = 16 for T = 256: 32 instead of 256), about twice the
  arithmetic of the recurrence (steps 2 and 4), and nothing but products of numbers in (0, 1]:
  it cannot overflow. It pays where a step costs a kernel launch (GPUs), not on a CPU. Mamba-2's
  SSD (Dao & Gu 2024) instead forms the (L, L) matrix exp(segsum) per chunk, which is a matmul
  only because Mamba-2's A is one scalar per head; with Mamba-1's A per (channel, state) that
  matrix is (B, D, N, L, L), L times the memory and work of the states themselves.
* ``selective_step``: one token, the closed form of one recurrence step (generation).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def scan_sequential(x: torch.Tensor, dt: torch.Tensor, A: torch.Tensor, Bm: torch.Tensor, Cm: torch.Tensor,
                    h0: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """x, dt (B, T, D); A (D, N); Bm, Cm (B, T, N); h0 (B, D, N) or None (zeros)
    -> (y (B, T, D), h_T (B, D, N)). The recurrence, one step at a time.

    Every step works on (B, D, N) tensors only; nothing of size (B, T, D, N) is formed except
    what autograd keeps, so on a CPU the data of a step stays in cache (this is why it beats
    the chunked scan there; benchmarks/decode_vs_context.py --scan-timing)."""
    dtx = dt * x  # (B, T, D)
    h = x.new_zeros(x.size(0), x.size(2), A.size(1)) if h0 is None else h0
    ys = []
    for dt_t, dtx_t, B_t, C_t in zip(dt.unbind(1), dtx.unbind(1), Bm.unbind(1), Cm.unbind(1)):  # unbind: one backward node
        h = torch.addcmul(torch.exp(dt_t.unsqueeze(-1) * A) * h, dtx_t.unsqueeze(-1), B_t.unsqueeze(1))  # dA h + dt B x
        ys.append(torch.bmm(h, C_t.unsqueeze(-1)).squeeze(-1))  # y_t = C_t . h_t, (B, D)
    return torch.stack(ys, dim=1), h


def scan_chunked(x: torch.Tensor, dt: torch.Tensor, A: torch.Tensor, Bm: torch.Tensor, Cm: torch.Tensor,
                 h0: torch.Tensor | None = None, chunk: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """Same contract as :func:`scan_sequential`; the blocked scan of the module docstring."""
    Bsz, T, D = x.shape
    N = A.size(1)
    L = max(1, min(chunk, T))
    K = -(-T // L)
    if K * L != T:  # identity steps at the end: dt = 0, so dA = exp(0) = 1 and dB x = 0
        x, dt, Bm, Cm = (F.pad(t, (0, 0, 0, K * L - T)) for t in (x, dt, Bm, Cm))
    dt = dt.view(Bsz, K, L, D)
    dtx = (dt * x.view(Bsz, K, L, D)).unbind(2)  # L x (B, K, D)
    Bk, Ck = Bm.view(Bsz, K, L, N).unbind(2), Cm.view(Bsz, K, L, N)  # L x (B, K, N); (B, K, L, N)

    # 1. every chunk from a zero state, all chunks together
    local = []
    h = None
    for i, dt_i in enumerate(dt.unbind(2)):
        u = dtx[i].unsqueeze(-1) * Bk[i].unsqueeze(2)  # dt B x, (B, K, D, N)
        h = u if h is None else torch.addcmul(u, torch.exp(dt_i.unsqueeze(-1) * A), h)  # dA h + dt B x
        local.append(h)
    h_loc = torch.stack(local, dim=2)  # (B, K, L, D, N)

    # 2. decay from each chunk's start: the segment sums of log dA = dt A; A does not depend on t,
    #    so sum_{j<=i} dt_j A = (sum_{j<=i} dt_j) A: a cumulative sum over (B, K, L, D) only
    P = (dt.cumsum(dim=2).unsqueeze(-1) * A).exp()  # (B, K, L, D, N), in (0, 1]

    # 3. the state entering each chunk
    h = x.new_zeros(Bsz, D, N) if h0 is None else h0
    h_in = []
    for P_k, loc_k in zip(P[:, :, -1].unbind(1), h_loc[:, :, -1].unbind(1)):
        h_in.append(h)
        h = P_k * h + loc_k  # (B, D, N)
    h_in = torch.stack(h_in, dim=1)  # (B, K, D, N)

    # 4. every state, then y_t = C_t . h_t
    states = torch.addcmul(h_loc, P, h_in.unsqueeze(2))  # (B, K, L, D, N)
    y = torch.einsum("bkldn,bkln->bkld", states, Ck).reshape(Bsz, K * L, D)[:, :T]
    return y, h  # the padded steps are identities, so h is the state after step T


def selective_step(x: torch.Tensor, dt: torch.Tensor, A: torch.Tensor, Bm: torch.Tensor, Cm: torch.Tensor,
                   h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One step: x, dt (B, D); Bm, Cm (B, N); h (B, D, N) -> (y (B, D), new h (B, D, N))."""
    dA = torch.exp(dt.unsqueeze(-1) * A)  # (B, D, N)
    h = dA * h + (dt * x).unsqueeze(-1) * Bm.unsqueeze(1)
    return torch.einsum("bdn,bn->bd", h, Cm), h


SCANS = {"chunked": scan_chunked, "sequential": scan_sequential}

__all__ = ["SCANS", "scan_chunked", "scan_sequential", "selective_step"]
