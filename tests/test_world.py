import numpy as np
import pytest
import torch

from unclip_lib import ShapesDataset, ShapesWorld
from unclip_lib.world import HELD_OUT


def test_vocabulary_sizes():
    v = ShapesWorld.vocabulary
    assert len(v["shape"]) >= 6 and len(v["color"]) >= 8
    assert len(v["size"]) >= 2 and len(v["position"]) >= 5 and len(v["background"]) >= 3


def test_same_seed_same_pixels_and_captions():
    a = ShapesWorld(seed=3).sample(12, objects=2, word_prob=0.5)
    b = ShapesWorld(seed=3).sample(12, objects=2, word_prob=0.5)
    assert torch.equal(a.images, b.images) and a.captions == b.captions
    c = ShapesWorld(seed=4).sample(12, objects=2, word_prob=0.5)
    assert not torch.equal(a.images, c.images)
    # a seeded batch does not depend on what the world drew before
    w = ShapesWorld(seed=3)
    first = w.sample(4, seed=9)
    w.sample(5)
    assert torch.equal(first.images, w.sample(4, seed=9).images)


def test_batch_layout():
    batch = ShapesWorld(0).sample(5, resolution=48)
    assert batch.images.shape == (5, 3, 48, 48) and batch.images.dtype == torch.float32
    assert 0 <= batch.images.min() and batch.images.max() <= 1
    assert len(batch.captions) == len(batch.attributes) == 5
    assert set(batch.attributes[0]) == {"shape", "color", "size", "position", "background", "word"}


def test_canonical_captions():
    world = ShapesWorld(0)
    attrs = {"shape": "triangle", "color": "red", "size": "small", "position": "left"}
    assert world.caption(attrs) == "a small red triangle on the left"
    assert world.caption({"color": "orange", "shape": "circle"}) == "an orange circle"
    assert world.caption({"shape": "circle", "color": "red", "word": "square"}) == \
        "a red circle with the word 'square' written on it"
    two = {"objects": [{"shape": "star", "color": "blue"}, {"shape": "circle", "color": "green"}]}
    assert world.caption(two) == "two shapes: a blue star and a green circle"


def test_held_out_pairs_never_in_train_split():
    world = ShapesWorld(1)
    for objects in (1, 2):
        batch = world.sample(400, objects=objects, split="train")
        for a in batch.attributes:
            for o in a.get("objects", [a]):
                assert (o["shape"], o["color"]) not in HELD_OUT
    held = world.sample(50, split="held_out")
    assert all((a["shape"], a["color"]) in HELD_OUT for a in held.attributes)
    ds = ShapesDataset(seed=0, two_object_prob=0.5)
    for i in range(300):
        for o in ds.attributes(i).get("objects", [ds.attributes(i)]):
            assert (o["shape"], o["color"]) not in HELD_OUT


def test_training_words_name_own_shape_or_colour():
    batch = ShapesWorld(2).sample(300, word_prob=1.0, caption_style="varied")
    words = [a for a in batch.attributes if a["word"]]
    assert len(words) == 300
    assert all(a["word"] in (a["shape"], a["color"]) for a in words)


def test_render_draws_exactly_the_scene():
    world = ShapesWorld(0)
    red_left = {"shape": "square", "color": "red", "size": "large", "position": "left"}
    img = world.render([red_left], resolution=64)[0]
    # the left half holds the red square, the right half is background
    left, right = img[:, 24:40, 10:24], img[:, 24:40, 44:60]
    assert left[0].mean() > 0.8 and left[1].mean() < 0.25
    assert (right - right.mean((1, 2), keepdim=True)).abs().max() < 0.05
    # same scene with recorded jitter re-renders exactly, at any resolution
    batch = world.sample(3, resolution=32)
    again = world.render(batch.attributes, resolution=32, details=batch.details)
    assert torch.equal(batch.images, again)
    assert world.render(batch.attributes, 128, details=batch.details).shape == (3, 3, 128, 128)


def test_typographic_attack_is_render_with_a_word():
    world = ShapesWorld(0)
    plain = {"shape": "circle", "color": "red", "size": "large", "position": "center"}
    attacked = dict(plain, word="square")
    a, b = world.render([plain, attacked], 64)
    assert (a - b).abs().sum() > 20  # the word adds ink
    assert (a[:, :40] - b[:, :40]).abs().max() < 1e-6  # and nothing else changes


def test_dataset_items_are_pure_functions_of_index():
    ds = ShapesDataset(seed=5)
    img, cap = ds[17]
    img2, cap2 = ShapesDataset(seed=5)[17]
    assert torch.equal(img, img2) and cap == cap2 and img.shape == (3, 64, 64)
    with pytest.raises(IndexError):
        ds[len(ds)]


@pytest.mark.parametrize("bad", [
    {"shape": "hexagon", "color": "red", "size": "small", "position": "left"},
    {"shape": "circle", "color": "teal", "size": "small", "position": "left"},
    {"shape": "circle", "color": "red", "size": "small"},
])
def test_render_rejects_unknown_attributes(bad):
    with pytest.raises(ValueError, match="must be one of"):
        ShapesWorld(0).render([bad], 32)


def test_sample_rejects_bad_arguments():
    world = ShapesWorld(0)
    with pytest.raises(ValueError):
        world.sample(0)
    with pytest.raises(ValueError):
        world.sample(2, objects=3)
    with pytest.raises(ValueError):
        world.sample(2, split="test")
