"""Run under torchrun (2 processes, gloo) by test_distributed.py: an MoE decoder wrapped for DDP as
the trainer wraps it keeps its auxiliary losses. Each rank's loss parts must equal one process's
parts on that rank's rows (the balance and z-losses included), and the gradient DDP averages must
equal one process's mean over both ranks' rows -- which it is not when the objective, handed the
DDP wrapper, cannot see the model's ``aux_losses``."""

import copy

import torch
import torch.distributed as dist

from axon.config import load_config
from axon.models import build_model
from axon.objectives.causal_lm import CausalLM
from axon.train import distributed as D

d = D.init_distributed("cpu", "ddp")
torch.manual_seed(0)
cfg = load_config(None, ["--model.preset=tiny", "--model.block_size=16", "--model.vocab_size=40",
                         "--model.moe_experts=4", "--model.moe_top_k=2"]).model
model = build_model(cfg).double()
plain = copy.deepcopy(model)  # one process's copy of the same weights
wrapped = D.wrap_model(model, d, bf16=False)
assert wrapped is not model, "expected a DDP wrapper"
objective = CausalLM()
gen = torch.Generator().manual_seed(1)
B, T = 3, 16
x, y = torch.randint(0, 40, (2 * B, T), generator=gen), torch.randint(0, 40, (2 * B, T), generator=gen)
rows = slice(d.rank * B, (d.rank + 1) * B)

loss, parts = objective(wrapped, (x[rows], y[rows]))
loss.backward()  # DDP averages the gradients over both ranks

for r in range(d.world_size):  # one process: the same rows, the mean of the two losses
    ref_loss, ref_parts = objective(plain, (x[r * B:(r + 1) * B], y[r * B:(r + 1) * B]))
    (ref_loss / d.world_size).backward()
    if r == d.rank:
        mine = {k: v.item() for k, v in ref_parts.items()}
assert set(parts) == set(mine) == {"ce", "moe_balance", "moe_z"}, (sorted(parts), sorted(mine))
assert {k: v.item() for k, v in parts.items()} == mine, (parts, mine)
worst = max((p.grad - q.grad).abs().max().item() for p, q in zip(model.parameters(), plain.parameters()))
print(f"rank {d.rank}: parts {sorted(parts)}; largest gradient difference {worst:.3e}")
assert worst < 1e-12, worst
dist.destroy_process_group()
