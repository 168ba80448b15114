"""The shipped decoder stack against the figures of the decoder issue (small samples here;
BENCHMARKS.md has the full-size measurements), plus its errors on bad input."""
import pytest
import torch

from unclip_lib import ShapesWorld
from unclip_lib.checkpoints import CheckpointError, shipped_path
from unclip_lib.decoder import load_decoder, load_upsampler
from unclip_lib.evaluate import attribute_accuracy, pixel_diversity, psnr
from unclip_lib.pipeline import load_unclip
from unclip_lib.train import upsampler_validation


@pytest.fixture(scope="module")
def pipe():
    return load_unclip("shapes")


@pytest.fixture(scope="module")
def scenes(pipe):
    """48 fresh one-object scenes: 64 px images (CLIP's input), their z_i, 32 px renders."""
    world = ShapesWorld(seed=4242)
    batch = world.sample(48, objects=1, resolution=64)
    base = world.render(batch.attributes, 32, details=batch.details)
    return batch, pipe.clip.encode_image(batch.images), base


def test_decoding_z_i_keeps_the_attributes_and_varies_the_rest(pipe, evaluator, scenes):
    batch, z_i, _ = scenes
    a, b = (pipe.decode(z_i, seed=s, upsample=False) for s in (1, 2))
    assert a.shape == (48, 3, 32, 32)
    acc = attribute_accuracy(evaluator.predict(a, objects=1), evaluator.predict(batch.images, objects=1))
    assert acc["shape"] >= 0.9 and acc["color"] >= 0.9 and acc["size"] >= 0.85, acc
    assert pixel_diversity(torch.stack([a, b])) > 0.01  # different x_T, different details


def test_ddim_inversion_reconstructs_at_base_resolution(pipe, scenes):
    batch, z_i, base = scenes
    z, x = z_i[:8], base[:8]
    naive = pipe.decode(z, x_T=pipe.invert(x, z_i=z, refine=0), upsample=False)
    refined = pipe.decode(z, x_T=pipe.invert(x, z_i=z), upsample=False)
    assert psnr(naive, x) >= 30.0
    assert psnr(refined, x) >= 40.0


@pytest.mark.parametrize("stage", ["up64", "up128"])
def test_upsamplers_beat_bicubic(pipe, stage):
    up = pipe.upsamplers[0 if stage == "up64" else 1]
    low, high, degradation = {"up64": (32, 64, "blur"), "up128": (64, 128, "bsr")}[stage]
    steps = pipe.defaults.upsampler_steps[0 if stage == "up64" else 1]
    r = upsampler_validation(up, low, high, degradation, n=24, steps=steps, seed=777)
    assert r["psnr"] > r["bicubic_psnr"], r
    if degradation == "bsr":
        assert r["psnr_bsr"] > r["bicubic_psnr_bsr"], r


def test_full_stack_is_deterministic_and_full_resolution(pipe, scenes):
    z = scenes[1][:2]
    a, b = pipe.decode(z, seed=3), pipe.decode(z, seed=3)
    assert a.shape == (2, 3, 128, 128) and torch.equal(a, b)
    assert 0.0 <= a.min() and a.max() <= 1.0
    assert not torch.equal(a, pipe.decode(z, seed=4))


def test_given_x_T_is_used(pipe, scenes):
    z = scenes[1][:2]
    x_T = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    a = pipe.decode(z, x_T=x_T, seed=0, upsample=False)
    b = pipe.decode(z, x_T=x_T, seed=99, upsample=False)  # eta = 0: the seed plays no part
    assert torch.equal(a, b)


# ----------------------------------------------------------------------------- bad input

def test_bad_embeddings_are_refused_clearly(pipe):
    with pytest.raises(ValueError, match="width 64"):
        pipe.decode(torch.randn(2, 64))
    with pytest.raises(ValueError, match="NaN"):
        pipe.decode(torch.full((2, 128), float("nan")))
    with pytest.raises(ValueError, match="empty"):
        pipe.decode(torch.randn(0, 128))
    with pytest.raises(ValueError, match=r"\[N, D\]"):
        pipe.decode(torch.randn(128))
    with pytest.raises(ValueError, match=r"x_T must be a tensor \[2, 3, 32, 32\]"):
        pipe.decode(torch.randn(2, 128), x_T=torch.randn(2, 3, 64, 64), upsample=False)


def test_images_of_other_sizes_are_resized_for_inversion(pipe):
    big = ShapesWorld(seed=5).sample(2, resolution=96).images
    x_T = pipe.invert(big, refine=0, steps=10)
    assert x_T.shape == (2, 3, 32, 32)
    with pytest.raises(ValueError, match="resize them first"):
        pipe.decoder.invert(big, pipe.clip.encode_image(big))
    rgb = big[:1]                 # a fourth channel is alpha: composited over white, opaque = the image
    opaque = torch.cat([rgb, torch.ones_like(rgb[:, :1])], 1)
    assert torch.equal(pipe.invert(opaque, refine=0, steps=10), pipe.invert(rgb, refine=0, steps=10))


def test_mismatched_checkpoints_are_refused(tmp_path):
    with pytest.raises(CheckpointError, match="'decoder' checkpoint, not a 'upsampler'"):
        load_upsampler(str(shipped_path("decoder/shapes")))
    with pytest.raises(CheckpointError, match="'clip' checkpoint"):
        load_decoder(str(shipped_path("clip/shapes")))
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="not a safetensors file"):
        load_decoder(str(junk))
    with pytest.raises(KeyError, match="known"):
        load_upsampler("up512")
