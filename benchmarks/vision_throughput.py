"""Training throughput of Axon's image models against torchvision's ResNet and timm's ViT.

Axon's ResNet-18 and ``torchvision.models.resnet18`` are built with the same shape; torchvision's
weights are copied into Axon's through ``axon.interop.resnet`` and the logits checked equal (eval
mode, 1e-5) before any timing, so "the same network" is a tested fact. Both then train in this
one process on the same batch with the same loss (cross-entropy), optimizer (torch SGD with
momentum 0.9, the ResNet paper's) and mode (train: batch norm on the batch's statistics).

Timing runs in rounds of blocks, A B then B A (ABBA order), so drift and background load land on
both; the figure is the median images/s over blocks. The bar (issue 21): Axon >= 1.0x.

    parity/bin/python benchmarks/vision_throughput.py                 # ResNet-18, 64x64, batch 32
    parity/bin/python benchmarks/vision_throughput.py --size 224 --batch-size 16 --blocks 4

``--pairs vit`` races Axon's ViT against timm's ``VisionTransformer`` (ViT-Ti/16, weights moved
through ``axon.from_hf``, logits checked the same way). ``PAIRS`` maps a name to a function
returning (axon model, reference model, input shape). Needs torchvision and timm (the parity
venv); run by hand, never in CI.

    parity/bin/python benchmarks/vision_throughput.py --pairs vit --size 224 --batch-size 16
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))  # this checkout's axon


def resnet18_pair(size: int, labels: int):
    import torchvision

    from axon.config import build_model_config
    from axon.interop.resnet import torchvision_to_axon
    from axon.models import build_model

    torch.manual_seed(0)
    ref = torchvision.models.resnet18(weights=None, num_classes=labels)
    ours = build_model(build_model_config({"family": "resnet", "preset": "resnet18", "num_labels": labels,
                                           "image_size": size}))
    ours.load_state_dict(torchvision_to_axon(ref.state_dict()), strict=True)
    return ours, ref, (3, size, size)


def vit_pair(size: int, labels: int):
    """timm's ViT-Ti/16 (``vit_tiny_patch16_224``, at ``size``) and Axon's ViT loaded from the directory
    ``timm.models.save_for_hf`` writes for it, through ``axon.from_hf`` (the interop path users take)."""
    import tempfile

    import timm
    from timm.models import save_for_hf

    import axon

    torch.manual_seed(0)
    ref = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=size, num_classes=labels)
    with tempfile.TemporaryDirectory() as d:
        save_for_hf(ref, d, safe_serialization=True)
        (Path(d) / "pytorch_model.bin").unlink(missing_ok=True)
        ours, _ = axon.from_hf(d)
    return ours, ref, (3, size, size)


PAIRS = {"resnet18": resnet18_pair, "vit": vit_pair}  # name -> (Axon model, reference model, input shape)


def check_same(ours, ref, shape) -> float:
    x = torch.rand(2, *shape, generator=torch.Generator().manual_seed(0)) * 2 - 1
    ours.eval(), ref.eval()
    with torch.no_grad():
        a, b = ours(x), ref(x)
    worst = (a - b).abs().max().item()
    if worst > 1e-5:
        raise SystemExit(f"the two models differ before timing: max |logit difference| {worst:.2e}")
    return worst


def timed_block(model, opt, x, y, steps: int) -> float:
    model.train()
    start = time.perf_counter()
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return x.size(0) * steps / (time.perf_counter() - start)


def race(name: str, size: int, batch: int, steps: int, blocks: int, labels: int) -> dict:
    ours, ref, shape = PAIRS[name](size, labels)
    diff = check_same(ours, ref, shape)
    g = torch.Generator().manual_seed(1)
    x = torch.rand(batch, *shape, generator=g) * 2 - 1
    y = torch.randint(0, labels, (batch,), generator=g)
    opts = {m: torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9) for m in (ours, ref)}
    for m in (ours, ref):
        timed_block(m, opts[m], x, y, 2)  # warm-up
    rates = {"axon": [], "reference": []}
    for i in range(blocks):
        order = [("axon", ours), ("reference", ref)]
        for who, m in order if i % 2 == 0 else order[::-1]:
            rates[who].append(timed_block(m, opts[m], x, y, steps))
    med = {k: statistics.median(v) for k, v in rates.items()}
    return {"pair": name, "image_size": size, "batch_size": batch, "logit_diff": diff,
            "axon_images_per_s": med["axon"], "reference_images_per_s": med["reference"],
            "ratio": med["axon"] / med["reference"], "blocks": blocks, "steps_per_block": steps}


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pairs", default="resnet18", help=f"comma-separated, of: {', '.join(PAIRS)}")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--steps", type=int, default=3, help="training steps per timed block")
    p.add_argument("--blocks", type=int, default=6, help="timed blocks per model, in ABBA order")
    p.add_argument("--labels", type=int, default=10)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--json", action="store_true")
    a = p.parse_args(argv)
    unknown = [n for n in a.pairs.split(",") if n not in PAIRS]
    if unknown or min(a.size, a.batch_size, a.steps, a.blocks) < 1 or a.size < 32:
        print(f"vision_throughput: bad arguments (unknown pairs {unknown}; sizes must be >= 1, --size >= 32)",
              file=sys.stderr)
        return 2
    if a.threads:
        torch.set_num_threads(a.threads)
    for name in a.pairs.split(","):
        r = race(name, a.size, a.batch_size, a.steps, a.blocks, a.labels)
        r.update(cpu=cpu_name(), threads=torch.get_num_threads(), torch=torch.__version__)
        if a.json:
            print(json.dumps(r))
        else:
            print(f"{name} {a.size}x{a.size} batch {a.batch_size} on {r['cpu']} ({r['threads']} threads): "
                  f"axon {r['axon_images_per_s']:.1f} img/s, reference {r['reference_images_per_s']:.1f} img/s, "
                  f"ratio {r['ratio']:.2f}x (bar >= 1.0x; logits equal within {r['logit_diff']:.1e})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
