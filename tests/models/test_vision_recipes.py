"""The ViT, Vision Mamba and hybrid recipes through the CLI (a few steps each: they train, evaluate
and write accuracy), and ``axon convert --from-hf`` of a timm-layout ViT directory into a run that
``load_run`` gives back with the same logits."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from axon.cli import main
from axon.tasks import TASKS

if "image_classify" not in TASKS:  # the task lands with issue 21's part A
    pytest.skip("the image_classify task is not in this tree", allow_module_level=True)

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "vision"
QUICK = ["--train.max_steps=4", "--train.eval_interval=4", "--train.eval_batches=2", "--train.log_interval=2",
         "--train.checkpoint_interval=4", "--train.batch_size=16"]


@pytest.mark.slow
@pytest.mark.parametrize("recipe", ["vit_digits", "vision_mamba_digits", "hybrid_digits"])
def test_recipe_trains_through_the_cli(recipe, tmp_path):
    assert main(["train", "--config", str(CONFIGS / f"{recipe}.yaml"), *QUICK, f"--out_dir={tmp_path}", "--name=r"]) == 0
    result = json.loads((tmp_path / "r" / "result.json").read_text())
    assert result["step"] == 4 and 0.0 <= result["val_acc"] <= 1.0 and result["val_top5"] >= result["val_acc"]


def test_convert_a_timm_layout_directory_into_a_run(tmp_path):
    """A directory laid out as timm's save_for_hf writes it (tensors written here, random) -> a run."""
    from axon.interop.vit import TimmViT
    from axon.train.run import load_run

    torch.manual_seed(0)
    C, P, G, L, H = 24, 4, 4, 2, 96
    t = {"cls_token": torch.randn(1, 1, C), "pos_embed": torch.randn(1, 1 + G * G, C),
         "patch_embed.proj.weight": torch.randn(C, 3, P, P), "patch_embed.proj.bias": torch.randn(C),
         "norm.weight": torch.randn(C), "norm.bias": torch.randn(C), "head.weight": torch.randn(4, C), "head.bias": torch.randn(4)}
    for i in range(L):
        for n, shape in (("norm1", (C,)), ("norm2", (C,)), ("attn.qkv", (3 * C, C)), ("attn.proj", (C, C)),
                         ("mlp.fc1", (H, C)), ("mlp.fc2", (C, H))):
            t[f"blocks.{i}.{n}.weight"] = torch.randn(shape) * 0.2
            t[f"blocks.{i}.{n}.bias"] = torch.randn(shape[0]) * 0.2
    src = tmp_path / "timm_vit"
    src.mkdir()
    save_file(t, str(src / "model.safetensors"))
    (src / "config.json").write_text(json.dumps({
        "architecture": "vit_tiny_patch16_224", "num_classes": 4, "global_pool": "token",
        "model_args": {"img_size": [16, 16], "patch_size": P, "embed_dim": C, "depth": L, "num_heads": 3}}))
    assert TimmViT.accepts(json.loads((src / "config.json").read_text()))
    assert main(["convert", "--from-hf", str(src), "--out", str(tmp_path / "run")]) == 0
    _, model, _ = load_run(tmp_path / "run", device="cpu")
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    import axon

    ref, _ = axon.from_hf(src)
    with torch.no_grad():
        assert torch.equal(model.eval()(x), ref(x))
    assert model.config.family == "vit" and model.config.num_labels == 4
