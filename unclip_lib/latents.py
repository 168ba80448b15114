"""Geometry of the latents: spherical interpolation and text-diff directions.

unCLIP's manipulations move on spheres. CLIP embeddings are unit vectors, and the decoder's
DDIM latents x_T are Gaussian vectors whose norm concentrates near sqrt(dim): a straight
line between two of either passes through shorter vectors the models never saw, while
slerp keeps the norm and turns at constant angular speed.

    z = slerp(z_a, z_b, 0.5)                    # halfway along the great circle
    z_d = text_diff_direction(z_t, z_t0)        # normalise(z_t - z_t0)
    z_edit = slerp(z_i, z_d, 0.3)               # the paper's text diff
"""
from __future__ import annotations

import torch

from .checks import check_flag, check_int, is_real

# Below this angle (radians) slerp falls back to the linear interpolation it converges to:
# sin(omega) would otherwise divide by a number close to zero.
PARALLEL_ANGLE = 1e-4
# Above this angle the two vectors are antipodal for our purpose: every great circle joins
# them, so the path is not defined.
ANTIPODAL_ANGLE = torch.pi - 1e-3


def normalise(x: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """x [..., D] divided by its L2 norm along the last axis."""
    return x / x.norm(dim=-1, keepdim=True).clamp_min(eps)


def check_pair(a, b, what: str = "slerp") -> torch.Size:
    """a and b: floating-point tensors of one shape (or broadcastable); their common shape."""
    if not isinstance(a, torch.Tensor) or not isinstance(b, torch.Tensor):
        raise TypeError(f"{what}: a and b must be tensors, got {type(a).__name__} and {type(b).__name__}"
                        " (convert with torch.as_tensor(x, dtype=torch.float32))")
    if not a.is_floating_point() or not b.is_floating_point():
        raise TypeError(f"{what}: a and b must hold floating-point values, got {a.dtype} and {b.dtype}; use .float()")
    if a.dim() == 0 or b.dim() == 0:
        raise ValueError(f"{what}: a and b must be vectors [..., D], got shapes {list(a.shape)} and {list(b.shape)}")
    try:
        return torch.broadcast_shapes(a.shape, b.shape)
    except RuntimeError:
        raise ValueError(f"{what}: a {list(a.shape)} and b {list(b.shape)} must have the same shape"
                         " (or one of them a single row)") from None


def check_theta(theta, rows: torch.Size, extrapolate: bool = False) -> torch.Tensor:
    """slerp's theta as a float64 tensor: a number, or a tensor / list broadcastable to the
    batch shape `rows` (one theta per vector); finite, and in [0, 1] unless extrapolate."""
    if isinstance(theta, (list, tuple)) or (hasattr(theta, "__array__") and not isinstance(theta, torch.Tensor)):
        if isinstance(theta, (list, tuple)) and not all(is_real(t) for t in theta):
            raise TypeError(f"slerp: theta must be a number in [0, 1] or a list of numbers, got {theta!r}")
        try:
            theta = torch.as_tensor(theta, dtype=torch.float64)
        except (TypeError, ValueError, RuntimeError):
            raise TypeError(f"slerp: theta must be a number in [0, 1] or an array of numbers, got {theta!r}") from None
    if isinstance(theta, torch.Tensor):
        if not (theta.is_floating_point() or theta.dtype in (torch.int32, torch.int64, torch.uint8)):
            raise TypeError(f"slerp: theta must hold real numbers, got a tensor of {theta.dtype}")
        try:
            torch.broadcast_shapes(theta.shape, rows)
        except RuntimeError:
            raise ValueError(f"slerp: theta has shape {list(theta.shape)} but a and b hold vectors of batch shape "
                             f"{list(rows)}; give one theta, or one per vector") from None
        t = theta.detach().to("cpu", torch.float64)
    elif is_real(theta):
        t = torch.tensor(float(theta), dtype=torch.float64)
    else:
        raise TypeError(f"slerp: theta must be a number in [0, 1] (or a tensor of them), got {type(theta).__name__}"
                        f" {theta!r}")
    if not torch.isfinite(t).all():
        raise ValueError("slerp: theta contains NaN or infinite values; give numbers in [0, 1]")
    if not check_flag(extrapolate, "extrapolate") and ((t < 0) | (t > 1)).any():
        raise ValueError(f"slerp: theta must lie in [0, 1] (0: a, 1: b), got values in [{float(t.min()):g}, "
                         f"{float(t.max()):g}]; pass extrapolate=True to go past the ends on purpose")
    return t


def slerp(a: torch.Tensor, b: torch.Tensor, theta, extrapolate: bool = False) -> torch.Tensor:
    """Spherical interpolation from a (theta = 0) to b (theta = 1).

    a, b: [..., D] (broadcastable; [N, C, H, W] latents are flattened to [N, C*H*W] and
    back). theta: a number, or a tensor (or list) broadcastable to the batch shape [...],
    one theta per vector. The angle comes from the normalised dot product; the magnitudes
    are interpolated too, so unit vectors stay unit and two latents of equal norm keep it.
    Returns a at theta = 0 and b at theta = 1 exactly. theta must lie in [0, 1]: beyond
    the ends the path extrapolates (and the norm of unequal vectors can turn negative), so
    that needs extrapolate=True. Raises ValueError for antipodal vectors, where the path is
    not unique; nearly parallel ones fall back to linear interpolation.
    """
    shape = check_pair(a, b)
    if a.dim() > 2 or b.dim() > 2:
        flat = slerp(a.reshape(a.shape[0], -1), b.reshape(b.shape[0], -1), theta, extrapolate)
        return flat.reshape(shape)
    t64 = check_theta(theta, shape[:-1], extrapolate)
    dtype = torch.promote_types(a.dtype, b.dtype)
    a, b = a.to(dtype), b.to(dtype)
    theta = t64.to(device=a.device, dtype=dtype)   # rounded to the vectors' precision, as they are
    if not torch.isfinite(a).all() or not torch.isfinite(b).all():
        raise ValueError("slerp: the vectors contain NaN or infinite values")
    na, nb = a.norm(dim=-1, keepdim=True), b.norm(dim=-1, keepdim=True)
    if (na == 0).any() or (nb == 0).any():
        raise ValueError("slerp: a zero vector has no direction to interpolate")
    # the angle in float64: arccos is ill-conditioned near +-1, where fp32 loses the angle
    cos = ((a / na).double() * (b / nb).double()).sum(-1, keepdim=True).clamp(-1, 1)
    omega = torch.arccos(cos)
    if (omega > ANTIPODAL_ANGLE).any():
        raise ValueError("slerp: the vectors are antipodal (angle ~180 degrees), so no single great circle"
                         " joins them; perturb one or interpolate through a third point")
    t = theta.double()
    if t.dim() > 0:
        t = t.unsqueeze(-1)
    # along the great circle of the unit directions, with the norms interpolated linearly
    sin = torch.sin(omega)
    parallel = omega < PARALLEL_ANGLE
    safe_sin = torch.where(parallel, torch.ones_like(sin), sin)
    wa = torch.where(parallel, 1 - t, torch.sin((1 - t) * omega) / safe_sin)
    wb = torch.where(parallel, t, torch.sin(t * omega) / safe_sin)
    norm = (1 - t) * na.double() + t * nb.double()
    out = norm * (wa * (a / na).double() + wb * (b / nb).double())
    if parallel.any():
        # the linear fallback shortens the vector slightly; put it back on the sphere
        out = torch.where(parallel, normalise(out) * norm, out)
    out = out.to(dtype)
    # the endpoints are returned bit for bit, not up to rounding
    out = torch.where(t == 0, a, out)
    return torch.where(t == 1, b, out)


def text_diff_direction(z_t: torch.Tensor, z_t0: torch.Tensor) -> torch.Tensor:
    """z_d = normalise(z_t - z_t0) [..., D]: the direction from the current description's
    text embedding z_t0 to the new one's z_t (unCLIP section 3.3)."""
    check_pair(z_t, z_t0, "text_diff_direction")
    diff = z_t - z_t0
    if (diff.norm(dim=-1) < 1e-6).any():
        raise ValueError("text diff: the two captions have the same CLIP text embedding, so there is no"
                         " direction to move in; give a target caption that differs from the source")
    return normalise(diff)


class EmbeddingPCA:
    """Principal components of a set of embeddings [N, D] (unCLIP section 4's probe).

        pca = EmbeddingPCA.fit(z_i)              # z_i [N, D]
        pca.explained                            # [D] variance ratio, decreasing
        pca.reconstruct(z_i, k)                  # [N, D] from the first k components, unit norm
    """

    def __init__(self, mean: torch.Tensor, components: torch.Tensor, explained: torch.Tensor):
        self.mean = mean                # [D]
        self.components = components    # [D, D], one component per row, by decreasing variance
        self.explained = explained      # [D] share of the total variance per component

    @classmethod
    def fit(cls, z: torch.Tensor) -> "EmbeddingPCA":
        if not isinstance(z, torch.Tensor) or not z.is_floating_point():
            raise TypeError("PCA needs a floating-point tensor of embeddings [N, D], got "
                            f"{getattr(z, 'dtype', type(z).__name__)}")
        if not torch.isfinite(z).all():
            raise ValueError("PCA: the embeddings contain NaN or infinite values")
        if z.dim() != 2 or z.shape[0] < 2:
            raise ValueError(f"PCA needs embeddings [N >= 2, D], got {list(z.shape)}")
        z = z.double()
        mean = z.mean(0)
        # SVD of the centred data: rows of vh are the principal directions
        _, s, vh = torch.linalg.svd(z - mean, full_matrices=False)
        var = s ** 2
        d = z.shape[1]
        components = torch.zeros(d, d, dtype=torch.float64)
        components[: vh.shape[0]] = vh  # fewer samples than dims: the remaining directions carry nothing
        explained = torch.zeros(d, dtype=torch.float64)
        explained[: var.shape[0]] = var / var.sum()
        return cls(mean.float(), components.float(), explained.float())

    @property
    def dim(self) -> int:
        return self.components.shape[1]

    def reconstruct(self, z: torch.Tensor, k: int, renormalise: bool = True) -> torch.Tensor:
        """z [N, D] projected on the mean plus the first k components (k = D: z itself,
        up to rounding), then put back on the unit sphere where CLIP embeddings live."""
        k = check_int(k, "k", hint="the number of principal components kept")
        if not 0 <= k <= self.dim:
            raise ValueError(f"k must lie in [0, {self.dim}] (the number of principal components kept), got {k}")
        basis = self.components[:k]                                  # [k, D]
        out = self.mean + ((z - self.mean) @ basis.T) @ basis
        return normalise(out) if renormalise else out
