"""The image_classify task (axon.tasks.image_classify): batches are a pure function of (seed, step,
micro_step) and their augmentation does what it says; the recipe runs end to end through the CLI
with acc and top-k in result.json and axon eval; a killed run resumes to the same losses and
weights (batch norm's running statistics included); an image folder trains; bad inputs end in
one line."""

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from train_processes import axon_train, kill_at_checkpoint

from axon.cli import main
from axon.config import load_config
from axon.data.images import LabelledImages
from axon.errors import ConfigError
from axon.tasks import build_task
from axon.tasks.image_classify import topk_metrics
from axon.train.checkpoint import list_checkpoints
from axon.train.logging import read_metrics

RECIPE = "configs/vision/resnet_digits.yaml"
QUICK = ["--model.preset=tiny", "--train.max_steps=10", "--train.eval_interval=5", "--train.checkpoint_interval=5",
         "--train.log_interval=1", "--train.batch_size=16", "--train.eval_batches=4", "--log.progress=false",
         "--train.threads=1"]


def losses(run):
    return {r["step"]: r["train_loss"] for r in read_metrics(Path(run) / "metrics.jsonl") if "train_loss" in r}


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("image_classify")


@pytest.fixture(scope="module")
def digits_run(root):
    assert main(["train", "--config", RECIPE, *QUICK, f"--out_dir={root}", "--name=digits"]) == 0
    return root / "digits"


def test_batches_are_a_pure_function_of_seed_step_and_micro_step():
    x, y = torch.rand(40, 3, 6, 6) * 2 - 1, torch.arange(40) % 4
    data = LabelledImages(x, y, crop_padding=2, hflip=True)
    a, b = data.get_batch(3, 16, 1, seed=7, micro_step=1), data.get_batch(3, 16, 1, seed=7, micro_step=1)
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    c = data.get_batch(3, 16, 1, seed=7, micro_step=0)
    assert not torch.equal(a[0], c[0])
    assert a[0].shape == (16, 3, 6, 6) and a[1].dtype == torch.int64
    val = list(LabelledImages(x, y, crop_padding=2, hflip=True).iter_eval_batches(16, 1))
    assert torch.equal(torch.cat([v[0] for v in val]), x) and torch.equal(torch.cat([v[1] for v in val]), y)


def test_a_crop_is_a_shifted_window_of_the_padded_image_and_a_flip_mirrors_it():
    """Each augmented image equals its source shifted by (dy, dx) in [-p, p] (padding -1 where it
    moves in) and then either mirrored or not; every offset and both flips occur."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(30, 1, 5, 5, generator=g)  # in [0, 1): no pixel equals the padding, -1
    y = torch.arange(30)
    data = LabelledImages(x, y, crop_padding=1, hflip=True)
    images, labels = data.get_batch(0, 200, 1, seed=0)
    seen = set()
    for img, label in zip(images, labels):
        src = torch.nn.functional.pad(x[label], (1, 1, 1, 1), value=-1.0)
        found = [(dy, dx, f) for dy in range(3) for dx in range(3) for f in (False, True)
                 if torch.equal(img, (src[:, dy:dy + 5, dx:dx + 5].flip(-1) if f else src[:, dy:dy + 5, dx:dx + 5]))]
        assert found, "an augmented image is no crop of its padded source"
        seen |= set(found)
    assert {(dy, dx) for dy, dx, _ in seen} == {(dy, dx) for dy in range(3) for dx in range(3)}
    assert {f for *_, f in seen} == {False, True}
    plain = LabelledImages(x, y).get_batch(0, 50, 1, seed=0)
    assert torch.equal(plain[0], x[plain[1]])  # no augmentation: the images themselves


def test_topk_counts_a_label_among_the_k_highest_logits():
    class Fixed(torch.nn.Module):  # logits 0..K-1 reversed: class 0 ranks first, class 1 second, ...
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(()))

        def forward(self, images):
            return torch.arange(6, 0, -1.0).expand(len(images), 6) + self.w

    data = LabelledImages(torch.zeros(6, 1, 2, 2), torch.arange(6))
    assert topk_metrics(Fixed(), data, k=1) == {"acc": 1 / 6, "top1": 1 / 6}
    assert topk_metrics(Fixed(), data, k=3) == {"acc": 1 / 6, "top3": 3 / 6}
    assert topk_metrics(Fixed(), data, k=9)["top9"] == 1.0  # k above the classes: every label is in


def test_the_recipe_runs_through_the_cli_and_reports_acc_and_top5(digits_run, capsys):
    result = json.loads((digits_run / "result.json").read_text())
    assert result["step"] == 10 and result["params"] == 5_122
    assert 0 <= result["val_acc"] <= result["val_top5"] <= 1 and result["val_acc"] == result["val_accuracy"]
    assert result["val_majority_baseline"] == pytest.approx(36 / 359, abs=0.02)
    labels = json.loads((digits_run / "labels.json").read_text())
    assert labels["labels"] == [str(i) for i in range(10)] and labels["train_images"] == 1438
    assert "val image 0: label" in (digits_run / "samples.txt").read_text()
    assert main(["eval", str(digits_run)]) == 0
    out = capsys.readouterr().out
    assert "acc " in out and "top5 " in out


def test_a_run_killed_with_sigkill_resumes_exactly(root, digits_run):
    """A real kill -9 once the step-5 checkpoint is on disk (the run was meant to go on much longer),
    then --resume to step 10: the same losses and weights as the uninterrupted 10-step run. The
    recipe's 20 warmup steps cover all ten, so the longer run's schedule is the short one's."""
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
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

def test_the_recipe_learns_the_digits(root):
    """Real learning at a fraction of the recipe's budget: well above the 10% of chance."""
    assert main(["train", "--config", RECIPE, "--train.max_steps=60", "--train.eval_interval=60",
                 "--log.progress=false", "--train.threads=1", f"--out_dir={root}", "--name=learns"]) == 0
    result = json.loads((root / "learns" / "result.json").read_text())
    assert result["val_acc"] > 0.7 and result["val_top5"] > 0.95, result


def test_a_killed_run_resumes_to_the_same_losses_and_weights(root, digits_run):
    from axon.train.run import train

    copy = root / "resume-copy"
    shutil.copytree(digits_run, copy)
    newest = list_checkpoints(copy / "checkpoints")[0]
    assert newest.name == "step_00000010"
    shutil.rmtree(newest)  # what a SIGKILL between the step-5 and step-10 checkpoints leaves
    (copy / "result.json").unlink()
    assert train(resume=copy)["step"] == 10 and losses(copy) == losses(digits_run)
    a = load_file(str(list_checkpoints(digits_run / "checkpoints")[0] / "model.safetensors"))
    b = load_file(str(list_checkpoints(copy / "checkpoints")[0] / "model.safetensors"))
    assert any(k.endswith("running_var") for k in a)  # batch norm's statistics are in the checkpoint
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def write_folder(root: Path, per_class: int = 10) -> Path:
    """Two classes of 12x12 RGB PNGs: a bright square on the left or on the right."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for name, side in (("left", 0), ("right", 6)):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            px = rng.integers(0, 60, (12, 12, 3), dtype=np.uint8)
            px[3:9, side:side + 6] = 230
            Image.fromarray(px).save(root / name / f"{i}.png")
    return root


def test_an_image_folder_trains_with_its_own_split_and_flips(root):
    folder = write_folder(root / "images")
    cfg = load_config(RECIPE, ["--model.preset=tiny", "--model.image_size=12", "--model.in_channels=3",
                               f"--data.dir={folder}", "--data.dataset=null",
                               "--image_classify.val_fraction=0.2"])
    task = build_task(cfg, torch.device("cpu"))
    assert cfg.model.num_labels == 2 and len(task.train_data) == 16 and len(task.val_data) == 4
    assert task.train_data.hflip and not build_task(load_config(RECIPE), torch.device("cpu")).train_data.hflip
    assert main(["train", "--config", RECIPE, *QUICK, "--model.image_size=12", "--model.in_channels=3",
                 f"--data.dir={folder}", "--data.dataset=null", f"--out_dir={root}", "--name=folder-run"]) == 0
    labels = json.loads((root / "folder-run" / "labels.json").read_text())
    assert labels["labels"] == ["left", "right"] and labels["val_images"] == 2


def test_bad_inputs_end_in_one_line(root, tmp_path, capsys):
    broken = tmp_path / "imgs"
    write_folder(broken, per_class=3)
    (broken / "left" / "broken.png").write_bytes(b"not a png")
    one_class = tmp_path / "one"
    (one_class / "only").mkdir(parents=True)
    shutil.copy(broken / "right" / "0.png", one_class / "only" / "0.png")
    folder = ["--model.image_size=12", "--model.in_channels=3", "--data.dataset=null"]
    cases = [
        ([*folder, f"--data.dir={broken}"], "broken.png"),
        ([*folder, f"--data.dir={one_class}"], "at least two classes"),
        ([*folder, f"--data.dir={tmp_path / 'nowhere'}"], "no such folder"),
        (folder[:2], "the digits are 8x8 grey"),
        (["--model.num_labels=3"], "model.num_labels=3 but digits has 10 classes"),
        (["--data.dataset=cifar"], "data.dataset"),
        (["--image_classify.top_k=0"], "image_classify.top_k"),
        (["--model.family=decoder", "--model.preset=tiny"], "image_classify"),
    ]
    for args, message in cases:
        code = main(["train", "--config", RECIPE, "--model.preset=tiny", *args, "--train.max_steps=1",
                     "--log.progress=false", f"--out_dir={tmp_path / 'runs'}"])
        err = capsys.readouterr().err
        assert code != 0 and message in err, (args, err)
        assert len(err.strip().splitlines()) == 1, err
    with pytest.raises(ConfigError, match="data.dataset / data.dir"):
        build_task(load_config(RECIPE, ["--data.dataset=digits", f"--data.dir={broken}"]), torch.device("cpu"))
