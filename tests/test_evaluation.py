"""Guidance against fidelity and diversity, and the limitations (binding, spelling, detail at
the base resolution), on small fresh samples; BENCHMARKS.md has the large-sample figures."""
import math

import pytest
import torch

from unclip_lib.fidelity import (conditioning_scores, entropy_bound, grid_scores, guidance_sweep, keeps_diversity,
                                 sample_grid)
from unclip_lib.limitations import (BINDING_OUTCOMES, base_resolution_detail, binding_caption, binding_outcome,
                                    binding_scenes, binding_scores, clip_binding_accuracy, spelling_prompts,
                                    spelling_scores)
from unclip_lib.pipeline import load_unclip


@pytest.fixture(scope="module")
def pipe():
    return load_unclip("shapes")


def _two(a, b):
    return {"objects": [dict(zip(("shape", "color"), a)), dict(zip(("shape", "color"), b))]}


def test_binding_outcomes_are_classified_exactly():
    truth = _two(("circle", "red"), ("square", "blue"))
    assert binding_caption(truth) == "two shapes: a red circle and a blue square"
    assert binding_caption(truth, swap=True) == "two shapes: a blue circle and a red square"
    assert binding_outcome(_two(("square", "blue"), ("circle", "red")), truth) == "correct"   # order is free
    assert binding_outcome(_two(("circle", "blue"), ("square", "red")), truth) == "swapped"
    assert binding_outcome(_two(("circle", "red"), ("square", "red")), truth) == "colour leaked"
    assert binding_outcome(_two(("circle", "red"), ("circle", "blue")), truth) == "shape doubled"
    assert binding_outcome(_two(("square", "red"), ("square", "red")), truth) == "shape doubled"
    assert binding_outcome(_two(("circle", "red"), ("star", "blue")), truth) == "wrong"
    assert binding_outcome(_two(("circle", "green"), ("square", "blue")), truth) == "wrong"
    assert binding_outcome({"shape": "circle", "color": "red"}, truth) == "wrong count"         # one object


def test_binding_scenes_differ_in_shape_and_colour():
    scenes = binding_scenes(12, seed=5)
    assert len(scenes) == 12 and scenes.images.shape[0] == 12
    for a in scenes.attributes:
        shapes, colours = {o["shape"] for o in a["objects"]}, {o["color"] for o in a["objects"]}
        assert len(shapes) == 2 and len(colours) == 2


def test_clip_barely_tells_a_caption_from_its_colour_swap(clip):
    # 100 scenes (BENCHMARKS.md): the swap moves the cosine by 0.020, a colour substitution by 0.248;
    # the paper's explanation of unCLIP's binding errors
    scenes = binding_scenes(100, seed=31)
    r = clip_binding_accuracy(clip, scenes.images, scenes.attributes)
    assert r["substitution_accuracy"] >= 0.9, r
    assert r["margin"] < 0.3 * r["substitution_margin"], r
    assert r["accuracy"] < r["substitution_accuracy"], r


def test_the_prior_beats_the_caption_alone_on_fidelity(pipe, evaluator):
    r = conditioning_scores(pipe, evaluator, ("diffusion", "caption"), n_captions=8, samples=2, seed=404,
                            p_size=0.0, p_position=0.0)
    assert r["diffusion"]["shape+color"] >= 0.75, r
    assert r["diffusion"]["shape+color"] > r["caption"]["shape+color"], r
    for row in r.values():
        assert 0 <= row["background_entropy"] <= entropy_bound("background") + 1e-9
        assert 0 <= row["position_entropy"] <= entropy_bound("position") + 1e-9
        assert row["diversity"] > 0


def test_guidance_sweep_shares_seeds_across_guidance(pipe, evaluator):
    captions = ["a red star", "a blue circle"]
    low, high = (pipe.generate(captions, seed=9, decoder_guidance=g, upsample=False, return_intermediates=True)
                 for g in (1.0, 5.0))
    assert torch.equal(low.z_i, high.z_i)             # the prior's draw does not depend on the decoder's guidance
    assert not torch.equal(low.images, high.images)
    grid = sample_grid(pipe, captions, "diffusion", 2, seed=9, guidance=1.0)
    assert torch.equal(grid[0], low.images)           # draw 0 uses the seed itself, at any guidance
    assert not torch.equal(grid[0], grid[1])
    with pytest.raises(ValueError, match="at least 2"):
        guidance_sweep(pipe, evaluator, samples=1)
    with pytest.raises(ValueError, match="unknown conditioning"):
        conditioning_scores(pipe, evaluator, ("glide",))
    with pytest.raises(ValueError, match="guidances"):
        guidance_sweep(pipe, evaluator, guidances=())


def test_binding_scores_sort_every_image_once(pipe, evaluator):
    r = binding_scores(pipe, evaluator, n=6, conditionings=("image",), seed=4)
    row = r["image"]
    assert sum(row[o] for o in BINDING_OUTCOMES) == pytest.approx(1.0)
    assert row["misbound"] == pytest.approx(row["swapped"] + row["colour leaked"] + row["shape doubled"])
    assert r["clip"]["substitution_accuracy"] >= 0.8


def test_grid_scores_of_identical_samples_have_no_diversity(pipe, evaluator):
    from unclip_lib import ShapesWorld

    batch = ShapesWorld(seed=3).sample(4, resolution=32)
    stated = [{"shape": a["shape"], "color": a["color"]} for a in batch.attributes]
    r = grid_scores(evaluator, batch.images.expand(2, -1, -1, -1, -1), stated)
    assert r["shape+color"] == 1.0 and r["diversity"] == 0.0
    assert r["size_entropy"] == r["position_entropy"] == r["background_entropy"] == 0.0


def test_spelling_prompts_and_the_evaluators_ceiling(pipe, evaluator):
    own, stated = spelling_prompts(20, seed=1, kind="own")
    assert all(s["word"] in (s["shape"], s["color"]) and f"'{s['word']}'" in c for c, s in zip(own, stated))
    _, other = spelling_prompts(20, seed=1, kind="other")
    assert all(s["word"] not in (s["shape"], s["color"]) for s in other)
    with pytest.raises(ValueError, match="kind"):
        spelling_prompts(2, seed=0, kind="mine")
    r = spelling_scores(pipe, evaluator, n=6, seed=2)
    assert r["renders"]["word"] >= 0.9                   # the evaluator can read words the world writes
    for kind in ("own", "other"):
        assert 0 <= r[kind]["word"] <= r[kind]["any_word"] <= 1


def test_upsampling_the_base_render_beats_bicubic_but_is_not_the_full_render(pipe, evaluator):
    r = base_resolution_detail(pipe, evaluator, n=24, seed=12)
    assert r["full"]["shape"] >= 0.95 and math.isinf(r["full"]["psnr"])
    assert r["upsampled"]["psnr"] > r["bicubic"]["psnr"] + 0.3, r
    assert r["upsampled"]["psnr"] < 35, r                  # detail is lost at 32 px
