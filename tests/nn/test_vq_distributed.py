"""The vector quantiser on two processes (torch.multiprocessing, gloo on CPU): each rank feeds its
slice of a planted global batch in train mode, and the codebook, the EMA statistics, the
steps-unused counters and the restart count must come out identical on both ranks and equal to one
process fed the whole batch -- through EMA updates and a dead-code restart.

The two slices are drawn from different clusters (and are of different sizes, 13 and 11 rows), so a
quantiser that updates from its own slice only ends with two different codebooks, and with a
different set of dead codes on each rank.
"""

import datetime
import sys

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from axon.nn.vq import VectorQuantizer

pytestmark = pytest.mark.skipif(not dist.is_available() or not sys.platform.startswith("linux"),
                                reason="needs torch.distributed with gloo (Linux)")

K, D, STEPS, DEAD_AFTER = 8, 3, 5, 2
SPLIT = (13, 11)  # rows of rank 0 and rank 1 in each global batch
CENTRES = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [-1.0, 0.0, 0.0]])


def global_batch(step: int) -> torch.Tensor:
    """(24, D): rank 0's rows near the first two centres, rank 1's near the other two."""
    g = torch.Generator().manual_seed(100 + step)
    first = CENTRES[torch.arange(SPLIT[0]) % 2] + 0.1 * torch.randn(SPLIT[0], D, generator=g)
    second = CENTRES[2 + torch.arange(SPLIT[1]) % 2] + 0.1 * torch.randn(SPLIT[1], D, generator=g)
    return torch.cat([first, second])


def quantizer(update: str) -> VectorQuantizer:
    """The same start everywhere: codes 0-3 at the centres (so they stay in use), codes 4-7 far
    away (so they die after DEAD_AFTER steps and are restarted from the batch)."""
    vq = VectorQuantizer(K, D, update=update, decay=0.9, dead_after=DEAD_AFTER)
    book = torch.cat([CENTRES + 0.05, torch.full((K - 4, D), 5.0) + torch.arange(K - 4.0)[:, None]])
    with torch.no_grad():
        vq.codebook.copy_(book)
        if update == "ema":
            vq.embed_sum.copy_(book)
            vq.cluster_size.fill_(1.0)
    return vq.train()


def run(vq: VectorQuantizer, rows: slice) -> dict[str, torch.Tensor]:
    for step in range(STEPS):
        vq(global_batch(step)[rows])
    return {k: v.detach().clone() for k, v in vq.state_dict().items()}


def _worker(rank: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2,
                            timeout=datetime.timedelta(seconds=60))
    try:
        rows = slice(0, SPLIT[0]) if rank == 0 else slice(SPLIT[0], None)
        torch.save({update: run(quantizer(update), rows) for update in ("ema", "gradient")}, f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("vq-ddp")
    mp.spawn(_worker, args=(str(tmp / "init"), str(tmp)), nprocs=2, join=True)
    return [torch.load(tmp / f"rank{r}.pt") for r in range(2)]


@pytest.mark.parametrize("update", ["ema", "gradient"])
def test_codebooks_agree_across_ranks_and_with_one_process_on_the_whole_batch(ranks, update):
    whole = run(quantizer(update), slice(None))  # one process, every row: the reference
    assert int(whole["restarts"]) >= 1  # the planted far codes did die and were restarted
    r0, r1 = ranks[0][update], ranks[1][update]
    assert r0.keys() == r1.keys() == whole.keys()
    for name in r0:
        assert torch.equal(r0[name], r1[name]), f"{update}: {name} differs between the ranks"
    assert torch.equal(r0["restarts"], whole["restarts"])
    assert torch.equal(r0["unused_steps"], whole["unused_steps"])  # the same dead codes as one process
    for name in r0:
        assert torch.allclose(r0[name].double(), whole[name].double(), rtol=0, atol=1e-6), \
            f"{update}: {name} differs from one process: {(r0[name] - whole[name]).abs().max():.3e}"
    if update == "gradient":  # no EMA in between: the restarted codes are bit-equal to one process's
        assert torch.equal(r0["codebook"], whole["codebook"])
