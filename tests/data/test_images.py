"""Images and points for diffusion: the bundled digits and their split, 2-D toy sets, folders of images."""

import numpy as np
import pytest
import torch
from PIL import Image

from axon.data.images import (
    DIGITS_CLASSES,
    TOY_CLASSES,
    TOY_SETS,
    digits_split,
    load_digits,
    load_image_folder,
    split,
    toy_2d,
)
from axon.errors import DataError, OptionError


@pytest.fixture(scope="module")
def digits():
    return load_digits()


def test_digits_are_sklearns_scaled_to_minus_one_one(digits):
    from sklearn.datasets import load_digits as sk_load_digits

    images, labels = digits
    assert images.shape == (1797, 1, 8, 8) and images.dtype == torch.float32
    assert labels.shape == (1797,) and labels.dtype == torch.int64
    raw = sk_load_digits()
    assert torch.equal(labels, torch.from_numpy(raw.target).long())
    ink = torch.from_numpy(raw.images).float().unsqueeze(1)
    assert torch.equal(images[ink == 0], torch.full_like(images[ink == 0], -1.0))
    assert torch.equal(images[ink == 16], torch.ones_like(images[ink == 16]))
    torch.testing.assert_close(images, ink / 8 - 1)


def test_the_split_is_stratified_disjoint_and_fixed(digits):
    labels = digits[1].numpy()
    train, val = split(labels, 0.2, seed=0)
    assert len(np.intersect1d(train, val)) == 0 and len(train) + len(val) == len(labels)
    for c in range(DIGITS_CLASSES):  # each class gives round(20%) of its items to val
        assert (labels[val] == c).sum() == round((labels == c).sum() * 0.2)
    again_train, again_val = split(labels, 0.2, seed=0)
    assert np.array_equal(val, again_val) and np.array_equal(train, again_train)
    assert not np.array_equal(val, split(labels, 0.2, seed=1)[1])
    x_train, y_train = digits_split("train")
    x_val, _ = digits_split("val")
    assert (len(x_train), len(x_val)) == (1438, 359)  # the sizes the docs quote
    assert torch.equal(x_val, digits[0][torch.from_numpy(val)])
    assert torch.equal(y_train, digits[1][torch.from_numpy(train)])
    with pytest.raises(OptionError, match="val_fraction must be in"):
        split(labels, 1.0)


@pytest.mark.parametrize("name", TOY_SETS)
def test_toy_sets_are_deterministic_centred_and_unit_variance(name):
    points, labels = toy_2d(name, 20000, seed=3)
    assert points.shape == (20000, 2) and points.dtype == torch.float32 and labels.dtype == torch.int64
    assert torch.equal(points, toy_2d(name, 20000, seed=3)[0])  # same seed, same points
    assert not torch.equal(points[:100], toy_2d(name, 100, seed=4)[0])
    # Centred and scaled by the distribution's moments (not the sample's): any draw, of any size, has the same law.
    assert points.mean(0).abs().max() < 0.03
    assert abs(float(points.var(0).mean()) - 1.0) < 0.03
    assert set(labels.unique().tolist()) == set(range(TOY_CLASSES[name]))


def test_gaussians_sit_on_eight_centres_named_by_their_labels():
    points, labels = toy_2d("gaussians", 4000, seed=0)
    angles = 2 * np.pi * np.arange(8) / 8
    radius = float(points.norm(dim=1).mean())
    centres = torch.tensor(np.stack([np.cos(angles), np.sin(angles)], 1), dtype=torch.float32) * radius
    nearest = torch.cdist(points, centres).argmin(1)
    assert (nearest == labels).float().mean() > 0.99
    with pytest.raises(OptionError, match="name must be one of swiss_roll, moons, gaussians"):
        toy_2d("spirals", 10)


def _save(path, mode, size, value):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, value).save(path)
    return path


def test_an_image_folder_gives_one_class_per_sub_folder(tmp_path):
    _save(tmp_path / "cats" / "a.png", "RGB", (10, 10), (255, 255, 255))
    _save(tmp_path / "cats" / "b.jpg", "L", (20, 12), 0)
    _save(tmp_path / "dogs" / "c.png", "P", (7, 7), 3)
    (tmp_path / "dogs" / "notes.txt").write_text("not an image")  # skipped
    _save(tmp_path / "dogs" / ".hidden.png", "L", (4, 4), 0)  # skipped
    images, labels, names = load_image_folder(tmp_path, 4, 3)
    assert names == ["cats", "dogs"] and labels.tolist() == [0, 0, 1]
    assert images.shape == (3, 3, 4, 4) and images.dtype == torch.float32
    assert torch.equal(images[0], torch.ones(3, 4, 4)) and torch.equal(images[1], -torch.ones(3, 4, 4))
    grey, _, _ = load_image_folder(tmp_path, 6, 1)
    assert grey.shape == (3, 1, 6, 6) and grey.min() >= -1 and grey.max() <= 1


def test_a_flat_folder_is_one_class_and_the_centre_square_is_kept(tmp_path):
    im = Image.new("L", (30, 10), 0)  # black sides, a white square in the middle
    im.paste(255, (10, 0, 20, 10))
    im.save(tmp_path / "wide.png")
    images, labels, names = load_image_folder(tmp_path, 5, 1)
    assert names == [tmp_path.name] and labels.tolist() == [0]
    assert torch.equal(images, torch.ones(1, 1, 5, 5))  # the centred square, not the squeezed whole


@pytest.mark.parametrize("case", ["file", "missing", "empty", "garbage", "truncated", "sixteen_bit", "lab", "stray"])
def test_bad_image_input_ends_in_one_line_naming_the_path(tmp_path, case):
    root = tmp_path / "images"
    root.mkdir()
    if case == "file":
        root = tmp_path / "f.txt"
        root.write_text("x")
        named, match = root, "not a folder"
    elif case == "missing":
        root = tmp_path / "nowhere"
        named, match = root, "no such folder"
    elif case == "empty":
        _save(root / "a" / "x.png", "L", (4, 4), 0)
        (root / "b").mkdir()
        (root / "b" / "readme.md").write_text("no images here")
        named, match = root / "b", "no images"
    elif case == "garbage":
        named = root / "x.png"
        named.write_bytes(b"definitely not a png")
        match = "not an image Pillow can read"
    elif case == "truncated":
        whole = _save(tmp_path / "whole.png", "RGB", (64, 64), (1, 2, 3))
        named = root / "cut.png"
        named.write_bytes(whole.read_bytes()[:60])
        match = "unreadable or corrupt image"
    elif case == "sixteen_bit":
        named = root / "deep.png"
        Image.fromarray(np.full((4, 4), 1000, dtype=np.uint16)).save(named)  # Pillow's convert would clip to 255
        match = "16-bit or float pixels"
    elif case == "lab":
        named = _save(root / "lab.tif", "LAB", (4, 4), (50, 0, 0))  # Pillow converts LAB to RGB only
        match = "mode LAB cannot be converted to L"
    else:
        _save(root / "a" / "x.png", "L", (4, 4), 0)
        named = _save(root / "loose.png", "L", (4, 4), 0)
        match = "an image beside class folders"
    with pytest.raises(DataError, match=match) as e:
        load_image_folder(root, 8, 1)
    message = str(e.value)
    assert "\n" not in message and message.startswith(str(named) + ":")


def test_image_folder_options_are_checked(tmp_path):
    _save(tmp_path / "x.png", "L", (4, 4), 0)
    with pytest.raises(OptionError, match="channels must be 1 .grey. or 3 .RGB., got 2"):
        load_image_folder(tmp_path, 8, 2)
    with pytest.raises(OptionError, match="image_size must be an integer >= 1"):
        load_image_folder(tmp_path, 0, 1)
