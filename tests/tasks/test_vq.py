"""The vq task (axon.tasks.vq): the recipe runs end to end with reconstruction error and codebook
usage in result.json and axon eval; axon sample draws originals above reconstructions; the run
loads back as an image tokenizer; a run killed with SIGKILL resumes exactly (EMA codebook and
dead-code counters included); the objective is MSE + the quantiser's loss; bad inputs end in one line."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from train_processes import axon_train, kill_at_checkpoint

from axon.cli import main
from axon.config import load_config
from axon.objectives.vq import VQReconstruction
from axon.tasks import build_task
from axon.tasks.vq import load_image_tokenizer
from axon.train.checkpoint import list_checkpoints
from axon.train.logging import read_metrics

RECIPE = "configs/multimodal/vq_digits.yaml"
QUICK = ["--model.preset=tiny", "--model.dead_code_steps=2", "--train.max_steps=10", "--train.eval_interval=5",
         "--train.checkpoint_interval=5", "--train.log_interval=1", "--train.batch_size=16", "--train.eval_batches=4",
         "--schedule.warmup_steps=20", "--log.progress=false", "--train.threads=1"]


def losses(run):
    return {r["step"]: r["train_loss"] for r in read_metrics(Path(run) / "metrics.jsonl") if "train_loss" in r}


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("vq")


@pytest.fixture(scope="module")
def digits_run(root):
    assert main(["train", "--config", RECIPE, *QUICK, f"--out_dir={root}", "--name=digits"]) == 0
    return root / "digits"


def test_the_objective_is_mse_plus_the_quantiser_loss():
    torch.manual_seed(0)
    cfg = load_config(RECIPE, ["--model.preset=tiny"])
    from axon.models import build_model

    model = build_model(cfg.model).eval()
    images = torch.rand(4, 1, 8, 8) * 2 - 1
    loss, parts = VQReconstruction()(model, (images, torch.zeros(4, dtype=torch.long)))
    recon, vq_loss, _ = model(images)
    mse = ((recon - images) ** 2).mean()
    torch.testing.assert_close(parts["ce"], mse)
    torch.testing.assert_close(loss, mse + vq_loss)
    assert parts["count"] == 4


def test_the_recipe_reports_reconstruction_and_usage_and_evaluates(digits_run, capsys):
    result = json.loads((digits_run / "result.json").read_text())
    assert result["step"] == 10 and result["params"] == 2_361
    assert 0 < result["val_recon_mse"] == pytest.approx(result["val_loss"], rel=1e-5)
    assert 1 <= result["val_codes_used"] <= 16 and 1 <= result["val_code_perplexity"] <= result["val_codes_used"]
    evals = [r for r in read_metrics(digits_run / "metrics.jsonl") if "val_codes_used" in r]
    assert [r["step"] for r in evals] == [5, 10]  # the usage figures at every evaluation
    assert sorted(p.name for p in (digits_run / "samples").iterdir()) == ["step_0000005.png", "step_0000010.png"]
    tok = json.loads((digits_run / "image_tokenizer.json").read_text())
    assert tok["codebook_size"] == 16 and tok["tokens_per_image"] == 16 and tok["grid"] == [4, 4]
    assert main(["eval", str(digits_run)]) == 0
    out = capsys.readouterr().out
    assert "recon_mse" in out and "codes_used" in out and "code_perplexity" in out


def test_axon_sample_draws_originals_above_reconstructions(digits_run, tmp_path):
    out = tmp_path / "recon.png"
    assert main(["sample", str(digits_run), "--num-samples", "4", "--out", str(out)]) == 0
    img = Image.open(out)
    assert img.size == ((4 * 9 + 1) * 4, (2 * 9 + 1) * 4)  # 4 columns, 2 rows of 8x8 cells, scaled x4
    top = torch.from_numpy(np.asarray(img, dtype=np.float32))  # (H, W), grey
    from axon.tasks.image_classify import load_images

    first = load_images(load_config(RECIPE))[2][0, 0]  # the first validation image, in [-1, 1]
    cell = top[4:4 + 32:4, 4:4 + 32:4]  # its cell in the top row, one pixel per 4x4 block
    assert torch.allclose(cell, ((first + 1) * 127.5).round(), atol=1)
    assert main(["sample", str(digits_run)]) == 0  # defaults: 16 images, RUN_DIR/reconstructions.png
    assert Image.open(digits_run / "reconstructions.png").size == ((16 * 9 + 1) * 4, (2 * 9 + 1) * 4)


def test_the_run_loads_as_an_image_tokenizer(digits_run):
    tok = load_image_tokenizer(digits_run)
    assert not tok.training and tok.codebook_size == 16 and tok.tokens_per_image == 16
    images = torch.rand(3, 1, 8, 8) * 2 - 1
    codes = tok.encode(images)
    assert codes.shape == (3, 16) and codes.dtype == torch.int64 and int(codes.max()) < 16
    assert tok.decode(codes).shape == (3, 1, 8, 8)


def test_a_run_killed_with_sigkill_resumes_exactly(root, digits_run):
    """A real kill -9 once the step-5 checkpoint is on disk, then --resume to step 10: the same losses
    and the same weights and buffers (the EMA codebook, its averages, the dead-code counters) as
    the uninterrupted 10-step run."""
    run = root / "sigkill"
    args = [a for a in QUICK if not a.startswith("--train.max_steps")]
    proc = axon_train(["--config", RECIPE, *args, "--train.max_steps=100000", f"--out_dir={root}", "--name=sigkill"],
                      env={**os.environ, "OMP_NUM_THREADS": "1"})
    kill_at_checkpoint(proc, run, 5)
    assert not (run / "result.json").exists()
    saved = int(list_checkpoints(run / "checkpoints")[0].name.split("_")[1])
    assert 5 <= saved < 10
    assert main(["train", "--resume", str(run), "--train.max_steps=10"]) == 0
    assert losses(run) == losses(digits_run)
    a = load_file(str(list_checkpoints(digits_run / "checkpoints")[0] / "model.safetensors"))
    b = load_file(str(list_checkpoints(run / "checkpoints")[0] / "model.safetensors"))
    assert {"quantizer.codebook", "quantizer.cluster_size", "quantizer.unused_steps", "quantizer.restarts"} <= a.keys()
    assert int(a["quantizer.restarts"]) > 0  # dead codes did restart within the 10 steps (dead_code_steps=2)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def write_folder(root: Path) -> Path:
    rng = torch.Generator().manual_seed(0)
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
        for i in range(3):
            px = (torch.rand(8, 8, generator=rng) * 255).to(torch.uint8).numpy()
            Image.fromarray(px).save(root / name / f"{i}.png")
    return root


def test_a_folder_of_images_builds_and_bad_inputs_end_in_one_line(tmp_path, capsys):
    folder = write_folder(tmp_path / "imgs")
    task = build_task(load_config(RECIPE, ["--model.preset=tiny", f"--data.dir={folder}", "--data.dataset=null",
                                           "--image_classify.val_fraction=0.34"]), torch.device("cpu"))
    assert len(task.train_data) == 4 and len(task.val_data) == 2
    (folder / "a" / "broken.png").write_bytes(b"not a png")
    cases = [
        ([f"--data.dir={folder}", "--data.dataset=null"], "broken.png"),
        (["--model.codebook_size=1"], "model.codebook_size"),
        (["--model.downsample=4"], "model.downsample"),
        (["--model.image_size=16"], "the digits are 8x8 grey"),
        (["--model.family=resnet"], "a resnet model does not do 'vq'"),
    ]
    for args, message in cases:
        code = main(["train", "--config", RECIPE, "--model.preset=tiny", *args, "--train.max_steps=1",
                     "--log.progress=false", f"--out_dir={tmp_path / 'runs'}"])
        err = capsys.readouterr().err
        assert code != 0 and message in err, (args, err)
        assert len(err.strip().splitlines()) == 1, err
