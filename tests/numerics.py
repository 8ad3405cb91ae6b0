"""How close two floating-point results must be, and why: the one place every numerical test takes its bound from.

A comparison of floats in this suite is one of three kinds, and says which:

1. **The same computation** -- a resumed run against the uninterrupted run on the same number of
   processes, a causal prefix against the same prefix computed with more tokens after it where the
   code runs the same kernels on the same shapes, weights folded in bit for bit. CPU kernels are
   deterministic for a given shape, thread count and kernel path, so the claim is equality:
   ``torch.equal`` / ``==``. No tolerance.

2. **The same mathematics in another order** -- two processes against one (an all-reduce splits a
   sum), a padded batch against a shorter one, a cache against recomputation, a fused kernel
   (SDPA, a compiled graph) against a reference, another library's implementation. Each side is
   within rounding of the exact value, so the two are within twice that of each other. How far
   depends on the CPU: the same source sums in other orders under AVX2, AVX-512 or AMX (oneDNN and
   MKL pick blockings per instruction set), which is why a bound fitted to one machine fails on
   another. The bound here is derived instead:

       |a - b| <= 2 * lam * sqrt(n) * u * depth * scale                     (order_tol)

   * u = eps / 2, the unit roundoff of the dtype (float32: 6.0e-8);
   * sqrt(n) * u: the probabilistic error bound of a length-n sum or inner product (Higham & Mary,
     "A new approach to probabilistic rounding error analysis", SIAM J. Sci. Comput. 2019): the
     error exceeds lam * sqrt(n) * u * sum|x_i| with probability at most 2 exp(-lam^2 / 2); lam = 6
     makes that 3e-8 per compared element. n is the longest reduction on the path (the hidden or
     MLP width, or the number of keys attended over);
   * depth: how many such reductions the error passes through in sequence (layers, or steps of a
     recurrence); errors add across them;
   * scale: the magnitude of the compared values (max |expected|, at least 1), standing in for
     sum|x_i| of the last reduction.

   For the ``tiny`` decoder (2 layers, width 64, MLP 256) that is ~2e-5 on logits of magnitude 1:
   a thousand times below what a real fault (a leaked padding token, an off-by-one cache position,
   a wrong slice of a batch) moves a logit by.

3. **An fp64 oracle** -- where a float32 bound would be too loose to mean anything (a whole training
   trajectory: Adam's normalised steps amplify rounding over steps), the test computes in float64
   (``--train.dtype=fp64``) and bounds the difference by ``order_tol(torch.float64, ...)``, which is
   ~1e-12: far tighter than any float32 test could be, on every CPU.

Tests of kinds 2 and 3 carry the ``numerics`` marker: ``.ci/run`` runs them a second time under
another kernel path of the same machine (see CONTRIBUTING in the docs).
"""

from __future__ import annotations

import math

import torch

LAM = 6.0  # P(|error| > LAM sqrt(n) u sum|x|) <= 2 exp(-LAM^2 / 2) = 3e-8


def unit_roundoff(dtype: torch.dtype) -> float:
    return torch.finfo(dtype).eps / 2


def order_tol(dtype: torch.dtype, n: int, depth: int = 1, scale: float = 1.0) -> float:
    """The largest |a - b| two evaluations of the same expression, summed in different orders, may
    show: 2 * LAM * sqrt(n) * u * depth * scale (see the module docstring)."""
    assert n >= 1 and depth >= 1 and scale > 0
    return 2 * LAM * math.sqrt(n) * unit_roundoff(dtype) * depth * scale


def assert_close_orders(actual: torch.Tensor, expected: torch.Tensor, *, n: int, depth: int = 1, msg: str | None = None) -> None:
    """``actual`` equals ``expected`` up to summation order: |actual - expected| <= order_tol(dtype,
    n, depth, max(1, max|expected|)) elementwise (shapes and dtypes must match)."""
    assert actual.shape == expected.shape, f"shapes differ: {tuple(actual.shape)} vs {tuple(expected.shape)}"
    assert actual.dtype == expected.dtype, f"dtypes differ: {actual.dtype} vs {expected.dtype}"
    scale = max(1.0, expected.detach().abs().max().item()) if expected.numel() else 1.0
    tol = order_tol(expected.dtype, n, depth, scale)
    worst = (actual.detach() - expected.detach()).abs().max().item() if expected.numel() else 0.0
    assert worst <= tol, (f"{msg + ': ' if msg else ''}largest difference {worst:.3e} exceeds the summation-order bound "
                          f"{tol:.3e} ({expected.dtype}, n={n}, depth={depth}, scale={scale:.3g})")
