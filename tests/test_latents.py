"""slerp and text-diff directions: endpoints, geometry, edge cases."""
import math

import pytest
import torch

from unclip_lib.latents import normalise, slerp, text_diff_direction


def _unit(n, d, seed):
    return normalise(torch.randn(n, d, generator=torch.Generator().manual_seed(seed)))


def test_slerp_endpoints_are_exact():
    a, b = _unit(5, 64, 0), _unit(5, 64, 1)
    assert torch.equal(slerp(a, b, 0.0), a)
    assert torch.equal(slerp(a, b, 1.0), b)
    # per-row thetas too
    out = slerp(a, b, torch.tensor([0.0, 1.0, 0.0, 1.0, 0.0]))
    assert torch.equal(out[0], a[0]) and torch.equal(out[1], b[1])


def test_slerp_matches_the_closed_form_on_a_circle():
    # in the plane of e1, e2 slerp turns at constant angular speed
    a = torch.tensor([[1.0, 0.0, 0.0]])
    b = torch.tensor([[0.0, 1.0, 0.0]])
    for theta in (0.1, 0.3, 0.5, 0.9):
        expected = torch.tensor([[math.cos(theta * math.pi / 2), math.sin(theta * math.pi / 2), 0.0]])
        assert torch.allclose(slerp(a, b, theta), expected, atol=1e-6)


def test_slerp_keeps_unit_norm_and_splits_the_angle():
    a, b = _unit(8, 128, 2), _unit(8, 128, 3)
    mid = slerp(a, b, 0.5)
    assert torch.allclose(mid.norm(dim=-1), torch.ones(8), atol=1e-5)
    ang = lambda u, v: torch.arccos((u * v).sum(-1).clamp(-1, 1))  # noqa: E731
    assert torch.allclose(ang(a, mid), ang(mid, b), atol=1e-4)
    assert torch.allclose(ang(a, mid) * 2, ang(a, b), atol=1e-4)


def test_slerp_of_latent_images_keeps_their_norm():
    g = torch.Generator().manual_seed(4)
    a, b = torch.randn(3, 3, 32, 32, generator=g), torch.randn(3, 3, 32, 32, generator=g)
    mid = slerp(a, b, 0.5)
    assert mid.shape == a.shape
    na, nb, nm = (x.flatten(1).norm(dim=1) for x in (a, b, mid))
    assert torch.allclose(nm, (na + nb) / 2, rtol=1e-5)
    # a straight line would have shrunk it by ~cos(45 deg)
    assert float(((a + b) / 2).flatten(1).norm(dim=1).mean()) < 0.8 * float(nm.mean())


def test_slerp_nearly_parallel_is_stable():
    a = _unit(2, 32, 5)
    b = normalise(a + 1e-7 * _unit(2, 32, 6))
    out = slerp(a, b, 0.5)
    assert torch.isfinite(out).all()
    assert torch.allclose(out, a, atol=1e-5)
    assert torch.equal(slerp(a, a, 0.3), slerp(a, a, 0.3))  # identical vectors: no NaN
    assert torch.isfinite(slerp(a, a, 0.3)).all()


def test_slerp_refuses_antipodal_and_zero_vectors():
    a = _unit(1, 16, 7)
    with pytest.raises(ValueError, match="antipodal"):
        slerp(a, -a, 0.5)
    with pytest.raises(ValueError, match="zero vector"):
        slerp(a, torch.zeros_like(a), 0.5)
    with pytest.raises(ValueError, match="NaN"):
        slerp(a, torch.full_like(a, float("nan")), 0.5)


def test_text_diff_direction():
    z_t0, z_t = _unit(1, 32, 8), _unit(1, 32, 9)
    z_d = text_diff_direction(z_t, z_t0)
    assert torch.allclose(z_d.norm(dim=-1), torch.ones(1), atol=1e-6)
    assert float((z_d * (z_t - z_t0)).sum()) > 0
    with pytest.raises(ValueError, match="same CLIP text embedding"):
        text_diff_direction(z_t, z_t.clone())


def test_embedding_pca_orders_variance_and_reconstructs():
    from unclip_lib.latents import EmbeddingPCA

    g = torch.Generator().manual_seed(10)
    # data spread mostly along two known directions
    basis = torch.linalg.qr(torch.randn(16, 16, generator=g))[0]
    coeffs = torch.randn(500, 16, generator=g) * torch.tensor([5.0, 3.0] + [0.1] * 14)
    z = coeffs @ basis.T + 2.0
    pca = EmbeddingPCA.fit(z)
    assert torch.allclose(pca.explained.sum(), torch.tensor(1.0), atol=1e-5)
    assert (pca.explained[:-1] >= pca.explained[1:] - 1e-7).all()
    assert float(pca.explained[:2].sum()) > 0.98
    # the first component is the first planted direction, up to sign
    assert abs(float(pca.components[0] @ basis[:, 0])) > 0.99
    assert torch.allclose(pca.reconstruct(z, 16, renormalise=False), z, atol=1e-4)
    two = pca.reconstruct(z, 2, renormalise=False)
    assert float(((two - z) ** 2).mean()) < 0.02
    assert torch.allclose(pca.reconstruct(z, 3).norm(dim=-1), torch.ones(500), atol=1e-5)
    with pytest.raises(ValueError, match="k must lie"):
        pca.reconstruct(z, 17)
