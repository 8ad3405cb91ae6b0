"""The detect task (axon.tasks.detect, axon.data.detection): the generated shapes are a function
of their seed, batches of (seed, step, micro_step) with flips that move the boxes too; a tiny DETR
run goes through the CLI with COCO mAP in its metrics, result.json and axon eval; axon sample /
eval draw a PNG; a run killed with SIGKILL resumes to the same losses bit for bit; a COCO file
trains, and its bad entries end in one line naming the file and the entry; bad settings are named."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from train_processes import axon_train, kill_at_checkpoint

from axon.cli import main
from axon.config import load_config
from axon.data.detection import DetectionImages, shapes
from axon.errors import ConfigError
from axon.tasks import build_task
from axon.train.checkpoint import list_checkpoints
from axon.train.logging import read_metrics

RECIPE = "configs/vision/detr_shapes.yaml"
ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1"}
TINY = ["--model.preset=tiny", "--detect.train_images=64", "--detect.val_images=16", "--detect.samples=4",
        "--train.batch_size=8", "--train.eval_batches=2", "--train.log_interval=1", "--log.progress=false",
        "--train.threads=1", "--schedule.warmup_steps=2"]


def losses(run):
    return {r["step"]: r["train_loss"] for r in read_metrics(Path(run) / "metrics.jsonl") if "train_loss" in r}


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("detect")


@pytest.fixture(scope="module")
def tiny_run(root):
    assert main(["train", "--config", RECIPE, *TINY, "--train.max_steps=10", "--train.eval_interval=5",
                 "--train.checkpoint_interval=5", f"--out_dir={root}", "--name=tiny"]) == 0
    return root / "tiny"


def test_shapes_are_a_function_of_the_seed():
    x, t = shapes(20, 7)
    x2, t2 = shapes(20, 7)
    assert torch.equal(x, x2) and all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(t, t2))
    assert not torch.equal(x, shapes(20, 8)[0])
    assert x.shape == (20, 3, 64, 64) and -1 <= x.min() and x.max() <= 1
    counts = [len(labels) for labels, _ in t]
    assert 1 <= min(counts) and max(counts) <= 6 and len(set(counts)) > 2
    boxes = torch.cat([b for _, b in t])
    xyxy = torch.cat([boxes[:, :2] - boxes[:, 2:] / 2, boxes[:, :2] + boxes[:, 2:] / 2], 1)
    assert (xyxy >= -1e-6).all() and (xyxy <= 1 + 1e-6).all()  # every shape lies inside its image
    assert torch.allclose(boxes[:, 2], boxes[:, 3]) and (boxes[:, 2] >= 10 / 64 - 1e-6).all()  # square extents
    assert set(torch.cat([labels for labels, _ in t]).tolist()) == {0, 1, 2}


def test_a_square_fills_its_box():
    """The pixels inside a square's box (where nothing painted over it) have one colour, the box's edge is exact."""
    x, t = shapes(30, 1, max_objects=1)
    img, (labels, boxes) = next((img, tgt) for img, tgt in zip(x, t) if tgt[0].tolist() == [1])
    cx, cy, w, h = (boxes[0] * 64).tolist()
    inner = img[:, round(cy - h / 2) + 1:round(cy + h / 2) - 1, round(cx - w / 2) + 1:round(cx + w / 2) - 1]
    assert (inner == inner[:, :1, :1]).all()  # one colour inside
    assert not (img[:, :, :max(round(cx - w / 2) - 1, 0)] == inner[:, :1, :1]).all(0).any()  # not left of the box


def test_batches_are_pure_and_a_flip_moves_the_boxes():
    x, t = shapes(12, 0, image_size=16)
    data = DetectionImages(x, t, hflip=True)
    a, b = data.get_batch(4, 32, 1, seed=3, micro_step=1), data.get_batch(4, 32, 1, seed=3, micro_step=1)
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    assert not torch.equal(a[0], data.get_batch(4, 32, 1, seed=3, micro_step=0)[0])
    images, labels, boxes = a
    assert labels.shape == (32, data.max_objects) and boxes.shape == (32, data.max_objects, 4)
    flips = set()
    for img, lab, box in zip(images, labels, boxes):
        src = next(i for i in range(len(x)) if torch.equal(x[i], img) or torch.equal(x[i].flip(-1), img))
        flipped = not torch.equal(x[src], img)
        flips.add(flipped)
        n = len(t[src][0])
        want = t[src][1].clone()
        if flipped:
            want[:, 0] = 1 - want[:, 0]  # cx mirrored, cy / w / h kept
        assert torch.equal(lab[:n], t[src][0]) and (lab[n:] == -1).all()
        assert torch.allclose(box[:n], want, atol=1e-7) and (box[n:] == 0).all()
    assert flips == {False, True}
    val = list(DetectionImages(x, t, hflip=True).iter_eval_batches(5, 1))
    assert torch.equal(torch.cat([v[0] for v in val]), x)  # evaluation: every image, in order, unflipped


def test_the_recipe_runs_through_the_cli_and_reports_map(tiny_run, capsys):
    result = json.loads((tiny_run / "result.json").read_text())
    assert result["step"] == 10 and result["params"] == 29_648
    assert 0 <= result["val_map"] <= result["val_map50"] <= 1
    evals = [r for r in read_metrics(tiny_run / "metrics.jsonl") if "val_map" in r]
    assert [r["step"] for r in evals] == [5, 10] and all("val_map50" in r for r in evals)  # every evaluation
    labels = json.loads((tiny_run / "labels.json").read_text())
    assert labels["labels"] == ["circle", "square", "triangle"] and labels["val_images"] == 16
    assert "val image 0: true [" in (tiny_run / "samples.txt").read_text()
    assert main(["eval", str(tiny_run)]) == 0
    captured = capsys.readouterr()
    assert "map " in captured.out and "map50 " in captured.out and "detections_val.png" in captured.err


def png_size(path: Path) -> tuple[int, int]:
    from PIL import Image

    with Image.open(path) as im:
        im.load()  # decodes every pixel: a truncated file fails here
        assert im.mode == "RGB"
        return im.size


def test_sample_and_eval_draw_the_boxes_into_a_png(tiny_run, tmp_path):
    cell = 16 * 4 + 2  # a 16 x 16 image 4 times larger, and its border
    assert main(["sample", str(tiny_run), "--out", str(tmp_path / "boxes.png"), "--num-samples", "3"]) == 0
    assert png_size(tmp_path / "boxes.png") == (3 * cell + 2, cell + 2)
    assert main(["sample", str(tiny_run)]) == 0  # default: RUN/detections.png, detect.samples = 4 images
    assert png_size(tiny_run / "detections.png") == (4 * cell + 2, cell + 2)
    assert png_size(tiny_run / "detections_val.png") == (4 * cell + 2, cell + 2)  # written by axon eval (above)
    assert main(["sample", str(tiny_run), "--out", str(tmp_path / "boxes.jpg")]) != 0


def test_a_run_killed_with_sigkill_resumes_to_the_same_losses_and_weights(root):
    """The house pattern of tests/train/test_distributed.py: SIGKILL once a checkpoint is on disk,
    --resume, and every logged loss and the final weights equal an uninterrupted run's, bit for bit."""
    args = ["--config", RECIPE, *TINY, "--train.max_steps=24", "--train.eval_interval=8",
            "--train.checkpoint_interval=8", f"--out_dir={root}"]
    assert main(["train", *args, "--name=whole"]) == 0  # uninterrupted, in this process (one thread, as the others)

    killed = root / "killed"
    kill_at_checkpoint(axon_train([*args, "--name=killed"], env=ONE_THREAD), killed, 8)
    assert not (killed / "result.json").exists()
    saved = max(int(p.name.split("_")[1]) for p in list_checkpoints(killed / "checkpoints"))
    assert saved < 24

    resumed = axon_train(["--resume", str(killed)], env=ONE_THREAD)
    out, _ = resumed.communicate(timeout=240)
    assert resumed.returncode == 0, out[-3000:]
    assert f"(step {saved})" in out
    assert losses(killed) == losses(root / "whole") and sorted(losses(killed)) == list(range(1, 25))
    a = load_file(str(list_checkpoints(root / "whole" / "checkpoints")[0] / "model.safetensors"))
    b = load_file(str(list_checkpoints(killed / "checkpoints")[0] / "model.safetensors"))
    assert any(k.endswith("running_var") for k in a)  # the backbone's batch norm statistics are carried too
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ra, rb = (json.loads((r / "result.json").read_text()) for r in (root / "whole", killed))
    assert ra["val_map"] == rb["val_map"] and ra["val_loss"] == rb["val_loss"]


# ------------------------------------------------------------------------------------------------
# Your own COCO-format file


def write_coco(folder: Path, n: int = 10) -> Path:
    """n 20x30 PNGs, each with one or two boxes of categories 3 ("ball") and 7 ("box")."""
    from PIL import Image

    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    data = {"images": [], "annotations": [], "categories": [{"id": 7, "name": "box"}, {"id": 3, "name": "ball"}]}
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (20, 30, 3), dtype=np.uint8)).save(folder / f"im{i}.png")
        data["images"].append({"id": 100 + i, "file_name": f"im{i}.png", "width": 30, "height": 20})
        for j in range(1 + i % 2):
            data["annotations"].append({"id": len(data["annotations"]) + 1, "image_id": 100 + i,
                                        "category_id": (3, 7)[j], "bbox": [2 + 10 * j, 3, 8, 12.5]})
    (folder / "train.json").write_text(json.dumps(data))
    return folder / "train.json"


COCO_ARGS = ["--model.preset=tiny", "--data.dataset=null", "--train.max_steps=1", "--log.progress=false",
             "--train.threads=1"]


def test_a_coco_file_becomes_the_task(tmp_path):
    ann = write_coco(tmp_path / "coco")
    cfg = load_config(RECIPE, [*COCO_ARGS, f"--data.train_file={ann}", "--detect.val_fraction=0.2"])
    task = build_task(cfg, torch.device("cpu"))
    assert cfg.model.num_labels == 2 and len(task.train_data) == 8 and len(task.val_data) == 2
    labels = torch.cat([task.train_data.labels, task.val_data.labels])
    assert set(labels.flatten().tolist()) == {-1, 0, 1}  # category 3 ("ball") is label 0: sorted by id
    box = task.train_data.boxes[0, 0]  # image 0: [2, 3, 8, 12.5] in a 30 x 20 image, as (cx, cy, w, h) / size
    assert torch.allclose(box, torch.tensor([6 / 30, 9.25 / 20, 8 / 30, 12.5 / 20]))
    assert main(["train", "--config", RECIPE, *COCO_ARGS, f"--data.train_file={ann}", "--detect.val_fraction=0.2",
                 f"--out_dir={tmp_path / 'runs'}", "--name=coco"]) == 0
    assert json.loads((tmp_path / "runs" / "coco" / "labels.json").read_text())["labels"] == ["ball", "box"]


def test_bad_coco_entries_end_in_one_line_naming_the_file_and_entry(tmp_path, capsys):
    ann = write_coco(tmp_path / "coco")
    good = json.loads(ann.read_text())

    def variant(name, change):
        data = json.loads(json.dumps(good))
        change(data)
        path = tmp_path / "coco" / f"{name}.json"
        path.write_text(json.dumps(data))
        return path

    outside = variant("outside", lambda d: d["annotations"][2].update(bbox=[25, 3, 8, 10]))  # 25 + 8 > 30
    unknown = variant("unknown", lambda d: d["annotations"][4].update(category_id=9))
    (tmp_path / "coco" / "broken.png").write_bytes(b"not a png")
    unreadable = variant("unreadable", lambda d: d["images"][3].update(file_name="broken.png"))
    cases = [(outside, ["outside.json: annotation 3", "outside its 30x20 image 'im1.png'"]),
             (unknown, ["unknown.json: annotation 5", "unknown category_id 9 (categories: 3, 7)"]),
             (unreadable, ["broken.png", "not an image Pillow can read"])]
    for path, words in cases:
        code = main(["train", "--config", RECIPE, *COCO_ARGS, f"--data.train_file={path}", f"--out_dir={tmp_path / 'runs'}"])
        err = capsys.readouterr().err
        assert code != 0 and all(w in err for w in words), (path, err)
        assert len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("args, message", [
    (["--detect.eos_coef=0"], "detect.eos_coef: must be in (0, 1]"),
    (["--detect.cost_giou=-1"], "detect.cost_giou: must be >= 0"),
    (["--detect.cost_class=0", "--detect.cost_bbox=0", "--detect.cost_giou=0"], "cannot all be 0"),
    (["--detect.loss_ce=0", "--detect.loss_bbox=0", "--detect.loss_giou=0"], "cannot all be 0"),
    (["--detect.val_fraction=1"], "detect.val_fraction"),
    (["--detect.train_images=0"], "detect.train_images"),
    (["--detect.samples=-1"], "detect.samples"),
    (["--detect.score_threshold=1.5"], "detect.score_threshold"),
    (["--detect.hflip=maybe"], "detect.hflip"),
    (["--data.dataset=digits"], "'digits' is not a detection set"),
    (["--model.num_queries=3"], "model.num_queries=3 but an image of shapes has 6 objects"),
    (["--model.num_labels=5"], "model.num_labels=5 but shapes has 3 classes"),
    (["--model.in_channels=1"], "the shapes are RGB"),
    (["--model.family=resnet", "--model.preset=tiny"], "a resnet model does not do 'detect'"),
])
def test_bad_settings_are_named_in_one_line(args, message, tmp_path, capsys):
    code = main(["train", "--config", RECIPE, "--model.preset=tiny", "--detect.train_images=8", "--detect.val_images=4",
                 *args, "--train.max_steps=1", "--log.progress=false", f"--out_dir={tmp_path}"])
    err = capsys.readouterr().err
    assert code != 0 and message in err, err
    assert len(err.strip().splitlines()) == 1, err


def test_image_classify_refuses_the_shapes():
    with pytest.raises(ConfigError, match="detection set"):
        build_task(load_config("configs/vision/resnet_digits.yaml", ["--data.dataset=shapes"]), torch.device("cpu"))


def test_axon_imports_without_pycocotools():
    """pycocotools is the vision extra's: importing axon, its tasks and the CLI must not load it."""
    code = ("import sys, axon, axon.cli, axon.tasks, axon.tasks.detect, axon.models\n"
            "assert 'pycocotools' not in sys.modules, 'pycocotools imported'")
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})


def test_compare_can_count_a_detr_recipe_before_its_task_fills_num_labels():
    """axon compare and axon scaling count FLOPs and parameters before training: resolve_vocab fills
    model.num_labels from the data as training does (3 shapes), so a recipe needs no hand-set count."""
    from axon.models.flops import flops_per_token
    from axon.tasks import resolve_vocab

    cfg = load_config(RECIPE, TINY)
    assert cfg.model.num_labels is None
    resolved = resolve_vocab(cfg)
    assert resolved.model.num_labels == 3 and cfg.model.num_labels is None  # a copy; the recipe is untouched
    assert flops_per_token(resolved.model) > 0
