"""The mixed_modal task (axon.tasks.mixed_modal): the vocabulary layout and the sequences, modality-aware
sampling (every image span decodes to n valid codes), the captions of the digits, the objective's
parts, both recipes end to end with axon eval / sample, caption -> image learning a planted mapping,
exact resume after SIGKILL, and bad inputs ending in one line."""

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
from axon.data.captions import (
    IGNORE,
    NUMBER_WORDS,
    CaptionedImages,
    TokenLayout,
    caption_class,
    class_medians,
    digit_captions,
)
from axon.data.images import load_digits
from axon.generate import generate
from axon.generate.modal import ImageSpans
from axon.models import build_model
from axon.objectives.causal_lm import causal_lm_loss
from axon.objectives.mixed_modal import MixedModalLM
from axon.tasks.mixed_modal import draw_codes, encode_images
from axon.tasks.vq import load_image_tokenizer
from axon.train.checkpoint import list_checkpoints
from axon.train.logging import read_metrics

EARLY = "configs/multimodal/early_digits.yaml"
LATE = "configs/multimodal/late_digits.yaml"
VQ = "configs/multimodal/vq_digits.yaml"
COMMON = ["--train.max_steps=6", "--train.eval_interval=3", "--train.checkpoint_interval=3", "--train.log_interval=1",
          "--train.batch_size=8", "--train.eval_batches=2", "--mixed_modal.eval_examples=6", "--mixed_modal.samples=2",
          "--log.progress=false", "--train.threads=1", "--schedule.warmup_steps=2"]
SMALL = ["--model.n_layer=1", "--model.n_embd=32", "--model.n_head=2"]


def losses(run):
    return {r["step"]: r["train_loss"] for r in read_metrics(Path(run) / "metrics.jsonl") if "train_loss" in r}


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("mixed_modal")


@pytest.fixture(scope="module")
def vq_run(root):
    """A tiny image tokenizer: 16 codes per digit from a codebook of 16."""
    assert main(["train", "--config", VQ, "--model.preset=tiny", "--train.max_steps=30", "--train.eval_interval=30",
                 "--train.batch_size=32", "--log.progress=false", "--train.threads=1", f"--out_dir={root}",
                 "--name=vq"]) == 0
    return root / "vq"


@pytest.fixture(scope="module")
def early_run(root, vq_run):
    assert main(["train", "--config", EARLY, *SMALL, *COMMON, f"--mixed_modal.image_tokenizer={vq_run}",
                 f"--out_dir={root}", "--name=early"]) == 0
    return root / "early"


# ---------------------------------------------------------------------------------------------
# The layout, the sequences, the captions


def test_the_layout_puts_text_markers_and_codes_in_one_vocabulary():
    lay = TokenLayout(text_vocab=5, codebook_size=4, tokens_per_image=3)
    assert (lay.img_open, lay.img_close, lay.eos, lay.code_offset, lay.vocab_size) == (5, 6, 7, 8, 12)
    assert lay.image_span([0, 3, 1]) == [5, 8, 11, 9, 6]
    assert lay.caption_to_image([1, 2], [0, 3, 1]) == [1, 2, 5, 8, 11, 9, 6, 7]
    assert lay.image_to_caption([0, 3, 1], [1, 2]) == [5, 8, 11, 9, 6, 1, 2, 7]
    assert lay.image_codes([1, 2, 5, 8, 11, 9, 6, 7]) == [0, 3, 1]
    assert lay.image_codes([8, 11, 9, 6]) == [0, 3, 1]  # generated after a prompt ending in <img>
    assert lay.image_codes([8, 11, 6]) is None  # two codes, then </img>
    assert lay.image_codes([8, 11, 9, 10, 6]) is None  # four codes
    assert lay.image_codes([8, 2, 9, 6]) is None  # text inside the image
    assert lay.caption_ids([1, 4, 0, 7, 3]) == [1, 4, 0]


def test_batches_are_shifted_padded_and_a_pure_function_of_their_arguments():
    lay = TokenLayout(5, 4, 3)
    caps = [[1, 2], [3], [4, 4, 4]]
    codes = torch.tensor([[0, 1, 2], [3, 3, 3], [1, 0, 1]])
    data = CaptionedImages(lay, caps, codes=codes, direction="both")
    x, y = data.get_batch(step=3, batch_size=64, block_size=10, seed=1)
    assert x.shape == y.shape == (64, 10)
    x2, y2 = data.get_batch(step=3, batch_size=64, block_size=10, seed=1)
    assert torch.equal(x, x2) and torch.equal(y, y2)
    assert not torch.equal(x, data.get_batch(step=4, batch_size=64, block_size=10, seed=1)[0])
    starts = set(x[:, 0].tolist())
    assert lay.img_open in starts and starts & {1, 3, 4}  # both directions were drawn
    for row_x, row_y in zip(x.tolist(), y.tolist()):
        n = sum(t != IGNORE for t in row_y)
        seq = row_x[:n] + [row_y[n - 1]]
        assert row_x[1:n] == row_y[:n - 1] and seq[-1] == lay.eos  # y is x shifted, ending in <eos>
        assert all(t == IGNORE for t in row_y[n:]) and all(t == lay.eos for t in row_x[n:])
        assert lay.image_codes(seq) in ([0, 1, 2], [3, 3, 3], [1, 0, 1])
    one_way = CaptionedImages(lay, caps, codes=codes, direction="caption_to_image")
    assert lay.img_open not in one_way.get_batch(0, 32, 10, 0)[0][:, 0].tolist()
    images = torch.arange(3.0).view(3, 1, 1, 1).expand(3, 1, 8, 8)
    late = CaptionedImages(TokenLayout(5), caps, images=images)
    im, lx, ly = late.get_batch(0, 16, 4, 0)
    assert im.shape == (16, 1, 8, 8) and lx.shape == ly.shape == (16, 4)
    for pic, row_x, row_y in zip(im, lx.tolist(), ly.tolist()):
        i = int(pic[0, 0, 0])
        assert row_x[0] == lay.img_close and row_y[:len(caps[i]) + 1] == [*caps[i], lay.eos]  # the image's caption
    with pytest.raises(Exception, match="more than model.block_size=3"):
        data.get_batch(0, 4, 3, 0)


def test_the_digits_captions_name_the_class_and_measure_ink_and_slant():
    x, y = load_digits()
    caps = digit_captions(x[:200], y[:200], class_medians(x, y, 10))
    assert all(caption_class(c) == int(k) and c.startswith(f"a handwritten {NUMBER_WORDS[k]}, drawn ")
               for c, k in zip(caps, y[:200].tolist()))
    assert {c.split(", ")[1] for c in caps} == {"drawn thin", "drawn bold"}
    assert {c.split(", ")[2] for c in caps} == {"leaning left", "upright", "leaning right"}
    slash = -torch.ones(2, 1, 8, 8)
    for i in range(8):
        slash[0, 0, i, 7 - i] = 1  # "/": the top to the right
        slash[1, 0, i, i] = 1  # "\"
    lean = [c.split(", ")[2] for c in digit_captions(slash, torch.tensor([1, 1]), torch.zeros(10))]
    assert lean == ["leaning right", "leaning left"]
    assert caption_class("nothing here") is None


# ---------------------------------------------------------------------------------------------
# Modality-aware sampling


def test_the_image_span_rule_allows_codes_then_close_then_text():
    lay = TokenLayout(5, 4, 3)
    rule = ImageSpans.of(lay)
    mask = rule([[1, 2], [1, 5], [1, 5, 8, 9], [5, 8, 9, 10], [5, 8, 9, 10, 6, 2]])
    text = [True] * 5 + [True, False, True] + [False] * 4  # text, <img>, <eos>
    codes = [False] * 8 + [True] * 4
    close = [False] * 6 + [True] + [False] * 5
    assert mask.tolist() == [text, codes, codes, close, text]


def tiny_decoder(vocab: int, block: int = 32, seed: int = 0):
    cfg = load_config(EARLY, ["--model.n_layer=1", "--model.n_embd=32", "--model.n_head=2", f"--model.block_size={block}",
                              f"--model.vocab_size={vocab}", "--model.init_std=0.5"])  # wide logits: a wild sampler
    torch.manual_seed(seed)
    return build_model(cfg.model).eval()


def test_every_drawn_image_span_decodes_to_n_valid_codes_and_free_sampling_does_not():
    lay = TokenLayout(text_vocab=6, codebook_size=8, tokens_per_image=5)
    model = tiny_decoder(lay.vocab_size)
    captions = [[i % 6, (i * 7) % 6] for i in range(64)]
    codes = draw_codes(model, lay, captions, temperature=2.0, seed=0)
    assert all(c is not None and len(c) == 5 and all(0 <= k < 8 for k in c) for c in codes)
    assert len({tuple(c) for c in codes}) > 32  # really sampled
    free = generate(model, [[*c, lay.img_open] for c in captions], 6, temperature=2.0,
                    generator=torch.Generator().manual_seed(0))
    assert sum(lay.image_codes(t) is None for t in free.tokens) > 16  # without the rule, spans break


def test_generate_never_draws_a_token_the_rule_forbids_and_refuses_an_empty_row():
    model = tiny_decoder(12)
    allowed = torch.zeros(12, dtype=torch.bool)
    allowed[[3, 7]] = True
    out = generate(model, [[1], [2, 2]], 20, temperature=3.0, generator=torch.Generator().manual_seed(1),
                   allowed=lambda seqs: allowed.expand(len(seqs), 12))
    assert {t for row in out.tokens for t in row} == {3, 7}
    greedy = generate(model, [[1]], 5, temperature=0, allowed=lambda seqs: allowed.expand(len(seqs), 12))
    assert set(greedy.tokens[0]) <= {3, 7}
    with pytest.raises(ValueError, match="no token"):
        generate(model, [[1]], 2, allowed=lambda seqs: torch.zeros(len(seqs), 12, dtype=torch.bool))


def test_the_objective_splits_its_cross_entropy_into_image_and_text():
    lay = TokenLayout(5, 4, 3)
    model = tiny_decoder(lay.vocab_size)
    data = CaptionedImages(lay, [[1, 2], [3, 4, 0]], codes=torch.tensor([[0, 1, 2], [3, 2, 1]]))
    x, y = data.get_batch(0, 6, 12, 0)
    loss, parts = MixedModalLM(code_offset=lay.code_offset)(model, (x, y))
    ce, _ = causal_lm_loss(model(x), y)
    torch.testing.assert_close(loss, ce)
    keep = y != IGNORE
    n_image = int((y[keep] >= lay.code_offset).sum())
    n = int(keep.sum())
    assert int(parts["count"]) == n
    mixed = (parts["ce_image"] * n_image + parts["ce_text"] * (n - n_image)) / n
    torch.testing.assert_close(mixed, ce.detach())
    assert float(parts["logit_norm"]) > 0


# ---------------------------------------------------------------------------------------------
# The recipes end to end


def test_the_early_fusion_recipe_reports_both_directions_and_samples(early_run, capsys, tmp_path):
    result = json.loads((early_run / "result.json").read_text())
    for key in ("val_caption_exact", "val_caption_class_acc", "val_image_class_acc", "val_logit_norm", "val_ce_image",
                "val_ce_text"):
        assert key in result, key
    assert result["val_image_spans_valid"] == 1.0
    assert 0 <= result["val_image_class_acc"] <= 1 and 0 <= result["val_caption_class_acc"] <= 1
    evals = [r for r in read_metrics(early_run / "metrics.jsonl") if "val_image_class_acc" in r]
    assert [r["step"] for r in evals] == [3, 6]
    assert sorted(p.name for p in (early_run / "samples").iterdir()) == ["step_0000003.png", "step_0000006.png"]
    assert Image.open(early_run / "samples" / "step_0000006.png").size == ((10 * 9 + 1) * 4, (4 * 9 + 1) * 4)
    layout = json.loads((early_run / "mixed_modal.json").read_text())
    assert layout["fusion"] == "early" and layout["layout"]["codebook_size"] == 16
    recorded = load_config(early_run / "config.yaml").mixed_modal.image_tokenizer
    assert Path(recorded).is_absolute() and Path(recorded) == Path(layout["image_tokenizer"])
    text = (early_run / "samples.txt").read_text()
    assert "image -> caption:" in text and "caption -> image:" in text

    assert main(["eval", str(early_run)]) == 0
    out = capsys.readouterr().out
    assert "caption_class_acc" in out and "image_class_acc" in out
    png = tmp_path / "seven.png"
    assert main(["sample", str(early_run), "--prompt", "a handwritten seven, drawn thin, upright", "--out", str(png),
                 "--num-samples", "4"]) == 0
    assert Image.open(png).size == ((2 * 9 + 1) * 4, (2 * 9 + 1) * 4)  # 4 images in a 2 x 2 grid
    x, _ = load_digits()
    Image.fromarray(((x[0, 0].numpy() + 1) * 127.5).astype(np.uint8)).save(tmp_path / "zero.png")
    capsys.readouterr()
    assert main(["sample", str(early_run), "--image", str(tmp_path / "zero.png")]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"{tmp_path / 'zero.png'}:") and "\n" not in line  # an untrained model may say nothing


def test_the_late_fusion_recipe_captions_images(root, capsys, tmp_path):
    assert main(["train", "--config", LATE, "--model.preset=tiny", "--model.block_size=48", *COMMON,
                 f"--out_dir={root}", "--name=late"]) == 0
    result = json.loads((root / "late" / "result.json").read_text())
    assert {"val_caption_exact", "val_caption_class_acc", "val_logit_norm"} <= result.keys()
    assert "val_image_class_acc" not in result
    assert json.loads((root / "late" / "mixed_modal.json").read_text())["fusion"] == "late"
    x, _ = load_digits()
    Image.fromarray(((x[3, 0].numpy() + 1) * 127.5).astype(np.uint8)).save(tmp_path / "three.png")
    capsys.readouterr()
    assert main(["sample", str(root / "late"), "--image", str(tmp_path / "three.png")]) == 0
    assert capsys.readouterr().out.startswith(f"{tmp_path / 'three.png'}:")
    assert main(["sample", str(root / "late"), "--prompt", "a handwritten one"]) != 0
    assert "give --image FILE" in capsys.readouterr().err


def write_caption_file(folder: Path, captions: list[str], indices: list[int]) -> Path:
    x, _ = load_digits()
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for cap, i in zip(captions, indices):
        Image.fromarray(((x[i, 0].numpy() + 1) * 127.5).round().astype(np.uint8)).save(folder / f"{i}.png")
        lines.append(json.dumps({"image": f"{i}.png", "caption": cap}))
    (folder / "captions.jsonl").write_text("\n".join(lines) + "\n")
    return folder / "captions.jsonl"


def test_caption_to_image_learns_a_planted_mapping(root, vq_run):
    """Four captions, each with one image: a tiny decoder trained on caption -> image draws, greedily, exactly
    the codes of the image its caption names."""
    file = write_caption_file(root / "planted_data", ["zero", "one", "two", "three"], [0, 1, 2, 3])
    assert main(["train", "--config", EARLY, *SMALL, "--model.n_embd=64", "--model.block_size=24",
                 f"--mixed_modal.image_tokenizer={vq_run}", "--mixed_modal.direction=caption_to_image",
                 "--data.dataset=null", f"--data.train_file={file}", f"--data.val_file={file}",
                 "--train.max_steps=150", "--train.eval_interval=150", "--train.batch_size=16", "--optim.lr=3e-3",
                 "--schedule.warmup_steps=10", "--train.sample_tokens=0", "--mixed_modal.eval_examples=4",
                 "--log.progress=false", "--train.threads=1", f"--out_dir={root}", "--name=planted"]) == 0
    from axon.train.run import load_run

    cfg, model, tokenizer = load_run(root / "planted", "cpu")
    from axon.tasks.mixed_modal import load_run_layout

    layout, vq = load_run_layout(root / "planted", cfg)
    x, _ = load_digits()
    truth = encode_images(vq, x[:4]).tolist()
    drawn = draw_codes(model, layout, [tokenizer.encode(c) for c in ["zero", "one", "two", "three"]], 0.0, 0)
    assert drawn == truth
    assert len({tuple(t) for t in truth}) == 4  # four different images


def test_a_run_killed_with_sigkill_resumes_exactly(root, vq_run, early_run):
    run = root / "sigkill"
    args = [a for a in COMMON if not a.startswith("--train.max_steps")]
    proc = axon_train(["--config", EARLY, *SMALL, *args, "--train.max_steps=100000",
                       f"--mixed_modal.image_tokenizer={vq_run}", f"--out_dir={root}", "--name=sigkill"],
                      env={**os.environ, "OMP_NUM_THREADS": "1"})
    kill_at_checkpoint(proc, run, 3)
    assert not (run / "result.json").exists()
    assert main(["train", "--resume", str(run), "--train.max_steps=6"]) == 0
    assert losses(run) == losses(early_run)
    a = load_file(str(list_checkpoints(early_run / "checkpoints")[0] / "model.safetensors"))
    b = load_file(str(list_checkpoints(run / "checkpoints")[0] / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_sampling_refuses_an_image_tokenizer_that_is_not_the_one_trained_with(root, early_run, capsys):
    """The layout records the codebook; a run whose recorded tokenizer no longer matches it ends in one line."""
    import shutil

    run = root / "changed"
    shutil.copytree(early_run, run)
    record = json.loads((run / "mixed_modal.json").read_text())
    assert load_image_tokenizer(record["image_tokenizer"]).codebook_size == record["layout"]["codebook_size"] == 16
    record["layout"]["codebook_size"] = 32
    (run / "mixed_modal.json").write_text(json.dumps(record))
    assert main(["sample", str(run), "--prompt", "a handwritten one"]) != 0
    err = capsys.readouterr().err
    assert "is not the one" in err and len(err.strip().splitlines()) == 1


def test_bad_inputs_end_in_one_line(root, vq_run, tmp_path, capsys):
    good = write_caption_file(tmp_path / "good", ["zero", "one", "two"], [0, 1, 2])
    folder = good.parent
    (folder / "broken.png").write_bytes(b"not a png")
    bad_files = {
        "json": '{"image": "0.png", "caption": "zero"}\n{"image": "1.png", caption}\n',
        "empty": '{"image": "0.png", "caption": "   "}\n',
        "missing": '{"image": "nowhere.png", "caption": "zero"}\n',
        "broken": '{"image": "broken.png", "caption": "zero"}\n',
        "shape": '["0.png", "zero"]\n',
    }
    for name, text in bad_files.items():
        (folder / f"{name}.jsonl").write_text(text)
    tok = f"--mixed_modal.image_tokenizer={vq_run}"
    file_args = ["--data.dataset=null", f"--data.val_file={good}"]
    cases = [
        ([tok, *file_args, f"--data.train_file={folder / 'json.jsonl'}"], "json.jsonl:2: not JSON"),
        ([tok, *file_args, f"--data.train_file={folder / 'empty.jsonl'}"], "empty.jsonl:1: the caption must be non-empty"),
        ([tok, *file_args, f"--data.train_file={folder / 'missing.jsonl'}"], "nowhere.png not found"),
        ([tok, *file_args, f"--data.train_file={folder / 'broken.jsonl'}"], "broken.png"),
        ([tok, *file_args, f"--data.train_file={folder / 'shape.jsonl'}"], 'expected an object {"image"'),
        (["--mixed_modal.image_tokenizer=null"], "mixed_modal.image_tokenizer: early fusion needs"),
        ([tok, "--model.block_size=40"], "model.block_size=40: the longest example needs"),
        ([f"--mixed_modal.image_tokenizer={tmp_path}"], str(tmp_path)),
        ([tok, "--data.dataset=shapes"], "has no captions"),
        ([tok, "--data.dataset=null", f"--data.train_file={good}"], "fewer than 10 captioned images"),  # no val_file
        ([tok, "--data.dataset=null", f"--data.train_file={folder / 'none.jsonl'}"], "data.train_file:"),
    ]
    for args, message in cases:
        code = main(["train", "--config", EARLY, *SMALL, *args, "--train.max_steps=1", "--log.progress=false",
                     f"--out_dir={tmp_path / 'runs'}"])
        err = capsys.readouterr().err
        assert code != 0 and message in err, (args, err)
        assert len(err.strip().splitlines()) == 1, err
    code = main(["train", "--config", LATE, "--model.preset=tiny", "--mixed_modal.direction=both",
                 "--train.max_steps=1", "--log.progress=false", f"--out_dir={tmp_path / 'runs'}"])
    err = capsys.readouterr().err
    assert code != 0 and "a late_fusion model reads images and writes captions only" in err


def test_a_relative_tokenizer_path_is_recorded_absolute_so_eval_works_from_elsewhere(root, vq_run, monkeypatch, tmp_path):
    monkeypatch.chdir(vq_run.parent)
    assert main(["train", "--config", str(Path(__file__).resolve().parents[2] / EARLY), *SMALL, *COMMON,
                 "--train.max_steps=1", "--mixed_modal.image_tokenizer=vq", f"--out_dir={root}", "--name=relative"]) == 0
    assert load_config(root / "relative" / "config.yaml").mixed_modal.image_tokenizer == str(vq_run.resolve())
    monkeypatch.chdir(tmp_path)
    assert main(["eval", str(root / "relative")]) == 0
