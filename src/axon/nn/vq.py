"""A vector quantiser (van den Oord et al. 2017, "Neural Discrete Representation Learning"):
each encoder vector is replaced by its nearest entry of a learnt codebook, so an image becomes a
grid of integer codes -- its tokens.

    z (N, D) encoder outputs             codebook e (K, D)
        |                                     |
        +---- d_nk = |z_n|^2 - 2 z_n.e_k + |e_k|^2  (N, K) squared distances
        |
    codes_n = argmin_k d_nk                (N,) int64
    z_q = e[codes]                          (N, D)
    out = z + sg(z_q - z)                   (N, D)  straight-through: the forward is z_q,
                                                    the gradient of out flows to z unchanged

Losses (sg = stop gradient; beta = 0.25, the paper's):

    codebook update "gradient":  loss = |sg(z) - z_q|^2 + beta |z - sg(z_q)|^2
                                        (codebook term)   (commitment term)
    codebook update "ema":       loss = beta |z - sg(z_q)|^2, and the codebook is an exponential
                                 moving average of the vectors assigned to each code (the paper's
                                 appendix A.1; Razavi et al. 2019), with Laplace smoothing:

        N_k <- decay N_k + (1 - decay) n_k                      n_k: vectors of this batch in code k
        m_k <- decay m_k + (1 - decay) sum_{codes_n = k} z_n
        N'_k = (N_k + eps) / (sum_j N_j + K eps) * sum_j N_j     (no code's count is ever 0)
        e_k  = m_k / N'_k

Dead-code restarts: a code no vector has picked for ``dead_after`` training steps is reset to an
encoder output of the current batch -- distinct rows drawn by a generator seeded with the number
of restarts so far (a buffer), so the same batch and state give the same restart, on resume too --
and its count starts again. The EMA
statistics and the steps since each code was last used are buffers, so checkpoints carry them and
resume is exact. Nothing is updated in eval mode.

Several processes (torch.distributed initialised, world size > 1; DDP or FSDP): each process
quantises its own slice of the global batch, and the buffers above must still agree across them.
In training mode, and only when EMA updates or restarts are on, the quantiser therefore
all-reduces (sums, over the default process group) the per-batch statistics before using them:

    n_k and sum_{codes_n = k} z_n     one all-reduce of (K, D + 1) per step (EMA only), so every
                                      process applies the EMA update of the whole global batch
    used codes (bincount, K)          one all-reduce per step (restarts only), so the steps-unused
                                      counters, and so the dead codes, are global

and a restart draws its rows from the global batch: the per-process batch sizes are all-gathered,
every process draws the same rows of the rank-ordered concatenation (same generator and seed), each
fills in the rows it holds (zeros elsewhere) and one all-reduce of (M, D) for M dead codes sums
them. Adding zeros is exact, so every process resets the same codes to bit-identical vectors, the
very ones one process fed the concatenated batch would pick -- at the cost of M rows, not the whole
batch. The EMA statistics equal one process's on the concatenated batch up to float summation order
(~1e-7 relative in float32). One process, or a world of one, runs no collective and computes what it
always did; eval mode never communicates. The ``gradient`` rule's codebook needs nothing extra
(DDP averages its gradient like any other); its restarts go through the global path above.

Usage figures (:func:`code_usage`): the number of codes used, and the perplexity of the code
distribution, exp(-sum_k p_k log p_k): K when every code is used equally, 1 when one code is.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

CODEBOOK_UPDATES = ("gradient", "ema")


def _world_size() -> int:
    """Processes in the default group: 1 unless torch.distributed is initialised with several."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def nearest_codes(z: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """The index of the nearest code (squared Euclidean distance) of each row: (N, D), (K, D) -> (N,) int64."""
    d = (z * z).sum(1, keepdim=True) - 2 * z @ codebook.t() + (codebook * codebook).sum(1)  # (N, K)
    return d.argmin(1)


def code_usage(codes: torch.Tensor, codebook_size: int) -> dict[str, float]:
    """``codes_used`` (distinct codes among ``codes``) and ``code_perplexity`` (exp of the entropy of their frequencies)."""
    counts = torch.bincount(codes.reshape(-1), minlength=codebook_size).double()  # (K,)
    p = counts / counts.sum()
    entropy = -(p[p > 0] * p[p > 0].log()).sum()
    return {"codes_used": int((counts > 0).sum()), "code_perplexity": float(entropy.exp())}


class VectorQuantizer(nn.Module):
    def __init__(self, codebook_size: int, dim: int, beta: float = 0.25, update: str = "ema", decay: float = 0.99,
                 eps: float = 1e-5, dead_after: int = 0):
        super().__init__()
        if update not in CODEBOOK_UPDATES:
            raise ValueError(f"update must be one of {CODEBOOK_UPDATES}, got {update!r}")
        self.codebook_size, self.dim, self.beta = codebook_size, dim, beta
        self.update, self.decay, self.eps, self.dead_after = update, decay, eps, dead_after
        init = torch.empty(codebook_size, dim).uniform_(-1.0 / codebook_size, 1.0 / codebook_size)  # the paper's code
        if update == "ema":
            self.register_buffer("codebook", init)  # (K, D), set from the averages below, never by the optimizer
            self.register_buffer("cluster_size", torch.zeros(codebook_size))  # N_k
            self.register_buffer("embed_sum", init.clone())  # m_k
        else:
            self.codebook = nn.Parameter(init)  # (K, D)
            self.codebook._no_weight_decay = True
        self.register_buffer("unused_steps", torch.zeros(codebook_size, dtype=torch.long))  # training steps since last picked
        self.register_buffer("restarts", torch.zeros((), dtype=torch.long))  # restart events so far (seeds the next)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(straight-through z_q (N, D), VQ loss (scalar), codes (N,) int64) for encoder outputs z (N, D)."""
        with torch.no_grad():
            codes = nearest_codes(z.detach().float(), self.codebook.float())  # (N,)
        if self.training:
            with torch.no_grad():
                if self.update == "ema":
                    self._ema_update(z.detach(), codes)
                if self.dead_after > 0:
                    self._restart_dead(z.detach(), codes)
        z_q = self.codebook[codes].to(z.dtype)  # (N, D); EMA: the codebook as updated by this batch
        commitment = F.mse_loss(z, z_q.detach())
        if self.update == "ema":
            loss = self.beta * commitment
        else:
            loss = F.mse_loss(z_q, z.detach()) + self.beta * commitment
        return z + (z_q - z).detach(), loss, codes

    @torch.no_grad()
    def _ema_update(self, z: torch.Tensor, codes: torch.Tensor) -> None:
        distributed = _world_size() > 1
        dtype = self.embed_sum.dtype if distributed else z.dtype  # several processes: sum in the buffers' dtype
        onehot = F.one_hot(codes, self.codebook_size).to(dtype)  # (N, K)
        counts, sums = onehot.sum(0), onehot.t() @ z.to(dtype)  # n_k (K,), sum of the z_n in code k (K, D)
        if distributed:  # the whole global batch's statistics, in one all-reduce
            both = torch.cat([counts[:, None], sums], 1)  # (K, 1 + D)
            dist.all_reduce(both)
            counts, sums = both[:, 0], both[:, 1:]
        self.cluster_size.mul_(self.decay).add_(counts, alpha=1 - self.decay)  # N_k
        self.embed_sum.mul_(self.decay).add_(sums, alpha=1 - self.decay)  # m_k (K, D)
        n = self.cluster_size.sum()
        smoothed = (self.cluster_size + self.eps) / (n + self.codebook_size * self.eps) * n  # N'_k, Laplace
        self.codebook.copy_(self.embed_sum / smoothed[:, None])

    @torch.no_grad()
    def _restart_dead(self, z: torch.Tensor, codes: torch.Tensor) -> None:
        distributed = _world_size() > 1
        counts = torch.bincount(codes, minlength=self.codebook_size)  # (K,)
        if distributed:
            dist.all_reduce(counts)  # codes used anywhere in the global batch
        used = counts > 0  # (K,)
        self.unused_steps.add_(1).masked_fill_(used, 0)
        dead = (self.unused_steps >= self.dead_after).nonzero().squeeze(1)  # (M,), the same on every process
        if len(dead) == 0:
            return
        # Random rows of this batch, from a generator seeded by the count of restarts so far (a buffer):
        # the same batch and state restart the same codes to the same vectors, on resume too.
        if distributed:
            new = self._global_rows(z, len(dead))
        else:
            g = torch.Generator().manual_seed(int(self.restarts))
            rows = torch.randperm(len(z), generator=g)[torch.arange(len(dead)) % len(z)].to(z.device)  # (M,)
            new = z[rows].to(self.codebook.dtype)  # (M, D)
        self.restarts += 1
        self.codebook.data[dead] = new
        if self.update == "ema":
            self.embed_sum[dead] = new
            self.cluster_size[dead] = 1.0
        self.unused_steps[dead] = 0

    @torch.no_grad()
    def _global_rows(self, z: torch.Tensor, m: int) -> torch.Tensor:
        """(m, D): the rows one process would draw from the rank-ordered concatenation of every
        process's z, identical on every process. Each draws the same row numbers, fills in the
        ones it holds (zeros elsewhere), and an all-reduce sums them: exact, as adding 0 is."""
        sizes = [torch.zeros(1, dtype=torch.long, device=z.device) for _ in range(_world_size())]
        dist.all_gather(sizes, torch.tensor([len(z)], device=z.device))
        sizes = [int(n) for n in sizes]
        total, start = sum(sizes), sum(sizes[: dist.get_rank()])
        g = torch.Generator().manual_seed(int(self.restarts))
        rows = torch.randperm(total, generator=g)[torch.arange(m) % total].to(z.device)  # (m,) global row numbers
        mine = (rows >= start) & (rows < start + len(z))  # (m,)
        new = torch.zeros(m, z.shape[1], dtype=self.codebook.dtype, device=z.device)
        new[mine] = z[rows[mine] - start].to(self.codebook.dtype)
        dist.all_reduce(new)
        return new


__all__ = ["CODEBOOK_UPDATES", "VectorQuantizer", "code_usage", "nearest_codes"]
