"""The diffusion core against closed forms and an analytic model.

For data x_0 ~ N(mu, s^2 I) the optimal epsilon predictor is known exactly:
    eps*(x_t, t) = sqrt(1 - a) (x_t - sqrt(a) mu) / (a s^2 + 1 - a),   a = alpha_bar_t,
so samplers and inversions can be checked without training anything.
"""
import math

import numpy as np
import pytest
import torch

from unclip_lib.diffusion import GaussianDiffusion, ddim_timesteps, guided

MU, S = 0.3, 0.5


def gaussian_eps(diffusion):
    def fn(x, t):
        a = torch.from_numpy(diffusion.alphas_cumprod)[t].float().view(-1, *([1] * (x.dim() - 1)))
        return (1 - a).sqrt() * (x - a.sqrt() * MU) / (a * S ** 2 + 1 - a)
    return fn


def psnr(a, b, peak=2.0):
    return 10 * math.log10(peak ** 2 / ((a - b) ** 2).mean().item())


@pytest.mark.parametrize("schedule", ["cosine", "linear"])
def test_schedule_sanity(schedule):
    d = GaussianDiffusion(schedule, 1000)
    assert d.betas.dtype == np.float64 and d.alphas_cumprod.dtype == np.float64
    assert np.all(d.betas > 0) and np.all(d.betas < 1)
    assert np.all(np.diff(d.alphas_cumprod) < 0)
    assert d.alphas_cumprod[0] > 0.999 and d.alphas_cumprod[-1] < 1e-3


def test_q_sample_matches_closed_form():
    d = GaussianDiffusion("cosine", 1000)
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(4, 3, 8, 8, generator=g), torch.randn(4, 3, 8, 8, generator=g)
    t = torch.tensor([0, 10, 500, 999])
    x_t = d.q_sample(x0, t, noise)
    for i, ti in enumerate(t.tolist()):
        a = d.alphas_cumprod[ti]
        assert torch.allclose(x_t[i], math.sqrt(a) * x0[i] + math.sqrt(1 - a) * noise[i], atol=1e-6)


def test_ddim_step_matches_the_paper_by_hand():
    d = GaussianDiffusion("linear", 1000)
    g = torch.Generator().manual_seed(1)
    x_t, eps, z = (torch.randn(2, 5, generator=g) for _ in range(3))
    t, t_prev, eta = 600, 400, 0.7
    a_t, a_prev = d.alphas_cumprod[t], d.alphas_cumprod[t_prev]
    x0 = (x_t - math.sqrt(1 - a_t) * eps) / math.sqrt(a_t)
    # Song et al. (2021), eq. 12 and 16
    sigma = eta * math.sqrt((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev))
    by_hand = math.sqrt(a_prev) * x0 + math.sqrt(1 - a_prev - sigma ** 2) * eps + sigma * z
    assert torch.allclose(d.ddim_step(x_t, x0, eps, t, t_prev, eta, z), by_hand, atol=1e-6)


def test_eta_one_ddim_has_the_ddpm_posterior_variance():
    d = GaussianDiffusion("cosine", 1000)
    for t in (1, 50, 500, 999):
        a_t, a_prev = d.alphas_cumprod[t], d.alphas_cumprod[t - 1]
        sigma2 = (1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)
        assert sigma2 == pytest.approx(d.posterior_variance[t], rel=1e-9)


def test_ddim_eta1_over_all_steps_equals_ddpm():
    d = GaussianDiffusion("cosine", 100)
    model = gaussian_eps(d)
    g = torch.Generator().manual_seed(2)
    x_T = torch.randn(3, 4, generator=g)
    noises = [torch.randn(3, 4, generator=g) for _ in range(100)]
    a = d.ddpm_sample(model, x_T=x_T, noises=noises)
    b = d.ddim_sample(model, x_T=x_T, steps=100, eta=1.0, noises=noises)
    assert torch.allclose(a, b, atol=1e-4)


# eta = 1 needs small strides: with large ones, plugging in E[x_0 | x_t] for x_0 loses variance
@pytest.mark.parametrize("eta,steps", [(0.0, 50), (1.0, 1000)])
def test_samplers_draw_the_data_distribution(eta, steps):
    d = GaussianDiffusion("cosine", 1000)
    g = torch.Generator().manual_seed(3)
    x = d.ddim_sample(gaussian_eps(d), shape=(4000, 4), steps=steps, eta=eta, generator=g)
    assert abs(x.mean().item() - MU) < 0.02 and abs(x.std().item() - S) < 0.02


def test_ddim_inversion_round_trip_naive_and_refined():
    d = GaussianDiffusion("cosine", 1000)
    model = gaussian_eps(d)
    x0 = MU + S * torch.randn(8, 3, 8, 8, generator=torch.Generator().manual_seed(4))
    naive = d.ddim_sample(model, x_T=d.ddim_invert(model, x0, steps=50), steps=50)
    refined = d.ddim_sample(model, x_T=d.ddim_invert(model, x0, steps=50, refine=3), steps=50)
    assert psnr(naive, x0) > 30
    assert psnr(refined, x0) > 60 and psnr(refined, x0) > psnr(naive, x0) + 10
    with pytest.raises(AssertionError, match="eta = 0"):
        d.ddim_invert(model, x0, eta=0.5)


def test_ddim_timesteps_and_guidance():
    assert ddim_timesteps(1000, 4) == [0, 333, 666, 999]
    assert ddim_timesteps(1000, 1) == [999]  # one jump from pure noise, not a t=0 call on noise
    with pytest.raises(ValueError):
        ddim_timesteps(10, 20)
    cond, uncond = (lambda x, t: x + 1), (lambda x, t: x)
    x = torch.zeros(2)
    assert torch.equal(guided(cond, uncond, 3.0)(x, None), torch.full((2,), 3.0))
    assert torch.equal(guided(cond, uncond, 0.0)(x, None), x)


def test_x0_prediction_loss_targets_the_data():
    d = GaussianDiffusion("cosine", 1000, prediction="x0")
    x0 = torch.randn(5, 7)
    assert d.training_loss(lambda x, t: x0, x0, torch.Generator().manual_seed(0)).item() == 0.0


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_v_prediction_recovers_x0_and_eps(schedule):
    d = GaussianDiffusion(schedule, prediction="v")
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.rand(4, 3, 8, 8, generator=g) * 2 - 1, torch.randn(4, 3, 8, 8, generator=g)
    t = torch.tensor([0, 250, 700, 999])
    x_t = d.q_sample(x0, t, noise)
    v = d.v_target(x0, t, noise)
    x0_hat, eps_hat = d.predict(lambda x, tt: v, x_t, t)
    assert torch.allclose(x0_hat, x0, atol=1e-4) and torch.allclose(eps_hat, noise, atol=1e-4)
    # the loss is zero for the exact v and grows for a biased one
    assert d.training_loss(lambda x, tt: d.v_target(x0, tt, noise), x0, t=t, noise=noise) < 1e-10


# ----------------------------------------------------------------------------- DPM-Solver++(2M)

def gaussian_ode_solution(d, x_T, t_start):
    """The probability-flow ODE's exact end point for Gaussian data: x_t stays
    sqrt(a) mu + sqrt(a s^2 + 1 - a) z along the path, so x_0 = mu + s z."""
    a = d.alphas_cumprod[t_start]
    z = (x_T - math.sqrt(a) * MU) / math.sqrt(a * S ** 2 + 1 - a)
    return MU + S * z


def gaussian_ode_problem(seed):
    """An eps-prediction diffusion with the exact Gaussian model, 256 starting points, and the
    mean error of a sample against the ODE's exact end point."""
    d = GaussianDiffusion("linear", 1000, prediction="eps")
    x_T = torch.randn(256, 4, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    exact = gaussian_ode_solution(d, x_T, 999)
    model = lambda x, t: gaussian_eps(d)(x, t).to(x.dtype)  # noqa: E731
    return d, model, x_T, lambda x: (x - exact).abs().mean().item()


def test_dpm_solver_converges_at_second_order_on_the_exact_gaussian_ode():
    d, model, x_T, err = gaussian_ode_problem(seed=5)
    ddim = {n: err(d.ddim_sample(model, x_T=x_T, steps=n)) for n in (10, 20, 50)}
    dpm = {n: err(d.dpm_solver_sample(model, x_T=x_T, steps=n)) for n in (10, 20, 40, 50)}
    assert all(dpm[n] < ddim[n] for n in (10, 20, 50)), (dpm, ddim)
    # doubling the steps quarters the error (second order); DDIM's only halves
    assert dpm[20] / dpm[40] > 3.0 and ddim[10] / ddim[20] < 2.2, (dpm, ddim)
    # 20 DPM-Solver++ steps are closer than 50 DDIM steps
    assert dpm[20] < ddim[50], (dpm, ddim)


def test_dpm_solver_first_step_is_ddim_and_sampler_choice():
    d = GaussianDiffusion("linear", 1000, prediction="eps")
    x_T = torch.randn(8, 4, generator=torch.Generator().manual_seed(6))
    model = gaussian_eps(d)
    # up to three steps every update is first order: exactly DDIM
    for steps in (1, 2, 3):
        assert torch.allclose(d.dpm_solver_sample(model, x_T=x_T, steps=steps),
                              d.ddim_sample(model, x_T=x_T, steps=steps), atol=1e-6)
    assert not torch.allclose(d.dpm_solver_sample(model, x_T=x_T, steps=4), d.ddim_sample(model, x_T=x_T, steps=4),
                              atol=1e-3)
    assert torch.equal(d.sample(model, x_T=x_T, steps=7, sampler="dpm++"),
                       d.dpm_solver_sample(model, x_T=x_T, steps=7, spacing="logsnr"))   # its default spacing
    assert torch.equal(d.sample(model, x_T=x_T, steps=7, sampler="dpm++", spacing="uniform"),
                       d.dpm_solver_sample(model, x_T=x_T, steps=7))
    assert torch.equal(d.sample(model, x_T=x_T, steps=7, sampler="ddim"), d.ddim_sample(model, x_T=x_T, steps=7))
    with pytest.raises(ValueError, match="spacing must be one of"):
        d.sample(model, x_T=x_T, sampler="ddim", spacing="cosine")
    with pytest.raises(ValueError, match="deterministic; use sampler='ddim'"):
        d.sample(model, x_T=x_T, sampler="dpm++", eta=1.0)
    with pytest.raises(ValueError, match="sampler must be one of"):
        d.sample(model, x_T=x_T, sampler="euler")


@pytest.mark.parametrize("prediction,steps", [("v", 8), ("x0", 12), ("eps", 25)])
def test_dpm_solver_matches_diffusers_scheduler(prediction, steps):
    diffusers = pytest.importorskip("diffusers", reason="diffusers is the reference (pip install diffusers)")
    d = GaussianDiffusion("linear", 1000, prediction=prediction)
    scheduler = diffusers.DPMSolverMultistepScheduler(
        num_train_timesteps=1000, trained_betas=d.betas.tolist(), solver_order=2,
        prediction_type={"v": "v_prediction", "x0": "sample", "eps": "epsilon"}[prediction],
        algorithm_type="dpmsolver++", final_sigmas_type="sigma_min", euler_at_final=True)
    ts = ddim_timesteps(1000, steps)[::-1]
    assert ts[-1] == 0
    # diffusers steps over all our timesteps but t = 0, then first order to sigma(t = 0)
    scheduler.set_timesteps(timesteps=ts[:-1])
    assert scheduler.timesteps.tolist() == ts[:-1]

    # any smooth model will do for a reference check: a fixed nonlinear function of (x, t)
    w = torch.randn(4, 4, generator=torch.Generator().manual_seed(7), dtype=torch.float64) * 0.3

    def model(x, t):
        return torch.tanh(x @ w) * (1 + t.to(x.dtype)[:, None] / 1000) + 0.1 * x

    x_T = torch.randn(16, 4, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    ours = d.dpm_solver_sample(model, x_T=x_T, steps=steps)
    x = x_T.clone()
    for t in scheduler.timesteps:
        x = scheduler.step(model(x, torch.full((16,), int(t))), t, x).prev_sample
    x = d.predict(model, x, torch.zeros(16, dtype=torch.long))[0]   # our last call: x0 at t = 0
    assert torch.allclose(ours, x.to(ours.dtype), atol=1e-5, rtol=1e-5), (ours - x).abs().max()


def test_logsnr_timesteps_are_distinct_and_even_in_lambda():
    from unclip_lib.diffusion import logsnr_timesteps

    d = GaussianDiffusion("linear", 1000)
    for steps in (1, 2, 5, 10, 25, 100):
        ts = logsnr_timesteps(d.alphas_cumprod, steps)
        assert len(ts) == steps and ts == sorted(set(ts)) and ts[-1] == 999
        assert steps == 1 or ts[0] == 0
    lam = 0.5 * np.log(d.alphas_cumprod / (1 - d.alphas_cumprod))
    gaps = np.diff(lam[logsnr_timesteps(d.alphas_cumprod, 10)])
    assert gaps.std() < 0.05 * abs(gaps.mean())          # even in lambda, up to integer rounding
    # uniform spacing leaves most of lambda's range to the last step; logsnr does not
    uniform = np.diff(lam[ddim_timesteps(1000, 10)])
    assert abs(uniform[0]) > 0.35 * abs(lam[999] - lam[0]) > 3 * abs(gaps[0])


def test_dpm_solver_on_logsnr_timesteps_beats_ddim_on_the_gaussian_ode():
    d, model, x_T, err = gaussian_ode_problem(seed=9)
    dpm10 = err(d.sample(model, x_T=x_T, steps=10, sampler="dpm++"))        # logsnr by default
    assert dpm10 < err(d.ddim_sample(model, x_T=x_T, steps=50))
    assert dpm10 < err(d.dpm_solver_sample(model, x_T=x_T, steps=10, spacing="uniform"))
