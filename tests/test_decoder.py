"""Decoder and upsampler wiring: conditioning, null embeddings, guidance, inversion."""
import math

import pytest
import torch

from unclip_lib.decoder import (UPSAMPLER_PRESETS, DiffusionDecoder, DiffusionUpsampler, UNet,
                                UNetConfig)
from unclip_lib.degradations import blur_degrade, bsr_degrade, gaussian_blur


TINY = UNetConfig(resolution=16, base_channels=16, channel_mults=(1, 2), num_res_blocks=1,
                  attn_resolutions=(8,), head_channels=16)


def _random_decoder(seed=0, scale=0.02, prediction="v"):
    torch.manual_seed(seed)
    dec = DiffusionDecoder(UNet(TINY), prediction=prediction).eval()
    with torch.no_grad():  # zero-initialised output layers would make eps == 0: perturb them
        for name, p in dec.named_parameters():
            if p.abs().sum() == 0 and "null" not in name:
                p.normal_(0, scale)
        dec.unet.null_clip.normal_(0, 1)
    return dec


def _inputs(n=3, seed=1):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, 3, 16, 16, generator=g), torch.randint(0, 1000, (n,), generator=g),
            torch.randn(n, 128, generator=g), torch.randn(n, 7, 128, generator=g),
            torch.ones(n, 7, dtype=torch.bool))


@torch.no_grad()
def test_null_conditions_per_example_equal_whole_batch_drop():
    dec = _random_decoder()
    x, t, z, text, mask = _inputs()
    none = torch.zeros(3, dtype=torch.bool)
    assert torch.allclose(dec.unet(x, t, z_i=z, clip_keep=none), dec.unet(x, t), atol=1e-5)
    assert torch.allclose(dec.unet(x, t, z_i=z, text=text, text_mask=mask, text_keep=none),
                          dec.unet(x, t, z_i=z), atol=1e-5)
    # mixing: example 0 keeps z_i, example 1 drops it
    keep = torch.tensor([True, False, True])
    mixed = dec.unet(x, t, z_i=z, clip_keep=keep)
    assert torch.allclose(mixed[0], dec.unet(x, t, z_i=z)[0], atol=1e-5)
    assert torch.allclose(mixed[1], dec.unet(x, t)[1], atol=1e-5)


@torch.no_grad()
def test_conditioning_changes_the_output():
    dec = _random_decoder()
    x, t, z, text, mask = _inputs()
    base = dec.unet(x, t, z_i=z)
    assert (dec.unet(x, t, z_i=-z) - base).abs().max() > 1e-3        # z_i reaches the network
    assert (dec.unet(x, t, z_i=z, text=text, text_mask=mask) - base).abs().max() > 1e-3


@torch.no_grad()
def test_guidance_combines_the_three_predictions():
    dec = _random_decoder()
    x, t, z, text, mask = _inputs()
    fn = dec.model_fn(z, text, mask, guidance_clip=3.0, guidance_text=2.0)
    e00 = dec.unet(x, t)
    e10 = dec.unet(x, t, z_i=z)
    e11 = dec.unet(x, t, z_i=z, text=text, text_mask=mask)
    assert torch.allclose(fn(x, t), e00 + 3.0 * (e10 - e00) + 2.0 * (e11 - e10), atol=1e-4)


class AnalyticUNet(torch.nn.Module):
    """The exact epsilon (or v) predictor for data ~ N(mu(z), s^2), with the UNet's
    signature: a decoder whose optimum is known, to test sampling and inversion plumbing."""

    config = TINY

    def __init__(self, diffusion, s=0.5):
        super().__init__()
        self.a = torch.from_numpy(diffusion.alphas_cumprod).float()
        self.s = s
        self.prediction = diffusion.prediction

    def forward(self, x, t, z_i=None, clip_keep=None, **_):
        mu = torch.zeros(x.shape[0]) if z_i is None else 0.3 * torch.tanh(z_i[:, 0])
        if clip_keep is not None:
            mu = torch.where(clip_keep, mu, torch.zeros_like(mu))
        a = self.a[t].view(-1, 1, 1, 1)
        mu = mu.view(-1, 1, 1, 1)
        eps = (1 - a).sqrt() * (x - a.sqrt() * mu) / (a * self.s ** 2 + 1 - a)
        # v = sqrt(a) eps - sqrt(1 - a) x0 with x0 = (x - sqrt(1 - a) eps) / sqrt(a)
        return eps if self.prediction == "eps" else (eps - (1 - a).sqrt() * x) / a.sqrt()


@torch.no_grad()
@pytest.mark.parametrize("guidance", [1.0, 3.0])
@pytest.mark.parametrize("prediction", ["eps", "v"])
def test_inversion_round_trip_naive_and_refined(guidance, prediction):
    dec = _random_decoder(prediction=prediction)
    dec.unet = AnalyticUNet(dec.diffusion)
    g = torch.Generator().manual_seed(3)
    images = (0.5 + 0.25 * torch.randn(4, 3, 16, 16, generator=g)).clamp(0, 1)
    z = torch.randn(4, 128, generator=g)
    psnr = lambda a: 10 * math.log10(1 / ((a - images) ** 2).mean().item())  # noqa: E731
    kw = dict(steps=50, guidance_clip=guidance)
    naive = dec.sample(z, x_T=dec.invert(images, z, **kw), clip_x0=False, **kw)
    refined = dec.sample(z, x_T=dec.invert(images, z, refine=3, **kw), clip_x0=False, **kw)
    assert psnr(naive) > 30 and psnr(refined) > 50 and psnr(refined) > psnr(naive) + 10, (psnr(naive), psnr(refined))


def test_bad_conditioning_shapes_are_clear_errors():
    dec = _random_decoder()
    x, t, z, text, mask = _inputs()
    with pytest.raises(ValueError, match="z_i must have shape"):
        dec.unet(x, t, z_i=torch.randn(3, 64))
    with pytest.raises(ValueError, match="caption tokens"):
        dec.unet(x, t, z_i=z, text=torch.randn(3, 7, 32))
    with pytest.raises(ValueError, match="x_T must have shape"):
        dec.sample(z, x_T=torch.randn(3, 3, 8, 8), steps=2)
    with pytest.raises(ValueError, match="16x16"):
        dec.invert(torch.rand(3, 3, 64, 64), z)
    up = DiffusionUpsampler(UNet(UPSAMPLER_PRESETS["up64"]))
    with pytest.raises(ValueError, match="low_res"):
        up.unet(torch.randn(1, 3, 64, 64), torch.zeros(1, dtype=torch.long))


def test_upsampler_shapes_and_crops():
    up = DiffusionUpsampler(UNet(UPSAMPLER_PRESETS["up64"]))
    g = torch.Generator().manual_seed(0)
    assert up.sample(torch.rand(2, 3, 32, 32), steps=2, generator=g).shape == (2, 3, 64, 64)
    # fully convolutional: trains on crops, samples at full size
    assert up.loss(torch.rand(2, 3, 32, 32), torch.rand(2, 3, 16, 16), g).ndim == 0


def test_degradations():
    g = torch.Generator().manual_seed(0)
    x = torch.zeros(2, 3, 16, 16)
    x[:, :, 8, 8] = 1.0
    blurred = gaussian_blur(x, 1.0)
    assert blurred.sum().item() == pytest.approx(x.sum().item(), rel=1e-4)   # mass preserved
    assert blurred.max() < 0.2
    assert torch.equal(gaussian_blur(x, 0.0), x)
    images = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    for out in (blur_degrade(images, g), bsr_degrade(images, g)):
        assert out.shape == images.shape and 0 <= out.min() and out.max() <= 1


def test_nyquist_blur_removes_every_2x2_pattern_and_keeps_flat_areas():
    from unclip_lib.decoder import nyquist_blur
    from unclip_lib.evaluate import grid_texture

    g = torch.Generator().manual_seed(0)
    block = torch.randn(2, 3, 2, 2, generator=g)                 # any 2x2 pattern, tiled
    tiled = block.repeat(1, 1, 8, 8)
    flat = tiled - tiled.mean((-2, -1), keepdim=True)
    assert nyquist_blur(flat).abs().max() < 1e-6
    assert torch.allclose(nyquist_blur(torch.full((1, 3, 9, 9), 0.7)), torch.full((1, 3, 9, 9), 0.7))
    smooth = torch.linspace(0, 1, 16).repeat(1, 3, 16, 1)       # a ramp: low frequencies pass
    assert (nyquist_blur(smooth) - smooth)[..., 1:-1].abs().max() < 1e-6   # linear: kept away from the ends
    noisy = torch.rand(4, 3, 16, 16, generator=g)
    # (not exactly zero on noise: the reflected borders are not periodic)
    assert grid_texture(nyquist_blur(noisy), [2])[2] < 0.1 * grid_texture(noisy, [2])[2]


@torch.no_grad()
def test_full_resolution_stage_starts_as_the_blurred_trunk_and_warm_starts_from_it(tmp_path):
    from dataclasses import replace

    from unclip_lib.checkpoints import save_checkpoint
    from unclip_lib.decoder import nyquist_blur
    from unclip_lib.train import warm_start

    path = tmp_path / "trunk.safetensors"
    cfg = replace(TINY, pixel_shuffle=2, full_res_channels=8)
    torch.manual_seed(0)
    trunk_only = DiffusionDecoder(UNet(replace(TINY, pixel_shuffle=2)), prediction="v")
    with torch.no_grad():  # a trained trunk's output layer is not zero
        trunk_only.unet.out[-1].weight.normal_(0, 0.02)
    full = DiffusionDecoder(UNet(cfg), prediction="v")
    save_checkpoint(path, trunk_only.state_dict(), "decoder", {"unet": {}})
    info = warm_start(full, path, "decoder")
    assert info["new_tensors"] > 0 and len(info["init_sha256"]) == 64
    x, t, z, text, mask = _inputs()
    # the new stage's last layer starts at zero: the output is the trunk's, low-passed
    trunk_out = trunk_only.unet(x, t, z_i=z)
    assert trunk_out.abs().max() > 1e-3
    assert torch.allclose(full.unet(x, t, z_i=z), nyquist_blur(trunk_out), atol=1e-6)
    with pytest.raises(ValueError, match="cannot warm-start"):
        warm_start(DiffusionDecoder(UNet(replace(cfg, base_channels=32))), path, "decoder")
