"""Probes of CLIP: PCA reconstructions decoded, typographic attacks (tiny CLIP and the
open_clip path with a small model saved locally), measured on small fresh samples."""
import json

import pytest
import torch

from unclip_lib.probes import (attack_decodings, attack_scores, fit_embedding_pca, load_photos, pca_probe,
                               photo_attack, typographic_scenes, write_word)
from unclip_lib.world import COLORS, SHAPES


@pytest.fixture(scope="module")
def pipe():
    from unclip_lib.pipeline import load_unclip

    return load_unclip("shapes", priors=())


@pytest.fixture(scope="module")
def pca(pipe):
    return fit_embedding_pca(pipe.clip, n=1500, seed=321)


def test_pca_of_world_embeddings(pca, pipe):
    assert pca.dim == pipe.clip.embed_dim
    assert abs(float(pca.explained.sum()) - 1) < 1e-4
    cum = pca.explained.cumsum(0)
    # a handful of directions carry most of a world with a handful of attributes
    assert float(cum[31]) > 0.9 and float(cum[3]) < 0.9


def test_pca_probe_loses_attributes_with_few_components(pca, pipe, evaluator):
    table = pca_probe(pipe, evaluator, pca, ks=(1, pca.dim), n_images=12, seed=654)
    full, one = table[pca.dim], table[1]
    assert full["shape"] >= 0.9 and full["color"] >= 0.9 and full["position"] >= 0.9, table
    assert one["color"] <= 0.6 and one["position"] <= 0.6, table


def test_typographic_scenes_write_a_wrong_word():
    s = typographic_scenes(8, seed=1, kind="shape", word_size=0.25)
    assert s.clean.shape == s.attacked.shape == (8, 3, 64, 64)
    assert all(w != a["shape"] and w in SHAPES for w, a in zip(s.words, s.attributes))
    assert all((s.clean[i] != s.attacked[i]).any() for i in range(8))
    c = typographic_scenes(4, seed=1, kind="color")
    assert all(w != a["color"] and w in COLORS for w, a in zip(c.words, c.attributes))
    faint = typographic_scenes(4, seed=1, kind="shape", word_contrast=0.0)
    assert torch.allclose(faint.clean, faint.attacked, atol=2 / 255)   # invisible ink
    with pytest.raises(ValueError, match="word_contrast"):
        typographic_scenes(2, seed=1, word_contrast=1.5)
    with pytest.raises(ValueError, match="word_size"):
        typographic_scenes(2, seed=1, word_size=0.9)
    with pytest.raises(ValueError, match="kind must be"):
        typographic_scenes(2, seed=1, kind="size")
    control = typographic_scenes(4, seed=1, kind="shape", control=True)    # a colour word on a shape attack
    assert all(w in COLORS and w != a["color"] for w, a in zip(control.words, control.attributes))
    assert torch.equal(control.clean, s.clean[:4])


def test_attack_raises_the_words_probability_but_rarely_flips_the_tiny_clip(clip):
    r = attack_scores(clip, typographic_scenes(64, seed=77, kind="shape", word_size=0.25))
    assert r["clean_accuracy"] >= 0.9, r
    assert r["p_word_attacked"] > 5 * r["p_word_clean"], r
    assert r["success"] <= 0.25, r
    # 500 scenes (BENCHMARKS.md): a shape word and an occluding colour word cost about the same accuracy,
    # and the flips to the word stay near what evenly spread errors would give
    c = attack_scores(clip, typographic_scenes(64, seed=77, kind="shape", word_size=0.25, control=True))
    assert c["p_word_attacked"] != c["p_word_attacked"] and c["success"] != c["success"]     # NaN: no word label
    assert abs(c["attacked_accuracy"] - r["attacked_accuracy"]) <= 0.15, (r, c)
    assert r["success"] <= r["success_by_chance"] + 0.1, r
    colour = attack_scores(clip, typographic_scenes(64, seed=78, kind="color", word_size=0.25))
    assert colour["clean_accuracy"] >= 0.9 and colour["success"] <= 0.05, colour


def test_decoder_reproduces_the_object_not_the_word(pipe, evaluator):
    # 200 scenes (BENCHMARKS.md): object kept 85.5%, the word's meaning drawn 2.8%; the bounds
    # leave room for the spread of 24 scenes (object < 65% has a chance below 1%)
    r = attack_decodings(pipe, evaluator, typographic_scenes(24, seed=91, kind="shape", word_size=0.25), samples=1)
    assert r["object"] >= 0.65 and r["meaning"] <= 0.15, r


def test_real_open_clip_path_with_a_small_locally_saved_model(tmp_path, monkeypatch):
    """The real-model path (an open_clip architecture + a pretrained file) runs offline:
    a small open_clip model is built, saved as safetensors and loaded by load_clip."""
    pytest.importorskip("skimage")
    import open_clip
    from safetensors.torch import save_file

    from unclip_lib import load_clip

    config = {"embed_dim": 32,
              "vision_cfg": {"image_size": 64, "layers": 1, "width": 64, "patch_size": 16, "head_width": 32},
              "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}
    (tmp_path / "unclip-test-tiny.json").write_text(json.dumps(config))
    open_clip.add_model_config(tmp_path / "unclip-test-tiny.json")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = open_clip.create_model("unclip-test-tiny")
    weights = tmp_path / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights))

    clip = load_clip("unclip-test-tiny", pretrained=str(weights))
    loaded = clip.model.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in model.state_dict().items())
    rows = photo_attack(clip)
    assert len(rows) == 5 and {r["label"] for r in rows} >= {"a cat", "a cup of coffee"}
    words = {"a cat": "cup of coffee", "a cup of coffee": "astronaut"}
    for r in rows:
        assert 0.0 <= r["p_true_clean"] <= 1.0 and 0.0 <= r["p_word_attacked"] <= 1.0
        assert r["word"] == words.get(r["label"], r["word"])    # the next photo's label, article dropped
    # the note is really drawn: white box, dark ink, at the bottom centre
    photos, _ = load_photos(64)
    noted = write_word(photos[:1], ["cat"])
    assert (noted - photos[:1]).abs().amax() > 0.5 and torch.equal(noted[..., :32, :], photos[:1, ..., :32, :])


def test_a_real_model_is_found_by_name_and_tag_in_the_hugging_face_cache(tmp_path, monkeypatch):
    """The path the notebook takes with ViT-B-32 / laion2b_s34b_b79k, on a small model: its
    pretrained tag points at a Hub repo, and the weights are looked up in the local Hub cache
    (never downloaded); without them, the error names the fix."""
    import huggingface_hub.constants
    import open_clip
    import open_clip.pretrained
    from safetensors.torch import save_file

    from unclip_lib import load_clip

    config = {"embed_dim": 32,
              "vision_cfg": {"image_size": 64, "layers": 1, "width": 64, "patch_size": 16, "head_width": 32},
              "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}
    (tmp_path / "unclip-test-hub.json").write_text(json.dumps(config))
    open_clip.add_model_config(tmp_path / "unclip-test-hub.json")
    monkeypatch.setitem(open_clip.pretrained._PRETRAINED, "unclip-test-hub",
                        {"tiny": open_clip.pretrained._pcfg(hf_hub="unclip-lab/test-hub/")})
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FileNotFoundError, match="not in the local cache"):
        load_clip("unclip-test-hub", pretrained="tiny")

    model = open_clip.create_model("unclip-test-hub")
    snapshot = tmp_path / "hub" / "models--unclip-lab--test-hub" / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(snapshot / "open_clip_model.safetensors"))
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("0" * 40)
    clip = load_clip("unclip-test-hub", pretrained="tiny")
    assert clip.name == "unclip-test-hub/tiny"
    loaded = clip.model.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in model.state_dict().items())
    assert len(photo_attack(clip)) == 5
