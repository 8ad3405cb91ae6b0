"""Run under torchrun (2 processes, gloo) by test_distributed.py: axon's Muon on FSDP-style row
shards must give every rank exactly its rows of the unsharded optimizer on the whole matrices --
torch's Muon for bf16 orthogonalisation, axon's unsharded Muon for float32."""

import torch
import torch.distributed as dist
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.tensor import Shard, distribute_tensor

from axon.train.optim import Muon

dist.init_process_group("gloo")
mesh = init_device_mesh("cpu", (dist.get_world_size(),))
for dtype in (torch.bfloat16, torch.float32):
    gen = torch.Generator().manual_seed(0)
    shapes = [(7, 5), (6, 12), (16, 16)]  # uneven rows over 2 ranks, wide, square
    whole = [torch.nn.Parameter(torch.randn(*s, generator=gen)) for s in shapes]
    sharded = [torch.nn.Parameter(distribute_tensor(p.detach().clone(), mesh, [Shard(0)])) for p in whole]
    kw = dict(lr=0.05, weight_decay=0.1, momentum=0.9)
    reference = torch.optim.Muon(whole, **kw) if dtype == torch.bfloat16 else Muon(whole, ns_dtype=dtype, **kw)
    ours = Muon(sharded, ns_dtype=dtype, **kw)
    for _ in range(3):
        for p, q in zip(whole, sharded):
            g = torch.randn(p.shape, generator=gen)
            p.grad = g
            q.grad = distribute_tensor(g.clone(), mesh, [Shard(0)])
        reference.step()
        ours.step()
    worst = max((p.detach() - q.full_tensor()).abs().max().item() for p, q in zip(whole, sharded))
    if dist.get_rank() == 0:
        print(f"{dtype}: largest difference {worst:.3e}")
    assert worst == 0.0, worst
dist.destroy_process_group()
