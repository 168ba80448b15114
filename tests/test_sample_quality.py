"""The image-set metrics against closed forms, and the shipped stack against them: grid
texture (spectral power on the fold's block lattice), the Frechet and kernel distances in
the evaluator's features, and the solver sweep's bookkeeping."""
import numpy as np
import pytest
import torch

from unclip_lib import ShapesWorld, load_evaluator, load_unclip
from unclip_lib.evaluate import (frechet_distance, grid_texture, imprint_periods, kernel_distance,
                                 texture_ratio)
from unclip_lib.sample_quality import distance_scores, solver_sweep, texture_scores


def test_imprint_periods_of_the_cascade():
    assert imprint_periods(32, (32, 64, 128)) == [2]
    assert imprint_periods(64, (32, 64, 128)) == [2, 4]
    assert imprint_periods(128, (32, 64, 128)) == [2, 4, 8]


def test_grid_texture_finds_a_block_pattern_and_nothing_else():
    world = ShapesWorld(seed=0)
    renders = world.sample(32, objects=1, resolution=32, seed=1).images
    others = world.sample(32, objects=1, resolution=32, seed=2).images
    # a 2x2 pattern of +-0.03 added everywhere: what a folding UNet's output channels leave
    block = torch.tensor([[0.03, -0.03], [-0.03, 0.03]]).repeat(16, 16)
    textured = (renders + block).clamp(0, 1)
    assert texture_ratio(textured, renders, [2])[2] > 20
    # other real images carry about the same share: the ratio's scale is "times the renders'"
    assert 0.5 < texture_ratio(others, renders, [2])[2] < 2
    # the pattern has period 2, so the period-4 lattice (which contains period 2's) sees it too,
    # while a smooth blur removes power there
    blurred = torch.nn.functional.avg_pool2d(renders, 3, 1, 1, count_include_pad=False)
    assert texture_ratio(blurred, renders, [2])[2] < 0.5
    share = grid_texture(textured, [2, 4])
    assert 0 < share[2] <= share[4] < 1
    with pytest.raises(ValueError, match="does not divide"):
        grid_texture(renders, [3])
    with pytest.raises(ValueError, match="flat"):
        grid_texture(torch.full((2, 3, 8, 8), 0.5), [2])


def test_frechet_distance_matches_the_closed_form_for_gaussians():
    g = torch.Generator().manual_seed(0)
    n, d = 20_000, 4
    a = torch.randn(n, d, generator=g, dtype=torch.float64)
    b = torch.randn(n, d, generator=g, dtype=torch.float64) * 2 + torch.tensor([1.0, 0, 0, 0], dtype=torch.float64)
    # diagonal covariances: |mu_a - mu_b|^2 + sum (sigma_a - sigma_b)^2 = 1 + 4 * (2 - 1)^2
    assert frechet_distance(a, b) == pytest.approx(5.0, rel=0.03)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="at least two"):
        frechet_distance(a[:1], b)


def test_kernel_distance_is_unbiased_and_grows_with_the_shift():
    g = torch.Generator().manual_seed(1)
    same = [kernel_distance(torch.randn(200, 8, generator=g, dtype=torch.float64),
                            torch.randn(200, 8, generator=g, dtype=torch.float64)) for _ in range(20)]
    shifted = kernel_distance(torch.randn(200, 8, generator=g, dtype=torch.float64) + 0.5,
                              torch.randn(200, 8, generator=g, dtype=torch.float64))
    assert abs(np.mean(same)) < 3 * np.std(same) / np.sqrt(len(same)) + 1e-3
    assert shifted > 10 * max(abs(np.mean(same)), np.std(same))


@pytest.fixture(scope="module")
def pipe():
    return load_unclip("shapes")


def test_shipped_samples_have_no_grid_texture(pipe):
    """The issue's goal: within 2x of the true renders' share at every period the cascade can
    imprint, at the base and at the full resolution (fresh scenes; BENCHMARKS.md has 256)."""
    scores = texture_scores(pipe, ShapesWorld(seed=4242), n=24, seed=7)
    assert set(scores) == {32, 128} and set(scores[128]) == {2, 4, 8}
    for res, ratios in scores.items():
        for period, ratio in ratios.items():
            assert ratio < 2.0, f"{res} px, period {period}: {ratio:.2f} x the renders' share"


def test_distances_rank_the_prior_above_caption_only(pipe):
    evaluator = load_evaluator("shapes")
    scores = distance_scores(pipe, evaluator, ShapesWorld(seed=99), n=48, seed=3,
                             conditionings=("diffusion", "caption"))
    # measured: 100% against 52%, FD 1169 against 2064 (48 captions)
    assert scores["diffusion"]["all"] > 0.9 > 0.75 > scores["caption"]["all"]
    assert scores["diffusion"]["fd"] < 0.8 * scores["caption"]["fd"]


def test_solver_sweep_rows_follow_the_settings(pipe):
    evaluator = load_evaluator("shapes")
    rows = solver_sweep(pipe, evaluator, ShapesWorld(seed=5), [("ddim", 4), ("dpm++", 4, 8)], n=4, seed=1)
    assert [(r["sampler"], r["decoder_steps"], r["prior_steps"], r["decoder_calls"]) for r in rows] == \
        [("ddim", 4, pipe.defaults.prior_steps, 8), ("dpm++", 4, 8, 8)]
    assert all(0 <= r["all"] <= 1 and np.isfinite(r["fd"]) for r in rows)
