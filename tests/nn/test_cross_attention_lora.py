"""CrossAttention's shortcuts (the fused self-attention, the split kv matrix under DETR's key
positions) read the q and kv weights directly; with LoRA's adapters on those layers they must
run the layers whole, or the adapters would be skipped. Oracle: the same module with the adapters
merged into plain weights."""

import pytest
import torch

from axon.nn import CrossAttention
from axon.nn.lora import apply_lora, merge_lora


@pytest.mark.parametrize("case", ["self", "key_pos"])
def test_adapters_on_q_and_kv_are_not_skipped(case):
    torch.manual_seed(0)
    attn = CrossAttention(16, 4).double()
    x, memory, pos = (torch.randn(2, 5, 16, dtype=torch.float64) for _ in range(3))
    apply_lora(attn, ["q", "kv"], rank=2, alpha=4.0)
    with torch.no_grad():
        for name, p in attn.named_parameters():
            if "lora_B" in name:
                p.normal_()  # B = 0 at init would hide a skipped adapter
    call = (lambda m: m(x, x)) if case == "self" else (lambda m: m(x, memory, query_pos=pos, key_pos=pos))
    adapted = call(attn)
    merge_lora(attn)
    merged = call(attn)
    torch.testing.assert_close(adapted, merged, rtol=0, atol=1e-12)
