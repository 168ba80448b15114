"""The emoji world (unclip_lib.emoji) and its builder (unclip_lib.emoji_data).

Everything here reads the shipped files in data/emoji/ and runs in seconds, except the
bit-exact rebuild at the end, which needs npm, rsvg-convert and about 20-40 minutes: it runs
only with UNCLIP_LAB_REBUILD=1 (and is skipped, saying why, without npm or rsvg-convert).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from unclip_lib import emoji_data
from unclip_lib.emoji import (SHIPPED_RESOLUTION, SKIN_TONES, STYLES, EmojiDataError, EmojiDataset, EmojiWorld,
                              downsample2, emoji_dir, file_sha256, load_emoji_data, sheet_name)

DATA = emoji_dir()


@pytest.fixture(scope="module")
def world():
    return EmojiWorld(seed=0)


def _linked_copy(tmp_path: Path, skip: tuple[str, ...] = ()) -> Path:
    """A copy of data/emoji made of symlinks (cheap), leaving out `skip`."""
    out = tmp_path / "emoji"
    for src in DATA.rglob("*"):
        rel = src.relative_to(DATA)
        if src.is_dir() or str(rel) in skip:
            continue
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).symlink_to(src)
    return out


# ----------------------------------------------------------------------------- counts and splits

def test_counts(world):
    c = world.counts()
    assert c == {"concepts": 1633, "concepts_in_all_styles": 1557, "skin_tone_variants": 1615, "pairs": 6456,
                 "held_out_pairs": 625, "images": 12761, "held_out_images": c["held_out_images"]}
    manifest = json.loads((DATA / "MANIFEST.json").read_text())
    assert {k: manifest["counts"][k] for k in ("concepts", "pairs", "images", "held_out_pairs")} == \
        {k: c[k] for k in ("concepts", "pairs", "images", "held_out_pairs")}
    # every concept and every skin-tone variant is drawn in at least three styles
    for info in world.concepts.values():
        assert len(info["styles"]) >= 3
        assert all(len(s["styles"]) >= 3 for s in info["skins"])
    assert len(world.combinations("all")) == c["images"]


def test_held_out_split_is_fixed_and_disjoint(world):
    held = world.held_out
    pairs = world.pairs("all")
    assert 0.08 < len(held) / len(pairs) < 0.12
    assert ("1F431", "fluent") in held          # the Fluent cat face is never seen in training
    train = set(world.pairs("train"))
    assert train.isdisjoint(held) and train | set(world.pairs("held_out")) == set(pairs)
    # the rule that chose them still chooses the same pairs, and each concept keeps 3 styles in training
    assert emoji_data._held_out(list(world.concepts.values())) == [list(p) for p in world.data.index["held_out"]]
    per_concept = {}
    for concept, style in train:
        per_concept.setdefault(concept, set()).add(style)
    assert all(len(per_concept[c]) >= 3 for c, _ in held)
    assert {s for _, s in held} == set(STYLES)
    digest = hashlib.sha256(json.dumps(sorted(held)).encode()).hexdigest()
    assert digest == hashlib.sha256(json.dumps(sorted(map(tuple, world.data.index["held_out"]))).encode()).hexdigest()
    # sampling respects the split, skin tones included
    batch = world.sample(300, split="train", seed=1, resolution=32)
    assert all((a["concept"], a["style"]) not in held for a in batch.attributes)
    batch = world.sample(100, split="held_out", seed=1, resolution=32)
    assert all((a["concept"], a["style"]) in held for a in batch.attributes)
    train_images = world.combinations("train")
    assert all((a["concept"], a["style"]) not in held for a in train_images)


# ----------------------------------------------------------------------------- captions

def test_canonical_captions(world):
    assert world.caption({"concept": "1F34E"}) == "red apple"
    assert world.caption({"concept": "1F44D", "skin_tone": "dark"}) == "thumbs up: dark skin tone"
    assert world.caption({"concept": "1F34E", "style": "openmoji"}) == "red apple in the openmoji style"
    assert world.caption({"concept": "1F34E", "word": "phone"}) == "red apple with the word 'phone' written on it"
    assert world.caption({"concept": "1F34E", "word": "phone", "word_position": "under"}) == \
        "red apple with the word 'phone' written under it"
    assert world.caption({"concept": "1F431", "style": "fluent"}) == "cat face in the fluent style"
    assert world.caption({"style": "noto"}) == "an emoji in the noto style"
    assert world.caption({"group": "food-drink"}) == "an emoji from the food & drink group"
    # a full attribute dict (as sample returns) names neither style nor group unless asked
    a = world.attributes("thumbs up", style="twemoji", skin_tone="medium-light")
    assert a == {"concept": "1F44D", "name": "thumbs up", "style": "twemoji", "skin_tone": "medium-light",
                 "group": "people-body", "word": None, "word_position": None}
    assert world.caption({k: a[k] for k in ("concept", "skin_tone")}) == "thumbs up: medium-light skin tone"
    batch = world.sample(20, seed=0, word_prob=0.5)
    for attrs, cap in zip(batch.attributes, batch.captions):
        assert cap.startswith(world.name(attrs["concept"], attrs["skin_tone"]))
        assert (f"'{attrs['word']}'" in cap) == bool(attrs["word"])


def test_concept_lookup(world):
    for key in ("1F34E", "1f34e", "U+1F34E", "red apple", "RED APPLE", "\U0001F34E"):
        assert world.concept(key) == "1F34E"
    assert world.concept("thumbs up: dark skin tone") == "1F44D"
    assert world.concept("1F44D-1F3FF") == "1F44D"
    assert world.concepts["1F34E"]["group"] == "food-drink"
    assert world.vocabulary["style"] == list(STYLES) and world.vocabulary["skin_tone"] == list(SKIN_TONES)
    assert "1F34E" in world.vocabulary["concept"] and "food-drink" in world.vocabulary["group"]
    assert {"apple", "phone", "cat", "dog"} <= set(world.vocabulary["word"])


def test_training_captions_vary_and_transcribe_words(world):
    rng = np.random.default_rng(0)
    attrs = [world.draw_image(rng, word_prob=0.5) for _ in range(600)]
    caps = [world.training_caption(a, np.random.default_rng(i)) for i, a in enumerate(attrs)]
    assert caps == [world.training_caption(a, np.random.default_rng(i)) for i, a in enumerate(attrs)]
    assert len(set(caps)) > 500
    for a, c in zip(attrs, caps):
        assert a["name"] in c or world.name(a["concept"], a["skin_tone"]) in c   # the name, or the skin tone's
        if a["word"]:
            assert f"'{a['word']}'" in c                     # a written word is always transcribed
    styled = np.mean([any(s in c for s in STYLES) for c in caps])
    assert 0.1 < styled < 0.35                               # the style is sometimes named
    toned = [c for a, c in zip(attrs, caps) if a["skin_tone"]]
    assert 0.6 < np.mean(["skin tone" in c for c in toned]) < 0.95   # ... and the skin tone mostly
    grouped = np.mean([any(f"({g})" in c for g in world.groups.values()) for c in caps])
    assert 0.05 < grouped < 0.3
    words = [a for a in attrs if a["word"]]
    own = np.mean([a["word"] == world.concepts[a["concept"]].get("word") for a in words])
    assert 0.03 < own < 0.3 and 0.4 < len(words) / len(attrs) < 0.6   # words mostly unrelated to the emoji


# ----------------------------------------------------------------------------- rendering

def test_render_shapes_and_range(world):
    attrs = [{"concept": "1F34E", "style": s} for s in STYLES]
    for res in (32, 64, 48):
        x = world.render(attrs, resolution=res)
        assert x.shape == (4, 3, res, res) and x.dtype == torch.float32
        assert 0 <= float(x.min()) and float(x.max()) <= 1 and float(x.min()) < 0.5
        assert torch.all(x[:, :, 0, 0] == 1) and torch.all(x[:, :, -1, -1] == 1)   # white corners
    assert world.render({"concept": "red apple"}).shape == (1, 3, 64, 64)         # default style: the first


def test_every_image_on_white_with_a_margin(world):
    for style in STYLES:
        tiles = world.data.tiles(style, 64)
        assert tiles.dtype == np.uint8 and tiles.shape[1:] == (64, 64, 3)
        # the content fills 7/8 of the side: at least 3 white pixels of margin on the short axis
        border = np.concatenate([tiles[:, :3].reshape(len(tiles), -1), tiles[:, -3:].reshape(len(tiles), -1)], 1)
        sides = np.concatenate([tiles[:, :, :3].reshape(len(tiles), -1), tiles[:, :, -3:].reshape(len(tiles), -1)], 1)
        assert np.all((border.min(1) >= 250) | (sides.min(1) >= 250))
        assert np.all(tiles[:, 0, 0] == 255)
        # 32 px is exactly the 2x2 mean of 64 px
        assert np.array_equal(world.data.tiles(style, 32), downsample2(tiles))


def test_128_px_is_built_not_shipped(world, tmp_path):
    shipped_only = _linked_copy(tmp_path, skip=tuple(sheet_name(s, 128) for s in STYLES) + ("MANIFEST-128.json",))
    w = EmojiWorld(data_dir=shipped_only)
    with pytest.raises(EmojiDataError, match="unclip-lab data emoji --resolutions 64,128"):
        w.render({"concept": "1F34E", "style": "noto"}, resolution=128)
    with pytest.raises(ValueError, match="up to 128 px"):
        w.render({"concept": "1F34E", "style": "noto"}, resolution=256)
    if not (DATA / "MANIFEST-128.json").exists():
        return
    x = world.render({"concept": "1F34E", "style": "noto"}, resolution=128)   # built by the developer step
    assert x.shape == (1, 3, 128, 128) and torch.all(x[:, :, 0, 0] == 1)
    assert np.array_equal(downsample2(world.data.tiles("fluent", 128)), world.data.tiles("fluent", 64))
    # up to 64 px nothing depends on whether the 128 px sheets exist, written words included
    a = {"concept": "1F34E", "style": "noto", "word": "phone", "word_position": "under"}
    assert np.array_equal(world.render_array(a, 64), w.render_array(a, 64))
    assert np.array_equal(world.render_array(a, 48), w.render_array(a, 48))


def test_written_words(world):
    plain = world.render_array({"concept": "1F34E", "style": "noto"}, 64)
    over = world.render_array({"concept": "1F34E", "style": "noto", "word": "phone"}, 64)
    under = world.render_array({"concept": "1F34E", "style": "noto", "word": "phone", "word_position": "under"}, 64)
    other = world.render_array({"concept": "1F34E", "style": "noto", "word": "dog"}, 64)
    assert over.shape == under.shape == plain.shape == (64, 64, 3)
    assert np.abs(over.astype(int) - plain).mean() > 5
    assert not np.array_equal(over, under) and not np.array_equal(over, other)
    assert np.array_equal(over, world.render_array({"concept": "1F34E", "style": "noto", "word": "phone"}, 64))
    # "under": the emoji moves up and the word is dark ink in the white band below it
    assert under[50:60].min() < 80 and under[50:60].mean() > 150                 # ink on white
    assert np.abs(under[:44].astype(int) - plain[:44]).mean() > 5                 # the emoji moved
    small = world.render_array({"concept": "1F34E", "style": "noto", "word": "phone"}, 32)
    assert small.shape == (32, 32, 3) and not np.array_equal(small, world.render_array({"concept": "1F34E"}, 32))
    long = world.render_array({"concept": "1F34E", "word": "hippopotamus", "word_position": "under"}, 32)
    assert long[:, 0].min() >= 200 or long[:, -1].min() >= 200   # a long word is shrunk to fit


def test_sampling_is_deterministic(world):
    a = world.sample(12, seed=5, word_prob=0.3)
    b = EmojiWorld(seed=0).sample(12, seed=5, word_prob=0.3)
    assert torch.equal(a.images, b.images) and a.captions == b.captions and a.attributes == b.attributes
    c = world.sample(12, seed=6, word_prob=0.3)
    assert a.captions != c.captions
    v = world.sample(12, seed=5, caption_style="varied")
    assert v.captions == EmojiWorld(seed=0).sample(12, seed=5, caption_style="varied").captions
    assert a.images.shape == (12, 3, 64, 64) and len(a) == 12
    assert EmojiWorld(seed=0, resolution=32).sample(4, seed=5).images.shape == (4, 3, 32, 32)
    # skin tones: about half of the images of pairs that have them
    tones = world.sample(400, seed=9, resolution=32).attributes
    with_skins = [t for t in tones if world._tones.get((t["concept"], t["style"]))]
    assert 0.35 < np.mean([t["skin_tone"] is not None for t in with_skins]) < 0.65


def test_dataset(world):
    ds = EmojiDataset(seed=3, resolution=32, word_prob=0.5)
    assert len(ds) == sum(1 for a in world.combinations("train"))
    image, caption = ds[7]
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32 and isinstance(caption, str)
    image2, caption2 = EmojiDataset(seed=3, resolution=32, word_prob=0.5)[7]
    assert torch.equal(image, image2) and caption == caption2
    attrs = ds.attributes(7)
    assert torch.equal(image, world.render(attrs, 32)[0])
    assert all((ds.attributes(i)["concept"], ds.attributes(i)["style"]) not in world.held_out for i in range(200))
    loader = torch.utils.data.DataLoader(ds, batch_size=8)
    images, captions = next(iter(loader))
    assert images.shape == (8, 3, 32, 32) and len(captions) == 8
    with pytest.raises(IndexError):
        ds[len(ds)]
    held = EmojiDataset(split="held_out", resolution=32, length=50)
    assert len(held) == 50 and all((held.attributes(i)["concept"], held.attributes(i)["style"]) in world.held_out
                                   for i in range(50))


# ----------------------------------------------------------------------------- bad input

def test_unknown_names_list_close_matches(world):
    with pytest.raises(ValueError, match="red apple"):
        world.render({"concept": "red aple"})
    with pytest.raises(ValueError, match="'openmoji'"):
        world.render({"concept": "1F34E", "style": "openemoji"})
    with pytest.raises(ValueError, match="'dark'"):
        world.caption({"concept": "1F44D", "skin_tone": "darkk"})
    with pytest.raises(ValueError, match="'style'"):
        world.render({"concept": "1F34E", "stlye": "noto"})
    with pytest.raises(ValueError, match="food-drink"):
        world.caption({"group": "food-drinks"})
    with pytest.raises(ValueError, match="'train'"):
        world.sample(2, split="trian")
    with pytest.raises(ValueError, match="no skin-tone"):
        world.render({"concept": "1F34E", "skin_tone": "dark"})
    with pytest.raises(ValueError, match="not drawn in the fluent style"):
        world.render({"concept": next(c for c, i in world.concepts.items() if "fluent" not in i["styles"]),
                      "style": "fluent"})
    with pytest.raises(ValueError, match="word_position"):
        world.render({"concept": "1F34E", "word": "x", "word_position": "above"})
    with pytest.raises(ValueError, match="positive"):
        world.sample(0)
    with pytest.raises(ValueError, match="resolution"):
        world.render({"concept": "1F34E"}, resolution=4)
    with pytest.raises(ValueError, match="empty"):
        world.render([])


def test_captions_are_checked_against_the_world(world):
    """What a text diff accepts: every caption the world writes, and clear errors for names,
    styles and skin tones it does not have."""
    rng = np.random.default_rng(5)
    for _ in range(200):
        attrs = world.draw_training(rng, split="all")[0]
        assert world.check_caption(world.training_caption(attrs, rng)) and world.check_caption(world.caption(attrs))
    assert world.check_caption("Thumbs up: Dark skin tone, fluent style")
    with pytest.raises(ValueError, match=r"names no emoji of this world; close names: .*'ship'"):
        world.check_caption("a spaceship")
    with pytest.raises(ValueError, match=r"to_caption 'red apple in the apple style' names the style 'apple'"):
        world.check_caption("red apple in the apple style", "to_caption")
    with pytest.raises(ValueError, match=r"did you mean 'fluent'\?"):
        world.check_caption("red apple in the microsoft style")
    with pytest.raises(ValueError, match=r"skin tone 'pale'.*skin tones: light, medium-light"):
        world.check_caption("thumbs up: pale skin tone")
    with pytest.raises(ValueError, match="empty"):
        world.check_caption("  ")


def test_missing_data_names_the_rebuild_command(tmp_path):
    with pytest.raises(EmojiDataError, match="unclip-lab data emoji"):
        EmojiWorld(data_dir=tmp_path / "nothing")
    folder = _linked_copy(tmp_path, skip=("fluent_64.webp",))
    w = EmojiWorld(data_dir=folder)           # the index loads; the sheet is read on first use
    with pytest.raises(EmojiDataError, match="fluent_64.webp is missing.*unclip-lab data emoji"):
        w.render({"concept": "1F34E", "style": "fluent"})
    assert w.render({"concept": "1F34E", "style": "noto"}).shape == (1, 3, 64, 64)


def test_corrupt_data_is_refused(tmp_path):
    folder = _linked_copy(tmp_path, skip=("twemoji_64.webp", "index.json"))
    data = (DATA / "twemoji_64.webp").read_bytes()
    (folder / "twemoji_64.webp").write_bytes(data[: len(data) // 2])
    (folder / "index.json").write_text((DATA / "index.json").read_text())
    w = EmojiWorld(data_dir=folder)
    with pytest.raises(EmojiDataError, match="corrupt.*unclip-lab data emoji"):
        w.render({"concept": "1F34E", "style": "twemoji"})
    other = _linked_copy(tmp_path / "b", skip=("index.json",))
    (other / "index.json").write_text("{not json")
    with pytest.raises(EmojiDataError, match="index.json is corrupt"):
        load_emoji_data(other)


# ----------------------------------------------------------------------------- shipped files and licences

def test_shipped_files_match_the_manifest():
    manifest = json.loads((DATA / "MANIFEST.json").read_text())
    listed = manifest["files"]
    for name, pin in listed.items():
        path = DATA / name
        assert path.stat().st_size == pin["bytes"], name
        assert file_sha256(path) == pin["sha256"], name
    present = {str(p.relative_to(DATA)) for p in DATA.rglob("*") if p.is_file()}
    built_only = {p for p in present if "_128." in p or p.startswith("MANIFEST-")}
    assert present - built_only - {"MANIFEST.json", ".gitignore"} == set(listed)
    assert {sheet_name(s, SHIPPED_RESOLUTION) for s in STYLES} <= set(listed)
    total = sum((DATA / p).stat().st_size for p in present - built_only)
    assert total < 30e6
    assert set(manifest["packages"]) == {p.name for p in emoji_data.PACKAGES}
    for p in emoji_data.PACKAGES:
        assert manifest["packages"][p.name]["integrity"] == p.integrity


def test_licences_for_every_set():
    md = (DATA / "LICENSE.md").read_text()
    for phrase in ("Google Noto", "Twemoji", "OpenMoji", "Microsoft Fluent", "Emojibase", "Apache-2.0",
                   "CC-BY-4.0", "CC-BY-SA-4.0", "MIT", "openmoji_*.webp"):
        assert phrase in md, phrase
    texts = {
        "Apache-2.0.txt": "Apache License",
        "CC-BY-4.0.txt": "Attribution 4.0 International",
        "openmoji.CC-BY-SA-4.0.txt": "Attribution-ShareAlike 4.0 International",
        "fluentui-emoji.MIT.txt": "MIT License",
        "emojibase-data.MIT.txt": "MIT License",
        "twemoji-svg.MIT.txt": "MIT License",
    }
    for name, phrase in texts.items():
        text = (DATA / "LICENSES" / name).read_text()
        assert phrase in text and len(text) > 900, name
    # OpenMoji-derived pixels live in their own files only
    assert [p.name for p in DATA.glob("openmoji_*")] and all("openmoji" not in p.name for p in DATA.glob("noto_*"))


# ----------------------------------------------------------------------------- the builder (no network)

def test_builder_offline_without_packages_says_what_to_do(tmp_path):
    with pytest.raises(emoji_data.BuildError, match="--offline.*copy emojibase-data-17.0.0.tgz"):
        emoji_data.fetch_packages(tmp_path, offline=True, log=lambda *_: None)
    (tmp_path / "packs").mkdir(exist_ok=True)
    (tmp_path / "packs" / "emojibase-data-17.0.0.tgz").write_bytes(b"not the pinned bytes")
    with pytest.raises(emoji_data.BuildError, match="not in"):
        emoji_data.fetch_packages(tmp_path, offline=True, log=lambda *_: None)
    assert not (tmp_path / "packs" / "emojibase-data-17.0.0.tgz").exists()   # a bad tarball is not kept


def test_builder_without_npm_or_rsvg(tmp_path, monkeypatch):
    monkeypatch.setattr(emoji_data.shutil, "which", lambda name: None)
    with pytest.raises(emoji_data.BuildError, match="npm is not installed"):
        emoji_data.fetch_packages(tmp_path, log=lambda *_: None)
    with pytest.raises(emoji_data.BuildError, match="librsvg2-bin"):
        emoji_data.rsvg_version()
    assert emoji_data.main(["--resolutions", "32", "--out", str(tmp_path / "o")]) == 1
    assert emoji_data.main(["--resolutions", "sixty-four"]) == 2
    assert not (tmp_path / "o").exists()


def test_tarball_names():
    assert [p.tarball for p in emoji_data.PACKAGES] == [
        "emojibase-data-17.0.0.tgz", "iconify-json-noto-1.2.9.tgz", "twemoji-svg-15.0.0.tgz",
        "openmoji-17.0.0.tgz", "fluentui-emoji-1.3.0.tgz", "spdx-license-list-6.12.0.tgz"]


def test_outputs_are_staged_and_moved_in(tmp_path):
    files = {"a.txt": b"alpha", "LICENSES/b.txt": b"beta"}
    emoji_data.write_outputs(tmp_path, files, "MANIFEST.json", {"x": 1})
    m = json.loads((tmp_path / "MANIFEST.json").read_text())
    assert m["files"]["a.txt"]["sha256"] == hashlib.sha256(b"alpha").hexdigest()
    assert (tmp_path / "LICENSES" / "b.txt").read_bytes() == b"beta"
    assert not list(tmp_path.glob(".staging-*"))


def test_render_cache_resumes(tmp_path, monkeypatch):
    calls = []

    def fake_render(svg, what="emoji"):
        calls.append(what)
        return np.full((128, 128, 3), len(calls), np.uint8)

    class FakeSources:
        def svg(self, style, item):
            return b"<svg/>"

    monkeypatch.setattr(emoji_data, "render_svg", fake_render)
    jobs = [("noto", {"hexcode": h, "label": h, "tone": None, "base_label": None}) for h in ("1F34E", "1F431")]
    emoji_data.render_all(FakeSources(), jobs, tmp_path, progress=False)
    assert len(calls) == 2
    (tmp_path / "noto" / "1F431.png").write_bytes(b"half a png")     # as if killed mid-write elsewhere
    out = emoji_data.render_all(FakeSources(), jobs, tmp_path, progress=False)
    assert len(calls) == 3 and out[("noto", "1F34E")][0, 0, 0] == 1   # the good render is reused


@pytest.mark.skipif(shutil.which("rsvg-convert") is None, reason="rsvg-convert (librsvg2-bin) is not installed")
def test_render_svg_crops_to_content_with_the_same_margin():
    # a red square in one corner of a large canvas: cropped, centred, 7/8 of the side
    svg = b'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 100 100"><rect x="0" y="0" width="30" ' \
          b'height="30" fill="#ff0000"/></svg>'
    a = emoji_data.render_svg(svg)
    assert a.shape == (128, 128, 3)
    red = (a[..., 0] > 200) & (a[..., 1] < 60)
    ys, xs = np.nonzero(red)
    assert abs(xs.min() - 8) <= 1 and abs(127 - xs.max() - 8) <= 1 and abs(ys.min() - 8) <= 1
    assert np.all(a[0, 0] == 255)


# ----------------------------------------------------------------------------- bit-exact rebuild

@pytest.mark.skipif(os.environ.get("UNCLIP_LAB_REBUILD") != "1",
                    reason="the full rebuild takes 20-40 minutes: set UNCLIP_LAB_REBUILD=1 to run it")
def test_rebuild_reproduces_the_shipped_files_bit_for_bit(tmp_path):
    if shutil.which("npm") is None:
        pytest.skip("npm is not installed: the builder fetches the pinned packages with it")
    if shutil.which("rsvg-convert") is None:
        pytest.skip("rsvg-convert is not installed (apt-get install librsvg2-bin)")
    manifest = json.loads((DATA / "MANIFEST.json").read_text())
    tools = emoji_data.tool_versions()
    if tools != manifest["tools"]:
        pytest.skip(f"bit-exact output needs the tools that made the shipped files, {manifest['tools']}; "
                    f"found {tools}")
    work = Path(os.environ.get("UNCLIP_LAB_EMOJI_WORK", str(tmp_path / "work")))
    emoji_data.build(tmp_path / "out", work, progress=False, log=lambda *_: None,
                     n_jobs=int(os.environ.get("UNCLIP_LAB_REBUILD_JOBS", "1")))
    assert emoji_data.compare_folders(tmp_path / "out", DATA) == []
