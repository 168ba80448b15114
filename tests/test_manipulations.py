"""Variations, interpolations and text diffs on the bipartite latent (z_i, x_T), measured
with the evaluator on small fresh samples (BENCHMARKS.md has the larger figures), plus
their errors on bad input."""
import numpy as np
import pytest
import torch
from PIL import Image

from unclip_lib.evaluate import attribute_matches, psnr
from unclip_lib.experiments import interpolation_pairs, source_scenes, text_diff_scores, variation_scores
from unclip_lib.images import as_image_batch, resize
from unclip_lib.pipeline import Bipartite, load_unclip


@pytest.fixture(scope="module")
def pipe():
    return load_unclip("shapes", priors=())


@pytest.fixture(scope="module")
def scenes():
    return source_scenes(12, seed=4242)


@pytest.fixture(scope="module")
def latent(pipe, scenes):
    return pipe.encode(scenes.images)


def test_encode_gives_the_bipartite_latent(pipe, scenes, latent):
    assert isinstance(latent, Bipartite)
    assert latent.z_i.shape == (12, pipe.clip.embed_dim) and latent.x_T.shape == (12, 3, 32, 32)
    # x_T looks like the Gaussian noise the sampler starts from
    assert abs(float(latent.x_T.std()) - 1) < 0.15 and abs(float(latent.x_T.mean())) < 0.1
    again = pipe.decode(latent.z_i, x_T=latent.x_T, eta=0.0, upsample=False)
    assert psnr(again, resize(scenes.images, 32)) >= 40


def test_variations_at_eta_zero_reconstruct_and_vary_with_eta(pipe, evaluator, scenes, latent):
    recon = pipe.variations(latent=latent, n=2, eta=0.0, upsample=False)
    assert recon.shape == (24, 3, 32, 32)
    assert torch.equal(recon[0::2], recon[1::2])
    assert psnr(recon[0::2], resize(scenes.images, 32)) >= 40
    scores = variation_scores(pipe, evaluator, n=3, etas=(0.0, 1.0), seed=7, batch=scenes, latent=latent)
    assert scores[0.0]["diversity"] == 0.0
    assert scores[1.0]["diversity"] > 0.02, scores
    assert scores[1.0]["shape+color"] >= 0.85, scores


def test_variations_are_deterministic_given_the_seed(pipe, latent):
    two = latent.select(slice(0, 2))
    assert torch.equal(two.x_T, latent.x_T[:2]) and latent.select(1).z_i.shape == (1, pipe.clip.embed_dim)
    a = pipe.variations(latent=two, n=2, eta=0.5, seed=3, upsample=False)
    b = pipe.variations(latent=two, n=2, eta=0.5, seed=3, upsample=False)
    c = pipe.variations(latent=two, n=2, eta=0.5, seed=4, upsample=False)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_text_diff_edits_colour_and_theta_zero_is_the_input(pipe, evaluator, scenes, latent):
    r = text_diff_scores(pipe, evaluator, "color", thetas=(0.0, 0.3, 0.4, 0.5), seed=515, batch=scenes,
                         latent=latent)
    assert r["psnr_theta0"] >= 40, r
    assert r["per_theta"][0.0]["target"] == 0.0
    assert r["edited"] >= 0.7, r


def test_text_diff_rows_and_full_resolution(pipe, scenes):
    x = scenes.images[:1]
    out = pipe.text_diff(x, "a red circle", "a blue circle", thetas=[0.0, 0.5])
    assert out.shape == (2, 3, 128, 128)


def test_interpolation_ends_reconstruct_and_attributes_cross_over(pipe, evaluator):
    a, images_b, attrs_b = interpolation_pairs(6, seed=99)
    path = pipe.interpolate(a.images, images_b, steps=3, x_T="slerp", upsample=False)
    assert path.shape == (18, 3, 32, 32)
    assert psnr(path[0::3], resize(a.images, 32)) >= 40
    assert psnr(path[2::3], resize(images_b, 32)) >= 40
    fixed = pipe.interpolate(a.images, images_b, steps=3, x_T="fixed", upsample=False)
    starts = attribute_matches(evaluator.predict(fixed[0::3], objects=1), a.attributes, ("shape", "color"))
    ends = attribute_matches(evaluator.predict(fixed[2::3], objects=1), attrs_b, ("shape", "color"))
    assert starts["shape"].mean() >= 0.75 and starts["color"].mean() >= 0.75
    assert ends["shape"].mean() >= 0.75 and ends["color"].mean() >= 0.75
    # "fixed" holds one latent along a path, "random" draws one per step
    r1 = pipe.interpolate(latents=(pipe.encode(a.images[:1]), pipe.encode(images_b[:1])), steps=2,
                          x_T="random", upsample=False, seed=1)
    assert r1.shape == (2, 3, 32, 32)


# ----------------------------------------------------------------------------- bad input

def test_non_rgb_and_odd_sizes_are_handled(pipe, scenes):
    x = scenes.images[:1]
    gray = x.mean(1, keepdim=True)                         # [1, 1, 64, 64]
    assert pipe.variations(gray, n=1, eta=0.0, upsample=False).shape == (1, 3, 32, 32)
    rgba = Image.fromarray((x[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)).convert("RGBA")
    assert pipe.variations(rgba, n=1, eta=0.0, upsample=False).shape == (1, 3, 32, 32)
    odd = torch.nn.functional.interpolate(x, size=(50, 50), mode="bilinear")
    assert pipe.encode(odd).x_T.shape == (1, 3, 32, 32)
    # a fourth channel is alpha, composited over white as the emoji data are: opaque gives the
    # image itself, fully transparent a white image, in tensors and channels-last uint8 arrays alike
    opaque, clear = torch.cat([x, torch.ones_like(x[:, :1])], 1), torch.cat([x, torch.zeros_like(x[:, :1])], 1)
    assert torch.equal(as_image_batch(opaque), x)
    assert torch.equal(as_image_batch(clear), torch.ones_like(x))
    half = (torch.cat([x, torch.full_like(x[:, :1], 0.5)], 1)[0].permute(1, 2, 0).numpy() * 255).round()
    assert torch.allclose(as_image_batch(half.astype(np.uint8)), x * 0.5 + 0.5, atol=1 / 255)
    assert pipe.encode(opaque).x_T.shape == (1, 3, 32, 32)
    with pytest.raises(ValueError, match="different sizes"):
        pipe.encode([x[0], odd[0]])


def test_bad_manipulation_arguments_raise_clear_errors(pipe, scenes, latent):
    x = scenes.images[:1]
    one = latent.select(0)
    with pytest.raises(ValueError, match="same"):
        pipe.text_diff(latent=one, from_caption="a red circle", to_caption="A red circle ")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        pipe.text_diff(latent=one, from_caption="a red circle", to_caption="a blue circle", thetas=[0.2, 1.5])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        pipe.text_diff(latent=one, from_caption="a red circle", to_caption="a blue circle", thetas=-0.1)
    with pytest.raises(ValueError, match="empty"):
        pipe.text_diff(latent=one, from_caption="", to_caption="a blue circle")
    with pytest.raises(ValueError, match="one per image"):
        pipe.text_diff(latent=one, from_caption=["a", "b"], to_caption="a blue circle")
    with pytest.raises(ValueError, match="x_T must be one of"):
        pipe.interpolate(x, x, x_T="lerp")
    with pytest.raises(ValueError, match="steps"):
        pipe.interpolate(x, x, steps=1)
    with pytest.raises(ValueError, match="pair up"):
        pipe.interpolate(scenes.images[:2], x)
    with pytest.raises(ValueError, match="positive integer"):
        pipe.variations(latent=one, n=0)
    with pytest.raises(ValueError, match="eta"):
        pipe.variations(latent=one, eta=1.5)
    with pytest.raises(ValueError, match="x_T must be a tensor"):
        pipe.variations(latent=Bipartite(one.z_i, torch.zeros(1, 3, 64, 64)))
    with pytest.raises(ValueError, match="width"):
        pipe.variations(latent=Bipartite(torch.zeros(1, 7), one.x_T))
    with pytest.raises(ValueError, match="give the images"):
        pipe.variations()
