"""Prior mechanics on tiny random models: shapes, causality, guidance dropout, PCA codes."""
import pytest
import torch
import torch.nn.functional as F

from unclip_lib.prior import (PRIOR_PRESETS, AutoregressivePrior, DiffusionPrior, PCAQuantizer,
                              PriorConfig, best_of)

MICRO = PriorConfig(dim=16, text_dim=8, text_len=6, width=32, layers=2, heads=4, buckets=16)


def _caption(n=3, seed=0, length=5):
    g = torch.Generator().manual_seed(seed)
    text = torch.randn(n, length, MICRO.text_dim, generator=g)
    mask = torch.arange(length)[None] < torch.tensor([5, 3, 4][:n])[:, None]
    z_t = F.normalize(torch.randn(n, MICRO.dim, generator=g), dim=-1)
    return text, mask, z_t


def _embeddings(n=2000, seed=1):
    """Unit vectors concentrated near a 5-dimensional subspace, like CLIP embeddings of one world."""
    g = torch.Generator().manual_seed(seed)
    basis = torch.linalg.qr(torch.randn(MICRO.dim, 5, generator=g))[0].T
    z = torch.randn(n, 5, generator=g) * torch.tensor([3.0, 2.0, 1.5, 1.0, 0.5]) @ basis
    z = z + 0.01 * torch.randn(n, MICRO.dim, generator=g) + 4 * basis[0]
    return F.normalize(z, dim=-1)


def test_best_of_keeps_the_candidate_closest_to_z_t():
    z_t = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    cands = torch.tensor([[[0.0, 1.0], [0.6, 0.8]], [[0.6, 0.8], [1.0, 0.0]]])
    assert torch.equal(best_of(cands, z_t), torch.tensor([[0.6, 0.8], [0.6, 0.8]]))


def test_diffusion_prior_shapes_loss_and_sampling():
    torch.manual_seed(0)
    prior = DiffusionPrior(MICRO).eval()
    text, mask, z_t = _caption()
    z_i = F.normalize(torch.randn(3, MICRO.dim), dim=-1)
    loss = prior.loss(z_i, text, mask, z_t, torch.Generator().manual_seed(0))
    assert loss.dim() == 0 and torch.isfinite(loss)
    z = prior.sample(text, mask, z_t, steps=5, generator=torch.Generator().manual_seed(0))
    assert z.shape == (3, MICRO.dim) and torch.allclose(z.norm(dim=-1), torch.ones(3), atol=1e-5)
    again = prior.sample(text, mask, z_t, steps=5, generator=torch.Generator().manual_seed(0))
    assert torch.equal(z, again)


def test_dropped_caption_ignores_the_caption():
    torch.manual_seed(0)
    prior = DiffusionPrior(MICRO).eval()
    text, mask, z_t = _caption()
    other_text, other_mask, other_z = _caption(seed=5)
    x, t = torch.randn(3, MICRO.dim), torch.tensor([10, 500, 900])
    off = torch.zeros(3, dtype=torch.bool)
    a = prior(x, t, text, mask, z_t, keep=off)
    b = prior(x, t, other_text, other_mask, other_z, keep=off)
    assert torch.allclose(a, b, atol=1e-5)
    assert not torch.allclose(prior(x, t, text, mask, z_t), prior(x, t, other_text, other_mask, other_z))


def test_padding_tokens_are_ignored():
    torch.manual_seed(0)
    prior = DiffusionPrior(MICRO).eval()
    text, mask, z_t = _caption()
    changed = text.clone()
    changed[~mask] = 100.0  # garbage where there is no token
    x, t = torch.randn(3, MICRO.dim), torch.tensor([1, 2, 3])
    assert torch.allclose(prior(x, t, text, mask, z_t), prior(x, t, changed, mask, z_t), atol=1e-5)


def test_pca_quantizer_round_trip_and_component_choice():
    z = _embeddings()
    z_t = F.normalize(z + 0.3 * torch.randn(z.shape, generator=torch.Generator().manual_seed(2)), dim=-1)
    q = PCAQuantizer.fit(z, z_t, buckets=256, keep_variance=0.999)
    assert 4 <= q.components <= 6  # the 5-dimensional structure, not all 16 dimensions
    assert (q.explained[:-1] >= q.explained[1:]).all()
    ids = q.encode(z)
    assert ids.shape == (2000, q.components) and ids.min() >= 0 and ids.max() < 256
    cos = (q.decode(ids) * z).sum(-1)
    assert cos.mean() > 0.995
    # quantile buckets: each bucket holds about the same share of the training set
    counts = torch.bincount(ids[:, 0], minlength=256).float()
    assert counts.std() / counts.mean() < 0.3
    dots = q.dot_bucket((z * z_t).sum(-1))
    assert dots.min() == 0 and dots.max() == 255


def test_autoregressive_prior_is_causal_and_samples_valid_codes():
    z = _embeddings()
    q = PCAQuantizer.fit(z, z, buckets=MICRO.buckets, keep_variance=0.999)
    torch.manual_seed(0)
    prior = AutoregressivePrior(MICRO, q).eval()
    text, mask, z_t = _caption()
    ids = q.encode(z[:3])
    dot = torch.tensor([1, 2, 3])
    full = prior.logits(ids, dot, text, mask, z_t)
    assert full.shape == (3, q.components + 1, MICRO.buckets)
    changed = ids.clone()
    changed[:, -1] = (changed[:, -1] + 1) % MICRO.buckets
    after = prior.logits(changed, dot, text, mask, z_t)
    assert torch.allclose(full[:, :-1], after[:, :-1], atol=1e-5)  # the past does not see the future
    assert not torch.allclose(full[:, -1], after[:, -1])
    loss = prior.loss(z[:3], text, mask, z_t, torch.Generator().manual_seed(0))
    assert torch.isfinite(loss)
    sample = prior.sample(text, mask, z_t, generator=torch.Generator().manual_seed(0))
    assert sample.shape == (3, MICRO.dim) and torch.allclose(sample.norm(dim=-1), torch.ones(3), atol=1e-5)


def test_bad_prior_inputs_are_refused():
    prior = DiffusionPrior(MICRO)
    text, mask, z_t = _caption()
    with pytest.raises(ValueError, match=r"z_t must have shape \[N, 16\]"):
        prior.sample(text, mask, torch.randn(3, 7))
    with pytest.raises(ValueError, match="caption encodings"):
        prior.sample(text[:2], mask[:2], z_t)
    with pytest.raises(ValueError, match="at most 6"):
        prior.sample(torch.randn(3, 9, 8), torch.ones(3, 9, dtype=torch.bool), z_t)
    with pytest.raises(ValueError, match="PCAQuantizer"):
        AutoregressivePrior(MICRO)
    assert "shapes" in PRIOR_PRESETS


def test_saved_priors_load_back_identically(tmp_path):
    from unclip_lib.checkpoints import export_weights
    from unclip_lib.prior import load_prior
    from dataclasses import asdict

    z = _embeddings()
    torch.manual_seed(0)
    for prior in (DiffusionPrior(MICRO), AutoregressivePrior(MICRO, PCAQuantizer.fit(z, z, MICRO.buckets))):
        kind = "diffusion" if isinstance(prior, DiffusionPrior) else "autoregressive"
        path = export_weights(prior, tmp_path / f"{kind}.safetensors", "prior",
                              {"prior": asdict(prior.config), "kind": kind}, half=False)
        loaded = load_prior(str(path))
        text, mask, z_t = _caption()
        g = lambda: torch.Generator().manual_seed(1)  # noqa: E731
        kw = {"steps": 4} if kind == "diffusion" else {}
        assert torch.equal(prior.eval().sample(text, mask, z_t, generator=g(), **kw),
                           loaded.sample(text, mask, z_t, generator=g(), **kw))


def test_captions_longer_than_the_prior_reads_are_refused_but_padding_is_cut():
    prior = DiffusionPrior(MICRO).eval()
    text, mask, z_t = _caption(length=5)
    padded_text = torch.cat([text, torch.randn(3, 4, MICRO.text_dim)], dim=1)   # 9 > text_len 6
    padded_mask = torch.cat([mask, torch.zeros(3, 4, dtype=torch.bool)], dim=1)
    x, t = torch.randn(3, MICRO.dim), torch.tensor([10, 500, 900])
    assert torch.allclose(prior(x, t, padded_text, padded_mask, z_t), prior(x, t, text, mask, z_t), atol=1e-5)
    long_mask = padded_mask.clone()
    long_mask[1, :8] = True
    with pytest.raises(ValueError, match="at most 6"):
        prior(x, t, padded_text, long_mask, z_t)


def test_cached_prefix_gives_the_same_predictions_as_the_full_sequence():
    torch.manual_seed(0)
    prior = DiffusionPrior(MICRO).eval()
    text, mask, z_t = _caption()
    x, t = torch.randn(3, MICRO.dim), torch.tensor([10, 500, 900])
    keep = torch.tensor([True, False, True])
    past, prefix_mask = prior.encode_prefix(text, mask, z_t, keep)
    assert torch.allclose(prior.denoise(x, t, past, prefix_mask), prior(x, t, text, mask, z_t, keep), atol=1e-5)


def test_autoregressive_sampling_with_cache_matches_the_full_recomputation():
    """The cached sampler must draw exactly what recomputing logits() over the whole
    sequence for every code (the training path) would draw from the same generator."""
    torch.manual_seed(0)
    z = _embeddings()
    prior = AutoregressivePrior(MICRO, PCAQuantizer.fit(z, z.roll(1, 0), MICRO.buckets)).eval()
    text, mask, z_t = _caption()
    dot = torch.full((3,), int(0.9 * MICRO.buckets), dtype=torch.long)
    off = torch.zeros(3, dtype=torch.bool)
    for guidance in (1.0, 3.0):
        g = torch.Generator().manual_seed(0)
        ids = torch.zeros(3, 0, dtype=torch.long)
        with torch.no_grad():
            for _ in range(prior.config.components):
                cond = prior.logits(ids, dot, text, mask, z_t)[:, -1]
                uncond = prior.logits(ids, dot, text, mask, z_t, keep=off)[:, -1]
                logits = cond if guidance == 1.0 else uncond + guidance * (cond - uncond)
                ids = torch.cat([ids, torch.multinomial(logits.softmax(-1), 1, generator=g)], dim=1)
        sample = prior.sample(text, mask, z_t, guidance=guidance, generator=torch.Generator().manual_seed(0))
        assert torch.allclose(sample, prior.quantizer.decode(ids), atol=1e-6)
