"""One stack, two worlds: what trainers ask of a world, answered alike by shapes and emoji."""
from __future__ import annotations

import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch

from unclip_lib.emoji import EmojiWorld
from unclip_lib.emoji_eval import augment, emoji_evaluator_batch, emoji_labels
from unclip_lib.world import ShapesWorld
from unclip_lib.worlds import WORLD_NAMES, get_world


@pytest.mark.parametrize("name", WORLD_NAMES)
def test_every_world_answers_the_training_calls(name):
    world = get_world(name)
    rng = np.random.default_rng(0)
    attrs, details = world.draw_training(rng, "train", word_prob=1.0, multi_share=0.0)
    image = world.render_drawn(attrs, details, 32)
    assert image.shape == (32, 32, 3) and image.dtype == np.uint8
    caption = world.training_caption(attrs, rng)
    assert isinstance(caption, str) and attrs["word"] in caption   # a written word is always transcribed
    item, text = world.dataset(seed=0, resolution=32)[5]
    assert item.shape == (3, 32, 32) and isinstance(text, str)
    assert world.decoder_preset in __import__("unclip_lib.decoder", fromlist=["x"]).DECODER_PRESETS


def test_unknown_world_names_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown world 'emojis'.*did you mean: 'emoji'"):
        get_world("emojis")


def test_shapes_training_draws_match_draw_scene():
    """The shapes world's trainers draw exactly what they drew before worlds were parameters
    (so its shipped weights are still reproduced by their commands)."""
    a, b = np.random.default_rng(3), np.random.default_rng(3)
    for _ in range(50):
        got = ShapesWorld.draw_training(a, "train", word_prob=0.25, multi_share=0.25)
        want = ShapesWorld.draw_scene(b, 2 if b.random() < 0.25 else 1, "train", word_prob=0.25)
        assert repr(got) == repr(want)          # attributes and jitter (details hold arrays)
    a, b = np.random.default_rng(4), np.random.default_rng(4)
    assert repr([ShapesWorld.draw_training(a, "all", 0.3, 0.0) for _ in range(20)]) == \
        repr([ShapesWorld.draw_scene(b, 1, "all", 0.3) for _ in range(20)])


def test_emoji_data_pickles_without_its_sheets():
    world = EmojiWorld()
    world.render({"concept": "red apple"}, 32)                   # sheets now decoded in this process
    blob = pickle.dumps(world.dataset(seed=0, resolution=32))
    assert len(blob) < 2_000_000                                 # the folder is re-opened, not copied
    assert torch.equal(pickle.loads(blob)[7][0], world.dataset(seed=0, resolution=32)[7][0])


def test_augment_keeps_white_white_and_moves_ink():
    g = torch.Generator().manual_seed(0)
    white = torch.ones(4, 3, 64, 64)
    assert torch.equal(augment(white, g), white)                 # what comes in from outside is white
    x = torch.ones(4, 3, 64, 64)
    x[:, :, 24:40, 24:40] = 0                                    # a black square in the middle
    y = augment(x, torch.Generator().manual_seed(1), shift=0.0, scale=(1.0, 1.0))
    assert (y - x).abs().max() < 1e-4                            # identity when asked for none
    z = augment(x, torch.Generator().manual_seed(1))
    ink = (1 - z).sum(dim=(1, 2, 3)) / (1 - x).sum(dim=(1, 2, 3))
    assert ((ink > 0.6) & (ink < 1.5)).all()                     # zoom 0.85-1.1 keeps the ink's area near
    assert (z - x).abs().amax(dim=(1, 2, 3)).min() > 0.1         # and every image moved


def test_evaluator_batches_are_pure_functions_of_seed_and_step():
    world = EmojiWorld()
    x1, l1 = emoji_evaluator_batch(world, 0, 3, 8)
    x2, l2 = emoji_evaluator_batch(world, 0, 3, 8)
    assert torch.equal(x1, x2) and all(torch.equal(l1[k], l2[k]) for k in l1)
    x3, _ = emoji_evaluator_batch(world, 0, 4, 8)
    assert not torch.equal(x1, x3)
    labels = emoji_labels(world, [world.attributes("red apple", "noto", word="phone")])
    assert world.words[int(labels["word"][0]) - 1] == "phone"
    assert list(world.concepts)[int(labels["concept"][0])] == "1F34E"


def test_cli_data_emoji_reaches_the_builder():
    out = subprocess.run([sys.executable, "-m", "unclip_lib.cli", "data", "emoji", "--jobs", "0"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "--jobs must be at least 1" in out.stderr
    out = subprocess.run([sys.executable, "-m", "unclip_lib.cli", "train", "clip", "--world", "planets"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "invalid choice: 'planets'" in out.stderr


def test_emoji_clip_batches_pair_siblings_that_their_captions_tell_apart():
    """Half of an emoji CLIP batch is sibling pairs (same concept, one attribute changed), and
    both captions state that attribute, so the pair can only be told apart by seeing it."""
    world = EmojiWorld()
    images, captions = world.clip_batch(seed=0, step=2, batch_size=64, resolution=32)
    again, same = world.clip_batch(seed=0, step=2, batch_size=64, resolution=32)
    assert torch.equal(images, again) and captions == same and images.shape == (64, 3, 32, 32)
    rng = np.random.default_rng(9)
    kinds = set()
    for _ in range(200):
        a = world.draw_image(rng, "train", word_prob=0.5)
        b, which = world.sibling(a, rng)
        kinds.add(which)
        assert b["concept"] == a["concept"]
        changed = {k for k in ("style", "word", "skin_tone") if a[k] != b[k]}
        assert changed == {which}, (a, b, which)
        assert (b["concept"], b["style"]) in set(world.pairs("train"))
        if which == "style":
            assert b["style"] in world.caption({"concept": b["concept"], "style": b["style"]})
            assert b["style"] in world.training_caption(b, rng, name_style=True)
        if which == "skin_tone" and b["skin_tone"]:
            assert b["skin_tone"] in world.training_caption(b, rng, name_tone=True)
    assert kinds == {"style", "word", "skin_tone"}


def test_emoji_reading_groups_differ_only_by_the_written_word():
    """The "reading" recipe's groups: one emoji under 8 different words, captions equal but
    for the word, so matching them takes reading; an unknown recipe is refused by name."""
    world = EmojiWorld()
    images, captions = world.clip_batch(seed=0, step=3, batch_size=128, resolution=32, recipe="reading")
    shares = world.clip_recipes["reading"]
    start = 128 - 2 * (int(128 * shares["sibling_share"]) // 2) - int(128 * shares["reading_share"]) // 8 * 8
    group, pictures = captions[start:start + 8], images[start:start + 8]
    words = [c.split("'")[1] for c in group]
    assert len(set(words)) == 8 and all(w in world.words for w in words)
    assert len({c.replace(f"'{w}'", "'*'") for c, w in zip(group, words)}) == 1
    assert all(not torch.equal(pictures[0], p) for p in pictures[1:])
    with pytest.raises(ValueError, match="unknown CLIP batch recipe 'readin'; did you mean: 'reading'"):
        world.clip_batch(seed=0, step=3, batch_size=8, resolution=32, recipe="readin")
    from unclip_lib.worlds import check_clip_recipe
    with pytest.raises(ValueError, match="the shapes world's"):
        check_clip_recipe("shapes", "reading")


@pytest.mark.parametrize("name", WORLD_NAMES)
def test_world_weights_name_registered_files_of_the_right_kind(name):
    from unclip_lib.checkpoints import SHIPPED, shipped_names
    from unclip_lib.prior import PRIOR_PRESETS
    from unclip_lib.worlds import world_weights

    w = world_weights(name)
    named = [("clip", w.clip), ("evaluator", w.evaluator), ("decoder", w.decoder)] + \
        [("upsampler", u) for u in w.upsamplers] + [("prior", p) for p in w.priors.values()] + \
        ([("decoder", w.inpainter)] if w.inpainter else [])
    # every name the world gives that is shipped is of its kind; the shapes world ships them all
    for kind, short in named:
        assert f"{kind}/{short}" not in SHIPPED or SHIPPED[f"{kind}/{short}"][0] == kind
    if name == "shapes":
        assert all(short in shipped_names(kind) for kind, short in named)
    assert set(w.priors) == {"diffusion", "autoregressive"} and name in PRIOR_PRESETS


def test_load_unclip_names_every_missing_file_before_loading_any(tmp_path, monkeypatch):
    import shutil

    from unclip_lib.checkpoints import data_dir
    from unclip_lib.pipeline import load_unclip

    for stem in ("clip_shapes", "decoder_shapes", "upsampler_up64", "upsampler_up128", "decoder_shapes_inpaint"):
        for suffix in (".safetensors", ".json"):
            shutil.copy(data_dir() / f"{stem}{suffix}", tmp_path / f"{stem}{suffix}")
    shutil.copy(data_dir() / "SHA256SUMS", tmp_path / "SHA256SUMS")
    monkeypatch.setenv("UNCLIP_LAB_DATA", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"\['prior/diffusion'\].*--world shapes.*priors=\(\)"):
        load_unclip("shapes", priors=("diffusion",))
    pipe = load_unclip("shapes", priors=())             # the stack without priors still loads
    assert pipe.priors == {} and pipe.inpainter is not None
    with pytest.raises(FileNotFoundError, match=r"'clip/emoji'.*'decoder/emoji'.*--world emoji"):
        load_unclip("emoji")


@pytest.mark.parametrize("world,hint", [("shapes", r"load_unclip\('shapes'\) loads both"),
                                        ("emoji", r"load_unclip\('emoji'\) loads both")])
def test_a_stack_without_priors_says_how_to_get_one(world, hint):
    from unclip_lib.pipeline import load_unclip

    pipe = load_unclip(world, priors=())
    with pytest.raises(ValueError, match="no prior.*" + hint):
        pipe.generate(["a red circle" if world == "shapes" else "red apple"])
