"""The shipped text-to-image stack (priors + decoder + upsamplers) against the figures of
the priors issue, on small fresh samples (BENCHMARKS.md has the 500-sample figures), plus
its errors on bad input."""
import pytest
import torch

from unclip_lib.evaluate import text_prompts, text_to_image_scores
from unclip_lib.pipeline import load_unclip
from unclip_lib.train import prior_validation


@pytest.fixture(scope="module")
def pipe():
    return load_unclip("shapes")


@pytest.mark.parametrize("prior", ["diffusion", "autoregressive"])
def test_generated_images_show_what_the_caption_says(pipe, evaluator, prior):
    captions, stated = text_prompts(48, seed=31337)
    base = pipe.generate(captions, prior=prior, seed=5, upsample=False)
    scores = text_to_image_scores(evaluator.predict(base, objects=1), stated)
    assert scores["shape+color"] >= 0.9 and scores["all"] >= 0.8, scores


@pytest.mark.parametrize("prior", ["diffusion", "autoregressive"])
def test_prior_samples_are_closer_to_the_image_embedding_than_z_t(pipe, prior):
    r = prior_validation(pipe.priors[prior], pipe.clip, n=64, seed=2718)
    assert r["cos_sample"] > r["cos_z_t"] + 0.1, r


def test_generate_returns_intermediates_and_is_deterministic(pipe):
    out = pipe.generate(["a red circle", "a small blue star on the left"], seed=9, return_intermediates=True)
    assert out.images.shape == (2, 3, 128, 128) and out.base.shape == (2, 3, 32, 32)
    assert out.z_i.shape == out.z_t.shape == (2, pipe.clip.embed_dim)
    assert torch.allclose(out.z_i.norm(dim=-1), torch.ones(2), atol=1e-4)
    again = pipe.generate(["a red circle", "a small blue star on the left"], seed=9)
    assert torch.equal(out.images, again)
    assert not torch.equal(out.base, pipe.generate(["a red circle", "a small blue star on the left"],
                                                   seed=10, upsample=False))


def test_ablation_conditionings_run(pipe):
    for name in ("z_t", "caption"):
        out = pipe.generate(["a green square"], prior=name, upsample=False, decoder_steps=5,
                            return_intermediates=True)
        assert out.base.shape == (1, 3, 32, 32)
        assert (out.z_i is None) == (name == "caption")


@pytest.mark.parametrize("captions, error, match", [
    ([], ValueError, "empty list"),
    (["a red circle", "   "], ValueError, r"captions\[1\] is empty"),
    (["a red circle", 3], TypeError, r"captions\[1\] must be a string.*got int"),
    (["a red circle " * 14], ValueError, "tokens but the priors read at most 40"),
])
def test_bad_captions_are_refused_clearly(pipe, captions, error, match):
    with pytest.raises(error, match=match):
        pipe.generate(captions)


def test_unknown_prior_is_refused_clearly(pipe):
    with pytest.raises(ValueError, match="unknown prior 'clip'.*diffusion"):
        pipe.generate(["a red circle"], prior="clip")


def test_cli_generate_writes_a_grid(tmp_path, capsys):
    from PIL import Image

    from unclip_lib.cli import main

    out = tmp_path / "grid.png"
    assert main(["generate", "a red circle", "a blue star", "-n", "2", "--base", "-o", str(out)]) == 0
    assert Image.open(out).size == (2 + 2 * 34, 2 + 2 * 34)  # 2 x 2 images of 32 px, 2 px padding
    assert "wrote" in capsys.readouterr().out
    assert main(["generate", "", "-o", str(out)]) == 2
    assert "captions[0] is empty" in capsys.readouterr().err
