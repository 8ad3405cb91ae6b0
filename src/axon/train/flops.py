"""Peak FLOP/s, the denominator of MFU (model FLOPs utilisation, PaLM appendix B)."""

from __future__ import annotations

import time

import torch

# Dense bf16 tensor-core peaks (no sparsity), FLOP/s, from the vendors' data sheets. The first key
# found in the device name wins, so the PCIe and NVL parts come before the SXM one.
GPU_BF16_PEAK = {
    "H200": 989e12,
    "H100 PCIe": 756e12,
    "H100 NVL": 835e12,
    "H100": 989e12,  # SXM
    "A100": 312e12,
    "L4": 121e12,
    "A10": 125e12,
    "RTX 4090": 165e12,
    "RTX 3090": 71e12,
}


def matmul_peak_flops(device: torch.device, dtype: torch.dtype = torch.float32, n: int = 1024, reps: int = 5) -> float:
    """Measured FLOP/s of an n x n matmul on ``device`` (best of ``reps``): the CPU's practical peak."""
    gen = torch.Generator(device).manual_seed(0)  # never the global RNG: exact resume relies on it
    a = torch.randn(n, n, device=device, dtype=dtype, generator=gen)
    b = torch.randn(n, n, device=device, dtype=dtype, generator=gen)
    best = float("inf")
    for _ in range(reps + 1):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        a @ b
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best


def peak_flops(device: torch.device) -> float:
    """The denominator of MFU: the GPU's data-sheet bf16 peak, or a measured fp32 matmul peak."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for key, value in GPU_BF16_PEAK.items():
            if key in name:
                return value
        return matmul_peak_flops(device, torch.bfloat16, n=4096)
    return matmul_peak_flops(device)
