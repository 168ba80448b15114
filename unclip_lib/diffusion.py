"""Gaussian diffusion: schedules, training losses, DDPM, DDIM and DPM-Solver++ sampling, DDIM inversion.

One implementation serves the decoder, the upsamplers and the diffusion prior. A model is
any function `model_fn(x_t, t) -> output` where t holds integer timesteps [N] in [0, T)
and the output is the model's prediction of epsilon (`prediction="eps"`), of x_0
(`prediction="x0"`, the diffusion prior) or of v = sqrt(a) eps - sqrt(1 - a) x_0
(`prediction="v"`, the decoder and upsamplers). Conditioning and classifier-free guidance are
closed over by the caller (see `guided`).

Schedule constants are computed in float64 and cast per use, as in improved-diffusion.

Samplers accept the latents they would otherwise draw (x_T, per-step noise), so fixed-x_T
experiments are one argument away; every sampler has its inverse:

    x_T = diffusion.ddim_invert(model_fn, x_0, steps=50)             # eta = 0 only
    x_0 = diffusion.ddim_sample(model_fn, x_T=x_T, steps=50, eta=0)  # round trip

DDIM (eta = 0) is the first-order solver of the probability-flow ODE written in
lambda = log(alpha / sigma); DPM-Solver++(2M) (Lu et al. 2022) is its second-order multistep
sibling on the same timesteps: it reuses the previous step's x0 prediction to extrapolate
the data prediction across the step, one model call per step, and so reaches DDIM's quality
in fewer steps:

    x_0 = diffusion.dpm_solver_sample(model_fn, x_T=x_T, steps=10)
    x_0 = diffusion.sample(model_fn, x_T=x_T, steps=10, sampler="dpm++")   # the same
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from .distributed import batch_randint, batch_randn

ModelFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
SAMPLERS = ("ddim", "dpm++")
SPACINGS = ("uniform", "logsnr")
# each sampler's timesteps unless told otherwise: DDIM keeps the uniform spacing its inversion
# mirrors; DPM-Solver++ takes steps evenly spaced in lambda, where its second order pays off
# (on the shipped decoder, 10 steps land 3.5x closer to the 200-step solution than with
# uniform spacing, which leaves it no better than DDIM: BENCHMARKS.md, "Sampling")
DEFAULT_SPACING = {"ddim": "uniform", "dpm++": "logsnr"}


# ----------------------------------------------------------------------------- schedules

def cosine_betas(steps: int, s: float = 0.008, max_beta: float = 0.999) -> np.ndarray:
    """Nichol & Dhariwal's cosine schedule: alpha_bar(t) = cos^2(((t/T)+s)/(1+s) * pi/2). [T] float64."""
    f = lambda t: math.cos((t / steps + s) / (1 + s) * math.pi / 2) ** 2  # noqa: E731
    return np.array([min(1 - f(i + 1) / f(i), max_beta) for i in range(steps)], dtype=np.float64)


def linear_betas(steps: int) -> np.ndarray:
    """DDPM's linear schedule, rescaled so any step count spans the same noise range. [T] float64."""
    scale = 1000 / steps
    return np.linspace(scale * 1e-4, scale * 0.02, steps, dtype=np.float64)


def make_betas(schedule: str, steps: int) -> np.ndarray:
    if schedule == "cosine":
        return cosine_betas(steps)
    if schedule == "linear":
        return linear_betas(steps)
    raise ValueError(f"unknown noise schedule {schedule!r}; known: 'cosine', 'linear'")


def ddim_timesteps(num_train_steps: int, steps: int) -> list[int]:
    """`steps` timesteps evenly spread over [0, T), ascending, from 0 up to T - 1; a single
    step is T - 1 (one jump from pure noise to the model's x0 prediction)."""
    if not 1 <= steps <= num_train_steps:
        raise ValueError(f"steps must be in [1, {num_train_steps}], got {steps}")
    if steps == 1:
        return [num_train_steps - 1]
    return sorted({int(round(x)) for x in np.linspace(0, num_train_steps - 1, steps)})


def logsnr_timesteps(alphas_cumprod: np.ndarray, steps: int) -> list[int]:
    """`steps` distinct integer timesteps, ascending from 0 to T - 1, spaced evenly in the log
    signal-to-noise ratio lambda = log(alpha / sigma) rather than in t (the DPM-Solver
    papers' choice): evenly spaced t leave one last step into t = 0 that spans most of the
    lambda range, and that step's error dominates a few-step sample."""
    num = len(alphas_cumprod)
    if not 1 <= steps <= num:
        raise ValueError(f"steps must be in [1, {num}], got {steps}")
    if steps == 1:
        return [num - 1]
    lam = 0.5 * np.log(alphas_cumprod / (1.0 - alphas_cumprod))          # decreasing in t
    targets = np.linspace(lam[0], lam[-1], steps)
    ts = np.interp(-targets, -lam, np.arange(num)).round().astype(int)   # ascending
    for i in range(1, steps):                                              # distinct, in range
        ts[i] = max(ts[i], ts[i - 1] + 1)
    for i in range(steps - 1, -1, -1):
        ts[i] = min(ts[i], num - 1 - (steps - 1 - i))
    return [int(t) for t in ts]


# ----------------------------------------------------------------------------- diffusion

class GaussianDiffusion:
    """The forward process q(x_t | x_0) and its reversal by a learned model."""

    def __init__(self, schedule: str = "cosine", num_steps: int = 1000, prediction: str = "eps"):
        if prediction not in ("eps", "x0", "v"):
            raise ValueError(f"prediction must be 'eps', 'x0' or 'v', got {prediction!r}")
        self.schedule, self.num_steps, self.prediction = schedule, num_steps, prediction
        betas = make_betas(schedule, num_steps)
        alphas_cumprod = np.cumprod(1.0 - betas)
        prev = np.append(1.0, alphas_cumprod[:-1])
        self.betas = betas
        self.alphas_cumprod = alphas_cumprod
        self.alphas_cumprod_prev = prev
        # q(x_{t-1} | x_t, x_0): mean = c0 * x_0 + ct * x_t
        self.posterior_variance = betas * (1.0 - prev) / (1.0 - alphas_cumprod)
        self.posterior_log_variance = np.log(np.append(self.posterior_variance[1], self.posterior_variance[1:]))
        self.posterior_mean_coef_x0 = betas * np.sqrt(prev) / (1.0 - alphas_cumprod)
        self.posterior_mean_coef_xt = (1.0 - prev) * np.sqrt(1.0 - betas) / (1.0 - alphas_cumprod)

    # -- helpers
    @staticmethod
    def _at(array: np.ndarray, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """array[t] as a float tensor broadcastable to `like` ([N] -> [N, 1, ..., 1])."""
        values = torch.from_numpy(array).to(like.device)[t.long()].to(like.dtype)
        return values.view(-1, *([1] * (like.dim() - 1)))

    def timesteps(self, steps: int, spacing: str = "uniform") -> list[int]:
        """The sampler's timesteps, ascending: "uniform" in t (`ddim_timesteps`, DDIM's and
        the inversion's) or "logsnr" (`logsnr_timesteps`)."""
        if spacing == "uniform":
            return ddim_timesteps(self.num_steps, steps)
        if spacing == "logsnr":
            return logsnr_timesteps(self.alphas_cumprod, steps)
        raise ValueError(f"spacing must be one of {SPACINGS}, got {spacing!r}")

    def alpha_bar(self, t: int) -> float:
        """alpha_bar at integer t; t = -1 means the clean data (alpha_bar = 1)."""
        return 1.0 if t < 0 else float(self.alphas_cumprod[t])

    # -- forward process
    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """x_t = sqrt(a_bar_t) x_0 + sqrt(1 - a_bar_t) noise.  x0, noise: [N, ...]; t: [N]."""
        return (self._at(np.sqrt(self.alphas_cumprod), t, x0) * x0
                + self._at(np.sqrt(1.0 - self.alphas_cumprod), t, x0) * noise)

    def q_posterior(self, x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor):
        """Mean and variance of q(x_{t-1} | x_t, x_0)."""
        mean = self._at(self.posterior_mean_coef_x0, t, x_t) * x0 + self._at(self.posterior_mean_coef_xt, t, x_t) * x_t
        return mean, self._at(self.posterior_variance, t, x_t)

    def eps_from_x0(self, x_t, t, x0):
        return (x_t - self._at(np.sqrt(self.alphas_cumprod), t, x_t) * x0) / self._at(
            np.sqrt(1.0 - self.alphas_cumprod), t, x_t)

    def v_target(self, x0, t, noise):
        """v = sqrt(a_bar) eps - sqrt(1 - a_bar) x0 (Salimans & Ho 2022)."""
        return (self._at(np.sqrt(self.alphas_cumprod), t, x0) * noise
                - self._at(np.sqrt(1.0 - self.alphas_cumprod), t, x0) * x0)

    def x0_from_eps(self, x_t, t, eps):
        return (x_t - self._at(np.sqrt(1.0 - self.alphas_cumprod), t, x_t) * eps) / self._at(
            np.sqrt(self.alphas_cumprod), t, x_t)

    def predict(self, model_fn: ModelFn, x_t: torch.Tensor, t: torch.Tensor,
                clip_x0: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(x0_pred, eps_pred) from one model call; x0 optionally clamped to [-c, c]
        (eps then recomputed so the pair stays consistent)."""
        out = model_fn(x_t, t)
        if self.prediction == "eps":
            eps, x0 = out, self.x0_from_eps(x_t, t, out)
        elif self.prediction == "v":
            a, s = self._at(np.sqrt(self.alphas_cumprod), t, x_t), self._at(np.sqrt(1.0 - self.alphas_cumprod), t, x_t)
            x0, eps = a * x_t - s * out, s * x_t + a * out
        else:
            x0, eps = out, self.eps_from_x0(x_t, t, out)
        if clip_x0 is not None:
            x0 = x0.clamp(-clip_x0, clip_x0)
            eps = self.eps_from_x0(x_t, t, x0)
        return x0, eps

    # -- training
    def training_loss(self, model_fn: ModelFn, x0: torch.Tensor, generator: torch.Generator | None = None,
                      t: torch.Tensor | None = None, noise: torch.Tensor | None = None) -> torch.Tensor:
        """MSE between the model output and its target (epsilon, x_0 or v, per `prediction`),
        at uniformly drawn timesteps. Returns a scalar."""
        n = x0.shape[0]
        if t is None:
            t = batch_randint(self.num_steps, (n,), generator).to(x0.device)
        if noise is None:
            noise = batch_randn(x0.shape, generator).to(x0.device)
        x_t = self.q_sample(x0, t, noise)
        if self.prediction == "eps":
            target = noise
        elif self.prediction == "v":
            target = self.v_target(x0, t, noise)
        else:
            target = x0
        return ((model_fn(x_t, t) - target) ** 2).mean()

    # -- sampling
    def ddpm_sample(self, model_fn: ModelFn, shape=None, x_T: torch.Tensor | None = None,
                    generator: torch.Generator | None = None, noises: list | None = None,
                    clip_x0: float | None = None, progress: bool = False) -> torch.Tensor:
        """Ancestral sampling through all T steps of the posterior q(x_{t-1} | x_t, x0_pred)."""
        x = _initial(x_T, shape, generator)
        for i, step in enumerate(tqdm(range(self.num_steps - 1, -1, -1), disable=not progress, desc="ddpm")):
            t = torch.full((x.shape[0],), step, dtype=torch.long, device=x.device)
            x0, _ = self.predict(model_fn, x, t, clip_x0)
            mean, var = self.q_posterior(x0, x, t)
            if step == 0:
                x = mean
            else:
                z = noises[i] if noises is not None else torch.randn(x.shape, generator=generator).to(x.device)
                x = mean + var.sqrt() * z
        return x

    def ddim_step(self, x_t: torch.Tensor, x0: torch.Tensor, eps: torch.Tensor, t: int, t_prev: int,
                  eta: float = 0.0, noise: torch.Tensor | None = None) -> torch.Tensor:
        """One DDIM update from t to t_prev < t (t_prev = -1: to the data), eq. 12 of Song et al.:
        x_prev = sqrt(a_prev) x0 + sqrt(1 - a_prev - sigma^2) eps + sigma z,
        sigma = eta sqrt((1 - a_prev) / (1 - a_t)) sqrt(1 - a_t / a_prev)."""
        a_t, a_prev = self.alpha_bar(t), self.alpha_bar(t_prev)
        sigma = eta * math.sqrt((1 - a_prev) / (1 - a_t)) * math.sqrt(1 - a_t / a_prev)
        x_prev = math.sqrt(a_prev) * x0 + math.sqrt(max(1 - a_prev - sigma ** 2, 0.0)) * eps
        if sigma > 0:
            if noise is None:
                raise ValueError("ddim_step with eta > 0 needs noise")
            x_prev = x_prev + sigma * noise
        return x_prev

    def ddim_sample(self, model_fn: ModelFn, shape=None, x_T: torch.Tensor | None = None, steps: int = 50,
                    eta: float = 0.0, generator: torch.Generator | None = None, noises: list | None = None,
                    clip_x0: float | None = None, progress: bool = False, spacing: str = "uniform") -> torch.Tensor:
        """DDIM sampling with `steps` strided steps; eta = 0 is deterministic given x_T,
        eta = 1 matches DDPM's posterior variance. `ddim_invert` inverts the uniform spacing."""
        x = _initial(x_T, shape, generator)
        ts = self.timesteps(steps, spacing)
        pairs = list(zip(ts[::-1], ts[::-1][1:] + [-1]))
        for i, (t, t_prev) in enumerate(tqdm(pairs, disable=not progress, desc="ddim")):
            tt = torch.full((x.shape[0],), t, dtype=torch.long, device=x.device)
            x0, eps = self.predict(model_fn, x, tt, clip_x0)
            if t_prev < 0:
                x = x0  # the last step lands on the prediction itself
                break
            noise = None
            if eta > 0:
                noise = noises[i] if noises is not None else torch.randn(x.shape, generator=generator).to(x.device)
            x = self.ddim_step(x, x0, eps, t, t_prev, eta, noise)
        return x

    def dpm_solver_sample(self, model_fn: ModelFn, shape=None, x_T: torch.Tensor | None = None,
                          steps: int = 10, generator: torch.Generator | None = None,
                          clip_x0: float | None = None, progress: bool = False,
                          spacing: str = "uniform") -> torch.Tensor:
        """DPM-Solver++(2M), deterministic, on DDIM's timesteps (`ddim_timesteps`) or, with
        spacing="logsnr", on timesteps evenly spaced in lambda (`logsnr_timesteps`).

        With alpha = sqrt(a_bar), sigma = sqrt(1 - a_bar), lambda = log(alpha / sigma) and
        h = lambda_next - lambda_cur, the data-prediction update is
            x_next = (sigma_next / sigma_cur) x_cur - alpha_next (exp(-h) - 1) D,
        where D is the x0 prediction at the current step for the first step (this is exactly
        DDIM) and otherwise the second-order extrapolation
            D = (1 + 1 / (2 r)) x0_cur - 1 / (2 r) x0_prev,   r = h_prev / h.
        The update into the smallest timestep (t = 0 for steps > 1) is first order: evenly
        spaced timesteps end with a jump in lambda several times the previous one (r ~ 0.2
        at 10 steps), where the extrapolation overshoots; on an exactly solvable Gaussian
        this makes 10 steps worse than DDIM's, while first order there keeps the solver's
        second-order convergence. Then, as DDIM does, the sample is the x0 prediction at
        that timestep. In diffusers' terms: DPMSolverMultistepScheduler(solver_order=2,
        algorithm_type="dpmsolver++", final_sigmas_type="sigma_min", euler_at_final=True)
        on our timesteps but the last, then one x0 prediction. One model call per step."""
        x = _initial(x_T, shape, generator)
        ts = self.timesteps(steps, spacing)[::-1]
        lam = lambda t: 0.5 * math.log(self.alpha_bar(t) / (1 - self.alpha_bar(t)))  # noqa: E731
        x0_prev, h_prev = None, None
        for i, t in enumerate(tqdm(ts, disable=not progress, desc="dpm-solver++")):
            tt = torch.full((x.shape[0],), t, dtype=torch.long, device=x.device)
            x0, _ = self.predict(model_fn, x, tt, clip_x0)
            if i == len(ts) - 1:
                return x0  # to sigma = 0: the data prediction itself
            t_next = ts[i + 1]
            a_cur, a_next = self.alpha_bar(t), self.alpha_bar(t_next)
            h = lam(t_next) - lam(t)
            d = x0
            if x0_prev is not None and i < len(ts) - 2:
                r = h_prev / h
                d = (1 + 1 / (2 * r)) * x0 - (1 / (2 * r)) * x0_prev
            x = (math.sqrt((1 - a_next) / (1 - a_cur)) * x
                 - math.sqrt(a_next) * math.expm1(-h) * d)
            x0_prev, h_prev = x0, h
        return x

    def sample(self, model_fn: ModelFn, shape=None, x_T: torch.Tensor | None = None, steps: int = 10,
               sampler: str = "dpm++", eta: float = 0.0, generator: torch.Generator | None = None,
               clip_x0: float | None = None, progress: bool = False, spacing: str | None = None) -> torch.Tensor:
        """Sample with `sampler` ("dpm++" or "ddim") on timesteps of `spacing` ("uniform",
        "logsnr", or None: the sampler's DEFAULT_SPACING). DPM-Solver++ is deterministic:
        eta > 0 (fresh noise at every step) is DDIM's, and asking for it with "dpm++" is an error."""
        if sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
        spacing = DEFAULT_SPACING[sampler] if spacing is None else spacing
        self.timesteps(1, spacing)  # an unknown spacing fails before any work
        if sampler == "dpm++":
            if eta != 0:
                raise ValueError(f"eta={eta}: DPM-Solver++ is deterministic; use sampler='ddim' for eta > 0")
            return self.dpm_solver_sample(model_fn, shape, x_T, steps, generator, clip_x0, progress, spacing)
        return self.ddim_sample(model_fn, shape, x_T, steps, eta, generator, clip_x0=clip_x0, progress=progress,
                                spacing=spacing)

    def repaint_sample(self, model_fn: ModelFn, known: torch.Tensor, keep: torch.Tensor,
                       x_T: torch.Tensor | None = None, steps: int = 25, resample: int = 4, eta: float = 1.0,
                       generator: torch.Generator | None = None, clip_x0: float | None = None,
                       progress: bool = False) -> torch.Tensor:
        """Inpainting by sampling (RePaint, Lugmayr et al. 2022) with an unconditional-region model.

        known [N, C, H, W]: the data whose kept pixels stay; keep [N, 1 or C, H, W] in [0, 1]:
        1 where known is kept. At every step the model's DDIM step (eta: its noise) makes the
        region, and the kept pixels are the known data noised to the same level, q(x_t | x_0),
        so the model always sees them at the noise level it expects. The model only sees
        the kept pixels through that noisy composite, so the two halves can disagree at the
        seam: `resample` - 1 times per step the composite is noised back to the step's level
        (x_t = sqrt(a_t / a_prev) x_prev + sqrt(1 - a_t / a_prev) z, one diffusion jump) and
        the step redone, which lets the region harmonise with what is kept (RePaint's
        jumps of length 1). resample = 1 is the plain replacement method; model calls:
        (steps - 1) x resample + 1 (the last step, to t = 0, is not resampled). The result holds `known` exactly where keep = 1."""
        if not 0 < eta <= 1:
            raise ValueError(f"repaint_sample needs noise at every step: eta in (0, 1], got {eta}")
        if resample < 1:
            raise ValueError(f"resample must be at least 1, got {resample}")
        if keep.shape[0] != known.shape[0] or keep.shape[-2:] != known.shape[-2:]:
            raise ValueError(f"keep {list(keep.shape)} must match known {list(known.shape)} in batch and size")
        draw = lambda: torch.randn(known.shape, generator=generator).to(known.device)  # noqa: E731
        x = draw() if x_T is None else x_T
        ts = self.timesteps(steps)
        pairs = list(zip(ts[::-1], ts[::-1][1:] + [-1]))
        for t, t_prev in tqdm(pairs, disable=not progress, desc="repaint"):
            tt = torch.full((x.shape[0],), t, dtype=torch.long, device=x.device)
            for u in range(resample if t_prev >= 0 else 1):
                if u:  # one jump back: the composite noised from t_prev's level to t's
                    a = self.alpha_bar(t) / self.alpha_bar(t_prev)
                    x = math.sqrt(a) * x + math.sqrt(1 - a) * draw()
                x0, eps = self.predict(model_fn, x, tt, clip_x0)
                if t_prev < 0:
                    region, kept = x0, known
                else:
                    region = self.ddim_step(x, x0, eps, t, t_prev, eta, draw())
                    a_prev = self.alpha_bar(t_prev)
                    kept = math.sqrt(a_prev) * known + math.sqrt(1 - a_prev) * draw()
                x = torch.lerp(region, kept, keep)
        return x

    def ddim_invert(self, model_fn: ModelFn, x0: torch.Tensor, steps: int = 50, eta: float = 0.0,
                    refine: int = 0, progress: bool = False) -> torch.Tensor:
        """Run the eta = 0 DDIM ODE forwards, data -> x_T, so ddim_sample(x_T=...) returns x0.

        refine = 0: naive inversion (epsilon evaluated at the current point, one model call
        per step). refine = k > 0: k fixed-point iterations per step, solving for the x_next
        whose DDIM step lands exactly on x_t (1 + k model calls per step).
        """
        assert eta == 0.0, "DDIM inversion is only defined for the deterministic sampler (eta = 0)"
        ts = ddim_timesteps(self.num_steps, steps)
        # the sampler's last step maps x_{t0} to its x0 prediction, so the first inverse
        # step goes from the data (t = -1, alpha_bar = 1) to t0
        x = x0
        path = [(-1, ts[0])] + list(zip(ts, ts[1:]))
        for t, t_next in tqdm(path, disable=not progress, desc="ddim inversion"):
            x = self._invert_step(model_fn, x, t, t_next, refine)
        return x

    def _invert_step(self, model_fn, x_t, t, t_next, refine):
        a_t, a_next = self.alpha_bar(t), self.alpha_bar(t_next)
        n = x_t.shape[0]

        def eps_at(point, when):
            tt = torch.full((n,), when, dtype=torch.long, device=x_t.device)
            return self.predict(model_fn, point, tt)[1]

        # naive: epsilon at the current point (from the data, t = -1, at t_next's noise level)
        eps = eps_at(x_t, t if t >= 0 else t_next)
        x_next = self._ddim_forward(x_t, eps, a_t, a_next)
        for _ in range(refine):
            # fixed point of: the DDIM step from x_next with eps(x_next) lands on x_t
            x_next = self._ddim_forward(x_t, eps_at(x_next, t_next), a_t, a_next)
        return x_next

    @staticmethod
    def _ddim_forward(x_t, eps, a_t, a_next):
        x0 = (x_t - math.sqrt(1 - a_t) * eps) / math.sqrt(a_t)
        return math.sqrt(a_next) * x0 + math.sqrt(1 - a_next) * eps


def _initial(x_T, shape, generator) -> torch.Tensor:
    if x_T is not None:
        return x_T
    if shape is None:
        raise ValueError("pass either x_T or a shape to draw it from")
    return torch.randn(tuple(shape), generator=generator)


def guided(model_fn_cond: ModelFn, model_fn_uncond: ModelFn, scale: float) -> ModelFn:
    """Classifier-free guidance: out = uncond + scale * (cond - uncond). scale = 1 is the
    conditional model, 0 the unconditional one."""

    def fn(x, t):
        if scale == 1.0:
            return model_fn_cond(x, t)
        cond, uncond = model_fn_cond(x, t), model_fn_uncond(x, t)
        return uncond + scale * (cond - uncond)

    return fn
