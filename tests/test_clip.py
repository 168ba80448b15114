import numpy as np
import pytest
import torch
from PIL import Image

from unclip_lib import ShapesWorld, load_clip, new_clip
from unclip_lib.checkpoints import CheckpointError, save_checkpoint
from unclip_lib.clip import contrastive_loss
from unclip_lib.evaluate import zero_shot_accuracy


def test_zero_shot_accuracy_on_fresh_images(clip):
    # seed 123: never used by training (seed 0) nor its validation (10_000)
    batch = ShapesWorld(seed=123).sample(1000, objects=1, resolution=64)
    acc = zero_shot_accuracy(clip, batch.images, batch.attributes)
    assert acc["shape"] >= 0.98 and acc["color"] >= 0.98
    assert acc["size"] >= 0.95 and acc["position"] >= 0.90


def test_zero_shot_on_held_out_combinations_beats_chance(clip):
    batch = ShapesWorld(seed=124).sample(300, split="held_out")
    acc = zero_shot_accuracy(clip, batch.images, batch.attributes)
    # compositional generalisation: far above chance (1/6 shapes, 1/8 colours)
    assert acc["shape"] >= 0.5 and acc["color"] >= 0.5


def test_embeddings_are_normalised_and_inputs_interchangeable(clip):
    batch = ShapesWorld(seed=5).sample(4)
    z = clip.encode_image(batch.images)
    assert z.shape == (4, clip.embed_dim)
    assert torch.allclose(z.norm(dim=-1), torch.ones(4), atol=1e-5)
    t = clip.encode_text(batch.captions)
    assert torch.allclose(t.norm(dim=-1), torch.ones(4), atol=1e-5)
    uint8 = (batch.images * 255).round().byte()
    pil = [Image.fromarray(u.permute(1, 2, 0).numpy()) for u in uint8]
    hwc = uint8.permute(0, 2, 3, 1).numpy()
    for other in (pil, hwc, uint8):
        assert torch.allclose(clip.encode_image(other), clip.encode_image(uint8.float() / 255), atol=1e-5)
    # matching caption is the most similar one
    assert torch.equal((z @ t.T).argmax(1), torch.arange(4))


def test_long_captions_truncated_with_warning(clip):
    with pytest.warns(UserWarning, match="truncated"):
        z = clip.encode_text(["a red circle " * 40])
    assert z.shape == (1, clip.embed_dim)


def test_contrastive_loss_matches_formula():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(6, 8, generator=g), torch.randn(6, 8, generator=g)
    scale = torch.tensor(7.0)
    a_n, b_n = a / a.norm(dim=1, keepdim=True), b / b.norm(dim=1, keepdim=True)
    logits = scale * a_n @ b_n.T
    labels = torch.arange(6)
    by_hand = (torch.nn.functional.cross_entropy(logits, labels)
               + torch.nn.functional.cross_entropy(logits.T, labels)) / 2
    assert torch.allclose(contrastive_loss(a, b, scale), by_hand, atol=1e-6)


def test_bad_inputs(clip):
    with pytest.raises(ValueError, match="empty"):
        clip.encode_text([])
    with pytest.raises(ValueError, match="empty"):
        clip.encode_image(torch.zeros(0, 3, 64, 64))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        clip.encode_image(torch.full((1, 3, 64, 64), 200.0))
    with pytest.raises(ValueError, match="RGBA"):
        clip.encode_image(torch.zeros(1, 2, 64, 64))
    with pytest.raises(ValueError, match="shape"):
        clip.encode_image(torch.zeros(64, 64))
    with pytest.raises(TypeError, match="uint8 or floating"):
        clip.encode_image(torch.zeros(1, 3, 8, 8, dtype=torch.int32))
    with pytest.raises(ValueError, match="NaN"):
        clip.encode_image(torch.full((1, 3, 8, 8), float("nan")))
    with pytest.raises(TypeError, match="strings"):
        clip.encode_text([3])


def test_unknown_model_names_list_the_known_ones():
    with pytest.raises(KeyError, match="shapes"):
        load_clip("no-such-clip")
    with pytest.raises(KeyError, match="micro"):
        new_clip("huge")


def test_missing_real_weights_name_the_fix(monkeypatch, tmp_path):
    # an empty cache: the error names the weights and the command that fetches them
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="laion2b_s34b_b79k.*\n.*create_model_and_transforms"):
        load_clip("ViT-B-32", pretrained="laion2b_s34b_b79k")
    with pytest.raises(KeyError, match="known tags"):
        load_clip("ViT-B-32", pretrained="not-a-tag")


def test_corrupt_and_mismatched_checkpoints(tmp_path):
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00" * 100)
    with pytest.raises(CheckpointError, match="not a safetensors"):
        load_clip(str(junk))
    other = tmp_path / "other.safetensors"
    save_checkpoint(other, {"w": torch.zeros(2)}, "evaluator", {})
    with pytest.raises(CheckpointError, match="'evaluator' checkpoint, not a 'clip'"):
        load_clip(str(other))
    micro = new_clip("micro")
    from unclip_lib.clip import CLIP_PRESETS
    from dataclasses import asdict
    wrong = tmp_path / "wrong.safetensors"
    state = micro.state_dict()
    state["model.text_projection"] = torch.zeros(3, 3)
    save_checkpoint(wrong, state, "clip", asdict(CLIP_PRESETS["micro"]))
    with pytest.raises(CheckpointError, match="wrong shapes"):
        load_clip(str(wrong))
