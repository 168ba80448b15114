"""Edits: masks, RePaint sampling, pipe.inpaint (kept pixels exact at every resolution, the
asked object drawn in the region), the seam measure and `unclip-lab edit`."""
import numpy as np
import pytest
import torch
from PIL import Image

from unclip_lib import ShapesWorld, load_evaluator, load_unclip
from unclip_lib.diffusion import GaussianDiffusion
from unclip_lib.edits import as_mask, box_mask, composite, half_mask, inpaint_scores, mask_at, seam_energy
from unclip_lib.images import resize


def test_box_mask_covers_exactly_the_box():
    m = box_mask(2, 3, 5, 9, size=16, n=2)
    assert m.shape == (2, 1, 16, 16) and m.sum() == 2 * 3 * 6
    assert m[0, 0, 3, 2] == 1 and m[0, 0, 8, 4] == 1 and m[0, 0, 9, 4] == 0 and m[0, 0, 3, 5] == 0
    assert torch.equal(half_mask("left", 32), box_mask(0, 0, 16, 32, 32))
    for bad, match in [((0, 0, 40, 8), "x1"), ((5, 0, 5, 8), "greater than x0"), ((-1, 0, 4, 4), "x0"),
                       ((0, 0, 4.5, 4), "x1")]:
        with pytest.raises((ValueError, TypeError), match=match):
            box_mask(*bad, size=32)


def test_masks_are_checked_and_converted():
    m = as_mask(torch.ones(32, 32, dtype=torch.bool), 3)
    assert m.shape == (3, 1, 32, 32) and m.dtype == torch.float32
    pil = Image.fromarray(np.where(np.arange(32)[None, :] < 16, 255, 0).astype(np.uint8).repeat(32, 0))
    assert torch.equal(as_mask(pil, 1), box_mask(0, 0, 16, 32, 32))
    cases = [(torch.ones(1, 3, 32, 32), ValueError, "one channel"), (torch.ones(2, 1, 32, 32), ValueError, "2 masks"),
             (torch.full((1, 1, 8, 8), 2.0), ValueError, r"\[0, 1\]"), (torch.ones(8, 8, dtype=torch.uint8),
                                                                         TypeError, "uint8"),
             (torch.full((8, 8), float("nan")), ValueError, "NaN"), ("mask.png", TypeError, "box_mask"),
             (torch.ones(3, 8, 8), ValueError, r"\[1, H, W\]")]
    for mask, error, match in cases:
        with pytest.raises(error, match=match):
            as_mask(mask, 3)


def test_mask_at_keeps_only_pixels_kept_entirely():
    m = box_mask(5, 0, 9, 32, 32)                     # columns 5..8 of 32 px
    low = mask_at(m, 8)                               # 4 px blocks: blocks 1 and 2 touch the box
    assert low[0, 0, 0].tolist() == [0, 1, 1, 0, 0, 0, 0, 0]
    assert torch.equal(mask_at(low, 32)[0, 0, 0, :12], torch.tensor([0.] * 4 + [1.] * 8))
    assert mask_at(box_mask(0, 0, 10, 30, 30), 32)[0, 0, 0, :11].tolist() == [1.0] * 11  # 30 -> 32 keeps no edge


def test_composite_keeps_original_pixels_bit_for_bit():
    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(2, 3, 8, 8, generator=g), torch.rand(2, 3, 8, 8, generator=g)
    m = (torch.rand(2, 1, 8, 8, generator=g) > 0.5).float()
    out = composite(a, b, m)
    assert torch.equal(out[(m == 0).expand_as(out)], b[(m == 0).expand_as(b)])
    assert torch.equal(out[(m == 1).expand_as(out)], a[(m == 1).expand_as(a)])


def test_repaint_keeps_the_known_data_and_follows_the_model():
    """An x0-predicting 'model' that always says c: the region becomes c, the rest stays known."""
    diffusion = GaussianDiffusion("linear", 1000, prediction="x0")
    g = torch.Generator().manual_seed(1)
    known, c = torch.rand(2, 3, 8, 8, generator=g) * 2 - 1, torch.full((2, 3, 8, 8), 0.3)
    keep = torch.zeros(2, 1, 8, 8)
    keep[..., :4] = 1
    seen = []

    def model(x, t):
        seen.append(x[..., :4].clone())
        return c

    out = diffusion.repaint_sample(model, known, keep, steps=5, resample=3, generator=g)
    assert torch.equal(out[..., :4], known[..., :4]) and torch.equal(out[..., 4:], c[..., 4:])
    assert len(seen) == 4 * 3 + 1                    # steps x resample, the last step once
    # what the model sees of the kept half is the known data at the step's noise level: at
    # t = 0 (alpha_bar ~ 1) nearly the data itself
    assert (seen[-1] - known[..., :4]).abs().max() < 0.05
    with pytest.raises(ValueError, match="eta"):
        diffusion.repaint_sample(model, known, keep, eta=0.0)


@pytest.fixture(scope="module")
def pipe():
    return load_unclip("shapes", priors=("diffusion",))


def test_inpaint_keeps_every_unmasked_pixel_at_every_resolution(pipe):
    world = ShapesWorld(seed=3)
    images = world.sample(2, objects=2, resolution=128, seed=1).images
    mask = box_mask(0, 0, 64, 128, 128)
    full = pipe.inpaint(images, mask, caption="a blue star on the left", seed=0, steps=5, resample=1)
    assert full.shape == (2, 3, 128, 128)
    assert torch.equal(full[..., 64:], images[..., 64:])              # the kept half, bit for bit
    assert (full[..., :60] - images[..., :60]).abs().mean() > 0.01    # and the box really redrawn
    base = pipe.inpaint(images, mask, caption="a blue star on the left", seed=0, steps=5, resample=1,
                        upsample=False)
    assert torch.equal(base[..., 16:], resize(images, 32)[..., 16:])
    other = world.sample(1, objects=1, resolution=32, seed=2).images
    from_image = pipe.inpaint(resize(images, 32), box_mask(0, 0, 16, 32), z_i=pipe.clip.encode_image(other),
                              seed=0, steps=5, resample=1, upsample=False)
    assert torch.equal(from_image[..., 16:], resize(images, 32)[..., 16:])


@pytest.mark.parametrize("method", ["glide", "repaint"])
def test_inpaint_draws_the_asked_object_and_keeps_the_other(pipe, method):
    """Replace one object of fresh two-object scenes: the evaluator reads the asked one in
    its place and the kept one unchanged (BENCHMARKS.md measures 256 scenes)."""
    scores = inpaint_scores(pipe, load_evaluator("shapes"), ShapesWorld(seed=9), n=16, seed=3, method=method,
                            resample=2)
    assert scores["kept_psnr"] == float("inf")
    assert scores["asked"] >= 0.75 and scores["kept"] >= 0.9, scores
    assert scores["seam"] < 6.0, scores          # 256 scenes: 1.8-3.5x the renders' border energy


def test_empty_and_full_masks_say_what_they_do(pipe):
    images = ShapesWorld(seed=1).sample(1, resolution=32, seed=0).images
    with pytest.warns(UserWarning, match="empty"):
        out = pipe.inpaint(images, torch.zeros(1, 1, 32, 32), caption="a red circle", upsample=False)
    assert torch.equal(out, images)
    with pytest.warns(UserWarning, match="whole image"):
        out = pipe.inpaint(images, torch.ones(1, 1, 32, 32), caption="a red circle", upsample=False, steps=3,
                           resample=1)
    assert out.shape == (1, 3, 32, 32)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(), ValueError, "exactly one of caption"),
    (dict(caption="a red circle", z_i=torch.ones(1, 128)), ValueError, "exactly one of caption"),
    (dict(caption="a red circle", eta=0.0), ValueError, "eta must be > 0"),
    (dict(caption="a red circle", resample=0), ValueError, "resample"),
    (dict(caption=["a", "b", "c"]), ValueError, "one per image"),
    (dict(z_i=torch.ones(3, 128)), ValueError, "3 rows for 1 images"),
    (dict(caption="a red circle", mask=torch.ones(1, 2, 32, 32)), ValueError, "one channel"),
    (dict(caption="a red circle", method="paint"), ValueError, "'glide' or 'repaint'"),
])
def test_bad_inpaint_arguments_fail_before_any_work(pipe, kwargs, error, match):
    images = torch.full((1, 3, 32, 32), 0.5)
    kwargs.setdefault("mask", box_mask(0, 0, 8, 8))
    with pytest.raises(error, match=match):
        pipe.inpaint(images, **kwargs)


def test_seam_energy_sees_a_hard_edge():
    flat = torch.full((1, 3, 16, 16), 0.5)
    mask = box_mask(0, 0, 8, 16, 16)
    stepped = composite(torch.zeros_like(flat), flat, mask)
    assert seam_energy(flat, mask).item() == 0
    assert seam_energy(stepped, mask).item() == pytest.approx(np.sqrt(3 * 0.25) / 2, rel=1e-5)


def test_cli_edit_writes_the_edited_image(tmp_path, capsys):
    from unclip_lib.cli import main

    scene = ShapesWorld(seed=2).sample(1, objects=2, resolution=32, seed=0).images[0]
    src, out = tmp_path / "scene.png", tmp_path / "edited.png"
    Image.fromarray((scene.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).save(src)
    assert main(["edit", str(src), "a blue star on the left", "--box", "0", "0", "16", "32", "--base",
                 "--method", "repaint", "--resample", "1", "-o", str(out)]) == 0
    edited = np.asarray(Image.open(out))
    assert edited.shape == (32, 32, 3)
    assert np.array_equal(edited[:, 16:], np.asarray(Image.open(src))[:, 16:])
    assert "wrote" in capsys.readouterr().out
    assert main(["edit", str(src), "a blue star", "--box", "0", "0", "40", "32", "-o", str(out)]) == 2
    assert "beyond the image" in capsys.readouterr().err
    assert main(["edit", str(src), "a blue star", "--box", "8", "0", "4", "32", "-o", str(out)]) == 2
    assert "--box" in capsys.readouterr().err
    assert main(["edit", str(tmp_path / "missing.png"), "a blue star", "--box", "0", "0", "4", "4"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_random_masks_mix_boxes_halves_blobs_and_whole_images():
    from unclip_lib.edits import random_masks

    m = random_masks(4000, 32, torch.Generator().manual_seed(0))
    again = random_masks(4000, 32, torch.Generator().manual_seed(0))
    assert torch.equal(m, again) and set(m.unique().tolist()) == {0.0, 1.0}
    share = m.mean((1, 2, 3))
    assert 0.22 < (share == 0.5).float().mean() < 0.30                 # halves (25%, plus rare boxes)
    assert 0.035 < (share == 1).float().mean() < 0.065                 # whole images (5%)
    assert (share > 0).all() and 0.25 < share.mean() < 0.45


def test_an_inpainting_decoder_starts_as_the_decoder_it_extends():
    """warm_start pads the input layer for the 4 new channels with zeros: before fine-tuning,
    the inpainting decoder predicts exactly what the shipped decoder does, whatever the mask."""
    from unclip_lib.checkpoints import shipped_path
    from unclip_lib.decoder import DECODER_PRESETS, DiffusionDecoder, UNet, inpaint_condition, load_decoder
    from unclip_lib.train import warm_start

    torch.manual_seed(0)
    inpainter = DiffusionDecoder(UNet(DECODER_PRESETS["inpaint32"])).eval()
    started = warm_start(inpainter, shipped_path("decoder/shapes"), "decoder")
    assert started["new_tensors"] == 0                                  # only the input layer grew
    base = load_decoder("shapes")
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 32, 32, generator=g)
    z = torch.nn.functional.normalize(torch.randn(2, 128, generator=g), dim=-1)
    cond = inpaint_condition(torch.rand(2, 3, 32, 32, generator=g), box_mask(0, 0, 16, 32, n=2))
    t = torch.tensor([10, 700])
    with torch.no_grad():
        assert torch.allclose(inpainter.unet(x, t, z_i=z, inpaint=cond), base.unet(x, t, z_i=z), atol=1e-5)
    with pytest.raises(ValueError, match="inpaint="):
        inpainter.unet(x, t, z_i=z)
